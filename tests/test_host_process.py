"""fork, exit and signals through HostBackend, and the stat/status/pagemap readers on real faults.

Golden values: the P2-P4, P14 and P15 rows of /work/shared/reference/kernel-6.18-x86_64.md, measured
with experiments/run_all.sh (`gcc -o faults faults.c; setarch -R ./faults`, `... ./forkf`, `... ./misc`).
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from hostutil import PG, mmap
from vmlab.host import procfs
from vmlab.host.oracle import HostBackend, StepperDied

PROT_READ = 0x1
MAP_PRIVATE = 0x02
MADV_DONTNEED = 4


def counters(host: HostBackend, pid: int) -> tuple[int, int, int]:
    """(minflt, majflt, RssAnon kB) of `pid`."""
    stat = host.stat(pid)
    return stat.minflt, stat.majflt, procfs.status_kb(host.view(pid, "status"), "RssAnon")


def test_fork_gives_the_child_its_own_channel(host: HostBackend, proc: int) -> None:
    a = mmap(host, proc, 0x10000000, 4 * PG)
    assert host.access(proc, a, 4 * PG, True) is None
    child = host.fork(proc)
    assert child > 0 and child != proc and set(host.pids) == {proc, child}
    assert host.syscall(child, "getpid", ()) == child
    assert host.syscall(proc, "getpid", ()) == proc
    assert host.syscall(child, "getppid", ()) == os.getpid()  # clone(CLONE_PARENT): we reap it
    assert host.view(child, "maps") == host.view(proc, "maps")
    assert mmap(host, child, 0x20000000, PG) == 0x20000000
    assert "20000000-20001000" in host.view(child, "maps")
    assert "20000000-20001000" not in host.view(proc, "maps")
    grandchild = host.fork(child)
    assert host.view(grandchild, "maps") == host.view(child, "maps")
    host.exit(child)
    assert set(host.pids) == {proc, grandchild}
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # already reaped
    assert procfs.read_text(child, "maps") is None
    assert host.syscall(grandchild, "getpid", ()) == grandchild  # survives its parent
    with pytest.raises(ProcessLookupError):
        host.syscall(child, "getpid", ())


def test_fork_cow_p14(host: HostBackend, proc: int) -> None:
    """P15 rows 40-42: a written anon VMA is copied (read 0 faults, write COW +1 with RSS unchanged);
    a zero-page-only VMA is not copied (read +1)."""
    a = mmap(host, proc, 0x10000000, 16 * PG)
    z = mmap(host, proc, 0x11000000, 16 * PG)
    assert host.access(proc, a, 16 * PG, True) is None
    assert host.access(proc, z, PG, False) is None
    child = host.fork(proc)
    assert procfs.present_string(host.entries(child, a, a + 16 * PG)) == "1" * 16
    assert procfs.present_string(host.entries(child, z, z + PG)) == "0"
    flt, maj, anon = counters(host, child)
    assert host.access(child, a, 1, False) is None
    assert counters(host, child) == (flt, maj, anon)
    assert host.access(child, a, 1, True) is None
    assert counters(host, child) == (flt + 1, maj, anon)
    assert host.access(child, z, 1, False) is None
    assert counters(host, child) == (flt + 2, maj, anon)
    flt, maj, anon = counters(host, proc)
    assert host.access(proc, a + PG, 1, True) is None  # row 46: parent write while the child lives
    assert counters(host, proc) == (flt + 1, maj, anon)


@pytest.mark.parametrize("write", [False, True])
def test_access_outside_a_mapping_is_sigsegv(host: HostBackend, proc: int, write: bool) -> None:
    assert host.access(proc, 0x10000000, 1, write) == "SIGSEGV"
    assert proc not in host.pids
    assert procfs.read_text(proc, "maps") is None  # reaped


def test_write_to_read_only_mapping_is_sigsegv(host: HostBackend, proc: int) -> None:
    r = mmap(host, proc, 0, 2 * PG, PROT_READ)
    assert host.access(proc, r, 2 * PG, False) is None
    assert host.access(proc, r + PG, 1, True) == "SIGSEGV"


def test_file_mapping_past_eof_is_sigbus(host: HostBackend, proc: int, tmp_path: Path) -> None:
    f = tmp_path / "short"
    f.write_bytes(b"y" * 100)
    fd = host.syscall(proc, "openat", (-100, str(f), os.O_RDONLY, 0))
    m = mmap(host, proc, 0, 2 * PG, PROT_READ, MAP_PRIVATE, fd)
    assert m > 0
    assert host.access(proc, m, PG, False) is None
    assert host.access(proc, m + PG, PG, False) == "SIGBUS"
    assert proc not in host.pids


def test_killed_during_a_syscall_is_reported(host: HostBackend, proc: int) -> None:
    os.kill(proc, signal.SIGKILL)
    with pytest.raises(StepperDied, match="killed by SIGKILL") as info:
        host.syscall(proc, "getpid", ())
    assert info.value.signal == "SIGKILL" and proc not in host.pids


def test_write_fault_pagemap_and_stat(host: HostBackend, proc: int) -> None:
    """P3 / F3: a write to a fresh anon page: minflt +1, RssAnon +4 kB, pagemap present + exclusive."""
    a = mmap(host, proc, 0, 2 * PG)
    assert host.entries(proc, a, a + 2 * PG) == [procfs.PagemapEntry(0)] * 2
    flt, maj, anon = counters(host, proc)
    assert host.access(proc, a, 1, True) is None
    assert counters(host, proc) == (flt + 1, maj, anon + 4)
    page, untouched = host.entries(proc, a, a + 2 * PG)
    assert page.present and page.exclusive and not page.file and not page.swapped and page.pfn > 0
    assert untouched.raw == 0
    # P2: a read fault maps the shared zero page: present, not exclusive, no RSS
    assert host.access(proc, a + PG, 1, False) is None
    assert counters(host, proc) == (flt + 2, maj, anon + 4)
    zero = host.entries(proc, a + PG, a + 2 * PG)[0]
    assert zero.present and not zero.exclusive and not zero.file and zero.pfn != page.pfn
    # statm and status sum the per-CPU RSS counters (exact); stat's rss field does not (see procfs.Stat)
    statm = procfs.read_statm(proc)
    assert statm is not None and statm.resident * 4 == procfs.status_kb(host.view(proc, "status"), "VmRSS")


# P15 rows 1-8 (faults.txt): (action, minflt delta, pages present after, RssAnon delta kB)
ROWS = [
    ("read", 0, 1, 1, 1, 0), ("read", 0, 1, 0, 1, 0), ("write", 0, 1, 1, 1, 4), ("write", 1, 1, 1, 2, 4),
    ("read", 2, 8, 8, 10, 0), ("write", 0, 16, 14, 16, 56), ("dontneed", 0, 16, 0, 0, -64),
]


def test_p15_anon_rows(host: HostBackend, proc: int) -> None:
    a = mmap(host, proc, 0, 16 * PG)
    assert host.entries(proc, a, a + 16 * PG) == [procfs.PagemapEntry(0)] * 16  # row 1
    for action, first, count, faults, present, d_anon in ROWS:
        flt, maj, anon = counters(host, proc)
        if action == "dontneed":
            assert host.syscall(proc, "madvise", (a + first * PG, count * PG, MADV_DONTNEED)) == 0
        else:
            assert host.access(proc, a + first * PG, count * PG, action == "write") is None
        assert counters(host, proc) == (flt + faults, maj, anon + d_anon), action
        assert procfs.present_string(host.entries(proc, a, a + 16 * PG)).count("1") == present


def test_p15_brk_rows(host: HostBackend, proc: int) -> None:
    """P15 rows 37-39: brk +32K costs nothing, touching 8 heap pages 8 faults, brk -16K frees 16 kB."""
    b0 = host.syscall(proc, "brk", (0,))
    flt, maj, anon = counters(host, proc)
    assert host.syscall(proc, "brk", (b0 + 8 * PG,)) == b0 + 8 * PG
    assert counters(host, proc) == (flt, maj, anon)
    assert host.access(proc, b0, 8 * PG, True) is None
    assert counters(host, proc) == (flt + 8, maj, anon + 32)
    assert host.syscall(proc, "brk", (b0 + 4 * PG,)) == b0 + 4 * PG
    assert counters(host, proc) == (flt + 8, maj, anon + 16)
    assert procfs.present_string(host.entries(proc, b0, b0 + 8 * PG)) == "11110000"
    assert host.syscall(proc, "munmap", (b0 + 5, PG)) == -errno.EINVAL
