"""Readers of /proc/<pid>/{maps,smaps,smaps_rollup,status,stat,statm,pagemap} and /proc/kpageflags.

Text files are returned as the kernel's text (the views the model renders too); stat, statm and
pagemap are parsed into small typed values. Every per-process reader returns None when the process is
gone (ENOENT: reaped, ESRCH: exited during the read); other errors (EACCES) propagate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmlab.backend import Counters

#: The text files read_text() accepts.
TEXT_FILES = ("maps", "smaps", "smaps_rollup", "status", "stat", "statm")

PM_PRESENT = 1 << 63
PM_SWAP = 1 << 62
PM_FILE = 1 << 61
PM_GUARD = 1 << 58
PM_UFFD_WP = 1 << 57
PM_EXCLUSIVE = 1 << 56
PM_SOFT_DIRTY = 1 << 55
PM_PFN_MASK = (1 << 55) - 1


def read_text(pid: int, name: str) -> str | None:
    """The text of /proc/<pid>/<name> (a name from TEXT_FILES), or None if the process is gone."""
    if name not in TEXT_FILES:
        raise ValueError(f"not a /proc text view: {name!r}")
    try:
        with open(f"/proc/{pid}/{name}", encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


@dataclass(frozen=True)
class Stat:
    """The memory fields of /proc/<pid>/stat (fs/proc/array.c:do_task_stat)."""

    pid: int
    comm: str
    state: str
    minflt: int
    cminflt: int
    majflt: int
    cmajflt: int
    vsize: int  # bytes
    #: pages, from get_mm_rss(): the per-CPU counters are not summed, so it lags behind by up to a
    #: counter batch per CPU (measured 64 vs 76 pages). Use statm or status (exact sums) to compare.
    rss: int


def parse_stat(text: str) -> Stat:
    """Parse the one line of /proc/<pid>/stat; fields after the last ')' (comm may hold anything)."""
    close = text.rindex(")")
    pid = int(text[: text.index("(")])
    comm = text[text.index("(") + 1 : close]
    f = text[close + 2 :].split()  # f[0] is field 3 (state)
    return Stat(pid=pid, comm=comm, state=f[0], minflt=int(f[7]), cminflt=int(f[8]), majflt=int(f[9]),
                cmajflt=int(f[10]), vsize=int(f[20]), rss=int(f[21]))


def read_stat(pid: int) -> Stat | None:
    """/proc/<pid>/stat parsed, or None if the process is gone."""
    text = read_text(pid, "stat")
    return None if text is None else parse_stat(text)


@dataclass(frozen=True)
class Statm:
    """/proc/<pid>/statm, in pages (fs/proc/array.c:proc_pid_statm)."""

    size: int
    resident: int
    shared: int
    text: int
    lib: int
    data: int
    dt: int


def read_statm(pid: int) -> Statm | None:
    """/proc/<pid>/statm parsed, or None if the process is gone."""
    text = read_text(pid, "statm")
    return None if text is None else Statm(*(int(x) for x in text.split()))


def status_kb_lines(text: str) -> dict[str, int]:
    """Every `Field:   N kB` line of a /proc/<pid>/status text, by field."""
    return {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines() if line.endswith(" kB")}


def status_kb(text: str, field: str) -> int:
    """The value of a `Field:   N kB` line of /proc/<pid>/status (e.g. RssAnon); KeyError if absent."""
    return status_kb_lines(text)[field]


def read_counters(pid: int) -> Counters | None:
    """minflt/majflt from stat and the RSS/PTE/swap/size fields of status, or None if `pid` is gone."""
    stat, status = read_stat(pid), read_text(pid, "status")
    if stat is None or status is None:
        return None
    return Counters(minflt=stat.minflt, majflt=stat.majflt, rss_anon_kb=status_kb(status, "RssAnon"),
                    rss_file_kb=status_kb(status, "RssFile"), rss_shmem_kb=status_kb(status, "RssShmem"),
                    vm_pte_kb=status_kb(status, "VmPTE"), vm_swap_kb=status_kb(status, "VmSwap"),
                    vm_size_kb=status_kb(status, "VmSize"))


@dataclass(frozen=True)
class PagemapEntry:
    """One 64-bit /proc/<pid>/pagemap entry (Documentation/admin-guide/mm/pagemap.rst)."""

    raw: int

    @property
    def present(self) -> bool:
        """Bit 63: a page is mapped."""
        return bool(self.raw & PM_PRESENT)

    @property
    def swapped(self) -> bool:
        """Bit 62: swapped out, or a PTE marker (a guard page)."""
        return bool(self.raw & PM_SWAP)

    @property
    def file(self) -> bool:
        """Bit 61: a page-cache or shmem page (also the huge zero page)."""
        return bool(self.raw & PM_FILE)

    @property
    def guard(self) -> bool:
        """Bit 58: a guard region (MADV_GUARD_INSTALL)."""
        return bool(self.raw & PM_GUARD)

    @property
    def uffd_wp(self) -> bool:
        """Bit 57: userfaultfd write-protected."""
        return bool(self.raw & PM_UFFD_WP)

    @property
    def exclusive(self) -> bool:
        """Bit 56: the page is mapped exactly once."""
        return bool(self.raw & PM_EXCLUSIVE)

    @property
    def soft_dirty(self) -> bool:
        """Bit 55: soft-dirty (never set on this kernel: no CONFIG_MEM_SOFT_DIRTY)."""
        return bool(self.raw & PM_SOFT_DIRTY)

    @property
    def pfn(self) -> int:
        """Bits 0-54 when present: the page frame number (0 unless we have CAP_SYS_ADMIN)."""
        return self.raw & PM_PFN_MASK if self.present else 0


def read_pagemap_raw(pid: int, start: int, end: int) -> list[int] | None:
    """The raw u64 entries of the pages of [start, end) (page aligned down/up), or None if `pid` is gone."""
    first, last = start >> 12, (end + 4095) >> 12
    if last <= first:
        return []
    try:
        with open(f"/proc/{pid}/pagemap", "rb") as f:
            f.seek(first * 8)
            data = f.read((last - first) * 8)
    except (FileNotFoundError, ProcessLookupError):
        return None
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


def read_pagemap(pid: int, start: int, end: int) -> list[PagemapEntry] | None:
    """Entries for the pages of [start, end) (page aligned down/up), or None if the process is gone."""
    raw = read_pagemap_raw(pid, start, end)
    return None if raw is None else [PagemapEntry(r) for r in raw]


def read_kpageflags(pfn: int) -> int:
    """The /proc/kpageflags word of frame `pfn` (KPF_* bits); needs root. 0 past the last frame
    (the kernel's read there returns no data)."""
    return _read_kpage("/proc/kpageflags", pfn)


def read_kpagecount(pfn: int) -> int:
    """/proc/kpagecount of frame `pfn`: how many times it is mapped (needs root; 0 past the end)."""
    return _read_kpage("/proc/kpagecount", pfn)


def _read_kpage(path: str, pfn: int) -> int:
    with open(path, "rb") as f:
        f.seek(pfn * 8)
        data = f.read(8)
    return struct.unpack("<Q", data)[0] if len(data) == 8 else 0


def present_string(entries: list[PagemapEntry]) -> str:
    """'1' for each present page and '0' for each absent one, as the reference experiments print."""
    return "".join("1" if e.present else "0" for e in entries)
