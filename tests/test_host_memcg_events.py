"""memory.stat's fault events (pgfault, pgmajfault) and pgpgin of a cgroup-v1 memcg, and the task's
minflt/majflt, on this host's kernel and on the model, phase by phase.

The kernel counts every fault of an mm in the memcg of its owner (mm_account_fault():
count_memcg_event_mm(mm, PGFAULT), the failed faults and those get_user_pages takes included), and a
major one where it starts the read (filemap_fault for a page not cached at all, do_swap_page for a
folio not in the swap cache: PGMAJFAULT). pgpgin counts the folios charged. The model counted
pgfault only for anon charges and never pgmajfault in the memcg (found with this test: 10 and 0
where the kernel counted 42 and 32).

A stepper pinned to CPU 0 runs the phases in a memcg the test makes (and removes); the model's first
process runs them in a memcg of its own. The kernel keeps these counts per CPU and a read of
memory.stat folds them in only when enough have changed (seen: 0 of 16 faults shown until 48 more
came), so each host reading waits for the periodic flush of the whole tree (every 2 s), traced with
vmlab.host.rstat; the model shows exact counts. The file is a fresh sparse one on each side (its holes read
synchronously; the model takes what the host has cached of a host file, so it is made again before
the model runs). Every count is exact on this kernel (measured: the same in 5 runs). The kernel also
counts a folio charged and then refused by the page cache (a readaround's first folio that meets a
page already cached: pgpgin and pgpgout), which the model skipped by looking before it charged.

A second test swaps in a memcg with a swap file on (host_swap): the major faults of swap-in count in
the memcg too (the model's memory.stat also counted swap-cache pages as `cache`, which 6.18 counts on
the node only).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hostutil import PRIVATE_ANON, RW
from memcgkit import memcg_machine, memcg_stat, start_host_stepper
from swapkit import SWAP_SIZE, model_with_swap
from vmlab.backend import Backend, Program
from vmlab.host import rstat
from vmlab.host.oracle import HostBackend
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.memcontrol import MemCgroup
from vmlab.kernel.uapi import MADV_POPULATE_READ, MADV_RANDOM

from hostkit import Memcgs

PG = 4096
EVENTS = ("pgfault", "pgmajfault", "pgpgin", "pgpgout", "cache")
O_RDONLY, AT_FDCWD, PROT_READ, MAP_SHARED, POSIX_FADV_DONTNEED = 0, -100, 1, 1, 4
FILE_PAGES = 64
#: The file of data read in large folios (readahead ramps its folios up as it goes).
DATA_PAGES = 1024

#: What a phase shows: memory.stat's EVENTS and the task's (minflt, majflt), as changed by it.
Seen = dict[str, int]


def _sparse(path: str, pages: int) -> None:
    """A fresh sparse file of `pages` pages (nothing of it cached)."""
    Path(path).unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(pages * PG)


def _written(path: str, pages: int) -> None:
    """A fresh file of `pages` pages of data, synced and dropped from the cache (readahead brings
    data in as large folios; a sparse file's holes came in as small ones: 64 folios for 64 pages)."""
    Path(path).unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x5a" * pages * PG)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _model_stat(memcg: MemCgroup) -> dict[str, int]:
    """The model memcg's memory.stat (v1) as a dict."""
    return {k: int(v) for k, v in map(str.split, memcg.memory_stat_v1())}


def _seen(backend: Backend, pid: int, stat: Callable[[], dict[str, int]]) -> Seen:
    """memory.stat's EVENTS (from `stat`) and the task's minflt and majflt, now."""
    c = backend.counters(pid)
    s = stat()
    return {**{k: s[k] for k in EVENTS}, "minflt": c.minflt, "majflt": c.majflt}


def _phases(backend: Backend, pid: int, stat: Callable[[], dict[str, int]], path: str,
            data: str) -> list[Seen]:
    """The faults both sides take, phase by phase: what each changed."""
    seen: list[Seen] = []

    def read() -> Seen:
        return _seen(backend, pid, stat)

    last = read()

    def phase() -> None:
        nonlocal last
        now = read()
        seen.append({k: now[k] - last[k] for k in now})
        last = now

    anon = backend.syscall(pid, "mmap", (0, 16 * PG, RW, PRIVATE_ANON, -1, 0))
    for i in range(16):  # 16 minor faults, each a new charged page
        assert backend.access(pid, anon + i * PG, 1, True) is None
    phase()
    assert backend.access(pid, anon, 16 * PG, True) is None  # mapped and writable: no fault
    phase()
    fd = backend.syscall(pid, "openat", (AT_FDCWD, path, O_RDONLY))
    size = FILE_PAGES * PG
    m = backend.syscall(pid, "mmap", (0, size, PROT_READ, MAP_SHARED, fd, 0))
    assert backend.syscall(pid, "madvise", (m, size, MADV_RANDOM)) == 0
    for i in range(0, FILE_PAGES, 2):  # a major fault each: MADV_RANDOM reads just the page
        assert backend.access(pid, m + i * PG, 1, False) is None
    phase()
    assert backend.syscall(pid, "munmap", (m, size)) == 0
    m = backend.syscall(pid, "mmap", (0, size, PROT_READ, MAP_SHARED, fd, 0))
    assert backend.access(pid, m, size, False) is None  # cached pages mapped around each fault
    phase()
    pop = backend.syscall(pid, "mmap", (0, 8 * PG, RW, PRIVATE_ANON, -1, 0))
    assert backend.syscall(pid, "madvise", (pop, 8 * PG, MADV_POPULATE_READ)) == 0  # get_user_pages' faults
    buf = backend.syscall(pid, "mmap", (0, 16 * PG, RW, PRIVATE_ANON, -1, 0))
    assert backend.access(pid, buf, 16 * PG, True) is None  # read()'s buffer, charged now
    phase()
    assert backend.syscall(pid, "munmap", (m, size)) == 0
    assert backend.syscall(pid, "fadvise64", (fd, 0, 0, POSIX_FADV_DONTNEED)) == 0  # small pages: one each
    phase()
    fd = backend.syscall(pid, "openat", (AT_FDCWD, data, O_RDONLY))
    for _ in range(DATA_PAGES // 16):  # 64 KiB reads: asynchronous readahead's folios grow (one large
        assert backend.syscall(pid, "read", (fd, buf, 16 * PG)) == 16 * PG  # read() is one sync window)
    phase()
    assert backend.syscall(pid, "fadvise64", (fd, 0, 0, POSIX_FADV_DONTNEED)) == 0  # and one pgpgout each
    phase()
    return seen


def test_fault_events_of_a_memcg_agree_with_the_kernel(program: Program, memcgs: Memcgs) -> None:
    """Anon writes, a rewrite, major faults of a MADV_RANDOM mapping, a mapping of the cached file
    (fault-around), MADV_POPULATE_READ, then POSIX_FADV_DONTNEED of the file's small pages, a read()
    of a file of data, which caches it in large folios, and DONTNEED of those: the same pgfault,
    pgmajfault, pgpgin, pgpgout, minflt and majflt. (pgpgout counts folios: the model counted each
    page of a large one.)"""
    reason = rstat.available()
    if reason:
        pytest.skip(reason)
    path = f"/tmp/vmlab-memcg-events-{os.getpid()}.dat"
    data = f"/tmp/vmlab-memcg-events-data-{os.getpid()}.dat"
    cg = memcgs.make("events", "64M")
    try:
        _sparse(path, FILE_PAGES)
        _written(data, DATA_PAGES)
        with HostBackend(timeout=60) as host, rstat.FlushTrace(f"vmlab_events_{os.getpid()}") as trace:
            pid = start_host_stepper(host, program, cg)

            def flushed_stat() -> dict[str, int]:
                trace.wait_for_root_flush()
                return memcg_stat(cg)

            kernel = _phases(host, pid, flushed_stat, path, data)
        _sparse(path, FILE_PAGES)
        _written(data, DATA_PAGES)
        model, mpid, memcg = memcg_machine(64 << 20)
        got = _phases(model, mpid, lambda: _model_stat(memcg), path, data)
    finally:
        Path(path).unlink(missing_ok=True)
        Path(data).unlink(missing_ok=True)
    check_machine(model)
    print("kernel:", kernel)
    print("model: ", got)
    assert kernel[0]["pgfault"] == 16 and kernel[1]["pgfault"] == 0
    assert kernel[2]["pgmajfault"] == FILE_PAGES // 2
    assert kernel[5]["pgpgout"] == FILE_PAGES  # the small pages
    assert kernel[7]["pgpgout"] == kernel[6]["pgpgin"] < DATA_PAGES // 4  # the large folios
    assert got == kernel


def _swap_phases(backend: Backend, pid: int, stat: Callable[[], dict[str, int]]) -> list[Seen]:
    """16 MiB of anon pages written in a memcg of 8 MiB (its reclaim swaps them out), then read back:
    what each of the two steps changed (the read: major faults in do_swap_page)."""
    pages = 4096
    anon = backend.syscall(pid, "mmap", (0, pages * PG, RW, PRIVATE_ANON, -1, 0))
    before = _seen(backend, pid, stat)
    assert backend.access(pid, anon, pages * PG, True) is None
    out = _seen(backend, pid, stat)
    assert backend.access(pid, anon, pages * PG, False) is None
    back = _seen(backend, pid, stat)
    return [{k: out[k] - before[k] for k in out}, {k: back[k] - out[k] for k in back}]


def test_swap_in_major_faults_count_in_the_memcg(host_swap: Path, program: Program, memcgs: Memcgs,
                                                  tmp_path: Path) -> None:
    """Swapping in a memcg: memory.stat's pgmajfault counts do_swap_page's reads (the model counted
    none in the memcg), as the task's majflt does; pgfault counts every fault, exactly. How many
    reads were major is within 2 % (measured, 3 runs: kernel 514 each time, model 517): the swap
    file is on a rotational disk here, so both read aligned blocks of slots (swap_cluster_readahead;
    519 when the model read by VMA windows), and the first block differs: the kernel's first pages
    took other slots (its first swap-in read 3 pages, the model's 7)."""
    reason = rstat.available()
    if reason:
        pytest.skip(reason)
    cg = memcgs.make("swapin", "8M")
    (cg / "memory.swappiness").write_text("60")
    with HostBackend(timeout=60) as host, rstat.FlushTrace(f"vmlab_swapin_{os.getpid()}") as trace:
        pid = start_host_stepper(host, program, cg)

        def flushed_stat() -> dict[str, int]:
            trace.wait_for_root_flush()
            return memcg_stat(cg)

        kernel = _swap_phases(host, pid, flushed_stat)
    shadow = tmp_path / "swapfile"
    with shadow.open("wb") as f:
        f.truncate(SWAP_SIZE)
    model, mpid = model_with_swap(shadow, host_disk=True)
    assert model.memcg_create("/t", 8 << 20) == 0 and model.memcg_attach(mpid, "/t") == 0
    memcg = model.memcgs.lookup("/t")
    assert memcg is not None
    got = _swap_phases(model, mpid, lambda: _model_stat(memcg))
    check_machine(model)
    print("kernel:", kernel)
    print("model: ", got)
    for who in (kernel, got):
        write, read = who
        assert write["pgfault"] == read["pgfault"] == 4096  # every page faulted once each way
        assert write["pgmajfault"] == write["majflt"] == 0
        assert read["pgmajfault"] == read["majflt"] > 0
    assert abs(got[1]["majflt"] - kernel[1]["majflt"]) <= 0.02 * kernel[1]["majflt"]
