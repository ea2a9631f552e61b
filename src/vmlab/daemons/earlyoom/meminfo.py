"""earlyoom's meminfo.c: parse_meminfo() of the text of /proc/meminfo, and print_mem_stats()."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmlab.daemons.earlyoom.flavor import Flavor
from vmlab.daemons.earlyoom.msg import pct


class MeminfoError(Exception):
    """A field earlyoom cannot do without is missing (it exits with status 104)."""


@dataclass(frozen=True)
class MemInfo:
    """meminfo_t: the values in KiB and the two percentages earlyoom compares with its limits."""

    MemTotalKiB: int
    SwapTotalKiB: int
    AnonPagesKiB: int
    SwapFreeKiB: int
    MemAvailableKiB: int
    UserMemTotalKiB: int
    MemAvailablePercent: float
    SwapFreePercent: float


def _entry(name: str, text: str) -> int | None:
    """get_entry(): the number after the first occurrence of `name` (strstr, so "MemTotal:" is found
    wherever it is), None when absent."""
    i = text.find(name)
    if i < 0:
        return None
    m = re.match(r"\s*([+-]?\d+)", text[i + len(name):])
    return int(m.group(1)) if m else 0


def _fatal_entry(name: str, text: str) -> int:
    """get_entry_fatal()."""
    value = _entry(name, text)
    if value is None or value < 0:
        raise MeminfoError(f"could not find entry '{name}' in /proc/meminfo: No data available")
    return value


def parse_meminfo(text: str, flavor: Flavor) -> MemInfo:
    """parse_meminfo(): MemAvailable (or, before Linux 3.14, MemFree + Cached + Buffers - Shmem) as a
    percentage of the user memory total (v1.8+: MemAvailable + AnonPages; v1.7: MemTotal), SwapFree as
    one of SwapTotal (0 without swap)."""
    total = _fatal_entry("MemTotal:", text)
    swap_total = _fatal_entry("SwapTotal:", text)
    anon = _fatal_entry("AnonPages:", text) if flavor.user_mem_total else 0
    swap_free = _fatal_entry("SwapFree:", text)
    avail = _entry("MemAvailable:", text)
    if avail is None or avail < 0:
        avail = (_fatal_entry("MemFree:", text) + _fatal_entry("Cached:", text)
                 + _fatal_entry("Buffers:", text) - _fatal_entry("Shmem:", text))
    user_total = avail + anon if flavor.user_mem_total else total
    avail_pct = avail * 100 / user_total if user_total else float("nan")
    swap_pct = swap_free * 100 / swap_total if swap_total > 0 else 0.0
    return MemInfo(total, swap_total, anon, swap_free, avail, user_total, avail_pct, swap_pct)


def print_mem_stats(m: MemInfo) -> str:
    """print_mem_stats(): the `mem avail: ... swap free: ...` line (without its newline)."""
    return (f"mem avail: {m.MemAvailableKiB // 1024:5d} of {m.UserMemTotalKiB // 1024:5d} MiB "
            f"({pct(m.MemAvailablePercent)}), swap free: {m.SwapFreeKiB // 1024:4d} of "
            f"{m.SwapTotalKiB // 1024:4d} MiB ({pct(m.SwapFreePercent)})")
