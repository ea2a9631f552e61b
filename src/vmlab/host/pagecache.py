"""The host's page cache of one file, read without disturbing it: mincore() of a shared mapping (which
pages are cached and uptodate) and cachestat() (syscall 451: how many pages the cache holds at all).

Readahead submits its I/O and returns: pages of an asynchronous window are in the cache but not yet
uptodate, and mincore() does not count them until their read completes. `settled_residency` waits
until the two agree, so what it returns no longer depends on the disk's timing.
"""

from __future__ import annotations

import ctypes
import functools
import os
import time
from dataclasses import dataclass

SYS_CACHESTAT = 451
PAGE = 4096


@dataclass(frozen=True)
class CacheStat:
    """`struct cachestat`: page counts of a file range."""

    nr_cache: int
    nr_dirty: int
    nr_writeback: int
    nr_evicted: int
    nr_recently_evicted: int


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library with mmap/munmap/mincore/syscall prototypes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.syscall.restype = ctypes.c_long
    return libc


def mincore_residency(path: str) -> list[int]:
    """The indices of the file's pages that are cached and uptodate (mincore of a PROT_READ, MAP_SHARED
    mapping: it neither reads nor caches anything). OSError if the file cannot be mapped."""
    size = os.path.getsize(path)
    if size == 0:
        return []
    libc = _libc()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        addr = libc.mmap(None, size, 1, 1, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = ctypes.create_string_buffer(pages)
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
            return [i for i, b in enumerate(vec.raw[:pages]) if b & 1]
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def cachestat(path: str) -> CacheStat | None:
    """cachestat() of the whole file; None where the kernel has no cachestat (before 6.5)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        rng = (ctypes.c_uint64 * 2)(0, 0)
        out = (ctypes.c_uint64 * 5)()
        if _libc().syscall(SYS_CACHESTAT, fd, ctypes.byref(rng), ctypes.byref(out), 0) != 0:
            return None
        return CacheStat(*out)
    finally:
        os.close(fd)


def settled_residency(path: str, timeout: float = 5.0) -> list[int]:
    """mincore_residency() once every page in the file's cache is uptodate (mincore's count equals
    cachestat's nr_cache), i.e. once readahead I/O in flight has completed. RuntimeError after
    `timeout` seconds; without cachestat, two equal mincore readings 10 ms apart."""
    deadline = time.monotonic() + timeout
    previous: list[int] | None = None
    while True:
        present = mincore_residency(path)
        stat = cachestat(path)
        if stat is not None and stat.nr_cache == len(present):
            return present
        if stat is None and present == previous:
            return present
        if time.monotonic() > deadline:
            raise RuntimeError(f"vmlab host: the page cache of {path} did not settle in {timeout} s "
                               f"({len(present)} uptodate, cachestat {stat})")
        previous = present
        time.sleep(0.01 if stat is None else 0.001)


def drop_file_cache(path: str) -> None:
    """POSIX_FADV_DONTNEED of the whole file (clean, unmapped pages leave the cache; never the global
    drop_caches)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)

