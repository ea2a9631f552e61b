"""A write dirties the whole large folio it lands in (6.18: one PG_dirty per folio, folio_mark_dirty ->
filemap_dirty_folio accounts folio_nr_pages), on the running kernel and in the model, counted by
cachestat(2)'s nr_dirty after each write.

The file's folios come from a cold read, the same on both sides (tests/test_diff_large_folio.py has
the layout, measured on this host): written page by page, fsync'd, dropped (POSIX_FADV_DONTNEED),
then read with 256 one-page pread()s: pages 0-3 order 0, then folios of 4, 8, 16, 32 and 64 pages.
So a one-byte pwrite() to page 2, 10, 40 and 200 dirties 1, 4, 16 and 64 pages, and a store through
a shared mapping to page 100 the 32 of its folio. Measured on this host (6.18, ext4, as root): nr_dirty
1, 5, 21, 85, then 117. The model dirtied one page per write before it dirtied folios whole.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest

from vmlab.backend import Program, Settings
from vmlab.host.pagecache import cachestat_path
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.filemap import POSIX_FADV_DONTNEED
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.uapi import (
    MAP_ANONYMOUS,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDWR,
    PROT_READ,
    PROT_WRITE,
)

pytestmark = pytest.mark.host

PG = 4096
PAGES = 256
#: The file pages written one byte each by pwrite(), then the page stored to through a shared mapping.
WRITES = (2, 10, 40, 200)
STORE = 100


def cold_file(path: Path) -> None:
    """The file written page by page and synced, then dropped from the page cache."""
    with open(path, "wb") as f:
        for _ in range(PAGES):
            f.write(b"x" * PG)
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def host_dirty_counts(path: Path) -> list[int]:
    """nr_dirty after the cold read and after each write, on the kernel."""
    fd = os.open(path, os.O_RDWR)
    counts: list[int] = []

    def dirty() -> None:
        stat = cachestat_path(str(path))
        assert stat is not None, "cachestat(2) is not available"
        counts.append(stat.nr_dirty)

    try:
        for page in range(PAGES):
            assert len(os.pread(fd, PG, page * PG)) == PG
        dirty()
        for page in WRITES:
            assert os.pwrite(fd, b"y", page * PG + 100) == 1
            dirty()
        with mmap.mmap(fd, PAGES * PG, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[STORE * PG + 100] = ord("z")
            dirty()
        os.fsync(fd)
    finally:
        os.close(fd)
    return counts


def model_dirty_counts(path: Path) -> list[int]:
    """The same steps in a process of the model (which sees the file as the host holds it: uncached)."""
    model = ModelBackend(256 << 20)
    pid = model.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=256 << 20))
    buf = model.syscall(pid, "mmap", (0, PG, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0))
    fd = model.syscall(pid, "openat", (-100, str(path), O_RDWR, 0))
    assert fd >= 0 and model.syscall(pid, "fadvise64", (fd, 0, 0, POSIX_FADV_DONTNEED)) == 0

    def dirty() -> int:
        stat = model.cachestat(pid, fd)
        assert not isinstance(stat, int), stat
        return stat.nr_dirty

    for page in range(PAGES):
        assert model.syscall(pid, "pread64", (fd, buf, PG, page * PG)) == PG
    counts = [dirty()]
    for page in WRITES:
        assert model.syscall(pid, "pwrite64", (fd, buf, 1, page * PG + 100)) == 1
        counts.append(dirty())
    addr = model.syscall(pid, "mmap", (0, PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
    assert model.access(pid, addr + STORE * PG + 100, 1, True) is None
    counts.append(dirty())
    return counts


def test_a_write_dirties_its_whole_large_folio(tmp_path: Path) -> None:
    """nr_dirty after a cold read and each write: the kernel's and the model's, equal."""
    path = tmp_path / "folios"
    cold_file(path)
    kernel = host_dirty_counts(path)
    cold_file(path)
    model = model_dirty_counts(path)
    print(f"nr_dirty: kernel {kernel}, model {model}")
    assert kernel == model == [0, 1, 5, 21, 85, 117]
