"""The host's page cache of one file, read without disturbing it: mincore() of a shared mapping (which
pages are cached and uptodate) and cachestat() (syscall 451: how many pages the cache holds at all).

Readahead submits its I/O and returns: pages of an asynchronous window are in the cache but not yet
uptodate, and mincore() does not count them until their read completes. `settled_residency` waits
until the two agree, so what it returns no longer depends on the disk's timing.
"""

from __future__ import annotations

import os
import time

from vmlab.linux import CacheStat, cachestat, mincore_residency


def cachestat_path(path: str) -> CacheStat | None:
    """cachestat() of the whole file; None where the kernel has no cachestat (before 6.5)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return cachestat(fd)
    except OSError:
        return None
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
        stat = cachestat_path(path)
        if stat is not None and stat.nr_cache == len(present):
            return present
        if stat is None and present == previous:
            return present
        if time.monotonic() > deadline:
            raise RuntimeError(f"vmlab host: the page cache of {path} did not settle in {timeout} s "
                               f"({len(present)} uptodate, cachestat {stat})")
        previous = present
        time.sleep(0.01 if stat is None else 0.001)
