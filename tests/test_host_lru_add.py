"""The CPU's folio batches, on this host's kernel and on the model: new pages wait off every LRU list
(PG_lru clear), a second use's activation and MADV_COLD's deactivation wait on the old list, until 31
of them have come or something drains the batches, as /proc/kpageflags shows page by page
(kpagekit's letters: M/m mlocked, U/u unevictable, L/l on a list, A/a active).

Each step starts from an empty batch (madvise(MADV_WILLNEED) of an anonymous page: lru_add_drain)
and reads the pages back through pagemap; the stepper is pinned to CPU 0, whose batch it fills.
Measured here (kernel 6.18); the model showed every page `L` at once before it had the batch:
- 40 anonymous pages written: the first 31 on the inactive list (`muLax31`), 9 waiting (`mulax9`),
  all on it after the drain;
- a file page read twice while it waits is marked active there (__lru_cache_activate_folio: `mulA`)
  and joins the active list when the batch moves;
- a page on the inactive list read a second time waits in the lru_activate batch, still inactive
  (`muLa`; a third read changes nothing), until a drain moves it (`muLA`); MADV_COLD's deactivation
  waits likewise in lru_deactivate (`muLA` until the drain);
- fsync() of a file whose pages are under write-back drains (its wait's folio_batch_release), as do a
  truncate that finds pages, POSIX_FADV_DONTNEED and MADV_POPULATE_WRITE (even one that fails at a
  hole); a truncate of an empty file does not;
- a large folio (a 64 KiB write to a new ext4 file makes one) moves the whole batch at once.
"""

from __future__ import annotations

import os

import pytest

from vmlab.backend import Backend, Program

from kpagekit import PG, cold_file, kernel_and_model, letters

pytestmark = pytest.mark.host

PROT_READ, PROT_RW = 1, 3
MAP_SHARED, PRIVATE_ANON = 0x01, 0x22
O_RDONLY, O_RDWR, O_CREAT = 0, 2, 0o100
MADV_RANDOM, MADV_WILLNEED, MADV_COLD, MADV_POPULATE_WRITE = 1, 3, 20, 23
ENOMEM = 12
POSIX_FADV_RANDOM, POSIX_FADV_DONTNEED = 1, 4


def lru_add_steps(b: Backend, pid: int, cold: str, new: str, big: str) -> list[str]:
    """The workload over three files: `cold` (8 pages out of the cache), `new` and `big` (made by
    it); what kpageflags says after each step."""
    seen: list[str] = []

    def anon(pages: int) -> int:
        addr = b.syscall(pid, "mmap", (0, pages * PG, PROT_RW, PRIVATE_ANON, -1, 0))
        assert addr > 0
        return addr

    spare = anon(1)
    assert b.access(pid, spare, PG, True) is None

    def drain() -> None:
        assert b.syscall(pid, "madvise", (spare, PG, MADV_WILLNEED)) == 0

    def written(pages: int) -> int:
        addr = anon(pages)
        assert b.access(pid, addr, pages * PG, True) is None
        return addr

    def mapped(fd: int, pages: int) -> int:
        """The file's first pages mapped (MADV_RANDOM: faults map cached pages, read nothing more)."""
        addr = b.syscall(pid, "mmap", (0, pages * PG, PROT_READ, MAP_SHARED, fd, 0))
        assert addr > 0 and b.syscall(pid, "madvise", (addr, pages * PG, MADV_RANDOM)) == 0
        assert b.access(pid, addr, pages * PG, False) is None
        return addr

    drain()
    a = written(40)
    seen.append(f"40 anon pages written: {letters(b, pid, a, 40)}")
    drain()
    seen.append(f"then drained: {letters(b, pid, a, 40)}")

    buf = written(1)
    fd = b.syscall(pid, "openat", (-100, cold, O_RDONLY, 0))
    assert fd >= 0 and b.syscall(pid, "fadvise64", (fd, 0, 0, POSIX_FADV_RANDOM)) == 0
    drain()
    for index in [*range(8), *range(4)]:
        assert b.syscall(pid, "pread64", (fd, buf, PG, index * PG)) == PG
    m = mapped(fd, 8)
    seen.append(f"8 file pages read, the first 4 twice: {letters(b, pid, m, 8)}")
    drain()
    seen.append(f"then drained: {letters(b, pid, m, 8)}")
    for index in range(4, 8):
        assert b.syscall(pid, "pread64", (fd, buf, PG, index * PG)) == PG
    seen.append(f"the last 4 read again: {letters(b, pid, m, 8)}")
    for index in range(4, 8):
        assert b.syscall(pid, "pread64", (fd, buf, PG, index * PG)) == PG
    seen.append(f"and again: {letters(b, pid, m, 8)}")
    drain()
    seen.append(f"then drained: {letters(b, pid, m, 8)}")
    assert b.syscall(pid, "madvise", (m, 8 * PG, MADV_COLD)) == 0
    seen.append(f"MADV_COLD of the 8: {letters(b, pid, m, 8)}")
    drain()
    seen.append(f"then drained: {letters(b, pid, m, 8)}")

    nfd = b.syscall(pid, "openat", (-100, new, O_RDWR | O_CREAT, 0o600))
    assert nfd >= 0
    drain()
    for index in range(5):
        assert b.syscall(pid, "pwrite64", (nfd, buf, PG, index * PG)) == PG
    n = mapped(nfd, 5)
    seen.append(f"5 pages written one by one to a new file: {letters(b, pid, n, 5)}")
    assert b.syscall(pid, "fsync", (nfd,)) == 0
    seen.append(f"after its fsync: {letters(b, pid, n, 5)}")

    empty = b.syscall(pid, "openat", (-100, big, O_RDWR | O_CREAT, 0o600))
    assert empty >= 0
    for name, call in (("ftruncate of an empty file", lambda: b.syscall(pid, "ftruncate", (empty, 0))),
                       ("ftruncate of a file with pages", lambda: b.syscall(pid, "ftruncate", (nfd, 0))),
                       ("POSIX_FADV_DONTNEED of a cached file",
                        lambda: b.syscall(pid, "fadvise64", (fd, 0, 0, POSIX_FADV_DONTNEED)))):
        drain()
        x = written(3)
        assert call() == 0
        seen.append(f"3 anon pages written, then {name}: {letters(b, pid, x, 3)}")

    drain()
    x = written(3)
    holed = anon(4)
    assert b.syscall(pid, "munmap", (holed + 2 * PG, 2 * PG)) == 0
    assert b.syscall(pid, "madvise", (holed, 4 * PG, MADV_POPULATE_WRITE)) == -ENOMEM
    seen.append(f"3 anon pages written, then MADV_POPULATE_WRITE into a hole: {letters(b, pid, x, 3)}")

    drain()
    x = written(3)
    chunk = written(16)
    assert b.syscall(pid, "pwrite64", (empty, chunk, 16 * PG, 0)) == 16 * PG
    seen.append(f"3 anon pages written, then a 64 KiB write to a new file: {letters(b, pid, x, 3)}")
    for path in (new, big):
        assert b.syscall(pid, "unlink", (path,)) == 0
    return seen


def test_new_pages_wait_in_the_lru_add_batch(program: Program, files: list[str]) -> None:
    """Each step's letters are the kernel's."""
    stem = f"/tmp/vmlab-lru-add-{os.getpid()}"
    cold, new, big = (f"{stem}-{name}" for name in ("cold", "new", "big"))
    files.extend((cold, new, big))
    kernel_and_model(program, lambda b, pid: lru_add_steps(b, pid, cold, new, big), cold_file(cold, 8))
