"""Each merge/split rule of the reference (§3), replayed on the model and compared with what the real
kernel printed for the same steps (tests/fixtures/kernel/merge*.txt, fork.txt; commands in the README).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from vmlab.kernel.fork import dup_mmap
from vmlab.kernel.mm_types import File, Inode
from vmlab.kernel.uapi import (
    EINVAL,
    ENOMEM,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_GROWSDOWN,
    MAP_NORESERVE,
    MAP_PRIVATE,
    MAP_SHARED,
    MREMAP_DONTUNMAP,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)

from kernelgolden import sections
from modelkit import BareProc

PG = 4096
RW = PROT_READ | PROT_WRITE
AN = MAP_PRIVATE | MAP_ANONYMOUS
MERGE = sections("merge.txt")
MERGE2 = sections("merge2.txt")
FORK = sections("fork.txt")
SHMEM_INODE = " 00:01 "


class Exp:
    """One experiment window of merge.c: base address, A(off) pages, show() of the 16 MiB window."""

    def __init__(self, p: BareProc, base: int) -> None:
        self.p, self.base = p, base

    def A(self, off: int) -> int:
        return self.base + off * PG

    def mm(self, off: int, npages: int, prot: int, flags: int, file: File | None = None, fpg: int = 0) -> int:
        return self.p.mmap(self.A(off), npages * PG, prot, flags | MAP_FIXED, file, fpg * PG)

    def touch(self, off: int, npages: int = 1) -> None:
        assert self.p.touch(self.A(off), npages) is None

    def show(self) -> list[str]:
        return self.p.maps(self.base, self.base + 0x1000000)

    def vmflags(self) -> list[str]:
        return self.p.vmflags(self.base, self.base + 0x1000000)


def _mask_shmem(lines: list[str]) -> list[str]:
    """Inode numbers of shmem files come from a global counter (N1): compare them as equal-or-not."""
    seen: dict[str, str] = {}
    out = []
    for line in lines:
        if SHMEM_INODE in line:
            fields = line.split()
            fields[4] = seen.setdefault(fields[4], f"INO{len(seen)}")
            line = " ".join(fields)
        out.append(line)
    return out


@pytest.fixture
def exp() -> Exp:
    return Exp(BareProc(), 0x10000000)


def test_a1_fresh_neighbours_merge(exp: Exp) -> None:
    exp.mm(0, 4, RW, AN)
    exp.mm(4, 4, RW, AN)
    assert exp.show() == MERGE["maps: A1"]


def test_a2_faulted_prev_or_next_still_merges() -> None:
    e = Exp(BareProc(), 0x11000000)
    e.mm(0, 4, RW, AN)
    e.touch(0)
    e.mm(4, 4, RW, AN)
    assert e.show() == MERGE["maps: A2"]
    e = Exp(BareProc(), 0x12000000)
    e.mm(4, 4, RW, AN)
    e.touch(4)
    e.mm(0, 4, RW, AN)
    assert e.show() == MERGE["maps: A2b"]


def test_a3_distinct_anon_vmas_fill_merges_left_only() -> None:
    e = Exp(BareProc(), 0x13000000)
    e.mm(0, 4, RW, AN)
    e.touch(0)
    e.mm(5, 4, RW, AN)
    e.touch(5)
    assert e.show() == MERGE["maps: A3 before"]
    e.mm(4, 1, RW, AN)
    assert e.show() == MERGE["maps: A3 after fill"]


def test_a4_mprotect_to_equal_prot_merges() -> None:
    e = Exp(BareProc(), 0x14000000)
    e.mm(0, 4, RW, AN)
    e.mm(4, 4, PROT_READ, AN)
    assert e.show() == MERGE["maps: A4 before"]
    assert e.p.mprotect(e.A(4), 4 * PG, RW) == 0
    assert e.show() == MERGE["maps: A4 after mprotect(rw)"]


def test_a5_a6_hidden_vm_account() -> None:
    e = Exp(BareProc(), 0x15000000)
    e.mm(0, 4, RW, AN)
    e.touch(0)
    e.p.mprotect(e.A(0), 4 * PG, PROT_READ)
    e.mm(4, 4, PROT_READ, AN)
    assert e.show() == MERGE["maps: A5"]
    assert e.vmflags() == MERGE["VmFlags: A5"]
    e = Exp(BareProc(), 0x16000000)
    e.mm(0, 4, RW, AN)
    e.p.mprotect(e.A(0), 4 * PG, PROT_READ)
    e.mm(4, 4, PROT_READ, AN)
    assert e.show() == MERGE["maps: A6"]
    assert e.vmflags() == MERGE["VmFlags: A6"]


def test_a7_noreserve_a11_growsdown_block_merge() -> None:
    e = Exp(BareProc(), 0x17000000)
    e.mm(0, 4, RW, AN)
    e.mm(4, 4, RW, AN | MAP_NORESERVE)
    assert e.show() == MERGE["maps: A7"]
    assert e.vmflags() == MERGE["VmFlags: A7"]
    e = Exp(BareProc(), 0x1B000000)
    e.mm(0, 4, RW, AN)
    e.mm(4, 4, RW, AN | MAP_GROWSDOWN)
    assert e.show() == MERGE["maps: A11"]
    assert e.vmflags() == MERGE["VmFlags: A11"]


def test_a8_shared_anon_never_merge() -> None:
    e = Exp(BareProc(), 0x18000000)
    e.mm(0, 4, RW, MAP_SHARED | MAP_ANONYMOUS)
    e.mm(4, 4, RW, MAP_SHARED | MAP_ANONYMOUS)
    assert _mask_shmem(e.show()) == _mask_shmem(MERGE["maps: A8"])


def test_a9_read_faults_assign_no_anon_vma() -> None:
    e = Exp(BareProc(), 0x19000000)
    e.mm(0, 4, RW, AN)
    assert e.p.touch(e.A(0), write=False) is None
    e.mm(5, 4, RW, AN)
    assert e.p.touch(e.A(5), write=False) is None
    e.mm(4, 1, RW, AN)
    assert e.show() == MERGE["maps: A9"]


def test_a10_map_fixed_over_middle_remerges() -> None:
    e = Exp(BareProc(), 0x1A000000)
    e.mm(0, 8, RW, AN)
    e.touch(0, 8)
    e.mm(3, 2, RW, AN)
    assert e.show() == MERGE["maps: A10"]


def test_p_series_mprotect(exp: Exp) -> None:
    exp.mm(0, 8, RW, AN)
    exp.touch(0, 8)
    exp.p.mprotect(exp.A(2), 2 * PG, PROT_READ)
    assert exp.show() == MERGE["maps: P1 split"]
    exp.p.mprotect(exp.A(2), 2 * PG, RW)
    assert exp.show() == MERGE["maps: P1 restored"]
    exp.p.mprotect(exp.A(0), PG, PROT_NONE)
    exp.p.mprotect(exp.A(7), PG, PROT_READ | PROT_EXEC)
    assert exp.show() == MERGE["maps: P2"]
    exp.p.mprotect(exp.A(0), 8 * PG, PROT_READ)
    assert exp.show() == MERGE["maps: P3"]
    exp.p.munmap(exp.A(4), PG)
    assert exp.p.mprotect(exp.A(0), 8 * PG, RW) == -ENOMEM
    assert exp.show() == MERGE["maps: P4"]
    assert exp.p.mprotect(exp.A(0) + 1, PG, PROT_NONE) == -EINVAL
    assert exp.p.mprotect(exp.A(0), 10, PROT_NONE) == 0
    assert exp.show() == MERGE["maps: P5"]


def test_u_series_munmap(exp: Exp) -> None:
    exp.mm(0, 8, RW, AN)
    exp.touch(0, 8)
    exp.p.munmap(exp.A(3), 2 * PG)
    assert exp.show() == MERGE["maps: U1 middle hole"]
    assert exp.p.munmap(exp.A(2), 4 * PG) == 0
    assert exp.show() == MERGE["maps: U2"]
    assert exp.p.munmap(exp.A(100), 4 * PG) == 0
    assert exp.p.munmap(exp.A(0) + 5, PG) == -EINVAL
    assert exp.p.munmap(exp.A(0), 1) == 0
    assert exp.show() == MERGE["maps: U3"]
    assert exp.p.munmap(exp.A(0), 0) == -EINVAL


@pytest.fixture
def f16m(tmp_path: os.PathLike[str]) -> Inode:
    """A 16 MiB file standing for the experiment's /srv/exp/f16m (same size, our own path/inode)."""
    path = os.path.join(tmp_path, "f16m")
    with open(path, "wb") as f:
        f.truncate(16 << 20)
    from vmlab.kernel.fs import host_inode

    return host_inode(path)


def _as_exp_file(lines: list[str], inode: Inode) -> list[str]:
    """Our file's dev/inode/path written as the experiment's (fe:00 2147439 /srv/exp/f16m)."""
    ours = f"{inode.major:02x}:{inode.minor:02x} {inode.ino}"
    out = []
    for line in lines:
        if line.endswith(inode.path):
            head = line[: line.index(ours)] + "fe:00 2147439 "
            line = head.ljust(72) + " /srv/exp/f16m"
        out.append(line)
    return out


def test_f_series_file_mappings(f16m: Inode) -> None:
    p = BareProc()
    fd = File(f16m, writable=True)
    for label, base, steps in [
        ("F1", 0x10000000, [(0, 4, PROT_READ, MAP_PRIVATE, 0), (4, 4, PROT_READ, MAP_PRIVATE, 4)]),
        ("F2", 0x11000000, [(0, 4, PROT_READ, MAP_PRIVATE, 0), (4, 4, PROT_READ, MAP_PRIVATE, 8)]),
        ("F4", 0x13000000, [(0, 4, RW, MAP_SHARED, 0), (4, 4, RW, MAP_SHARED, 4)]),
        ("F5", 0x14000000, [(0, 4, RW, MAP_PRIVATE, 0), (4, 4, RW, MAP_SHARED, 4)]),
        ("F7", 0x16000000, [(0, 2, PROT_READ, MAP_PRIVATE, 4095)]),
    ]:
        e = Exp(p, base)
        for off, n, prot, flags, fpg in steps:
            assert e.mm(off, n, prot, flags, fd, fpg) == e.A(off)
        assert _as_exp_file(e.show(), f16m) == MERGE[f"maps: {label}"], label
    e = Exp(p, 0x12000000)
    e.mm(0, 4, RW, MAP_PRIVATE, fd, 0)
    e.touch(0)
    e.mm(4, 4, RW, MAP_PRIVATE, fd, 4)
    assert _as_exp_file(e.show(), f16m) == MERGE["maps: F3"]
    e = Exp(p, 0x15000000)
    e.mm(0, 4, PROT_READ, MAP_PRIVATE, fd, 0)
    e.mm(4, 4, PROT_READ, MAP_PRIVATE, File(f16m, writable=True), 4)
    assert _as_exp_file(e.show(), f16m) == MERGE["maps: F6"]
    e = Exp(p, 0x17000000)
    e.mm(0, 8, PROT_READ, MAP_PRIVATE, fd, 16)
    e.p.mprotect(e.A(3), PG, RW)
    assert _as_exp_file(e.show(), f16m) == MERGE["maps: F8"]
    assert e.p.touch(0x16001000, write=False) == "SIGBUS"  # F7: beyond EOF


def test_f9_shared_anon_split_shows_offset() -> None:
    e = Exp(BareProc(), 0x18000000)
    e.mm(0, 8, RW, MAP_SHARED | MAP_ANONYMOUS)
    e.p.mprotect(e.A(3), PG, PROT_READ)
    assert _mask_shmem(e.show()) == _mask_shmem(MERGE["maps: F9"])


def test_r_series_mremap() -> None:
    p = BareProc()
    e = Exp(p, 0x10000000)
    e.mm(0, 4, RW, AN)
    assert p.mremap(e.A(0), 4 * PG, 8 * PG, 0) == e.A(0)
    assert e.show() == MERGE2["maps: R1"]
    e = Exp(p, 0x11000000)
    e.mm(0, 4, RW, AN)
    e.touch(0, 4)
    e.mm(6, 4, RW, AN)
    assert e.show() == MERGE2["maps: R2 before"]
    assert p.mremap(e.A(0), 4 * PG, 6 * PG, 0) == e.A(0)
    assert e.show() == MERGE2["maps: R2 after"]
    e = Exp(p, 0x12000000)
    e.mm(0, 4, RW, AN)
    e.touch(0, 4)
    e.mm(4, 1, PROT_READ, AN)
    assert p.mremap(e.A(0), 4 * PG, 8 * PG, 0) == -ENOMEM
    moved = p.mremap(e.A(0), 4 * PG, 8 * PG, MREMAP_MAYMOVE)
    assert moved > 0x12000000 and p.mm.vma_lookup(moved).vm_end == moved + 8 * PG
    assert e.show() == MERGE2["maps: R3 old region"]
    e = Exp(p, 0x13000000)
    e.mm(0, 8, RW, AN)
    assert p.mremap(e.A(0), 8 * PG, 3 * PG, 0) == e.A(0)
    assert e.show() == MERGE2["maps: R4"]
    fixed = MREMAP_MAYMOVE | MREMAP_FIXED
    e = Exp(p, 0x14000000)
    e.mm(0, 4, RW, AN)
    e.touch(0, 4)
    e.mm(10, 4, RW, AN)
    assert p.mremap(e.A(0), 4 * PG, 4 * PG, fixed, e.A(14)) == e.A(14)
    assert e.show() == MERGE2["maps: R5"]
    e = Exp(p, 0x15000000)
    e.mm(0, 4, RW, AN)
    e.mm(10, 4, RW, AN)
    p.mremap(e.A(0), 4 * PG, 4 * PG, fixed, e.A(14))
    assert e.show() == MERGE2["maps: R6"]
    e = Exp(p, 0x16000000)
    e.mm(0, 12, RW, AN)
    e.touch(0, 12)
    p.mremap(e.A(4), 4 * PG, 4 * PG, fixed, e.A(20))
    assert e.show() == MERGE2["maps: R7 moved"]
    p.mremap(e.A(20), 4 * PG, 4 * PG, fixed, e.A(4))
    assert e.show() == MERGE2["maps: R7 back"]
    e = Exp(p, 0x17000000)
    e.mm(0, 4, RW, AN)
    e.touch(0, 4)
    assert p.mremap(e.A(0), 4 * PG, 4 * PG, fixed | MREMAP_DONTUNMAP, e.A(8)) == e.A(8)
    assert e.show() == MERGE2["maps: R8"]
    e = Exp(p, 0x18000000)
    e.mm(0, 8, RW, AN)
    e.touch(0, 8)
    p.mremap(e.A(2), 2 * PG, 2 * PG, fixed, e.A(20))
    assert e.show() == MERGE2["maps: R9"]
    e = Exp(p, 0x19000000)
    e.mm(0, 4, RW, AN)
    e.touch(0, 4)
    assert p.mremap(e.A(0), 4 * PG, 6 * PG, MREMAP_MAYMOVE) == e.A(0)
    assert e.show() == MERGE2["maps: R10"]
    assert p.mremap(e.A(0), 0, 4 * PG, MREMAP_MAYMOVE) == -EINVAL
    e.mm(40, 2, RW, MAP_SHARED | MAP_ANONYMOUS)
    assert p.mremap(e.A(40), 0, 2 * PG, fixed, e.A(50)) == e.A(50)
    assert _mask_shmem(e.show()) == _mask_shmem(MERGE2["maps: R11"])


def test_brk_series() -> None:
    p = BareProc()
    base = 0x555555588000
    p.mm.start_brk = p.mm.brk = base
    p.mmap(0x55555555A000, base - 0x55555555A000, RW, AN | MAP_FIXED)  # the bss below start_brk
    lo, hi = 0x555555550000, 0x555555600000
    assert p.brk(base + PG) == base + PG
    assert p.maps(lo, hi) == MERGE2["maps: B1 first sbrk(4096)"]
    assert p.brk(base + 3 * PG) == base + 3 * PG
    assert p.maps(lo, hi) == MERGE2["maps: B2 sbrk(+8192) merges/extends"]
    assert p.mmap(0x55555558D000, PG, RW, AN | MAP_FIXED) == 0x55555558D000
    assert p.brk(base + 4 * PG) == base + 4 * PG
    assert p.brk(base + 5 * PG) == base + 4 * PG  # refused: the old brk comes back
    assert p.maps(lo, hi) == MERGE2["maps: B3 brk next to mapping"]
    assert p.brk(base + 2 * PG) == base + 2 * PG
    assert p.maps(lo, hi) == MERGE2["maps: B4 after shrink"]
    assert p.brk(base + 2 * PG + 100) == base + 2 * PG + 100
    assert p.maps(lo, hi) == MERGE2["maps: B5"]


def test_fork_child_anon_vma_rules() -> None:
    """fork.c: the child's VMAs that inherited an anon_vma do not merge with fresh neighbours."""
    p = BareProc()
    b = 0x10000000
    p.mmap(b, 4 * PG, RW, AN | MAP_FIXED)  # A, faulted before fork
    p.touch(b)
    p.mmap(b + 0x10000, 4 * PG, RW, AN | MAP_FIXED)  # C, unfaulted
    p.mmap(b + 0x20000, 4 * PG, RW, AN | MAP_FIXED)  # E, faulted
    p.touch(b + 0x20000, 4)
    child = BareProc()
    mm = dup_mmap(p.mm, p.sysctl)
    assert not isinstance(mm, int)
    child.mm = mm
    child.mmap(b + 4 * PG, 4 * PG, RW, AN | MAP_FIXED)
    child.mmap(b + 0x14000, 4 * PG, RW, AN | MAP_FIXED)
    window = (b, b + 0x1000000)
    label = "maps: child: new mappings adjacent to A (faulted pre-fork) and C (unfaulted)"
    assert child.maps(*window) == FORK[label]
    child.mprotect(b + 0x21000, PG, PROT_READ)
    assert child.maps(*window) == FORK["maps: child: split E"]
    child.mprotect(b + 0x21000, PG, RW)
    assert child.maps(*window) == FORK["maps: child: restore E (same anon_vma -> re-merge)"]


def test_open_and_mmap_of_odd_paths_fail_as_the_kernel_does(tmp_path: Path) -> None:
    """The scenario fuzzer opened "" and a directory read-write (the model gave descriptors) and mapped
    a directory (the model mapped it and its pages SIGBUSed). The kernel refuses: "" is -ENOENT
    (getname without AT_EMPTY_PATH), a directory opened for writing -EISDIR (may_open), and a
    directory has no f_op->mmap, so mmap is -ENODEV. The same calls are made on this host's kernel
    and must fail with the same errno."""
    import errno
    import mmap as host_mmap

    from vmlab.backend import Program, Settings
    from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
    from vmlab.kernel.machine import ModelBackend

    def host_errno(call: Callable[[], object]) -> int:
        try:
            call()
        except OSError as err:
            return err.errno
        return 0

    directory = str(tmp_path)
    backend = ModelBackend()
    pid = backend.start(Program(BUILTIN_PROGRAM, ("minimal",)), Settings(ram=64 << 20))
    assert backend.syscall(pid, "openat", (-100, "", os.O_RDONLY)) == -errno.ENOENT
    assert host_errno(lambda: os.open("", os.O_RDONLY)) == errno.ENOENT
    assert backend.syscall(pid, "openat", (-100, directory, os.O_RDWR)) == -errno.EISDIR
    assert host_errno(lambda: os.open(directory, os.O_RDWR)) == errno.EISDIR
    fd = backend.syscall(pid, "openat", (-100, directory, os.O_RDONLY))
    assert fd >= 0
    assert backend.syscall(pid, "mmap", (0, 8192, PROT_READ, MAP_SHARED, fd, 0)) == -errno.ENODEV
    host_fd = os.open(directory, os.O_RDONLY)
    try:
        assert host_errno(lambda: host_mmap.mmap(host_fd, 8192, host_mmap.MAP_SHARED,
                                                 host_mmap.PROT_READ)) == errno.ENODEV
    finally:
        os.close(host_fd)
    backend.close()
