"""The OOM killer's integer arithmetic, after mm/oom_kill.c:oom_badness() and
fs/proc/base.c:proc_oom_score(): pure functions of a task's counters (MmCounters), shared by the
model's OOM killer (oom_kill.py), the live explainer (vmlab.host.oom) and the snapshot it imports
(vmlab.host.oomsnap), so that all compute exactly what the kernel does.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmlab.kernel.uapi import PAGE_SIZE

OOM_SCORE_ADJ_MIN = -1000
LONG_MIN = -(1 << 63)
PF_KTHREAD = 0x00200000  # include/linux/sched.h


@dataclass(frozen=True)
class MmCounters:
    """An mm's memory counters in pages (pgtables in bytes), as dump_tasks and the Killed line read them."""

    total_vm: int
    anon: int
    file: int
    shmem: int
    swapents: int
    pgtables_bytes: int

    @property
    def rss(self) -> int:
        """get_mm_rss(): file + anon + shmem."""
        return self.anon + self.file + self.shmem


def c_div(a: int, b: int) -> int:
    """C integer division: the quotient truncated toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def oom_badness(rss: int, swapents: int, pgtables_bytes: int, adj: int, totalpages: int) -> int:
    """mm/oom_kill.c:oom_badness() for an eligible task: resident pages, swap entries and page-table
    pages, plus adj * (totalpages / 1000), the division first (the LONG_MIN cases are the caller's)."""
    return rss + swapents + pgtables_bytes // PAGE_SIZE + adj * (totalpages // 1000)


def proc_oom_score(badness: int, totalpages: int) -> int:
    """fs/proc/base.c:proc_oom_score(): badness scaled to 0..2000 then by 2/3, in C long arithmetic."""
    if badness == LONG_MIN:
        return 0
    return c_div((1000 + c_div(badness * 1000, totalpages)) * 2, 3)
