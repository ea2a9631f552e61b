"""The host kernel's write-back state: cachestat(2) of a file (cached, dirty, under write-back pages),
the vm.dirty_* sysctls, /proc/vmstat, and the zone figures that make totalreserve_pages
(/proc/zoneinfo: managed pages, the high watermark, the lowmem reserves printed as `protection`).
"""

from __future__ import annotations

import ctypes
import os
import re

SYS_cachestat = 451
DIRTY_SYSCTLS = ("dirty_background_ratio", "dirty_background_bytes", "dirty_ratio", "dirty_bytes",
                 "dirty_writeback_centisecs", "dirty_expire_centisecs")


class _Range(ctypes.Structure):
    _fields_ = (("off", ctypes.c_uint64), ("len", ctypes.c_uint64))


class _CacheStat(ctypes.Structure):
    _fields_ = (("nr_cache", ctypes.c_uint64), ("nr_dirty", ctypes.c_uint64),
                ("nr_writeback", ctypes.c_uint64), ("nr_evicted", ctypes.c_uint64),
                ("nr_recently_evicted", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def cachestat(fd: int, off: int = 0, length: int = 0) -> tuple[int, int, int, int, int]:
    """cachestat(fd, {off, len}, &cs, 0): (nr_cache, nr_dirty, nr_writeback, nr_evicted,
    nr_recently_evicted) of the byte range (len 0: to the end). Raises OSError on failure."""
    rng, cs = _Range(off, length), _CacheStat()
    if _libc.syscall(ctypes.c_long(SYS_cachestat), ctypes.c_int(fd), ctypes.byref(rng), ctypes.byref(cs),
                     ctypes.c_uint(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cachestat: {os.strerror(err)}")
    return cs.nr_cache, cs.nr_dirty, cs.nr_writeback, cs.nr_evicted, cs.nr_recently_evicted


def read_dirty_sysctls() -> dict[str, int]:
    """/proc/sys/vm/dirty_* as integers, by name."""
    out = {}
    for name in DIRTY_SYSCTLS:
        with open(f"/proc/sys/vm/{name}") as f:
            out[name] = int(f.read())
    return out


def read_vmstat() -> dict[str, int]:
    """/proc/vmstat in one read (the kernel fills the whole table at open, so the fields agree)."""
    with open("/proc/vmstat") as f:
        text = f.read()
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


def read_zone_reserves() -> list[tuple[int, int, list[int]]]:
    """Per populated zone of /proc/zoneinfo: (managed pages, high watermark, lowmem_reserve[])."""
    with open("/proc/zoneinfo") as f:
        text = f.read()
    zones = []
    for block in re.split(r"^Node \d+, zone", text, flags=re.M)[1:]:
        managed = re.search(r"^\s+managed\s+(\d+)", block, re.M)
        high = re.search(r"^\s+high\s+(\d+)", block, re.M)
        prot = re.search(r"protection: \(([^)]*)\)", block)
        if managed and high and prot and int(managed.group(1)):
            zones.append((int(managed.group(1)), int(high.group(1)),
                          [int(x) for x in prot.group(1).split(",")]))
    return zones
