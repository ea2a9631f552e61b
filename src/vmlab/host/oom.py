"""The live OOM explainer: what mm/oom_kill.c would do right now, computed from /proc, with its workings.

For every process it computes `oom_badness()` term by term (rss, swap entries, page-table pages, the
oom_score_adj term), ranks the candidates as `select_bad_process()` scans them, names the victim, and
checks its own `/proc/PID/oom_score` (fs/proc/base.c:proc_oom_score) against the kernel's, per process.

Inputs, exactly as the kernel uses them (6.18):
- rss: /proc/PID/stat field 24, the kernel's approximate per-CPU counter `get_mm_rss()` that
  oom_badness() reads; /proc/PID/status's RssAnon+RssFile+RssShmem is the exact sum and can differ.
- swap entries: VmSwap (kB) / 4; page tables: VmPTE (kB) = mm_pgtables_bytes >> 10, so /4 = bytes/PAGE_SIZE.
- totalpages: MemTotal + SwapTotal (global), or mem_cgroup_get_max() for a memcg domain.

What cannot be seen from /proc and is not modelled: MMF_OOM_SKIP (a victim already reaped), in_vfork(),
a victim already in flight (the scan then aborts), oom_task_origin (swapoff), cpuset/mempolicy
eligibility of a global OOM. The kernel's scan order is approximated by (start time, pid) within a
cgroup v1 (its cgroup.procs is sorted, arrival order is not visible); it matters only for exact ties,
which the report flags.

Only reads. A process may exit, or deny access, at any point: it is then listed as skipped, never an error.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from vmlab.host import memcg
from vmlab.kernel.oom_score import (  # the kernel's arithmetic: one implementation, the model's
    LONG_MIN,
    OOM_SCORE_ADJ_MIN,
    PF_KTHREAD,
    oom_badness,
    proc_oom_score,
)
from vmlab.kernel.uapi import PAGE_SIZE

MiB_PAGES = (1 << 20) // PAGE_SIZE
#: How often a process whose numbers disagree with its oom_score is read again before calling it a mismatch.
RETRIES = 3

# Skip reasons, as oom_badness()/oom_evaluate_task() have them.
KTHREAD = "kernel thread"
INIT = "init (pid 1)"
ADJ_MIN = "oom_score_adj -1000"
NO_MM = "no mm (exiting)"
EXITED = "exited while read"
DENIED = "permission denied"


@dataclass(frozen=True)
class Sample:
    """What one read of /proc/PID gives the explainer. `mm` is False for tasks without an mm."""

    pid: int
    comm: str
    uid: int
    flags: int
    starttime: int  # clock ticks since boot: fork order
    mm: bool
    rss: int  # pages (stat field 24)
    swapents: int  # pages (VmSwap / 4)
    pgtables_bytes: int  # VmPTE * 1024
    oom_score_adj: int
    kernel_oom_score: int  # /proc/PID/oom_score, read last

    def skip_reason(self) -> str | None:
        """Why oom_badness() returns LONG_MIN for this task (None: it is a candidate)."""
        if self.flags & PF_KTHREAD:
            return KTHREAD
        if self.pid == 1:
            return INIT
        if not self.mm:
            return NO_MM
        if self.oom_score_adj == OOM_SCORE_ADJ_MIN:
            return ADJ_MIN
        return None

    def badness(self, totalpages: int) -> int:
        """oom_badness(p, totalpages), LONG_MIN when ineligible."""
        if self.skip_reason() is not None:
            return LONG_MIN
        return oom_badness(self.rss, self.swapents, self.pgtables_bytes, self.oom_score_adj, totalpages)


@dataclass(frozen=True)
class Candidate:
    """One eligible process with its badness broken down, in pages of its OOM domain."""

    pid: int
    comm: str
    uid: int
    cgroup: str  # the cgroup it was found in (memcg scan), "" for the global scan
    scan_index: int  # position in select_bad_process()'s scan
    rss: int
    swapents: int
    pgtables: int  # pgtables_bytes / PAGE_SIZE
    oom_score_adj: int
    adj_term: int  # oom_score_adj * (totalpages / 1000)
    points: int  # oom_badness() in the domain
    oom_score: int  # proc_oom_score() computed from the same numbers (always the global domain)
    kernel_oom_score: int  # /proc/PID/oom_score as read

    @property
    def points_mib(self) -> float:
        """Badness in MiB (pages / 256)."""
        return self.points / MiB_PAGES


@dataclass(frozen=True)
class Skipped:
    """A process the kernel would not consider, or that the explainer could not read."""

    pid: int
    comm: str
    reason: str
    kernel_oom_score: int | None  # read when possible: must be 0 for the ineligible


@dataclass(frozen=True)
class Mismatch:
    """A process whose computed oom_score differs from the kernel's while its inputs held still."""

    pid: int
    comm: str
    computed: int
    kernel: int
    detail: str


@dataclass(frozen=True)
class Domain:
    """The OOM domain: the whole machine, or a memcg."""

    kind: str  # "global" or "memcg"
    totalpages: int
    adj_unit: int  # pages one point of oom_score_adj is worth: totalpages / 1000
    cgroup: str = ""  # filesystem path of the memcg
    cgroup_name: str = ""  # as the kernel prints it (oom_memcg=)
    cgroup_version: int = 0
    limit_pages: int = 0
    swap_pages: int = 0


@dataclass(frozen=True)
class OomReport:
    """Everything `scan()` found; `candidates` are ranked, the first is the victim."""

    domain: Domain
    global_totalpages: int  # MemTotal + SwapTotal, the domain of every /proc/PID/oom_score
    candidates: tuple[Candidate, ...]
    skipped: tuple[Skipped, ...]
    mismatches: tuple[Mismatch, ...]
    unstable: tuple[int, ...] = field(default=())  # pids whose numbers kept changing while read
    checked: int = 0  # processes whose oom_score was compared

    @property
    def victim(self) -> Candidate | None:
        """select_bad_process()'s choice: highest points, the later-scanned one on a tie."""
        return self.candidates[0] if self.candidates else None

    @property
    def tie(self) -> bool:
        """True when the victim shares its points with another candidate (decided by scan order)."""
        return len(self.candidates) > 1 and self.candidates[0].points == self.candidates[1].points


# --- reading /proc ---------------------------------------------------------------------------------


def _read(name: str, dirfd: int) -> bytes:
    """One whole /proc file relative to an open /proc/PID directory."""
    fd = os.open(name, os.O_RDONLY, dir_fd=dirfd)
    try:
        data = os.read(fd, 8192)
        if len(data) == 8192:  # only a huge status file: keep reading
            while chunk := os.read(fd, 8192):
                data += chunk
        return data
    finally:
        os.close(fd)


def _field_kb(status: bytes, key: bytes) -> int | None:
    """The kB number of a `Key:   N kB` line of /proc/PID/status, None if absent."""
    at = status.find(key)
    if at < 0:
        return None
    end = status.find(b"kB", at)
    return int(status[at + len(key) : end])


def _read_task(dirfd: int, pid: int) -> Sample:
    """Read stat, status, oom_score_adj and oom_score of one task through its /proc directory fd."""
    stat = _read("stat", dirfd)
    lp, rp = stat.find(b"("), stat.rfind(b")")
    comm = stat[lp + 1 : rp].decode(errors="replace")
    f = stat[rp + 2 :].split()  # f[0] is field 3 (state)
    flags, starttime, rss = int(f[6]), int(f[19]), int(f[21])
    if flags & PF_KTHREAD:
        return Sample(pid, comm, 0, flags, starttime, False, 0, 0, 0, 0, int(_read("oom_score", dirfd)))
    status = _read("status", dirfd)
    uid_at = status.find(b"\nUid:") + 5
    uid = int(status[uid_at : status.find(b"\t", uid_at + 1)])
    pte = _field_kb(status, b"\nVmPTE:")
    swap = _field_kb(status, b"\nVmSwap:")
    adj = int(_read("oom_score_adj", dirfd))
    score = int(_read("oom_score", dirfd))
    return Sample(pid, comm, uid, flags, starttime, pte is not None, rss, (swap or 0) * 1024 // PAGE_SIZE,
                  (pte or 0) * 1024, adj, score)


def _threads_mm(dirfd: int, sample: Sample) -> Sample:
    """find_lock_task_mm(): a zombie group leader's mm lives on in its other threads; take their numbers."""
    try:
        taskfd = os.open("task", os.O_RDONLY | os.O_DIRECTORY, dir_fd=dirfd)
    except OSError:
        return sample
    try:
        tids = sorted(int(t) for t in os.listdir(taskfd) if int(t) != sample.pid)
    except OSError:
        return sample
    finally:
        os.close(taskfd)
    for tid in tids:
        try:
            tfd = os.open(f"task/{tid}", os.O_RDONLY | os.O_DIRECTORY, dir_fd=dirfd)
        except OSError:
            continue
        try:
            t = _read_task(tfd, tid)
        except (OSError, ValueError):
            continue
        finally:
            os.close(tfd)
        if t.mm:
            return Sample(sample.pid, sample.comm, t.uid, sample.flags, sample.starttime, True, t.rss,
                          t.swapents, t.pgtables_bytes, t.oom_score_adj, sample.kernel_oom_score)
    return sample


def read_sample(pid: int) -> Sample | str:
    """Read one process; on failure the reason it was skipped (EXITED or DENIED)."""
    try:
        dirfd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return EXITED
    except PermissionError:
        return DENIED
    try:
        s = _read_task(dirfd, pid)
        if not s.mm and not s.flags & PF_KTHREAD:
            s = _threads_mm(dirfd, s)
        return s
    except PermissionError:
        return DENIED
    except (OSError, ValueError, IndexError) as err:
        # ESRCH/ENOENT when the task is reaped between reads; a half-torn file fails to parse.
        if isinstance(err, OSError) and err.errno not in (errno.ESRCH, errno.ENOENT):
            raise
        return EXITED
    finally:
        os.close(dirfd)


def global_totalpages(meminfo: bytes | None = None) -> tuple[int, int]:
    """(totalram_pages() + total_swap_pages, total_swap_pages) from /proc/meminfo."""
    if meminfo is None:
        with open("/proc/meminfo", "rb") as f:
            meminfo = f.read()
    ram = _field_kb(b"\n" + meminfo, b"\nMemTotal:")
    swap = _field_kb(b"\n" + meminfo, b"\nSwapTotal:") or 0
    assert ram is not None, "/proc/meminfo without MemTotal"
    return (ram + swap) * 1024 // PAGE_SIZE, swap * 1024 // PAGE_SIZE


# --- the scan --------------------------------------------------------------------------------------


def _all_pids() -> list[int]:
    """Every thread-group id in /proc."""
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def _settle(pid: int, first: Sample, global_total: int) -> tuple[Sample | str, bool]:
    """Re-read a process whose oom_score disagrees with its numbers; (last sample, its inputs kept moving)."""
    s: Sample | str = first
    for _ in range(RETRIES):
        prev = s
        s = read_sample(pid)
        if isinstance(s, str) or proc_oom_score(s.badness(global_total), global_total) == s.kernel_oom_score:
            return s, False
        if s == prev:
            return s, False  # nothing moved: a real disagreement
    return s, True


def scan(cgroup: str | None = None) -> OomReport:
    """What select_bad_process() would pick now: the whole machine, or the memcg at `cgroup` (a directory).

    Raises InputError for a cgroup path that is not a memory cgroup.
    """
    global_total, total_swap = global_totalpages()
    if cgroup is None:
        dom = Domain("global", global_total, global_total // 1000)
        groups: list[tuple[str, list[int]]] = [("", _all_pids())]
        v1_order = True
    else:
        md = memcg.domain(cgroup, total_swap)
        dom = Domain("memcg", md.totalpages, md.totalpages // 1000, md.path, md.name, md.version,
                     md.limit_pages, md.swap_pages)
        groups = [(c, list(memcg.procs(c))) for c in md.cgroups]
        v1_order = md.version == 1
    total = dom.totalpages

    evaluated: list[tuple[str, Sample]] = []
    skipped: list[Skipped] = []
    mismatches: list[Mismatch] = []
    unstable: list[int] = []
    for cg, pids in groups:
        samples: list[Sample] = []
        for pid in pids:
            s = read_sample(pid)
            if isinstance(s, Sample) and proc_oom_score(s.badness(global_total), global_total) != \
                    s.kernel_oom_score:
                s, moving = _settle(pid, s, global_total)
                if isinstance(s, Sample):
                    computed = proc_oom_score(s.badness(global_total), global_total)
                    if computed != s.kernel_oom_score:
                        if moving:
                            unstable.append(pid)
                        else:
                            mismatches.append(Mismatch(pid, s.comm, computed, s.kernel_oom_score,
                                                       "inputs held still across re-reads"))
            if isinstance(s, str):
                skipped.append(Skipped(pid, "", s, None))
            else:
                samples.append(s)
        if v1_order:
            samples.sort(key=lambda x: (x.starttime, x.pid))
        evaluated.extend((cg, s) for s in samples)

    candidates: list[Candidate] = []
    for index, (cg, s) in enumerate(evaluated):
        reason = s.skip_reason()
        if reason is not None:
            skipped.append(Skipped(s.pid, s.comm, reason, s.kernel_oom_score))
            continue
        candidates.append(Candidate(
            s.pid, s.comm, s.uid, cg, index, s.rss, s.swapents, s.pgtables_bytes // PAGE_SIZE,
            s.oom_score_adj, s.oom_score_adj * (total // 1000), s.badness(total),
            proc_oom_score(s.badness(global_total), global_total), s.kernel_oom_score))
    return OomReport(dom, global_total, rank(candidates), tuple(skipped), tuple(mismatches),
                     tuple(unstable), len(evaluated))


def rank(candidates: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """Candidates best-first as select_bad_process() weighs them: the first is the one it keeps.

    Its loop skips a task only when `points < chosen_points`, so among equal points the task scanned
    last (highest scan_index) replaces the earlier ones.
    """
    return tuple(sorted(candidates, key=lambda c: (c.points, c.scan_index), reverse=True))
