"""mlock()'s pages, on this host's kernel and on the model: PG_mlocked, the unevictable list and the
CPU's mlock batch, as /proc/kpageflags shows them page by page.

A stepper pinned to CPU 0 (the batch is per CPU) runs the steps below; after each, every page of the
ranges named is read back through /proc/PID/pagemap and /proc/kpageflags and written as four letters:
M/m PG_mlocked, U/u PG_unevictable, L/l PG_lru, A/a PG_active (`-` not present), runs compressed.
The model runs the same steps and must print the same.

What this pins down (measured here, kernel 6.18): mlock() of a range with pages already mapped, and
MAP_LOCKED, leave every page mlocked on the unevictable list (the walk drains the batch around itself
and population drains it after the faults); MLOCK_ONFAULT faults mlock each new page at once but move
them to the unevictable list 31 at a time (the batch's size), the rest waiting off every list until
the next drain (here munlock's); munlock() brings pages back to the inactive list; an unmapped part of
a locked range and mprotect leave the rest locked; a tmpfs page two locked VMAs map stays mlocked
until the second munlock (mlock_count). Before, the model marked pages mlocked only when reclaim met
them, so right after mlock() it showed `muLa` for every page.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from vmlab.backend import Backend, Program

from kpagekit import PG, cold_file, kernel_and_model, letters

pytestmark = pytest.mark.host

PROT_READ, PROT_RW = 1, 3
MAP_SHARED, PRIVATE_ANON, MAP_LOCKED = 0x01, 0x22, 0x2000
MLOCK_ONFAULT = 1
O_RDWR, O_CREAT = 2, 0o100


def steps(b: Backend, pid: int, shm_path: str) -> list[str]:
    """The workload; what kpageflags says after each step."""
    seen: list[str] = []

    def look(label: str, addr: int, pages: int) -> None:
        seen.append(f"{label}: {letters(b, pid, addr, pages)}")

    def anon(pages: int, flags: int = 0) -> int:
        addr = b.syscall(pid, "mmap", (0, pages * PG, PROT_RW, PRIVATE_ANON | flags, -1, 0))
        assert addr > 0
        return addr

    a = anon(64)
    assert b.access(pid, a, 16 * PG, True) is None
    assert b.syscall(pid, "mlock", (a, 64 * PG)) == 0
    look("mlock of 64, 16 mapped before", a, 64)
    c = anon(40, MAP_LOCKED)
    look("MAP_LOCKED 40", c, 40)
    d = anon(45)
    assert b.syscall(pid, "mlock2", (d, 45 * PG, MLOCK_ONFAULT)) == 0
    assert b.access(pid, d, 45 * PG, True) is None
    look("MLOCK_ONFAULT, 45 written", d, 45)
    assert b.syscall(pid, "munlock", (a, 32 * PG)) == 0
    look("munlock of the first 32", a, 64)
    look("the ONFAULT range after that munlock", d, 45)
    f = anon(8)
    assert b.access(pid, f, 8 * PG, True) is None
    assert b.syscall(pid, "mlock2", (f, 8 * PG, MLOCK_ONFAULT)) == 0
    look("MLOCK_ONFAULT of 8 mapped pages", f, 8)
    g = anon(6)
    assert b.syscall(pid, "mlock", (g, 6 * PG)) == 0
    assert b.syscall(pid, "munmap", (g + 2 * PG, 2 * PG)) == 0
    look("munmap of the middle 2 of 6 locked", g, 6)
    assert b.syscall(pid, "mprotect", (g, 2 * PG, PROT_READ)) == 0
    look("mprotect of 2 locked", g, 6)

    fd = b.syscall(pid, "openat", (-100, shm_path, O_RDWR | O_CREAT, 0o600))
    assert fd >= 0 and b.syscall(pid, "ftruncate", (fd, 16 * PG)) == 0
    s1 = b.syscall(pid, "mmap", (0, 16 * PG, PROT_RW, MAP_SHARED, fd, 0))
    s2 = b.syscall(pid, "mmap", (0, 16 * PG, PROT_RW, MAP_SHARED, fd, 0))
    assert b.access(pid, s1, 16 * PG, True) is None
    assert b.syscall(pid, "mlock", (s1, 16 * PG)) == 0 and b.syscall(pid, "mlock", (s2, 16 * PG)) == 0
    look("tmpfs pages, both mappings locked", s1, 16)
    assert b.syscall(pid, "munlock", (s1, 16 * PG)) == 0
    look("tmpfs pages, one mapping munlocked", s1, 16)
    assert b.syscall(pid, "munlock", (s2, 16 * PG)) == 0
    look("tmpfs pages, both munlocked", s1, 16)
    assert b.syscall(pid, "unlink", (shm_path,)) == 0
    return seen


@pytest.mark.skipif(not os.path.isdir("/dev/shm") or shutil.disk_usage("/dev/shm").free < (1 << 20),
                    reason="needs a tmpfs at /dev/shm")
def test_mlocked_pages_as_kpageflags_shows_them(program: Program, files: list[str]) -> None:
    """Each step's letters are the kernel's."""
    shm_path = f"/dev/shm/vmlab-mlock-{os.getpid()}"
    files.append(shm_path)
    kernel_and_model(program, lambda b, pid: steps(b, pid, shm_path))


def file_steps(b: Backend, pid: int, path: str) -> list[str]:
    """A file on the host's disk, out of its cache, mapped twice and locked by both mappings."""
    seen: list[str] = []
    fd = b.syscall(pid, "openat", (-100, path, 0, 0))
    shared = b.syscall(pid, "mmap", (0, 256 * PG, PROT_READ, MAP_SHARED, fd, 0))
    assert fd >= 0 and shared > 0 and b.access(pid, shared, 4 * PG, False) is None
    seen.append(f"4 pages read through the mapping: {letters(b, pid, shared, 256)}")
    assert b.syscall(pid, "mlock", (shared, 256 * PG)) == 0
    seen.append(f"mlock of the shared mapping: {letters(b, pid, shared, 256)}")
    private = b.syscall(pid, "mmap", (0, 256 * PG, PROT_READ, 0x02, fd, 0))
    assert b.syscall(pid, "mlock", (private, 256 * PG)) == 0
    seen.append(f"mlock of a private mapping too: {letters(b, pid, private, 256)}")
    assert b.syscall(pid, "munlock", (shared, 256 * PG)) == 0
    seen.append(f"munlock of the shared one: {letters(b, pid, shared, 256)}")
    assert b.syscall(pid, "munlock", (private, 256 * PG)) == 0
    seen.append(f"munlock of both: {letters(b, pid, shared, 256)}")
    return seen


def test_mlocked_file_pages_as_kpageflags_shows_them(program: Program, files: list[str]) -> None:
    """The page cache's folios (read around the fault, order 0 here) are mlocked by the walk and the
    population, counted once per locked mapping: the first munlock leaves them locked."""
    path = f"/tmp/vmlab-mlock-{os.getpid()}.dat"
    files.append(path)
    kernel_and_model(program, lambda b, pid: file_steps(b, pid, path), cold_file(path, 256))


#: Calls made elsewhere in the address space while MLOCK_ONFAULT faults wait in the mlock batch, and
#: whether they drain it (measured here): munmap(), MADV_DONTNEED, a shrinking mremap() and mprotect()
#: do not; madvise(MADV_WILLNEED) of anonymous memory (madvise_willneed: lru_add_drain) and mlock2()
#: of another range (mlock_vma_pages_range) do.
DRAIN_PROBES: dict[str, Callable[[Backend, int, int], object]] = {
    "munmap": lambda b, pid, x: b.syscall(pid, "munmap", (x, PG)),
    "MADV_DONTNEED": lambda b, pid, x: b.syscall(pid, "madvise", (x, PG, 4)),
    "mremap shrink": lambda b, pid, x: b.syscall(pid, "mremap", (x, 2 * PG, PG, 0)),
    "mprotect": lambda b, pid, x: b.syscall(pid, "mprotect", (x, PG, PROT_READ)),
    "MADV_WILLNEED": lambda b, pid, x: b.syscall(pid, "madvise", (x, PG, 3)),
    "mlock2 ONFAULT of another range": lambda b, pid, x: b.syscall(pid, "mlock2", (x, PG, MLOCK_ONFAULT)),
}


def drain_steps(b: Backend, pid: int) -> list[str]:
    """For each probe: three pages faulted under MLOCK_ONFAULT (waiting in the batch), two other pages
    written, the probe's call on them; the three pages' letters after it."""
    seen = []
    for name, call in DRAIN_PROBES.items():
        d = b.syscall(pid, "mmap", (0, 3 * PG, PROT_RW, PRIVATE_ANON, -1, 0))
        x = b.syscall(pid, "mmap", (0, 2 * PG, PROT_RW, PRIVATE_ANON, -1, 0))
        assert b.syscall(pid, "mlock2", (d, 3 * PG, MLOCK_ONFAULT)) == 0
        assert b.access(pid, d, 3 * PG, True) is None and b.access(pid, x, 2 * PG, True) is None
        before = letters(b, pid, d, 3)
        call(b, pid, x)
        seen.append(f"{name}: {before} -> {letters(b, pid, d, 3)}")
    return seen


def test_which_calls_drain_the_mlock_batch(program: Program) -> None:
    kernel_and_model(program, drain_steps)
