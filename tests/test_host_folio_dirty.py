"""A write dirties the whole large folio it lands in (6.18: one PG_dirty per folio, folio_mark_dirty ->
filemap_dirty_folio accounts folio_nr_pages), and write-back cleans it whole (ext4's writepages
submits folios: a sync of one page of a 16-page folio writes all 16), on the running kernel and in
the model, counted by cachestat(2)'s nr_dirty (and nr_writeback) after each step.

The file's folios come from a cold read, the same on both sides (tests/test_diff_large_folio.py has
the layout, measured on this host): written page by page, fsync'd, dropped (POSIX_FADV_DONTNEED),
then read with 256 one-page pread()s: pages 0-3 order 0, then folios of 4, 8, 16, 32 and 64 pages.
So a one-byte pwrite() to page 2, 10, 40 and 200 dirties 1, 4, 16 and 64 pages, and a store through
a shared mapping to page 100 the 32 of its folio. Measured on this host (6.18, ext4, as root): nr_dirty
1, 5, 21, 85, then 117. The model dirtied one page per write before it dirtied folios whole.

Write-back (test_write_back_cleans_whole_folios): after one-byte writes to pages 40 and 200 (80 dirty),
sync_file_range(WRITE|WAIT_AFTER) of page 40 alone leaves 64, of page 230 with all three flags 0;
stores to pages 100 and 110 (one folio: 32) and msync(MS_SYNC) of page 100 alone: 0; a write to page
10 (4) and fdatasync: 0. Measured on this host; the model wrote the one page asked for before (79,
78, ...).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from vmlab.backend import Program, Settings
from vmlab.host.pagecache import cachestat_path
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.fadvise import POSIX_FADV_DONTNEED
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.uapi import (
    MAP_ANONYMOUS,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    MS_SYNC,
    O_RDWR,
    PROT_READ,
    PROT_WRITE,
    SYNC_FILE_RANGE_WAIT_AFTER,
    SYNC_FILE_RANGE_WRITE,
    SYNC_FILE_RANGE_WRITE_AND_WAIT,
)

from wbkit import host_msync, host_sync_file_range

pytestmark = pytest.mark.host

T = TypeVar("T")

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


class ModelReader:
    """A process of the model with the file open (the model sees it as the host holds it: uncached),
    after the cold read that makes the folios."""

    def __init__(self, path: Path) -> None:
        self.model = ModelBackend(256 << 20)
        self.pid = self.model.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=256 << 20))
        anon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE
        self.buf = self.call("mmap", 0, PG, PROT_READ | PROT_WRITE, anon, -1, 0)
        self.fd = self.call("openat", -100, str(path), O_RDWR, 0)
        assert self.fd >= 0 and self.call("fadvise64", self.fd, 0, 0, POSIX_FADV_DONTNEED) == 0
        for page in range(PAGES):
            assert self.call("pread64", self.fd, self.buf, PG, page * PG) == PG

    def call(self, name: str, *args: int | str) -> int:
        return self.model.syscall(self.pid, name, args)

    def stat(self) -> tuple[int, int]:
        """(nr_dirty, nr_writeback) of the file."""
        stat = self.model.cachestat(self.pid, self.fd)
        assert not isinstance(stat, int), stat
        return stat.nr_dirty, stat.nr_writeback


def model_dirty_counts(path: Path) -> list[int]:
    """The same steps in a process of the model."""
    proc = ModelReader(path)
    model, pid, fd, buf = proc.model, proc.pid, proc.fd, proc.buf

    def dirty() -> int:
        return proc.stat()[0]

    counts = [dirty()]
    for page in WRITES:
        assert model.syscall(pid, "pwrite64", (fd, buf, 1, page * PG + 100)) == 1
        counts.append(dirty())
    addr = model.syscall(pid, "mmap", (0, PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
    assert model.access(pid, addr + STORE * PG + 100, 1, True) is None
    counts.append(dirty())
    return counts


def on_kernel_and_model(tmp_path: Path, host: Callable[[Path], list[T]],
                        model: Callable[[Path], list[T]]) -> tuple[list[T], list[T]]:
    """The counts of the same steps on the kernel, then in the model, each on the file made cold."""
    path = tmp_path / "folios"
    cold_file(path)
    kernel = host(path)
    cold_file(path)
    modelled = model(path)
    print(f"counts: kernel {kernel}, model {modelled}")
    return kernel, modelled


def test_a_write_dirties_its_whole_large_folio(tmp_path: Path) -> None:
    """nr_dirty after a cold read and each write: the kernel's and the model's, equal."""
    kernel, model = on_kernel_and_model(tmp_path, host_dirty_counts, model_dirty_counts)
    assert kernel == model == [0, 1, 5, 21, 85, 117]


def _host_stat(path: Path) -> tuple[int, int]:
    stat = cachestat_path(str(path))
    assert stat is not None, "cachestat(2) is not available"
    return stat.nr_dirty, stat.nr_writeback


#: sync_file_range(WRITE|WAIT_AFTER) of one page: start write-back of its folio, wait for it.
WRITE_WAIT = SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER


def host_writeback_counts(path: Path) -> list[tuple[int, int]]:
    """(nr_dirty, nr_writeback) after each step of the write-back sequence, on the kernel."""
    fd = os.open(path, os.O_RDWR)
    out: list[tuple[int, int]] = []
    try:
        for page in range(PAGES):
            assert len(os.pread(fd, PG, page * PG)) == PG
        for page in (40, 200):
            assert os.pwrite(fd, b"y", page * PG + 100) == 1
        out.append(_host_stat(path))
        assert host_sync_file_range(fd, 40 * PG, PG, WRITE_WAIT) == 0
        out.append(_host_stat(path))
        assert host_sync_file_range(fd, 230 * PG, PG, SYNC_FILE_RANGE_WRITE_AND_WAIT) == 0
        out.append(_host_stat(path))
        with mmap.mmap(fd, PAGES * PG, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[100 * PG + 5] = 1
            m[110 * PG + 5] = 1
            out.append(_host_stat(path))
            assert host_msync(m, 100 * PG, PG, MS_SYNC) == 0
            out.append(_host_stat(path))
        assert os.pwrite(fd, b"y", 10 * PG) == 1
        out.append(_host_stat(path))
        os.fdatasync(fd)
        out.append(_host_stat(path))
    finally:
        os.close(fd)
    return out


def model_writeback_counts(path: Path) -> list[tuple[int, int]]:
    """The same steps in a process of the model."""
    proc = ModelReader(path)
    out: list[tuple[int, int]] = []
    for page in (40, 200):
        assert proc.call("pwrite64", proc.fd, proc.buf, 1, page * PG + 100) == 1
    out.append(proc.stat())
    assert proc.call("sync_file_range", proc.fd, 40 * PG, PG, WRITE_WAIT) == 0
    out.append(proc.stat())
    assert proc.call("sync_file_range", proc.fd, 230 * PG, PG, SYNC_FILE_RANGE_WRITE_AND_WAIT) == 0
    out.append(proc.stat())
    addr = proc.call("mmap", 0, PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, proc.fd, 0)
    for page in (100, 110):
        assert proc.model.access(proc.pid, addr + page * PG + 5, 1, True) is None
    out.append(proc.stat())
    assert proc.call("msync", addr + 100 * PG, PG, MS_SYNC) == 0
    out.append(proc.stat())
    assert proc.call("munmap", addr, PAGES * PG) == 0
    assert proc.call("pwrite64", proc.fd, proc.buf, 1, 10 * PG) == 1
    out.append(proc.stat())
    assert proc.call("fdatasync", proc.fd) == 0
    out.append(proc.stat())
    return out


def test_write_back_cleans_whole_folios(tmp_path: Path) -> None:
    """(nr_dirty, nr_writeback) after each write-back step: the kernel's and the model's, equal."""
    kernel, model = on_kernel_and_model(tmp_path, host_writeback_counts, model_writeback_counts)
    assert kernel == model == [(80, 0), (64, 0), (0, 0), (32, 0), (0, 0), (4, 0), (0, 0)]
