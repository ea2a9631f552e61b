"""A cgroup-v1 memory cgroup made for one run and removed after it, and the LRU state of a file's pages
on the running kernel, read without disturbing them.

`MemcgV1` creates a top-level cgroup under the v1 memory hierarchy with a limit, takes tasks in, reads
its memory.stat, and on close moves every task left back to the root and removes the directory (the
cgroup's page cache stays charged to it until freed; v1 then keeps it as an offline memcg).

`file_lru_flags()` tells for each cached page of a file whether it is on an LRU list, active and
referenced, from /proc/kpageflags of its frame. It finds the frames (pagecache.cached_page_frames)
through a shared read-only mapping of the file marked MADV_RANDOM: its faults read nothing ahead and
only map cached pages (mincore tells which), and a VMA with VM_RAND_READ has no recency
(vma_has_recency), so the unmap does not call folio_mark_accessed() on the young PTEs
(zap_present_folio_ptes). Faulting a page in does not mark it accessed (filemap_fault,
filemap_map_pages). Needs root for the PFNs.

Two things make the kernel's figures depend on timing:
- the per-CPU folio batches (mm/swap.c cpu_fbatches: lru_add, lru_activate, ... of 31 folios, and
  mlock's): a folio in a batch is not on its list yet (no PG_lru) or not moved yet (an activation
  still queued). They are drained by lru_add_drain() on their own CPU, which madvise(MADV_WILLNEED)
  of anonymous memory calls; munmap() does not on this kernel (measured: tests/test_lru_host.py,
  tests/test_host_mlock.py), so a worker pinned to one CPU drains with that madvise.
- memcg statistics are per-CPU and folded in by rstat flushes; reading memory.stat flushes only past a
  threshold (memcg_vmstats_needs_flush: 64 x nr_cpus updates), the periodic flusher every 2 s
  (flush_memcg_stats_dwork) always. Two readings 2.5 s apart that agree are exact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from vmlab.host import pagecache

V1_MEMORY = Path("/sys/fs/cgroup/memory")
PAGE = 4096

KPF_REFERENCED, KPF_LRU, KPF_ACTIVE = 2, 5, 6
#: The kpageflags bits the LRU comparison looks at.
LRU_KPF_MASK = (1 << KPF_REFERENCED) | (1 << KPF_LRU) | (1 << KPF_ACTIVE)


class MemcgUnavailable(Exception):
    """No cgroup-v1 memory controller here, or no permission to create a cgroup in it."""


def available() -> str | None:
    """Why a v1 memory cgroup cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to create memory cgroups"
    if not (V1_MEMORY / "memory.limit_in_bytes").exists():
        return f"no cgroup-v1 memory controller at {V1_MEMORY}"
    return None


class MemcgV1:
    """A v1 memory cgroup `V1_MEMORY/name` with memory.limit_in_bytes = `limit`, made on construction
    and removed by close() (also as a context manager), even when the run failed."""

    def __init__(self, name: str, limit: int) -> None:
        """Make the cgroup; MemcgUnavailable when it cannot be made, FileExistsError if it exists."""
        reason = available()
        if reason:
            raise MemcgUnavailable(reason)
        self.path = V1_MEMORY / name
        self.path.mkdir()
        try:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
        except OSError:
            self.close()
            raise

    def __enter__(self) -> MemcgV1:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def attach(self, pid: int) -> None:
        """Move process `pid` (all its threads) into the cgroup; what it charges from now on is ours."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def procs(self) -> list[int]:
        """The processes in the cgroup now."""
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def stat(self) -> dict[str, int]:
        """memory.stat as read now (bytes and counts; the cgroup's own and the total_* lines)."""
        out = {}
        for line in (self.path / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            out[key] = int(value)
        return out

    def usage(self) -> int:
        """memory.usage_in_bytes."""
        return int((self.path / "memory.usage_in_bytes").read_text())

    def close(self) -> None:
        """Move every task left to the root cgroup, then remove the directory (retried while tasks
        are still leaving). Idempotent."""
        remove_cgroup(self.path)


def remove_cgroup(directory: Path) -> None:
    """rmdir a v1 cgroup (empty of child cgroups) after moving its tasks to the root cgroup, retried
    while they are still leaving; nothing when it is gone already."""
    for _ in range(100):
        with contextlib.suppress(FileNotFoundError):
            for pid in (directory / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (V1_MEMORY / "cgroup.procs").write_text(pid)
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise
            time.sleep(0.05)
    raise RuntimeError(f"could not remove {directory}: its tasks stay")


def pin_to_cpu(pid: int, cpu: int = 0) -> None:
    """sched_setaffinity(pid, {cpu}): the process runs, and fills and drains its LRU batches, there."""
    os.sched_setaffinity(pid, {cpu})


@dataclass(frozen=True)
class PageLru:
    """The LRU state of one cached page: on a list (PG_lru), active (PG_active), referenced
    (PG_referenced), as kpageflags shows its folio's flags."""

    lru: bool
    active: bool
    referenced: bool

    @classmethod
    def from_kpf(cls, kpf: int) -> PageLru:
        """From a kpageflags word."""
        return cls(bool(kpf >> KPF_LRU & 1), bool(kpf >> KPF_ACTIVE & 1), bool(kpf >> KPF_REFERENCED & 1))

    @property
    def code(self) -> str:
        """One letter: A active, I inactive (lower case when PG_referenced), - not on a list."""
        if not self.lru:
            return "-"
        letter = "A" if self.active else "I"
        return letter.lower() if self.referenced else letter


def file_lru_flags(path: str) -> dict[int, PageLru]:
    """The LRU state of every page of `path` in the page cache, by page index (see the module text:
    it neither reads, reads ahead nor marks anything accessed: pagecache.cached_page_frames)."""
    out = {}
    with open("/proc/kpageflags", "rb") as f:
        for index, pfn in pagecache.cached_page_frames(path).items():
            f.seek(pfn * 8)
            out[index] = PageLru.from_kpf(struct.unpack("<Q", f.read(8))[0])
    return out


def lru_string(flags: dict[int, PageLru], npages: int) -> str:
    """The file's pages in index order as one letter each (PageLru.code, `.` when not cached)."""
    return "".join(flags[i].code if i in flags else "." for i in range(npages))
