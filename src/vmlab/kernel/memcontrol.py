"""Memory cgroups, after mm/memcontrol.c and mm/memcontrol-v1.c: a tree of `MemCgroup`s with hierarchical
page counters (memory, memory+swap, kmem), charge and uncharge of pages, memcg reclaim before the memcg
OOM, v1 `memory.oom_control` and v2 `memory.oom.group`, and the counts `memory.stat` and the OOM report
print.

What is charged (page->memcg_data, here `MemCgroupTree.page_memcg`: pfn -> (memcg, pages, kind)):
- anon pages to the memcg of the mm they are faulted for (`mm.memcg`, the kernel's mm->owner's memcg);
- page-cache and shmem pages to the memcg of the task that brings them in (filemap_add_folio ->
  mem_cgroup_charge with no mm: the current task's memcg), swap-in pages likewise;
and every charge goes when its frame is freed (the allocator's uncharge hook). Pages a task brings in
while in the root memcg (`memcg` None) are not accounted, as the kernel does not count the root.

try_charge_memcg() is the kernel's loop: the per-CPU charge stock (one CPU: NR_MEMCG_STOCK slots,
each up to MEMCG_CHARGE_BATCH pages charged ahead for one memcg, so a sibling's charges leave a
memcg's stock alone: tests/test_refault_host.py), a batch try then the exact one, memcg reclaim
(`reclaim_hook`: vmscan.try_to_free_mem_cgroup_pages) of the memcg over its limit, a stock drain,
MAX_RECLAIM_RETRIES retries while reclaim frees something, then the memcg OOM killer and, after a kill,
the same again. memory.failcnt counts every failed page_counter_try_charge (the batch try included).
Readahead charges with __GFP_NORETRY: no retries, no OOM, the readahead just stops.

Memcg LRU lists: the kernel keeps one lruvec per memcg per node. The model keeps the node's lists and
beside them one mirror LruVec per memcg (`MemCgroup.lruvec`, maintained by swap.LruVec): the memcg's
charged folios in node-list order. Memcg reclaim scans the mirrors of the memcg and its descendants and
isolates through the node lists, so a folio is never on two node lists and the invariants of the node
LRU stay as they were; no node list has to be searched for a memcg's folios.

Swap (v1, memsw accounting on, as on this host): memory.memsw counts memory plus swap. When reclaim
takes a charged anon folio out of the swap cache (__remove_mapping -> memcg1_swapout), its memory charge
goes but its memsw charge stays with the swap entry, which records the memcg (swap_cgroup_record) and
counts in its `swap` (MEMCG_SWAP, memory.stat's swap); the entry gives the memsw charge back when its
slot is freed (mem_cgroup_uncharge_swap) or when swap-in charges the new folio to that memcg
(memcg1_swapin). So a memsw limit bounds memory + swap, and reclaim for it does not swap.

Page tables (kmem, __GFP_ACCOUNT): the kernel allocates a user mm's tables with GFP_PGTABLE_USER, so
each PGD, PUD, PMD and PTE table page is charged (__memcg_kmem_charge_page -> obj_cgroup_charge_pages)
to the memcg of the task allocating it (`current()`: the faulting, mapping or forking task; the root
is not charged) through try_charge_memcg() like any page (stock, reclaim, OOM; a refusal fails the
table allocation: VM_FAULT_OOM for a fault, -ENOMEM for a syscall), and v1 also charges the memcg's
kmem counter (memcg1_account_kmem: page_counter_charge, never a try, so memory.kmem.failcnt stays 0).
The charge is recorded per table frame (`MemCgroupTree.kmem_memcg`: pfn -> memcg, the kernel's
page->memcg_data objcg), so freeing the table (free_pgd_range at munmap or exit) uncharges that memcg
even after the task moved elsewhere: the page goes straight back to the memcg's counters (kmem,
memory, memsw). The kernel frees tables after an RCU grace period and gives the pages to the charge
stock of the CPU that runs the callback (refill_stock: measured here, 1 to 30 of 130 freed tables'
pages stayed charged there after a munmap); the model frees them at once, to the counters. A
memcg's `kmem_charged` counts its table pages.

Slab objects (kmem, __GFP_ACCOUNT): the model has the page cache's XArray nodes (xarray.XaNodes:
i_pages is XA_FLAGS_ACCOUNT), struct file (mm_types.FILP_SIZE; a shmem pseudo file's inode and dentry
too: fs.PSEUDO_FILE_CHARGED), freed with the file's last reference, VMAs (mm_types.VMA_SIZE, while
linked) and their anon_vma chains (mm_types.link_anon_vmas: an anon_vma_chain per anon_vma of a
VMA's chain, an anon_vma from its first link to its last reference), charged to the running task's
memcg as the kernel's obj_cgroup_charge() does: bytes
from the CPU's object stock (obj_stock_pcp) when it holds enough of that memcg's, else whole pages
through try_charge_memcg() (and v1's kmem counter), what is left of the page kept in the stock; a
freed object's bytes go back to the stock, which uncharges whole pages once it holds more than one,
and a stock switched to another memcg keeps the odd bytes in the memcg (objcg->nr_charged_bytes).
`kmem_obj_pages` counts a memcg's slab pages. VMA, anon_vma and pseudo-file objects are charged
without reclaim, past the limit when there is no room (the kernel reclaims first; in the model the
next charge that needs room does), so that making one never fails. A forked process's task objects
and kernel stack, and each mm's mm_struct and rss_stat, are charged as vmlab.kernel.fork describes
(through reclaim and OOM, a refused charge failing the fork or exec), and so are an exec's struct
files and new cred (vmlab.kernel.binfmts.exec_file), and a descriptor table beyond 64 descriptors
(vmlab.kernel.file). The kernel's other slab objects (threads', namespaces', sockets', ...) the model
does not have, nor anon_vma_clone's reuse of an idle anon_vma in a fork (the model's fork child
always gets a new one).

Statistics (rstat): the kernel keeps a memcg's counts per CPU and folds them into the totals that
lruvec_page_state() reads only when they are flushed: by flush_memcg_stats_dwork every FLUSH_TIME
(2 s) for the whole tree, and by a reader that needs them exact (memory.stat). The refault test
(workingset_test_recent) reads those totals and only flushes when the worker is a whole period late
(mem_cgroup_flush_stats_ratelimited), so it weighs a refault against the active list as it was at the
last flush: on this host a refault in a memcg whose active list was filled less than 2 s before is
not activated (tests/test_refault_host.py). Reclaim's inactive_is_low() and its test for new
refault activations (prepare_scan_control) read the same totals, of the target memcg's lruvec:
reclaim for a memcg deactivates because of refaults in that memcg's subtree only, not a sibling's
(and compares them with its own snapshot_refaults), and weighs anon against file by the costs noted
in its lruvec (lru_note_cost charges the lruvec of the memcg and of every ancestor). The model keeps
the flushed copy (`LruVec.lruvec_stats` and `activate_stats`) and flushes it every FLUSH_TIME of
simulated time from boot (flush_memcg_stats_dwork); the kernel's worker runs at a phase of its own,
which the host tests trace and replay instead (tests/test_lru_host.py). memory.stat's own flush is
not modelled (the model prints exact counts there).

Deliberate differences: of slab objects only those named above are charged; v2's swap counter
is not modelled; a full stock drains its first slot for a new memcg (the kernel a random one); memcg
reclaim always starts its walk at the memcg over the limit (no mem_cgroup_iter cookie); a v1 task
waiting in the `oom_kill_disable` queue is reported to the fault path (it cannot sleep in a one-thread
model), and a woken one does not retry its fault by itself (see below).

v1 `oom_kill_disable` (memory.oom_control), as 6.18 has it (memcg1_oom_prepare, mem_cgroup_oom_synchronize):
a charge that would need the OOM killer of such a memcg fails (-ENOMEM) whatever the context. Only
when it happens in a user page fault (the running task's `in_user_fault`, set by handle_mm_fault() for
a FAULT_FLAG_USER fault) does the task remember the memcg (`memcg_in_oom`); when the fault then fails
(VM_FAULT_OOM reaching pagefault_out_of_memory), it sleeps in the memcg OOM wait queue and only then
are the memcg and its descendants marked `under_oom`. A charge in a GUP fault (mlock, MAP_POPULATE), a
kernel copy_to_user()/copy_from_user() fault or a read()/write() page-cache charge just fails: under_oom
stays 0 and nobody waits. A sleeper is woken by an uncharge in, a larger limit of, or oom_kill_disable 0
on a related memcg (memcg1_oom_recover), or by a fatal signal; the model also takes the task running
again (the next step of the scenario) as its wake-up. The kernel's woken task retries its fault at
once; the model's retries when the scenario makes it access the page again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from vmlab.kernel.clock import NSEC_PER_SEC
from vmlab.kernel.page_flags import F_LRU, PG, PG_swapcache
from vmlab.kernel.swap import LRU_NAMES, LruVec, folio_lru_list_of
from vmlab.kernel.uapi import EBUSY, EINVAL, ENOMEM, PAGE_SIZE

if TYPE_CHECKING:
    from vmlab.kernel.page_alloc import PhysMem

#: PAGE_COUNTER_MAX on 64-bit: LONG_MAX / PAGE_SIZE pages ("unlimited").
PAGE_COUNTER_MAX: Final = ((1 << 63) - 1) // PAGE_SIZE
MAX_RECLAIM_RETRIES: Final = 16
PAGE_ALLOC_COSTLY_ORDER: Final = 3
#: MEMCG_CHARGE_BATCH: pages a charge takes from the counters at once, the rest kept in the CPU's stock.
MEMCG_CHARGE_BATCH: Final = 64
#: NR_MEMCG_STOCK: the memcgs a CPU's charge stock holds pages for at once (6.16+).
NR_MEMCG_STOCK: Final = 7
#: What obj_full_size() adds to an accounted slab object: the obj_cgroup pointer kept for it.
OBJCG_PTR: Final = 8
#: FLUSH_TIME: the period of the memcg statistics' flush worker (2 * HZ).
FLUSH_TIME_NS: Final = 2 * NSEC_PER_SEC
#: What a charged folio is (memory.stat: anon counts in rss, file and shmem in cache).
ANON, FILE, SHMEM = "anon", "file", "shmem"


@dataclass
class PageCounter:
    """struct page_counter: usage against a max, with the parent charged alongside (hierarchy).
    `track_failcnt`: failures are counted (6.18 counts them only in v1's memory counter: memsw and
    kmem keep failcnt 0, as this host's memory.memsw.failcnt does after a memsw OOM)."""

    max: int = PAGE_COUNTER_MAX
    usage: int = 0
    watermark: int = 0
    failcnt: int = 0
    parent: PageCounter | None = None
    track_failcnt: bool = True

    def try_charge(self, nr: int) -> PageCounter | None:
        """page_counter_try_charge(): charge this counter and its ancestors; on failure undo, count a
        failure on the counter over its limit and return it (None on success)."""
        done: list[PageCounter] = []
        c: PageCounter | None = self
        while c is not None:
            if c.usage + nr > c.max:
                c.failcnt += c.track_failcnt
                for d in done:
                    d.usage -= nr
                return c
            c.usage += nr
            c.watermark = max(c.watermark, c.usage)
            done.append(c)
            c = c.parent
        return None

    def charge(self, nr: int) -> None:
        """page_counter_charge(): charge regardless of the limit."""
        c: PageCounter | None = self
        while c is not None:
            c.usage += nr
            c.watermark = max(c.watermark, c.usage)
            c = c.parent

    def uncharge(self, nr: int) -> None:
        """page_counter_uncharge()."""
        c: PageCounter | None = self
        while c is not None:
            c.usage -= nr
            if c.usage < 0:
                raise AssertionError(f"page counter underflow by {-c.usage}")
            c = c.parent


@dataclass(eq=False)
class MemcgTaskState:
    """The memcg OOM fields of one task_struct: `in_user_fault` (handle_mm_fault() of a FAULT_FLAG_USER
    fault is running: mem_cgroup_enter_user_fault) and `memcg_in_oom` (the oom_kill_disable memcg whose
    refused charge in that fault the task is to wait for, or waits for: memcg1_oom_prepare)."""

    in_user_fault: bool = False
    memcg_in_oom: MemCgroup | None = field(default=None, repr=False)


@dataclass(eq=False)
class MemCgroup:
    """struct mem_cgroup: one cgroup of the memory controller."""

    name: str
    parent: MemCgroup | None
    tree: MemCgroupTree
    memory: PageCounter = field(default_factory=PageCounter)
    memsw: PageCounter = field(default_factory=lambda: PageCounter(track_failcnt=False))
    kmem: PageCounter = field(default_factory=lambda: PageCounter(track_failcnt=False))
    children: list[MemCgroup] = field(default_factory=list)
    #: The thread-group ids in this cgroup, in the order they joined (css_task_iter order).
    procs: list[int] = field(default_factory=list)
    swappiness: int = 60
    oom_kill_disable: bool = False  # v1 memory.oom_control
    under_oom: int = 0
    oom_group: bool = False  # v2 memory.oom.group
    #: memory.events (v2) / the oom_kill count of memory.oom_control (v1): oom, oom_kill, ...
    events: Counter[str] = field(default_factory=Counter)
    #: memory.stat's events: pgpgin / pgpgout (folios charged / uncharged), pgfault / pgmajfault (the
    #: faults of its tasks' mms, count_memcg_event_mm), workingset_refault_anon / _file (pages).
    stat: Counter[str] = field(default_factory=Counter)
    #: The memcg's own LRU lists: a mirror of its charged folios on the node lists (see the module text).
    lruvec: LruVec = field(default_factory=LruVec)
    #: Pages of frames charged here (page_memcg), and pages charged for no modelled frame (force_charge).
    charged: int = 0
    forced: int = 0
    #: MEMCG_SWAP: swap entries whose memsw charge is this memcg's (v1 swap-out; memory.stat's swap).
    swap: int = 0
    #: MEMCG_KMEM: page-table frames charged here (__memcg_kmem_charge_page).
    kmem_charged: int = 0
    #: MEMCG_KMEM: pages charged here for slab objects (obj_cgroup_charge_pages: the page cache's
    #: xa_nodes, struct file, VMAs), and objcg->nr_charged_bytes: bytes of them left over when a
    #: CPU's object stock switched to another memcg.
    kmem_obj_pages: int = 0
    nr_charged_bytes: int = 0
    #: MEMCG_KMEM: pages of kernel stacks charged here (memcg_charge_kernel_stack: a forked task's).
    kernel_stack: int = 0
    #: NR_SLAB_RECLAIMABLE_B + NR_SLAB_UNRECLAIMABLE_B of the memcg's own lruvec as last flushed: the
    #: bytes of its live slab objects (count_shadow_nodes reads it).
    slab_stat: int = 0
    #: mem_cgroup_id(): what a shadow entry names the memcg by (0: the root).
    id: int = 0

    @property
    def path(self) -> str:
        """The cgroup path from the hierarchy root, as the kernel prints it (`/` for the root)."""
        if self.parent is None:
            return "/"
        base = self.parent.path
        return f"{base.rstrip('/')}/{self.name}"

    def iter_tree(self) -> Iterator[MemCgroup]:
        """for_each_mem_cgroup_tree(): this memcg and its descendants, pre-order, children by creation."""
        yield self
        for child in self.children:
            yield from child.iter_tree()

    def is_descendant_of(self, other: MemCgroup) -> bool:
        """mem_cgroup_is_descendant()."""
        c: MemCgroup | None = self
        while c is not None:
            if c is other:
                return True
            c = c.parent
        return False

    def get_max(self, total_swap_pages: int) -> int:
        """mem_cgroup_get_max() ?: 1: the limit, plus swap headroom when swappiness is not 0."""
        swap = 0
        if self.swappiness and total_swap_pages:
            headroom = (self.memsw.max - self.memory.max) if self.tree.version == 1 else PAGE_COUNTER_MAX
            swap = min(max(headroom, 0), total_swap_pages)
        return (self.memory.max + swap) or 1

    def margin(self) -> int:
        """mem_cgroup_margin(): pages chargeable before this memcg or an ancestor hits its limit."""
        room = PAGE_COUNTER_MAX
        c: PageCounter | None = self.memory
        while c is not None:
            room = min(room, max(c.max - c.usage, 0))
            c = c.parent
        if self.tree.version == 1:
            c = self.memsw
            while c is not None:
                room = min(room, max(c.max - c.usage, 0))
                c = c.parent
        return room

    def mark_under_oom(self) -> None:
        """mem_cgroup_mark_under_oom(): this memcg and its descendants have one more OOM sleeper."""
        for c in self.iter_tree():
            c.under_oom += 1

    def unmark_under_oom(self) -> None:
        """mem_cgroup_unmark_under_oom(): one fewer, never below 0 (a child made after the mark)."""
        for c in self.iter_tree():
            c.under_oom = max(c.under_oom - 1, 0)

    def memory_event(self, event: str) -> None:
        """memcg_memory_event(): count `event` here (v1 stops here; v2 also counts it in ancestors)."""
        self.events[event] += 1
        if self.tree.version == 2:
            parent = self.parent
            while parent is not None:
                parent.events[event] += 1
                parent = parent.parent

    def get_oom_group(self, oom_domain: MemCgroup | None) -> MemCgroup | None:
        """mem_cgroup_get_oom_group(): the highest memcg with memory.oom.group set between this one and
        the OOM domain (the root for a global OOM); v1 never has one."""
        if self.tree.version == 1:
            return None
        found = None
        c: MemCgroup | None = self
        while c is not None:
            if c.oom_group:
                found = c
            if c is oom_domain:
                break
            c = c.parent
        return found

    def set_limit(self, pages: int, memsw: bool = False) -> int:
        """Write memory.limit_in_bytes / memory.max, or v1's memory.memsw.limit_in_bytes when `memsw`:
        0; -EINVAL (v1) when memory.max <= memsw.max would no longer hold; -EBUSY (v1) when usage stays
        above it. v1 (mem_cgroup_resize_max): drain the stock, then reclaim (without swapping, for
        memsw: swap-out does not lower memory+swap) while reclaim frees something; v2 sets the limit and
        leaves the excess to the next charge's reclaim. A larger limit wakes the memcg's OOM sleepers
        (memcg1_oom_recover)."""
        tree = self.tree
        counter = self.memsw if memsw else self.memory
        enlarge = pages > counter.max
        if tree.version == 1 and (pages < self.memory.max if memsw else pages > self.memsw.max):
            return -EINVAL
        drained = False
        while tree.version == 1 and counter.usage > pages:
            if not drained:
                tree.drain_all_stock(self)
                drained = True
                continue
            if tree.reclaim_hook is None or not tree.reclaim_hook(self, 1, not memsw):
                return -EBUSY
        counter.max = pages
        if enlarge:
            tree.memcg1_oom_recover(self)
        return 0

    # -- the views --

    def oom_control(self) -> str:
        """memory.oom_control (v1)."""
        return (f"oom_kill_disable {int(self.oom_kill_disable)}\nunder_oom {int(bool(self.under_oom))}\n"
                f"oom_kill {self.events['oom_kill']}\n")

    def hierarchical_limit(self, attr: str) -> int:
        """hierarchical_memory_limit / hierarchical_memsw_limit of memory.stat, in pages."""
        limit = PAGE_COUNTER_MAX
        c: MemCgroup | None = self
        while c is not None:
            limit = min(limit, getattr(c, attr).max)
            c = c.parent
        return limit

    def page_state(self) -> Counter[str]:
        """The memcg's own page counts (pages) as memcg_page_state_local() keeps them, from its charged
        frames: cache (file and shmem pages; not the swap cache, whose NR_FILE_PAGES 6.18 counts on
        the node only: swap_cache_add_folio's node_stat_mod_folio), rss (mapped anon), rss_huge,
        shmem, mapped_file, dirty, writeback, swapcached; the LRU sizes from its lists."""
        out: Counter[str] = Counter()
        mem = self.tree.mem
        huge: set[int] | None = None  # the PMD-mapped THPs (rss_huge is the memcg's NR_ANON_THPS)
        for pfn, (memcg, nr, kind) in self.tree.page_memcg.items():
            if memcg is not self:
                continue
            if mem is None:
                out["rss" if kind == ANON else "cache"] += nr
                continue
            mmap_ = mem.mem_map
            flags = int(mmap_.flags[pfn])
            mapped = int(mmap_._mapcount[pfn]) >= 0
            if kind == ANON:
                if mapped:
                    out["rss"] += nr
                    if nr > 1:
                        if huge is None:
                            huge = self.tree.pmd_mapped()
                        out["rss_huge"] += nr if pfn in huge else 0
                if flags >> PG_swapcache & 1:
                    out["swapcached"] += nr
                continue
            out["cache"] += nr
            out["mapped_file"] += nr if mapped else 0
            if kind == SHMEM:
                out["shmem"] += nr
                continue
            out["dirty"] += nr if flags >> PG.dirty & 1 else 0
            out["writeback"] += nr if flags >> PG.writeback & 1 else 0
        for lru, name in enumerate(LRU_NAMES):
            out[name] = self.lruvec.nr_pages[lru]
        out["swap"] = self.swap
        return out

    def memory_stat_v1(self) -> list[str]:
        """memory.stat (v1), in bytes and events, as memcg1_stat_format() prints it: the memcg's own
        counts, the hierarchical limits, then the total_* counts of its subtree."""
        stats = ("cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
                 "workingset_refault_anon", "workingset_refault_file", "swap", "swapcached")
        events = ("pgpgin", "pgpgout", "pgfault", "pgmajfault")
        in_pages = {"workingset_refault_anon", "workingset_refault_file"}  # counts, not bytes
        out: list[str] = []
        for total in (False, True):
            pre = "total_" if total else ""
            group = list(self.iter_tree()) if total else [self]
            state: Counter[str] = Counter()
            ev: Counter[str] = Counter()
            for c in group:
                state.update(c.page_state())
                ev.update(c.stat)
            state["workingset_refault_anon"] = ev["workingset_refault_anon"]
            state["workingset_refault_file"] = ev["workingset_refault_file"]
            out += [f"{pre}{k} {state[k] if k in in_pages else state[k] * PAGE_SIZE}" for k in stats]
            out += [f"{pre}{k} {ev[k]}" for k in events]
            out += [f"{pre}{k} {state[k] * PAGE_SIZE}" for k in LRU_NAMES]
            if not total:
                out.append(f"hierarchical_memory_limit {self.hierarchical_limit('memory') * PAGE_SIZE}")
                out.append(f"hierarchical_memsw_limit {self.hierarchical_limit('memsw') * PAGE_SIZE}")
        return out

    def v1_files(self) -> list[str]:
        """The v1 control files an engineer reads first, as `grep . FILE...` prints them in the
        cgroup's directory (FILE:LINE): memory.usage_in_bytes, max_usage_in_bytes (the counter's
        watermark), limit_in_bytes and failcnt, the same of memory.memsw and memory.kmem (its limit
        file is gone in 6.18), memory.oom_control and memory.stat. A non-root memcg's usage is its
        page counter's (mem_cgroup_usage)."""
        out: list[str] = []
        for prefix, c in (("memory", self.memory), ("memory.memsw", self.memsw), ("memory.kmem", self.kmem)):
            out += [f"{prefix}.usage_in_bytes:{c.usage * PAGE_SIZE}",
                    f"{prefix}.max_usage_in_bytes:{c.watermark * PAGE_SIZE}"]
            if prefix != "memory.kmem":
                out.append(f"{prefix}.limit_in_bytes:{c.max * PAGE_SIZE}")
            out.append(f"{prefix}.failcnt:{c.failcnt}")
        out += [f"memory.oom_control:{line}" for line in self.oom_control().splitlines()]
        return out + [f"memory.stat:{line}" for line in self.memory_stat_v1()]

    def print_oom_meminfo(self) -> list[str]:
        """mem_cgroup_print_oom_meminfo(): usage, limit and failcnt of the counters, then memory.stat."""
        def line(name: str, c: PageCounter) -> str:
            return f"{name}: usage {c.usage * 4}kB, limit {c.max * 4}kB, failcnt {c.failcnt}"

        if self.tree.version == 1:
            head = [line("memory", self.memory), line("memory+swap", self.memsw), line("kmem", self.kmem)]
            stat = self.memory_stat_v1()
        else:
            state = self.page_state()
            head = [line("memory", self.memory), line("swap", PageCounter(max=self.memsw.max))]
            stat = [f"anon {state['rss'] * PAGE_SIZE}", f"file {state['cache'] * PAGE_SIZE}",
                    f"pgfault {self.stat['pgfault']}"]
        return [*head, f"Memory cgroup stats for {self.path}:", *stat]


#: try_to_free_mem_cgroup_pages(memcg, nr_pages, may_swap) -> pages reclaimed.
ReclaimHook = Callable[[MemCgroup, int, bool], int]


@dataclass(eq=False)
class MemCgroupTree:
    """One memory-controller hierarchy (v1 or v2): the root, the charge of every page, the CPU's charge
    stock, and the hooks the machine gives it: `out_of_memory(memcg, order) -> bool`
    (mem_cgroup_out_of_memory), `task_is_dying()`, `retry_wait()` (time passing between retries),
    `reclaim_hook` (memcg reclaim), `current()` (the running task's memcg, for page-cache and page-table
    charges), `task_state()` (the running task's MemcgTaskState, None when no task runs) and
    `mem` (the machine's memory, for the page states memory.stat shows). `oom_waitq` is
    memcg_oom_waitq: the tasks sleeping in a v1 memcg OOM (oom_kill_disable)."""

    version: int = 1
    root: MemCgroup = field(init=False)
    page_memcg: dict[int, tuple[MemCgroup, int, str]] = field(default_factory=dict)
    #: The later frames of the large page-cache folios, which the model keeps as separate frames: their
    #: folio's one pgpgin was counted with its first frame's charge, and its one pgpgout is counted
    #: with its first frame's uncharge, none with theirs (until a split makes one a folio of its own:
    #: folio_heads_split).
    folio_tails: set[int] = field(default_factory=set)
    #: swap_cgroup: the memcg each swap entry's memsw charge belongs to (v1 swap-out), by entry.
    swap_cgroup: dict[int, MemCgroup] = field(default_factory=dict)
    #: The memcg each charged page-table frame belongs to (page->memcg_data with MEMCG_DATA_KMEM), by pfn.
    kmem_memcg: dict[int, MemCgroup] = field(default_factory=dict)
    out_of_memory: Callable[[MemCgroup, int], bool] | None = None
    task_is_dying: Callable[[], bool] = lambda: False
    retry_wait: Callable[[], None] = lambda: None
    reclaim_hook: ReclaimHook | None = None
    current: Callable[[], MemCgroup | None] = lambda: None
    task_state: Callable[[], MemcgTaskState | None] = lambda: None
    #: The frames mapped by a PMD leaf somewhere (pgtable.pmd_leaf_pfns of every mm): rss_huge's THPs.
    pmd_mapped: Callable[[], set[int]] = set
    oom_waitq: list[MemcgTaskState] = field(default_factory=list)
    mem: PhysMem | None = None
    max_oom_retries: int = 1016
    #: memcg_stock_pcp of the one CPU: NR_MEMCG_STOCK slots, each the memcg it holds pages for
    #: (cached[i]) and the pages charged to it ahead of use (nr_pages[i]).
    stock_cached: list[MemCgroup | None] = field(default_factory=lambda: [None] * NR_MEMCG_STOCK)
    stock_nr: list[int] = field(default_factory=lambda: [0] * NR_MEMCG_STOCK)
    #: obj_stock_pcp of the one CPU: bytes of pages charged to `obj_stock_memcg` for slab objects, not
    #: yet used by one.
    obj_stock_memcg: MemCgroup | None = None
    obj_stock_bytes: int = 0
    #: The memcgs by id (the root first): mem_cgroup_from_id().
    _by_id: list[MemCgroup] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """The root memcg: unlimited."""
        self.root = MemCgroup("", None, self)
        self._by_id = [self.root]

    def by_id(self, memcg_id: int) -> MemCgroup | None:
        """mem_cgroup_from_id(): the memcg with that id, or None."""
        return self._by_id[memcg_id] if 0 <= memcg_id < len(self._by_id) else None

    def lookup(self, path: str) -> MemCgroup | None:
        """The memcg at `path` (`/a/b`), or None."""
        c = self.root
        for part in (p for p in path.split("/") if p):
            c = next((ch for ch in c.children if ch.name == part), None)  # type: ignore[assignment]
            if c is None:
                return None
        return c

    def mkdir(self, path: str) -> MemCgroup:
        """Create the memcg at `path` and any missing parents; an existing one is returned as is."""
        c = self.root
        for part in (p for p in path.split("/") if p):
            child = next((ch for ch in c.children if ch.name == part), None)
            if child is None:
                child = MemCgroup(part, c, self, PageCounter(parent=c.memory),
                                  PageCounter(parent=c.memsw, track_failcnt=False),
                                  PageCounter(parent=c.kmem, track_failcnt=False), swappiness=c.swappiness,
                                  id=len(self._by_id))
                self._by_id.append(child)
                c.children.append(child)
            c = child
        return c

    def attach(self, memcg: MemCgroup, tgid: int) -> None:
        """Write the tgid to cgroup.procs: it leaves its old memcg (charges stay where they are)."""
        for c in self.root.iter_tree():
            if tgid in c.procs:
                c.procs.remove(tgid)
        memcg.procs.append(tgid)

    def detach(self, tgid: int) -> None:
        """The process exited: it leaves the tree."""
        for c in self.root.iter_tree():
            if tgid in c.procs:
                c.procs.remove(tgid)

    # -- the charge stock --

    def consume_stock(self, memcg: MemCgroup, nr: int) -> bool:
        """consume_stock(): take `nr` pages charged ahead for `memcg` from its slot, if it holds that
        many."""
        if nr > MEMCG_CHARGE_BATCH or memcg not in self.stock_cached:
            return False
        i = self.stock_cached.index(memcg)
        if self.stock_nr[i] < nr:
            return False
        self.stock_nr[i] -= nr
        return True

    def refill_stock(self, memcg: MemCgroup, nr: int) -> None:
        """refill_stock(): keep `nr` charged pages for the next charges of `memcg`: in its slot (drained
        once it holds more than a batch), else in the first empty slot, else in a slot drained for it
        (the kernel drains a random one; the model the first). More than a batch is uncharged at once."""
        if nr > MEMCG_CHARGE_BATCH:
            self._uncharge_counters(memcg, nr)
            return
        cached = self.stock_cached
        if memcg in cached:
            i = cached.index(memcg)
            self.stock_nr[i] += nr
            if self.stock_nr[i] > MEMCG_CHARGE_BATCH:
                self.drain_stock(i)
            return
        i = cached.index(None) if None in cached else 0
        self.drain_stock(i)
        cached[i], self.stock_nr[i] = memcg, nr

    def drain_stock(self, i: int) -> None:
        """drain_stock(): uncharge the pages of slot `i` and empty it."""
        memcg, nr = self.stock_cached[i], self.stock_nr[i]
        if memcg is not None and nr:
            self._uncharge_counters(memcg, nr)
        self.stock_cached[i], self.stock_nr[i] = None, 0

    def drain_local_stock(self) -> None:
        """drain_local_memcg_stock(): every slot of the CPU's charge stock."""
        for i in range(NR_MEMCG_STOCK):
            self.drain_stock(i)

    def stock_pages(self, memcg: MemCgroup | None = None) -> int:
        """Pages the stock holds charged ahead, for `memcg` and its descendants (None: for any)."""
        return sum(nr for c, nr in zip(self.stock_cached, self.stock_nr, strict=True)
                   if c is not None and (memcg is None or c.is_descendant_of(memcg)))

    def drain_all_stock(self, root: MemCgroup) -> None:
        """drain_all_stock(): drain the object stock where it holds bytes of `root` or a descendant, and
        the whole charge stock (every slot, as drain_local_memcg_stock does) where a slot holds pages of
        one (is_memcg_drain_needed)."""
        if self.obj_stock_memcg is not None and self.obj_stock_memcg.is_descendant_of(root):
            self.drain_obj_stock()
        if self.stock_pages(root):
            self.drain_local_stock()

    # -- charging --

    def try_charge_memcg(self, memcg: MemCgroup, nr: int, order: int, noretry: bool = False,
                         nowait: bool = False) -> int:
        """try_charge_memcg(): charge `nr` pages (a batch of MEMCG_CHARGE_BATCH first, the rest kept in
        the stock); at a limit reclaim from the memcg over it, drain the stock, retry while reclaim
        frees pages (MAX_RECLAIM_RETRIES more times when it does not), then the memcg OOM killer, and
        after a kill all of it again. 0 or -ENOMEM (also when v1 oom_kill_disable stopped the OOM
        killer: memcg1_oom_prepare decides whether the task is to wait). `noretry`
        (__GFP_NORETRY, readahead) fails after the first reclaim and drain, without an OOM. Once a try
        fails on memsw, no reclaim of this charge swaps (6.18 clears MEMCG_RECLAIM_MAY_SWAP in
        reclaim_options, set once before the retry label), even when a later try fails on memory. A
        task whose user fault already met a v1 memcg OOM (memcg_in_oom) fails at once, unreclaimed;
        so does a `nowait` charge (GFP_NOWAIT: no reclaim) after its two tries."""
        batch = max(MEMCG_CHARGE_BATCH, nr)
        nr_retries = MAX_RECLAIM_RETRIES
        passed_oom = drained = False
        may_swap = True
        oom_retries = 0
        while True:
            if self.consume_stock(memcg, nr):
                return 0
            over, swap_helps = self._try_counters(memcg, batch)
            may_swap = may_swap and swap_helps
            if over is None:
                if batch > nr:
                    self.refill_stock(memcg, batch - nr)
                return 0
            if batch > nr:  # never reclaim for the batch: retry with the pages asked for
                batch = nr
                continue
            state = self.task_state()
            if state is not None and state.memcg_in_oom is not None:
                return -ENOMEM  # task_in_memcg_oom(): this user fault already met a memcg OOM
            if nowait:
                return -ENOMEM  # !gfpflags_allow_blocking()
            over.memory_event("max")
            reclaimed = self.reclaim_hook(over, nr, may_swap) if self.reclaim_hook is not None else 0
            if over.margin() >= nr:
                continue
            if not drained:
                self.drain_all_stock(over)
                drained = True
                continue
            if noretry:
                return -ENOMEM
            if reclaimed and nr <= 1 << PAGE_ALLOC_COSTLY_ORDER:
                continue
            if nr_retries:
                nr_retries -= 1
                continue
            if passed_oom and self.task_is_dying():
                return -ENOMEM
            if not self.mem_cgroup_oom(over, order) or oom_retries >= self.max_oom_retries:
                return -ENOMEM
            passed_oom = True
            oom_retries += 1
            nr_retries = MAX_RECLAIM_RETRIES
            self.retry_wait()

    def mem_cgroup_oom(self, over: MemCgroup, order: int) -> bool:
        """mem_cgroup_oom(): no OOM for costly orders; count the oom event; no OOM killer when
        memcg1_oom_prepare() says so (v1 oom_kill_disable); else the OOM killer in the memcg (a dying
        task needs no victim: mem_cgroup_out_of_memory). True when a victim was killed (or the task
        is dying): the charge is retried."""
        if order > PAGE_ALLOC_COSTLY_ORDER or self.out_of_memory is None:
            return False
        over.memory_event("oom")
        if not self.memcg1_oom_prepare(over):
            return False
        return self.task_is_dying() or self.out_of_memory(over, order)

    def memcg1_oom_prepare(self, memcg: MemCgroup) -> bool:
        """memcg1_oom_prepare(): whether the OOM killer may run for `memcg`. Not with v1's
        oom_kill_disable: then a charge in a user fault (the running task's in_user_fault) records the
        memcg, for the task to wait at the end of the fault (memcg_in_oom); any other charge just
        fails. under_oom is not touched here (the kernel marks and unmarks it around its OOM lock and
        notification before a kill: nothing a one-thread model could see)."""
        if not (self.version == 1 and memcg.oom_kill_disable):
            return True
        state = self.task_state()
        if state is not None and state.in_user_fault:
            state.memcg_in_oom = memcg
        return False

    def mem_cgroup_oom_synchronize(self, state: MemcgTaskState | None, handle: bool) -> bool:
        """mem_cgroup_oom_synchronize(): False when the task met no memcg OOM to wait for in its user
        fault. Else, with `handle` (the fault failed: pagefault_out_of_memory), it goes to sleep in the
        memcg OOM wait queue, its memcg and the descendants marked under_oom, until finish_oom_wait();
        without (the fault went through after all), the record is just dropped. True then."""
        if state is None or state.memcg_in_oom is None:
            return False
        if not handle:
            state.memcg_in_oom = None
            return True
        if state not in self.oom_waitq:
            state.memcg_in_oom.mark_under_oom()
            self.oom_waitq.append(state)
        return True

    def finish_oom_wait(self, state: MemcgTaskState) -> None:
        """The end of mem_cgroup_oom_synchronize()'s sleep (a wake-up, a fatal signal, or the model's
        task running again): the task leaves the queue and unmarks under_oom. Nothing if not asleep."""
        if state not in self.oom_waitq:
            return
        self.oom_waitq.remove(state)
        assert state.memcg_in_oom is not None
        state.memcg_in_oom.unmark_under_oom()
        state.memcg_in_oom = None

    def memcg1_oom_recover(self, memcg: MemCgroup) -> None:
        """memcg1_oom_recover(): when `memcg` is under OOM, wake the sleepers whose memcg is it, an
        ancestor or a descendant (memcg_oom_wake_function)."""
        if not memcg.under_oom:
            return
        for state in [s for s in self.oom_waitq if s.memcg_in_oom is not None and (
                s.memcg_in_oom.is_descendant_of(memcg) or memcg.is_descendant_of(s.memcg_in_oom))]:
            self.finish_oom_wait(state)

    def _try_counters(self, memcg: MemCgroup, nr: int) -> tuple[MemCgroup | None, bool]:
        """Charge memsw (v1) then memory: (None, True) when charged, else (the memcg over its limit,
        whether its reclaim may swap: not when memory+swap is the limit hit)."""
        if self.version == 1:
            fail = memcg.memsw.try_charge(nr)
            if fail is not None:
                return self._owner(fail, "memsw"), False
        fail = memcg.memory.try_charge(nr)
        if fail is None:
            return None, True
        if self.version == 1:
            memcg.memsw.uncharge(nr)
        return self._owner(fail, "memory"), True

    def _owner(self, counter: PageCounter, attr: str) -> MemCgroup:
        """The memcg a page counter belongs to (mem_cgroup_from_counter)."""
        return next(c for c in self.root.iter_tree() if getattr(c, attr) is counter)

    def commit_charge(self, memcg: MemCgroup, pfn: int, nr: int, kind: str, event: bool = True) -> None:
        """commit_charge() + memcg1_commit_charge(): the frame now belongs to the memcg
        (page->memcg_data); a folio charged is one pgpgin event (`event` off for the later frames of
        a large folio the model keeps as small frames)."""
        if pfn in self.page_memcg:
            raise AssertionError(f"pfn {pfn:#x} charged twice")
        self.page_memcg[pfn] = (memcg, nr, kind)
        memcg.charged += nr
        memcg.stat["pgpgin"] += event
        if not event:
            self.folio_tails.add(pfn)

    def folio_heads_split(self, pfns: Iterable[int]) -> None:
        """The frames `pfns` head folios of their own now (a large page-cache folio split, or left as
        small pages): each counts its own pgpgout when uncharged."""
        self.folio_tails.difference_update(pfns)

    def set_kind(self, pfn: int, kind: str) -> None:
        """The charged frame `pfn` now counts as `kind` (a shmem page moving between the page cache and
        the swap cache, whose pages memory.stat counts as swapcached, not shmem)."""
        got = self.page_memcg.get(pfn)
        if got is not None:
            self.page_memcg[pfn] = (got[0], got[1], kind)

    def split_page_memcg(self, head: int, nr: int) -> None:
        """split_page_memcg(): the charged folio of `nr` pages at `head` is split into order-0 folios,
        each now charged one page to the same memcg (no counter changes)."""
        got = self.page_memcg.get(head)
        if got is not None:
            self.page_memcg.update((head + i, (got[0], 1, got[2])) for i in range(nr))

    def charge(self, memcg: MemCgroup | None, pfn: int, nr: int, order: int = 0, kind: str = ANON,
               noretry: bool = False) -> int:
        """mem_cgroup_charge(): charge a new folio of `nr` pages at `pfn`; 0 or a negative error."""
        if memcg is None:
            return 0
        err = self.try_charge_memcg(memcg, nr, order, noretry)
        if err == 0:
            self.commit_charge(memcg, pfn, nr, kind)
        return err

    def force_charge(self, memcg: MemCgroup, nr: int) -> None:
        """Charge `nr` pages that belong to no modelled frame (an imported memcg's other usage)."""
        self._force_counters(memcg, nr)
        memcg.forced += nr

    def uncharge(self, pfn: int, order: int) -> None:
        """mem_cgroup_uncharge() of a frame being freed: give its pages back to its memcg; one pgpgout
        per folio (a large page-cache folio's later frames count none)."""
        got = self.page_memcg.pop(pfn, None)
        if got is None:
            return
        memcg, nr, _ = got
        self._uncharge_counters(memcg, nr)
        memcg.charged -= nr
        if pfn in self.folio_tails:  # a later frame of a large folio: its first frame counts it
            self.folio_tails.discard(pfn)
        else:
            memcg.stat["pgpgout"] += 1
        self.memcg1_oom_recover(memcg)  # uncharge_batch()

    def move_account(self, pfn: int, to: MemCgroup) -> None:
        """mem_cgroup_move_account(): the charge of frame `pfn` (a charged folio, or a page-table page)
        moves from its memcg to `to`. The old memcg's counters (memory, v1's memsw, and kmem for a
        table) go down and `to`'s up, without a limit check (the pages exist already), and a folio on
        an LRU list moves to `to`'s mirror, keeping its place on the node's list. To the root, the
        charge is simply dropped: the model does not account the root's pages. The kernel moves
        charges only for v1's move_charge_at_immigrate; imports use this for charges a task made
        before it joined its memcg (oom_whatif.build)."""
        keep = to.parent is not None
        if pfn in self.kmem_memcg:
            old = self.kmem_memcg.pop(pfn)
            self._uncharge_kmem_pages(old, 1)
            old.kmem_charged -= 1
            if keep:
                self._force_counters(to, 1)
                if self.version == 1:
                    to.kmem.charge(1)
                to.kmem_charged += 1
                self.kmem_memcg[pfn] = to
            return
        memcg, nr, kind = self.page_memcg.pop(pfn)
        mem = self.mem
        if mem is not None and mem.mem_map.flags_a[pfn] & F_LRU:
            lru = folio_lru_list_of(mem.mem_map.flags_a[pfn])
            del memcg.lruvec.lists[lru][pfn]
            memcg.lruvec.nr_pages[lru] -= nr
            if keep:
                to.lruvec.lists[lru][pfn] = None
                to.lruvec.nr_pages[lru] += nr
        self._uncharge_counters(memcg, nr)
        memcg.charged -= nr
        if keep:
            self._force_counters(to, nr)
            to.charged += nr
            self.page_memcg[pfn] = (to, nr, kind)

    def _force_counters(self, memcg: MemCgroup, nr: int) -> None:
        """page_counter_charge() of the memcg's memory counter and, in v1, its memsw one."""
        memcg.memory.charge(nr)
        if self.version == 1:
            memcg.memsw.charge(nr)

    def _uncharge_counters(self, memcg: MemCgroup, nr: int) -> None:
        """memcg_uncharge(): page_counter_uncharge() of the memory counter and, in v1, the memsw one."""
        memcg.memory.uncharge(nr)
        if self.version == 1:
            memcg.memsw.uncharge(nr)

    def _charge_kmem_pages(self, memcg: MemCgroup, nr: int, noretry: bool = False,
                           nowait: bool = False, nofail: bool = False) -> int:
        """obj_cgroup_charge_pages(): try_charge_memcg() of `nr` pages (memsw and memory, with the
        stock, reclaim and OOM; past the limit when that fails and `nofail`: its force label), then
        memcg1_account_kmem() (v1: the kmem counter, charged without a limit). 0, or -ENOMEM and
        nothing charged."""
        err = self.try_charge_memcg(memcg, nr, 0, noretry, nowait)
        if err and nofail:
            self._force_counters(memcg, nr)
            err = 0
        if not err and self.version == 1:
            memcg.kmem.charge(nr)
        return err

    def _uncharge_kmem_pages(self, memcg: MemCgroup, nr: int) -> None:
        """obj_cgroup_uncharge_pages(): `nr` kmem pages go back to the memcg's counters (memory, v1's
        memsw and kmem) at once; the kernel gives them to the freeing CPU's charge stock."""
        self._uncharge_counters(memcg, nr)
        if self.version == 1:
            memcg.kmem.uncharge(nr)

    def charge_kmem(self, memcg: MemCgroup, pfn: int) -> int:
        """__memcg_kmem_charge_page() of the page-table frame `pfn` (order 0): one kmem page charged
        (_charge_kmem_pages) and the record of the charge. 0, -ENOMEM or nothing charged then."""
        err = self._charge_kmem_pages(memcg, 1)
        if err:
            return err
        memcg.kmem_charged += 1
        self.kmem_memcg[pfn] = memcg
        return 0

    def charge_kmem_bulk(self, memcg: MemCgroup, pfns: list[int]) -> bool:
        """Charge page-table frames the caller made room for (mem_cgroup_room), without the stock,
        reclaim or an OOM, as charge_kmem() would one by one; False (nothing charged) when the room
        is not there."""
        if pfns and self._try_counters(memcg, len(pfns))[0] is not None:
            return False
        if self.version == 1:
            memcg.kmem.charge(len(pfns))
        memcg.kmem_charged += len(pfns)
        self.kmem_memcg.update((pfn, memcg) for pfn in pfns)
        return True

    def uncharge_kmem(self, pfn: int) -> None:
        """__memcg_kmem_uncharge_page() of a page-table frame being freed: the memcg recorded for it
        (not the freeing task's) gives the page back to its counters (memory, v1's memsw and kmem)
        at once. The kernel uncharges after an RCU grace period into the stock of the CPU running the
        callback (refill_stock; see the module docstring). Frames charged to nothing are left alone."""
        memcg = self.kmem_memcg.pop(pfn, None)
        if memcg is None:
            return
        self._uncharge_kmem_pages(memcg, 1)
        memcg.kmem_charged -= 1

    # -- slab objects (obj_cgroup) --

    def obj_cgroup_charge(self, memcg: MemCgroup, size: int, noretry: bool = False,
                          nowait: bool = False, nofail: bool = False) -> int:
        """obj_cgroup_charge() of a slab object of `size` bytes: from the CPU's object stock when it
        holds that many bytes of `memcg`'s, else whole pages charged (_charge_kmem_pages: the stock's
        bytes are not used) and what the object leaves of the last one put in the stock (without
        uncharging, which may leave more than a page there). 0 or -ENOMEM; `nofail` (__GFP_NOFAIL)
        charges the pages past the limit when they do not fit (try_charge_memcg's force)."""
        if self.obj_stock_memcg is memcg and self.obj_stock_bytes >= size:
            self.obj_stock_bytes -= size
            return 0
        nr = -(-size // PAGE_SIZE)
        err = self._charge_kmem_pages(memcg, nr, noretry, nowait, nofail)
        if err:
            return err
        memcg.kmem_obj_pages += nr
        if size % PAGE_SIZE:
            self._refill_obj_stock(memcg, PAGE_SIZE - size % PAGE_SIZE, allow_uncharge=False)
        return 0

    def obj_cgroup_uncharge(self, memcg: MemCgroup, size: int) -> None:
        """obj_cgroup_uncharge() of a freed slab object of `size` bytes charged to `memcg`: the bytes
        go to the CPU's object stock, and whole pages beyond one page of it are uncharged. (The kernel
        frees an xa_node after an RCU grace period, on whichever CPU runs the callback.)"""
        self._refill_obj_stock(memcg, size, allow_uncharge=True)

    def _refill_obj_stock(self, memcg: MemCgroup, nr_bytes: int, allow_uncharge: bool) -> None:
        """refill_obj_stock(): add `nr_bytes` of `memcg` to the object stock, draining another
        memcg's first (then taking up `memcg`'s nr_charged_bytes, and uncharging is allowed); with
        more than a page there and uncharging allowed, the whole pages are uncharged."""
        if self.obj_stock_memcg is not memcg:
            self.drain_obj_stock()
            self.obj_stock_memcg = memcg
            self.obj_stock_bytes, memcg.nr_charged_bytes = memcg.nr_charged_bytes, 0
            allow_uncharge = True
        self.obj_stock_bytes += nr_bytes
        if allow_uncharge and self.obj_stock_bytes > PAGE_SIZE:
            nr = self.obj_stock_bytes // PAGE_SIZE
            self.obj_stock_bytes %= PAGE_SIZE
            self._uncharge_kmem_pages(memcg, nr)
            memcg.kmem_obj_pages -= nr

    def slab_bytes(self, memcg: MemCgroup) -> int:
        """The bytes of `memcg`'s live slab objects: its slab pages less what the object stock and its
        nr_charged_bytes hold of them."""
        stock = self.obj_stock_bytes if self.obj_stock_memcg is memcg else 0
        return memcg.kmem_obj_pages * PAGE_SIZE - stock - memcg.nr_charged_bytes

    def drain_obj_stock(self) -> None:
        """drain_obj_stock(): the stock's whole pages are uncharged and its other bytes kept in the
        memcg's nr_charged_bytes."""
        memcg, nr_bytes = self.obj_stock_memcg, self.obj_stock_bytes
        if memcg is not None and nr_bytes:
            nr = nr_bytes // PAGE_SIZE
            if nr:
                self._uncharge_kmem_pages(memcg, nr)
                memcg.kmem_obj_pages -= nr
            memcg.nr_charged_bytes += nr_bytes % PAGE_SIZE
        self.obj_stock_memcg, self.obj_stock_bytes = None, 0

    def swapout(self, pfn: int, entry: int) -> None:
        """memcg1_swapout(): the anon folio at `pfn` leaves the swap cache for good (reclaim), its data
        now only in `entry`'s slot: v1 uncharges its memory but leaves the memsw charge to the entry,
        recorded for it (swap_cgroup_record) and counted in the memcg's swap; the folio is no longer
        charged (its free uncharges nothing). v2 and uncharged folios: nothing to do."""
        if self.version != 1:
            return
        got = self.page_memcg.pop(pfn, None)
        if got is None:
            return
        memcg, nr, _ = got
        memcg.memory.uncharge(nr)
        memcg.charged -= nr
        memcg.stat["pgpgout"] += 1
        memcg.swap += nr
        self.swap_cgroup[entry] = memcg

    def uncharge_swap(self, entry: int) -> None:
        """mem_cgroup_uncharge_swap(): `entry` no longer holds a charge (its slot was freed, or swap-in
        charged its folio to the memcg): give its memsw page back and clear the record."""
        memcg = self.swap_cgroup.pop(entry, None)
        if memcg is not None:
            memcg.memsw.uncharge(1)
            memcg.swap -= 1

    def count_refault(self, pfn: int, anon: bool) -> None:
        """workingset_refault()'s memcg count: the folio's memcg saw a refault."""
        got = self.page_memcg.get(pfn)
        if got is not None:
            got[0].stat["workingset_refault_anon" if anon else "workingset_refault_file"] += got[1]


def mem_cgroup_charge(memcg: MemCgroup | None, pfn: int, nr: int = 1, order: int = 0) -> int:
    """mem_cgroup_charge() of a new anonymous folio for an mm whose memcg is `memcg` (None: not
    accounted); 0 or -ENOMEM."""
    if memcg is None:
        return 0
    return memcg.tree.charge(memcg, pfn, nr, order)


def mem_cgroup_room(memcg: MemCgroup | None, nr: int) -> int:
    """How many of `nr` pages can be charged to `memcg` without reaching a limit (all if None)."""
    return nr if memcg is None else min(nr, memcg.margin())


def mem_cgroup_charge_bulk(memcg: MemCgroup | None, pfns: list[int]) -> None:
    """Charge order-0 pages the caller made room for (mem_cgroup_room) one by one, without an OOM."""
    if memcg is None:
        return
    tree = memcg.tree
    if pfns and tree._try_counters(memcg, len(pfns))[0] is not None:
        raise AssertionError(f"bulk charge beyond the room of {memcg.path}")
    tree.page_memcg.update((pfn, (memcg, 1, ANON)) for pfn in pfns)
    memcg.charged += len(pfns)
    memcg.stat["pgpgin"] += len(pfns)


def memcg_kmem_charge_page(mem: PhysMem, pfn: int) -> int:
    """The __GFP_ACCOUNT step of a user page-table allocation (pagetable_alloc with GFP_PGTABLE_USER):
    charge the new table frame to the running task's memcg; 0 when charged or when nothing is
    accounted (no memcg below the root, or the task is in the root), else -ENOMEM: the caller frees
    the frame and fails the allocation."""
    tree, memcg = _kmem_target(mem)
    return 0 if tree is None or memcg is None else tree.charge_kmem(memcg, pfn)


def memcg_kmem_charge_bulk(mem: PhysMem, pfns: list[int]) -> bool:
    """memcg_kmem_charge_page() of several table frames the caller made room for; False when the
    room was not there (nothing charged)."""
    tree, memcg = _kmem_target(mem)
    return tree is None or memcg is None or tree.charge_kmem_bulk(memcg, pfns)


def memcg_kmem_charge_obj(mem: PhysMem, size: int, noretry: bool = False,
                          nowait: bool = False, nofail: bool = False) -> tuple[int, MemCgroup | None]:
    """The __GFP_ACCOUNT step of a slab allocation of `size` bytes (memcg_slab_post_alloc_hook):
    charged to the running task's memcg (obj_cgroup_charge's flags). (0 or -ENOMEM, the memcg
    charged: None when nothing is accounted.)"""
    tree, memcg = _kmem_target(mem)
    if tree is None or memcg is None:
        return 0, None
    err = tree.obj_cgroup_charge(memcg, size, noretry, nowait, nofail)
    return err, None if err else memcg


def memcg_kmem_charge_obj_nofail(mem: PhysMem | None, size: int) -> MemCgroup | None:
    """memcg_kmem_charge_obj() of an object whose allocation the model never fails (a VMA, an
    anon_vma and its chain, a pseudo file's objects): no reclaim, past the limit if there is no room
    (nowait, nofail). The memcg charged; None when nothing is accounted (or no machine: `mem` None)."""
    return None if mem is None else memcg_kmem_charge_obj(mem, size, nowait=True, nofail=True)[1]


def memcg_charge_kernel_stack(mem: PhysMem, nr: int) -> tuple[int, MemCgroup | None]:
    """memcg_charge_kernel_stack(): each of the `nr` pages of a new task's vmalloc'd kernel stack
    charged as memcg_kmem_charge_page() charges a page (GFP_KERNEL: stock, reclaim, OOM) to the
    running task's memcg, whose kernel_stack counts them. The model takes no frames for the stack (as
    for slab objects, only the charge is modelled). (0 or -ENOMEM, the memcg charged: None when
    nothing is accounted.)"""
    tree, memcg = _kmem_target(mem)
    if tree is None or memcg is None:
        return 0, None
    err = tree._charge_kmem_pages(memcg, nr)
    if err:
        return err, None
    memcg.kernel_stack += nr
    return 0, memcg


def memcg_uncharge_kernel_stack(memcg: MemCgroup, nr: int) -> None:
    """The freed stack's pages given back to the memcg they were charged to (memcg_kmem_uncharge_page
    of each, when the task's stack is released)."""
    memcg.tree._uncharge_kmem_pages(memcg, nr)
    memcg.kernel_stack -= nr


def memcg_kmem_uncharge_obj(memcg: MemCgroup, size: int) -> None:
    """memcg_slab_free_hook(): a freed slab object of `size` bytes gives its charge back to the memcg
    it was charged to."""
    memcg.tree.obj_cgroup_uncharge(memcg, size)


def _kmem_target(mem: PhysMem) -> tuple[MemCgroupTree | None, MemCgroup | None]:
    """(the memcg tree, the running task's memcg) a __GFP_ACCOUNT allocation charges; (None, None)
    when nothing is accounted: no memcg tree, or none below the root."""
    tree = mem.memcgs
    if tree is None or not tree.root.children:
        return None, None
    return tree, tree.current()


def mem_cgroup_charge_cache(mem: PhysMem, pfn: int, shmem: bool, noretry: bool = False) -> int:
    """mem_cgroup_charge() of a new page-cache (or shmem) page from filemap_add_folio: charged to the
    running task's memcg (none: not accounted); 0 or -ENOMEM. `noretry` for readahead."""
    if not mem_cgroup_charging(mem):
        return 0
    tree = mem.memcgs
    assert tree is not None
    return tree.charge(tree.current(), pfn, 1, 0, SHMEM if shmem else FILE, noretry)


def count_vm_events_mm(mem: PhysMem, memcg: MemCgroup | None, event: str, nr: int = 1) -> None:
    """count_vm_events() + count_memcg_events_mm(): `nr` of `event` (pgfault, pgmajfault) in
    /proc/vmstat and in memory.stat of `memcg`, the memcg of the mm the fault is for (mm->owner's;
    None: no memcg below the root)."""
    mem.events[event] += nr
    if memcg is not None:
        memcg.stat[event] += nr


def mem_cgroup_charging(mem: PhysMem) -> bool:
    """Whether mem_cgroup_charge_cache() charges anything: the machine has memcgs below the root."""
    tree = mem.memcgs
    return tree is not None and bool(tree.root.children)


def mem_cgroup_precharge(mem: PhysMem, nr: int, order: int, shmem: bool,
                         noretry: bool = False) -> tuple[int, MemCgroup | None]:
    """The charge of a large page-cache folio of `nr` pages, which the model allocates as `nr`
    frames: one try_charge_memcg() of all of them (the kernel's granularity: its failcnt, its
    reclaim target) to the running task's memcg; (0 or the error, the memcg charged or None). Each
    frame is then committed with mem_cgroup_commit_cache(), or what is left cancelled."""
    tree = mem.memcgs
    memcg = tree.current() if tree is not None else None
    if memcg is None:
        return 0, None
    err = memcg.tree.try_charge_memcg(memcg, nr, order, noretry)
    return err, (memcg if err == 0 else None)


def mem_cgroup_commit_cache(memcg: MemCgroup, pfn: int, shmem: bool, first: bool) -> None:
    """commit_charge() of one frame of a folio charged with mem_cgroup_precharge() (the `first` one
    counts the folio's pgpgin)."""
    memcg.tree.commit_charge(memcg, pfn, 1, SHMEM if shmem else FILE, first)


def mem_cgroup_cancel_charge(memcg: MemCgroup | None, nr: int) -> None:
    """mem_cgroup_cancel_charge(): give back `nr` pages charged for frames never committed."""
    if memcg is None:
        return
    memcg.tree._uncharge_counters(memcg, nr)


def mem_cgroup_uncharge_refused(memcg: MemCgroup | None, nr: int) -> None:
    """mem_cgroup_uncharge() of a folio of `nr` pages charged with mem_cgroup_precharge() that
    __filemap_add_folio() then refused (-EEXIST: a page of its range is cached; -ENOMEM: no xarray
    node): the kernel had committed the charge (one pgpgin) and gives it back (one pgpgout)."""
    if memcg is None:
        return
    memcg.stat["pgpgin"] += 1
    memcg.stat["pgpgout"] += 1
    mem_cgroup_cancel_charge(memcg, nr)
    memcg.tree.memcg1_oom_recover(memcg)


def mem_cgroup_swapin_charge(mem: PhysMem, pfn: int, entry: int) -> int:
    """mem_cgroup_swapin_charge_folio(): a page read in from swap for `entry` is charged to the memcg
    recorded for the entry (the one it was swapped out from), else to the running task's; 0 or a
    negative error. On success the entry's own memsw charge is given back (memcg1_swapin: the new
    folio carries it now)."""
    tree = mem.memcgs
    if tree is None:
        return 0
    memcg = tree.swap_cgroup.get(entry)
    err = tree.charge(memcg if memcg is not None else tree.current(), pfn, 1, 0, ANON)
    if not err:
        tree.uncharge_swap(entry)
    return err


@contextmanager
def mem_cgroup_user_fault(mem: PhysMem) -> Iterator[MemcgTaskState | None]:
    """mem_cgroup_enter_user_fault() ... mem_cgroup_exit_user_fault() around a FAULT_FLAG_USER fault:
    within, the running task's refused charges may make it wait (memcg1_oom_prepare). Yields its
    MemcgTaskState (None when no memcg tree or no task)."""
    tree = mem.memcgs
    state = tree.task_state() if tree is not None else None
    if state is None:
        yield None
        return
    outer, state.in_user_fault = state.in_user_fault, True
    try:
        yield state
    finally:
        state.in_user_fault = outer


def mem_cgroup_end_user_fault(mem: PhysMem, state: MemcgTaskState | None, failed: bool) -> None:
    """handle_mm_fault()'s end of a user fault: a task that met a memcg OOM but whose fault went through
    after all (no VM_FAULT_OOM, `failed` False) drops the record (mem_cgroup_oom_synchronize(false));
    a failed one keeps it for pagefault_out_of_memory()."""
    if not failed and mem.memcgs is not None:
        mem.memcgs.mem_cgroup_oom_synchronize(state, False)


def flush_memcg_stats(mem: PhysMem) -> None:
    """__mem_cgroup_flush_stats(root_mem_cgroup, force): fold the statistics of the whole memcg tree
    in, so that the LRU sizes lruvec_page_state() reads (the node's and each memcg's) are the lists'
    again, and the node's workingset activations too."""
    lruvec = mem.lruvec
    lruvec.lruvec_stats[:] = lruvec.nr_pages
    lruvec.activate_stats[:] = mem.events["workingset_activate_anon"], mem.events["workingset_activate_file"]
    if mem.memcgs is not None:
        tree = mem.memcgs
        for memcg in tree.root.iter_tree():
            memcg.lruvec.lruvec_stats[:] = memcg.lruvec.nr_pages
            memcg.slab_stat = tree.slab_bytes(memcg)
            memcg.lruvec.activate_stats[:] = (memcg.stat["workingset_activate_anon"],
                                              memcg.stat["workingset_activate_file"])


def flush_memcg_stats_dwork(mem: PhysMem) -> None:
    """flush_memcg_stats_dwork(): flush the whole tree's statistics and come back FLUSH_TIME later. The
    first run is FLUSH_TIME after boot (mem_cgroup_init queues it)."""
    flush_memcg_stats(mem)
    clock = mem.clock
    clock.at(clock.now_ns + FLUSH_TIME_NS, lambda: flush_memcg_stats_dwork(mem))


def folio_memcg(mem: PhysMem, head: int) -> MemCgroup | None:
    """folio_memcg(): the memcg folio `head` is charged to (None: the root, or a machine without
    memcgs)."""
    memcgs = mem.memcgs
    got = memcgs.page_memcg.get(head) if memcgs is not None else None
    return got[0] if got is not None else None
