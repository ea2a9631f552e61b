"""The host kernel's write-back state: the vm.dirty_* sysctls, /proc/vmstat, and the zone figures that
make totalreserve_pages (/proc/zoneinfo: managed pages, the high watermark, the lowmem reserves
printed as `protection`).
"""

from __future__ import annotations

import re

DIRTY_SYSCTLS = ("dirty_background_ratio", "dirty_background_bytes", "dirty_ratio", "dirty_bytes",
                 "dirty_writeback_centisecs", "dirty_expire_centisecs")


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
    """Per populated zone of /proc/zoneinfo: (managed pages, high watermark, lowmem_reserve[]).

    The high watermark is the zone's own, without its current boost: zoneinfo prints
    high_wmark_pages() = _watermark[WMARK_HIGH] + watermark_boost, and the boost (raised for a while
    when an allocation steals a pageblock of another migratetype, boost_watermark()) is not part of
    totalreserve_pages, which __setup_per_zone_wmarks() computes right after setting it to 0."""
    with open("/proc/zoneinfo") as f:
        text = f.read()
    zones = []
    for block in re.split(r"^Node \d+, zone", text, flags=re.M)[1:]:
        managed = re.search(r"^\s+managed\s+(\d+)", block, re.M)
        high = re.search(r"^\s+high\s+(\d+)", block, re.M)
        boost = re.search(r"^\s+boost\s+(\d+)", block, re.M)
        prot = re.search(r"protection: \(([^)]*)\)", block)
        if managed and high and prot and int(managed.group(1)):
            zones.append((int(managed.group(1)), int(high.group(1)) - (int(boost.group(1)) if boost else 0),
                          [int(x) for x in prot.group(1).split(",")]))
    return zones
