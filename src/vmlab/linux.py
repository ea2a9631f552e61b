"""Thin ctypes wrappers of the Linux calls that both sides need: which pages of a file the host's page
cache holds (mincore of a shared mapping, which neither reads nor caches anything) and cachestat(2).

The model reads them once, to seed its page cache from the host's (kernel/fs.py); the host side
reads them to check the kernel (host/pagecache.py, the write-back tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections.abc import Iterator
from typing import NamedTuple

SYS_CACHESTAT = 451
PAGE = 4096


class CacheStat(NamedTuple):
    """`struct cachestat`: page counts of a file range."""

    nr_cache: int
    nr_dirty: int
    nr_writeback: int
    nr_evicted: int = 0
    nr_recently_evicted: int = 0


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library with mmap/munmap/madvise/mincore/syscall prototypes."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    lib.syscall.restype = ctypes.c_long
    return lib


@contextlib.contextmanager
def file_mapping(path: str) -> Iterator[tuple[int, int]]:
    """A PROT_READ, MAP_SHARED mapping of the whole file, as (address, size), unmapped on exit (mapping
    reads nothing). OSError if the file cannot be opened or mapped; not for an empty file."""
    size = os.path.getsize(path)
    c = libc()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        addr = c.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            yield addr, size
        finally:
            c.munmap(addr, size)
    finally:
        os.close(fd)


def mincore_residency(path: str) -> list[int]:
    """The indices of the file's pages that are cached and uptodate (mincore of a PROT_READ, MAP_SHARED
    mapping). OSError if the file cannot be opened or mapped."""
    if os.path.getsize(path) == 0:
        return []
    with file_mapping(path) as (addr, size):
        pages = (size + PAGE - 1) // PAGE
        vec = ctypes.create_string_buffer(pages)
        if libc().mincore(addr, size, vec) != 0:
            raise OSError(ctypes.get_errno(), f"mincore {path}")
        return [i for i, b in enumerate(vec.raw[:pages]) if b & 1]


def cachestat(fd: int, off: int = 0, length: int = 0) -> CacheStat:
    """cachestat(fd, {off, len}, &cs, 0) of a byte range (len 0: to the end). OSError on failure
    (ENOSYS before 6.5)."""
    rng = (ctypes.c_uint64 * 2)(off, length)
    out = (ctypes.c_uint64 * 5)()
    if libc().syscall(ctypes.c_long(SYS_CACHESTAT), ctypes.c_int(fd), ctypes.byref(rng), ctypes.byref(out),
                       ctypes.c_uint(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cachestat: {os.strerror(err)}")
    return CacheStat(*out)
