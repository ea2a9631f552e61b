"""The host's page cache of one file, read without disturbing it: mincore() of a shared mapping (which
pages are cached and uptodate) and cachestat() (syscall 451: how many pages the cache holds at all),
and the folios that hold its cached pages (/proc/kpageflags of each page's frame).

Readahead submits its I/O and returns: pages of an asynchronous window are in the cache but not yet
uptodate, and mincore() does not count them until their read completes. `settled_residency` waits
until the two agree, so what it returns no longer depends on the disk's timing.
"""

from __future__ import annotations

import ctypes
import os
import time

from vmlab.host.procfs import read_kpageflags, read_pagemap_raw
from vmlab.kernel.page_flags import KPF
from vmlab.linux import PAGE, CacheStat, cachestat, file_mapping, libc, mincore_residency

#: madvise(MADV_RANDOM): VM_RAND_READ, so a fault neither reads ahead nor marks pages accessed.
_MADV_RANDOM = 1
_PFN_MASK = (1 << 55) - 1


def cachestat_path(path: str, length: int = 0) -> CacheStat | None:
    """cachestat() of the file's first `length` bytes (0: all of its cache, pages past EOF included);
    None where the kernel has no cachestat (before 6.5)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return cachestat(fd, 0, length)
    except OSError:
        return None
    finally:
        os.close(fd)


def settled_residency(path: str, timeout: float = 5.0) -> list[int]:
    """mincore_residency() once every page in the file's cache is uptodate (mincore's count equals
    cachestat's nr_cache up to EOF), i.e. once readahead I/O in flight has completed. RuntimeError
    after `timeout` seconds; without cachestat, two equal mincore readings 10 ms apart. (A large folio
    that truncation could not split keeps its pages past EOF in the cache: mincore does not see them,
    so cachestat is asked about the file's range only.)"""
    deadline = time.monotonic() + timeout
    previous: list[int] | None = None
    while True:
        present = mincore_residency(path)
        size = os.path.getsize(path)
        stat = cachestat_path(path, size) if size else CacheStat(0, 0, 0, 0, 0)
        if stat is not None and stat.nr_cache == len(present):
            return present
        if stat is None and present == previous:
            return present
        if time.monotonic() > deadline:
            raise RuntimeError(f"vmlab host: the page cache of {path} did not settle in {timeout} s "
                               f"({len(present)} uptodate, cachestat {stat})")
        previous = present
        time.sleep(0.01 if stat is None else 0.001)


def cached_page_frames(path: str) -> dict[int, int]:
    """The frame (PFN) of each cached page of the file, by page index, read without disturbing the
    cache: the cached pages (settled_residency) are mapped MAP_SHARED with MADV_RANDOM (no readahead,
    no recency) and each is touched, which maps it without I/O, so /proc/self/pagemap gives its frame.
    Needs root (PFNs); OSError otherwise or when the file cannot be mapped."""
    cached = settled_residency(path)
    if not cached:
        return {}
    with file_mapping(path) as (addr, size):
        if libc().madvise(addr, size, _MADV_RANDOM) != 0:
            raise OSError(ctypes.get_errno(), f"madvise {path}")
        for index in cached:
            ctypes.string_at(addr + index * PAGE, 1)  # map it
        entries = read_pagemap_raw(os.getpid(), addr, addr + size) or []
    frames = {i: entries[i] & _PFN_MASK for i in cached if entries[i] & _PFN_MASK}
    if len(frames) != len(cached):
        raise OSError(f"no frame numbers in /proc/self/pagemap for {path} (not root?)")
    return frames


def cached_folios(path: str) -> list[tuple[int, int]]:
    """The folios holding the file's cached pages, as (first index, pages) in index order: a frame with
    KPF_COMPOUND_HEAD starts a folio, the KPF_COMPOUND_TAIL frames right after it continue it
    (cached_page_frames gives the frames). Nothing is read in. OSError as cached_page_frames."""
    folios: list[tuple[int, int]] = []
    head_index = head_pfn = -1
    for index, pfn in sorted(cached_page_frames(path).items()):
        flags = read_kpageflags(pfn)
        if (flags >> KPF.COMPOUND_TAIL & 1 and folios and index - head_index == pfn - head_pfn
                and folios[-1][0] + folios[-1][1] == index):
            folios[-1] = (head_index, folios[-1][1] + 1)
            continue
        head_index, head_pfn = index, pfn
        folios.append((index, 1))
    return folios
