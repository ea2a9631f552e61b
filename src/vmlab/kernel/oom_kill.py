"""The OOM killer, after mm/oom_kill.c (Linux 6.18): `oom_badness()`, `select_bad_process()`,
`dump_header()`/`dump_tasks()`, `oom_kill_process()`, the oom_reaper, `out_of_memory()`.

The pure arithmetic (`oom_badness`, `proc_oom_score`) is shared with the live explainer
(vmlab.host.oom): one implementation of the kernel's integer rules.

Messages use the kernel's format strings verbatim (reference oom-killer-6.x.md §1.9) and are logged to
the machine's printk ring with the simulated clock's time. Deliberate differences, each marked below:
- one thread per process: a task is its own thread group (tgid = pid), so find_lock_task_mm() is the
  task itself while it has an mm;
- no cpusets or mempolicies: a global OOM is CONSTRAINT_NONE, `cpuset=/`, `mems_allowed=0`;
- `dump_stack()` prints the call chain by name, without offsets or registers;
- time passes only where the model says: a killed task that is not running exits `VICTIM_EXIT_NS`
  after the kill (unless frozen), and each retry of an allocation after an OOM kill costs a jiffy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from vmlab.kernel.clock import HZ, JIFFY_NS, NSEC_PER_SEC
from vmlab.kernel.memory import zap_page_range
from vmlab.kernel.mm_types import (
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    VM_HUGETLB,
    VM_PFNMAP,
    VM_SHARED,
    MmStruct,
)
from vmlab.kernel.oom_score import (
    LONG_MIN,
    OOM_SCORE_ADJ_MIN,
    PF_KTHREAD,
    MmCounters,
    oom_badness,
    proc_oom_score,
)
from vmlab.kernel.printk import KERN_ERR, KERN_INFO, KERN_WARNING, Printk, RateLimit

if TYPE_CHECKING:
    from vmlab.kernel.memcontrol import MemCgroup
    from vmlab.kernel.page_alloc import PhysMem

OOM_SCORE_ADJ_MAX = 1000
LONG_MAX = (1 << 63) - 1
PF_EXITING = 0x00000004
# mm->flags bits (include/linux/mm_types.h) the OOM killer uses.
MMF_OOM_SKIP = 1 << 21
MMF_UNSTABLE = 1 << 22
MMF_OOM_REAP_QUEUED = 1 << 25
PAGE_ALLOC_COSTLY_ORDER = 3
OOM_REAPER_DELAY_NS = 2 * HZ * JIFFY_NS  # OOM_REAPER_DELAY = 2*HZ
#: How long a killed task that is not running takes to run its exit path (model's choice: one jiffy).
VICTIM_EXIT_NS = JIFFY_NS
#: An allocation retries after an OOM kill at most this often before failing (2 reaper periods).
MAX_OOM_RETRIES = 2 * 2 * HZ + 16

CONSTRAINT_NONE = "CONSTRAINT_NONE"
CONSTRAINT_CPUSET = "CONSTRAINT_CPUSET"
CONSTRAINT_MEMORY_POLICY = "CONSTRAINT_MEMORY_POLICY"
CONSTRAINT_MEMCG = "CONSTRAINT_MEMCG"

# gfp masks as %pGg prints them.
GFP_KERNEL = (0xCC0, "GFP_KERNEL")
GFP_HIGHUSER_MOVABLE_ZERO = (0x140DCA, "GFP_HIGHUSER_MOVABLE|__GFP_ZERO")

KERNEL_RELEASE = "6.18.0-vmlab"


# --- the arithmetic, shared with vmlab.host.oom ----------------------------------------------------------

# --- tasks as the OOM killer sees them -------------------------------------------------------------------

class OomTask(Protocol):
    """What oom_kill.c reads of a task_struct and its signal_struct (vmlab.kernel.machine.Task)."""

    pid: int
    tgid: int
    comm: str
    uid: int
    flags: int  # PF_*
    oom_score_adj: int  # signal->oom_score_adj
    oom_score_adj_min: int
    mm: MmStruct
    memcg: MemCgroup | None
    oom_mm: MmStruct | None  # signal->oom_mm: set once the task is an OOM victim
    sigkill: bool  # a fatal signal is pending
    frozen: bool  # cannot run (a freezer cgroup, SIGSTOP): it cannot exit either
    in_vfork: bool  # a vfork child still borrowing its parent's mm
    oom_origin: bool  # signal->oom_flag_origin: swapoff's caller while it reads the area back


def mm_counters(mm: MmStruct) -> MmCounters:
    """The mm's counters (get_mm_counter_sum, mm_pgtables_bytes)."""
    pgt = mm.pt.pgtables_bytes if mm.pt is not None else 0
    r = mm.rss
    return MmCounters(mm.total_vm, r[MM_ANONPAGES], r[MM_FILEPAGES], r[MM_SHMEMPAGES], r[MM_SWAPENTS], pgt)


def oom_unkillable_task(p: OomTask) -> bool:
    """oom_unkillable_task(): init and kernel threads."""
    return p.pid == 1 or bool(p.flags & PF_KTHREAD)


def has_mm(p: OomTask) -> bool:
    """find_lock_task_mm() found a thread with an mm (the model: the task itself, until exit_mmap)."""
    return p.mm.pt is not None


def task_badness(p: OomTask, totalpages: int) -> int:
    """oom_badness(p, totalpages): LONG_MIN for init, kthreads, no mm, adj -1000, MMF_OOM_SKIP, vfork."""
    if oom_unkillable_task(p) or not has_mm(p):
        return LONG_MIN
    if p.oom_score_adj == OOM_SCORE_ADJ_MIN or p.mm.mmf & MMF_OOM_SKIP or p.in_vfork:
        return LONG_MIN
    c = mm_counters(p.mm)
    return oom_badness(c.rss, c.swapents, c.pgtables_bytes, p.oom_score_adj, totalpages)


#: oc->chosen after an abort: (void *)-1UL, a victim is still on its way out.
ABORT = "abort"


@dataclass
class OomControl:
    """struct oom_control: the domain (memcg or None), the request, and the choice."""

    memcg: MemCgroup | None
    gfp: tuple[int, str]
    order: int
    totalpages: int = 0
    constraint: str = CONSTRAINT_NONE
    chosen: OomTask | str | None = None  # a task, ABORT, or None
    chosen_points: int = LONG_MIN
    sysrq: bool = False

    @property
    def is_memcg_oom(self) -> bool:
        """is_memcg_oom()."""
        return self.memcg is not None


def oom_evaluate_task(oc: OomControl, task: OomTask) -> bool:
    """oom_evaluate_task(): weigh one task; True aborts the scan (an earlier victim is still exiting).
    A task marked as the OOM's origin (swapoff's caller) is chosen with LONG_MAX points.

    Equal points replace the choice (`points < chosen_points` skips), so the last task scanned among
    those with the highest score is chosen.
    """
    if oom_unkillable_task(task):
        return False
    if not oc.sysrq and task.oom_mm is not None:
        if task.oom_mm.mmf & MMF_OOM_SKIP:
            return False
        oc.chosen = ABORT
        return True
    if task.oom_origin:  # "marked to be killed first if it triggers an oom": selected
        oc.chosen, oc.chosen_points = task, LONG_MAX
        return False
    points = task_badness(task, oc.totalpages)
    if points == LONG_MIN or points < oc.chosen_points:
        return False
    oc.chosen, oc.chosen_points = task, points
    return False


def select_bad_process(oc: OomControl, scan: Iterable[OomTask]) -> None:
    """select_bad_process(): evaluate every task of the domain in scan order (`scan`)."""
    oc.chosen_points = LONG_MIN
    oc.chosen = None
    for task in scan:
        if oom_evaluate_task(oc, task):
            return


def format_task_row(p: OomTask) -> str:
    """dump_task(): one row of the `Tasks state` table (pages; pgtables in bytes)."""
    c = mm_counters(p.mm)
    return (f"[{p.pid:7d}] {p.uid:5d} {p.tgid:5d} {c.total_vm:8d} {c.rss:8d} {c.anon:8d} {c.file:8d} "
            f"{c.shmem:9d} {c.pgtables_bytes:8d} {c.swapents:8d}         {p.oom_score_adj:5d} {p.comm}")


TASKS_STATE = "Tasks state (memory values in pages):"
TASKS_HEADER = ("[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents "
                "oom_score_adj name")


def killed_line(message: str, victim: OomTask) -> str:
    """__oom_kill_process()'s `Killed process` line (kB; pgtables is bytes >> 10)."""
    c = mm_counters(victim.mm)
    return (f"{message}: Killed process {victim.pid} ({victim.comm}) total-vm:{c.total_vm * 4}kB, "
            f"anon-rss:{c.anon * 4}kB, file-rss:{c.file * 4}kB, shmem-rss:{c.shmem * 4}kB, "
            f"UID:{victim.uid} pgtables:{c.pgtables_bytes >> 10}kB oom_score_adj:{victim.oom_score_adj}")


def memcg_path(memcg: MemCgroup | None) -> str:
    """pr_cont_cgroup_path() of a task's memcg (the root is `/`)."""
    return memcg.path if memcg is not None else "/"


# --- the killer -----------------------------------------------------------------------------------------

@dataclass
class OomSysctl:
    """vm.panic_on_oom, vm.oom_kill_allocating_task, vm.oom_dump_tasks."""

    panic_on_oom: int = 0
    oom_kill_allocating_task: bool = False
    oom_dump_tasks: bool = True


class OomPanic(Exception):
    """panic(): the model machine stops (panic_on_oom, or a global OOM with nothing to kill)."""


@dataclass
class OomKiller:
    """The OOM killer of one machine: its sysctls, the printk ring, and what it needs of the machine.

    `tasks()` lists every task in fork order (for_each_process); `current()` is the running task;
    `do_exit(task)` runs a task's exit (exit_mmap and release) when a killed task gets to run.
    """

    mem: PhysMem
    log: Printk
    tasks: Callable[[], Iterable[OomTask]]
    current: Callable[[], OomTask | None]
    do_exit: Callable[[OomTask], None]
    sysctl: OomSysctl = field(default_factory=OomSysctl)
    #: oom_rs: the header and task table print at most 10 times per 5 s.
    ratelimit: RateLimit = field(default_factory=lambda: RateLimit(5 * NSEC_PER_SEC, 10))
    oom_victims: int = 0
    total_swap_pages: int = 0

    def info(self, text: str) -> None:
        """pr_info()."""
        self.log.printk(KERN_INFO, text)

    def warn(self, text: str) -> None:
        """pr_warn()."""
        self.log.printk(KERN_WARNING, text)

    def err(self, text: str) -> None:
        """pr_err()."""
        self.log.printk(KERN_ERR, text)

    # -- victims and signals --

    def send_sigkill(self, task: OomTask) -> None:
        """do_send_sig_info(SIGKILL, ..., PIDTYPE_TGID): the task exits when it next runs; one that is
        not running (and not frozen) runs its exit VICTIM_EXIT_NS later on the simulated clock."""
        if task.sigkill:
            return
        task.sigkill = True
        if task is not self.current():
            self.wake_to_exit(task)

    def wake_to_exit(self, task: OomTask) -> None:
        """Schedule a killed, runnable task's exit."""
        if not task.frozen:
            self.mem.clock.at(self.mem.clock.now_ns + VICTIM_EXIT_NS, lambda: self._exit_if_alive(task))

    def _exit_if_alive(self, task: OomTask) -> None:
        """The timer of a killed task: it exits unless it already has (or was frozen meanwhile)."""
        if has_mm(task) and not task.frozen and any(t is task for t in self.tasks()):
            self.do_exit(task)

    def mark_oom_victim(self, task: OomTask) -> None:
        """mark_oom_victim(): TIF_MEMDIE, signal->oom_mm, one more oom_victims."""
        if task.oom_mm is None:
            task.oom_mm = task.mm
            self.oom_victims += 1

    def exit_oom_victim(self, task: OomTask) -> None:
        """exit_oom_victim() from the exit path: one victim fewer."""
        if task.oom_mm is not None and self.oom_victims:
            self.oom_victims -= 1

    def task_will_free_mem(self, task: OomTask) -> bool:
        """task_will_free_mem(): the task is already dying and so is every process sharing its mm."""
        if not has_mm(task) or task.mm.mmf & MMF_OOM_SKIP or not (task.sigkill or task.flags & PF_EXITING):
            return False
        return all(p.sigkill or p.flags & PF_EXITING for p in self.tasks() if p.mm is task.mm)

    # -- the reaper --

    def queue_oom_reaper(self, task: OomTask) -> None:
        """queue_oom_reaper(): once per mm, a timer OOM_REAPER_DELAY later."""
        mm = task.mm
        if mm.mmf & MMF_OOM_REAP_QUEUED:
            return
        mm.mmf |= MMF_OOM_REAP_QUEUED
        self.mem.clock.at(self.mem.clock.now_ns + OOM_REAPER_DELAY_NS, lambda: self.wake_oom_reaper(task, mm))

    def wake_oom_reaper(self, task: OomTask, mm: MmStruct) -> None:
        """wake_oom_reaper(): nothing to do if the victim already ran exit_mmap (MMF_OOM_SKIP)."""
        if mm.mmf & MMF_OOM_SKIP or mm.pt is None:
            return
        self.oom_reap_task(task, mm)

    def reap_task_mm(self, mm: MmStruct) -> None:
        """__oom_reap_task_mm(): unmap the anonymous and private memory of a dying mm (what the
        oom_reaper and process_mrelease(2) both do)."""
        mm.mmf |= MMF_UNSTABLE
        for vma in reversed(list(mm)):
            if vma.vm_flags & (VM_HUGETLB | VM_PFNMAP):
                continue
            if vma.is_anonymous() or not vma.vm_flags & VM_SHARED:
                zap_page_range(mm, self.mem, vma.vm_start, vma.vm_end, vma=vma)

    def oom_reap_task(self, task: OomTask, mm: MmStruct) -> None:
        """oom_reap_task_mm(): reap the victim's mm (never contended in the model, so never 'unable to
        reap'), log it, then hide the mm from the OOM killer."""
        self.reap_task_mm(mm)
        c = mm_counters(mm)
        self.info(f"oom_reaper: reaped process {task.pid} ({task.comm}), now "
                  f"anon-rss:{c.anon * 4}kB, file-rss:{c.file * 4}kB, shmem-rss:{c.shmem * 4}kB")
        mm.mmf |= MMF_OOM_SKIP

    # -- the report --

    def dump_header(self, oc: OomControl, meminfo: Callable[[], list[str]]) -> None:
        """dump_header(): who invoked it, the stack, the memcg or Mem-Info block, the task table."""
        cur = self.current()
        comm, adj = (cur.comm, cur.oom_score_adj) if cur is not None else ("kworker/0:0", 0)
        gfp, gfp_name = oc.gfp
        lines = [f"{comm} invoked oom-killer: gfp_mask={gfp:#x}({gfp_name}), order={oc.order}, "
                 f"oom_score_adj={adj}"]
        pid, uid = (cur.pid, cur.uid) if cur is not None else (0, 0)
        lines.append(f"CPU: 0 UID: {uid} PID: {pid} Comm: {comm} Not tainted {KERNEL_RELEASE} #1 "
                     "PREEMPT(none)")
        chain = (["dump_stack_lvl", "dump_header", "oom_kill_process", "out_of_memory"]
                 + (["mem_cgroup_out_of_memory", "try_charge_memcg", "charge_memcg", "__mem_cgroup_charge"]
                    if oc.is_memcg_oom else ["__alloc_pages_slowpath", "__alloc_frozen_pages_noprof"])
                 + ["do_anonymous_page", "__handle_mm_fault", "handle_mm_fault", "exc_page_fault",
                    "asm_exc_page_fault"])
        lines += ["Call Trace:", " <TASK>", *(f" {fn}" for fn in chain), " </TASK>"]
        self.warn("\n".join(lines))
        self.info("\n".join(meminfo()))
        if self.sysctl.oom_dump_tasks:
            self.dump_tasks(oc)

    def dump_tasks(self, oc: OomControl) -> None:
        """dump_tasks(): every task of the domain that has an mm (adj -1000 and victims included)."""
        rows = [TASKS_STATE, TASKS_HEADER]
        rows += [format_task_row(p) for p in self.scan(oc) if not oom_unkillable_task(p) and has_mm(p)]
        self.info("\n".join(rows))

    def dump_oom_victim(self, oc: OomControl, victim: OomTask) -> None:
        """dump_oom_victim(): the one-line summary `oom-kill:constraint=...`."""
        where = f",oom_memcg={memcg_path(oc.memcg)}" if oc.is_memcg_oom else ",global_oom"
        self.info(f"oom-kill:constraint={oc.constraint},nodemask=(null),cpuset=/,mems_allowed=0"
                  f"{where},task_memcg={memcg_path(victim.memcg)},task={victim.comm},"
                  f"pid={victim.pid},uid={victim.uid}")

    # -- killing --

    def scan(self, oc: OomControl) -> list[OomTask]:
        """The domain's tasks in the kernel's scan order: for_each_process, or mem_cgroup_scan_tasks()
        (the memcg and its descendants pre-order, each one's tasks in the order they joined)."""
        tasks = list(self.tasks())
        if oc.memcg is None:
            return tasks
        by_pid = {t.pid: t for t in tasks}
        return [by_pid[pid] for cg in oc.memcg.iter_tree() for pid in cg.procs if pid in by_pid]

    def kill_one(self, victim: OomTask, message: str) -> None:
        """__oom_kill_process(): SIGKILL the victim's thread group, mark it, log the Killed line, kill
        every other process sharing the mm (not init, not kthreads), and queue the reaper."""
        if not has_mm(victim):
            self.info(f"{message}: OOM victim {victim.pid} ({victim.comm}) is already exiting. "
                      "Skip killing the task")
            return
        mm = victim.mm
        self.mem.events["oom_kill"] += 1
        if victim.memcg is not None:
            victim.memcg.memory_event("oom_kill")
        self.send_sigkill(victim)
        self.mark_oom_victim(victim)
        self.err(killed_line(message, victim))
        can_oom_reap = True
        for p in self.tasks():
            if p.mm is not mm or p.tgid == victim.tgid:
                continue
            if p.pid == 1:
                can_oom_reap = False
                mm.mmf |= MMF_OOM_SKIP
                self.info(f"oom killer {victim.pid} ({victim.comm}) has mm pinned by "
                          f"{p.pid} ({p.comm})")
                continue
            if p.flags & PF_KTHREAD:
                continue
            self.send_sigkill(p)
        if can_oom_reap:
            self.queue_oom_reaper(victim)

    def oom_kill_process(self, oc: OomControl, message: str, meminfo: Callable[[], list[str]]) -> None:
        """oom_kill_process(): the header (rate limited), the kill, and a memory.oom.group kill."""
        victim = oc.chosen
        assert victim is not None and not isinstance(victim, str)
        if self.task_will_free_mem(victim):
            self.mark_oom_victim(victim)
            self.queue_oom_reaper(victim)
            return
        if self.ratelimit(self.mem.clock.now_ns):
            self.dump_header(oc, meminfo)
            self.dump_oom_victim(oc, victim)
        group = victim.memcg.get_oom_group(oc.memcg) if victim.memcg is not None else None
        self.kill_one(victim, message)
        if group is not None:
            group.memory_event("oom_group_kill")
            self.info(f"Tasks in {group.path} are going to be killed due to memory.oom.group set")
            members = [t for t in self.tasks() if t.memcg is not None and t.memcg.is_descendant_of(group)]
            for t in members:
                if t is not victim and t.oom_score_adj != OOM_SCORE_ADJ_MIN and t.pid != 1 and has_mm(t) \
                        and not t.sigkill:
                    self.kill_one(t, message)

    def out_of_memory(self, oc: OomControl, meminfo: Callable[[], list[str]]) -> bool:
        """out_of_memory(): True when a victim was killed or one is still on its way out (the caller
        retries); raises OomPanic where the kernel panics."""
        cur = self.current()
        if cur is not None and self.task_will_free_mem(cur):
            self.mark_oom_victim(cur)
            self.queue_oom_reaper(cur)
            return True
        if oc.is_memcg_oom:
            assert oc.memcg is not None
            oc.constraint, oc.totalpages = CONSTRAINT_MEMCG, oc.memcg.get_max(self.total_swap_pages)
        else:
            oc.constraint = CONSTRAINT_NONE
            oc.totalpages = self.mem.totalram_pages + self.total_swap_pages
        self.check_panic_on_oom(oc)
        if (not oc.is_memcg_oom and self.sysctl.oom_kill_allocating_task and cur is not None and has_mm(cur)
                and not oom_unkillable_task(cur) and cur.oom_score_adj != OOM_SCORE_ADJ_MIN):
            oc.chosen = cur
            self.oom_kill_process(oc, "Out of memory (oom_kill_allocating_task)", meminfo)
            return True
        select_bad_process(oc, self.scan(oc))
        if oc.chosen is None:
            self.dump_header(oc, meminfo)
            self.warn("Out of memory and no killable processes...")
            if not oc.is_memcg_oom and not oc.sysrq:
                raise OomPanic("System is deadlocked on memory")
            return False
        if oc.chosen is not ABORT:
            self.oom_kill_process(oc, "Memory cgroup out of memory" if oc.is_memcg_oom else "Out of memory",
                                  meminfo)
        return True

    def check_panic_on_oom(self, oc: OomControl) -> None:
        """check_panic_on_oom(): 1 panics on an unconstrained OOM, 2 on any (SysRq never)."""
        if not self.sysctl.panic_on_oom or oc.sysrq:
            return
        if self.sysctl.panic_on_oom != 2 and oc.constraint != CONSTRAINT_NONE:
            return
        self.dump_header(oc, lambda: [])
        mode = "compulsory" if self.sysctl.panic_on_oom == 2 else "system-wide"
        self.err(f"Kernel panic - not syncing: Out of memory: {mode} panic_on_oom is enabled")
        raise OomPanic(f"Out of memory: {mode} panic_on_oom is enabled")

    def oom_score(self, task: OomTask) -> int:
        """/proc/PID/oom_score: always the global domain (totalram + swap)."""
        total = self.mem.totalram_pages + self.total_swap_pages
        return proc_oom_score(task_badness(task, total), total)

    def task_is_dying(self) -> bool:
        """task_is_dying() of the current task: a fatal signal pending, or exiting."""
        cur = self.current()
        return cur is not None and (cur.sigkill or bool(cur.flags & PF_EXITING))

    def retry_wait(self) -> None:
        """The time one retry of a failed allocation takes after an OOM kill: a jiffy, in which killed
        tasks run their exit and the reaper's timer may fire."""
        self.mem.clock.advance(JIFFY_NS)

