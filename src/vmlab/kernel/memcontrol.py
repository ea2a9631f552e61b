"""Memory cgroups, after mm/memcontrol.c and mm/memcontrol-v1.c: a tree of `MemCgroup`s with hierarchical
page counters (memory, memory+swap, kmem), charge and uncharge of pages, the memcg OOM, v1
`memory.oom_control` and v2 `memory.oom.group`, and the counts `memory.stat` and the OOM report print.

A page is charged to the memcg of the mm it is faulted for (`mm.memcg`, the kernel's mm->owner's memcg)
when it is allocated for a user fault, and uncharged when its frame is freed (`page->memcg_data`).
Deliberate differences: page tables (kmem) and the page cache are not charged; there is no memcg
reclaim of its own yet (only `MemCgroupTree.reclaim_hook`, if set); a v1 task waiting in the
`oom_kill_disable` queue is reported to the fault path (it cannot sleep in a one-thread model).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from vmlab.kernel.uapi import ENOMEM, PAGE_SIZE

#: PAGE_COUNTER_MAX on 64-bit: LONG_MAX / PAGE_SIZE pages ("unlimited").
PAGE_COUNTER_MAX = ((1 << 63) - 1) // PAGE_SIZE
MAX_RECLAIM_RETRIES = 16
PAGE_ALLOC_COSTLY_ORDER = 3
#: try_charge_memcg()'s result when a v1 task would sleep in the memcg OOM wait queue.
OOM_WAIT = -1000


@dataclass
class PageCounter:
    """struct page_counter: usage against a max, with the parent charged alongside (hierarchy)."""

    max: int = PAGE_COUNTER_MAX
    usage: int = 0
    watermark: int = 0
    failcnt: int = 0
    parent: PageCounter | None = None

    def try_charge(self, nr: int) -> PageCounter | None:
        """page_counter_try_charge(): charge this counter and its ancestors; on failure undo, count a
        failure on the counter over its limit and return it (None on success)."""
        done: list[PageCounter] = []
        c: PageCounter | None = self
        while c is not None:
            if c.usage + nr > c.max:
                c.failcnt += 1
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
class MemCgroup:
    """struct mem_cgroup: one cgroup of the memory controller."""

    name: str
    parent: MemCgroup | None
    tree: MemCgroupTree
    memory: PageCounter = field(default_factory=PageCounter)
    memsw: PageCounter = field(default_factory=PageCounter)
    kmem: PageCounter = field(default_factory=PageCounter)
    children: list[MemCgroup] = field(default_factory=list)
    #: The thread-group ids in this cgroup, in the order they joined (css_task_iter order).
    procs: list[int] = field(default_factory=list)
    swappiness: int = 60
    oom_kill_disable: bool = False  # v1 memory.oom_control
    under_oom: int = 0
    oom_group: bool = False  # v2 memory.oom.group
    #: memory.events (v2) / the oom_kill count of memory.oom_control (v1): oom, oom_kill, ...
    events: Counter[str] = field(default_factory=Counter)
    #: memory.stat counts in pages: rss (anon), cache (file), pgpgin, pgpgout, pgfault.
    stat: Counter[str] = field(default_factory=Counter)

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

    def set_limit(self, pages: int) -> int:
        """Write memory.limit_in_bytes / memory.max: 0, or -EBUSY when usage is above it (v1)."""
        if self.tree.version == 1 and self.memory.usage > pages:
            return -16  # EBUSY: v1 refuses (after reclaim, which the model does not have)
        self.memory.max = pages
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

    def tree_stat(self, key: str) -> int:
        """A memory.stat count summed over this memcg and its descendants (the total_* lines)."""
        return sum(c.stat[key] for c in self.iter_tree())

    def memory_stat_v1(self) -> list[str]:
        """memory.stat (v1), in bytes and events, as memcg1_stat_format() prints it."""
        def local(key: str, total: bool) -> int:
            return self.tree_stat(key) if total else self.stat[key]

        out: list[str] = []
        for total in (False, True):
            pre = "total_" if total else ""
            rss, cache = local("rss", total), local("cache", total)
            for name, value in (("cache", cache * PAGE_SIZE), ("rss", rss * PAGE_SIZE), ("rss_huge", 0),
                                ("shmem", 0), ("mapped_file", 0), ("dirty", 0), ("writeback", 0),
                                ("workingset_refault_anon", 0), ("workingset_refault_file", 0), ("swap", 0),
                                ("swapcached", 0), ("pgpgin", local("pgpgin", total)),
                                ("pgpgout", local("pgpgout", total)), ("pgfault", local("pgfault", total)),
                                ("pgmajfault", 0), ("inactive_anon", rss * PAGE_SIZE), ("active_anon", 0),
                                ("inactive_file", cache * PAGE_SIZE), ("active_file", 0), ("unevictable", 0)):
                out.append(f"{pre}{name} {value}")
            if not total:
                out.append(f"hierarchical_memory_limit {self.hierarchical_limit('memory') * PAGE_SIZE}")
                out.append(f"hierarchical_memsw_limit {self.hierarchical_limit('memsw') * PAGE_SIZE}")
        return out

    def print_oom_meminfo(self) -> list[str]:
        """mem_cgroup_print_oom_meminfo(): usage, limit and failcnt of the counters, then memory.stat."""
        def line(name: str, c: PageCounter) -> str:
            return f"{name}: usage {c.usage * 4}kB, limit {c.max * 4}kB, failcnt {c.failcnt}"

        if self.tree.version == 1:
            head = [line("memory", self.memory), line("memory+swap", self.memsw), line("kmem", self.kmem)]
            stat = self.memory_stat_v1()
        else:
            head = [line("memory", self.memory), line("swap", PageCounter(max=self.memsw.max))]
            stat = [f"anon {self.stat['rss'] * PAGE_SIZE}", f"file {self.stat['cache'] * PAGE_SIZE}",
                    f"pgfault {self.stat['pgfault']}"]
        return [*head, f"Memory cgroup stats for {self.path}:", *stat]


ReclaimHook = Callable[[MemCgroup, int], bool]


@dataclass(eq=False)
class MemCgroupTree:
    """One memory-controller hierarchy (v1 or v2): the root, the charge of every page, and the hooks the
    machine gives it: `out_of_memory(memcg, order) -> bool` (mem_cgroup_out_of_memory), `task_is_dying()`,
    `retry_wait()` (time passing between retries), `reclaim_hook(memcg, nr) -> bool` (memcg reclaim)."""

    version: int = 1
    root: MemCgroup = field(init=False)
    page_memcg: dict[int, tuple[MemCgroup, int, bool]] = field(default_factory=dict)
    out_of_memory: Callable[[MemCgroup, int], bool] | None = None
    task_is_dying: Callable[[], bool] = lambda: False
    retry_wait: Callable[[], None] = lambda: None
    reclaim_hook: ReclaimHook | None = None
    max_oom_retries: int = 1016

    def __post_init__(self) -> None:
        """The root memcg: unlimited."""
        self.root = MemCgroup("", None, self)

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
                child = MemCgroup(part, c, self, PageCounter(parent=c.memory), PageCounter(parent=c.memsw),
                                  PageCounter(parent=c.kmem), swappiness=c.swappiness)
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

    # -- charging --

    def try_charge_memcg(self, memcg: MemCgroup, nr: int, order: int) -> int:
        """try_charge_memcg(): charge `nr` pages, running reclaim and then the memcg OOM killer when a
        limit is hit and retrying after a kill; 0, -ENOMEM, or OOM_WAIT (v1 oom_kill_disable)."""
        passed_oom = False
        reclaim_retries = MAX_RECLAIM_RETRIES
        oom_retries = 0
        while True:
            over = self._try_counters(memcg, nr)
            if over is None:
                return 0
            if self.reclaim_hook is not None and reclaim_retries and self.reclaim_hook(over, nr):
                reclaim_retries -= 1
                continue
            if passed_oom and self.task_is_dying():
                return -ENOMEM
            if order > PAGE_ALLOC_COSTLY_ORDER or self.out_of_memory is None:
                return -ENOMEM
            over.memory_event("oom")
            if self.version == 1 and over.oom_kill_disable:
                over.under_oom += 1
                return OOM_WAIT
            if self.task_is_dying():
                killed = True  # mem_cgroup_out_of_memory(): a dying task needs no victim
            else:
                over.under_oom += 1
                try:
                    killed = self.out_of_memory(over, order)
                finally:
                    over.under_oom -= 1
            if not killed or oom_retries >= self.max_oom_retries:
                return -ENOMEM
            passed_oom = True
            oom_retries += 1
            reclaim_retries = MAX_RECLAIM_RETRIES
            self.retry_wait()

    def _try_counters(self, memcg: MemCgroup, nr: int) -> MemCgroup | None:
        """Charge memsw (v1) then memory; the memcg over its limit, or None when charged."""
        if self.version == 1:
            fail = memcg.memsw.try_charge(nr)
            if fail is not None:
                return self._owner(fail, "memsw")
        fail = memcg.memory.try_charge(nr)
        if fail is None:
            return None
        if self.version == 1:
            memcg.memsw.uncharge(nr)
        return self._owner(fail, "memory")

    def _owner(self, counter: PageCounter, attr: str) -> MemCgroup:
        """The memcg a page counter belongs to (mem_cgroup_from_counter)."""
        return next(c for c in self.root.iter_tree() if getattr(c, attr) is counter)

    def commit_charge(self, memcg: MemCgroup, pfn: int, nr: int, anon: bool) -> None:
        """commit_charge(): the frame now belongs to the memcg (page->memcg_data)."""
        self.page_memcg[pfn] = (memcg, nr, anon)
        memcg.stat["rss" if anon else "cache"] += nr
        memcg.stat["pgpgin"] += 1
        memcg.stat["pgfault"] += 1

    def charge(self, memcg: MemCgroup | None, pfn: int, nr: int, order: int = 0, anon: bool = True) -> int:
        """mem_cgroup_charge(): charge a new folio of `nr` pages at `pfn`; 0 or a negative error."""
        if memcg is None:
            return 0
        err = self.try_charge_memcg(memcg, nr, order)
        if err == 0:
            self.commit_charge(memcg, pfn, nr, anon)
        return err

    def force_charge(self, memcg: MemCgroup, nr: int) -> None:
        """Charge `nr` pages that belong to no modelled frame (an imported memcg's other usage)."""
        memcg.memory.charge(nr)
        if self.version == 1:
            memcg.memsw.charge(nr)

    def uncharge(self, pfn: int, order: int) -> None:
        """mem_cgroup_uncharge() of a frame being freed: give its pages back to its memcg."""
        got = self.page_memcg.pop(pfn, None)
        if got is None:
            return
        memcg, nr, anon = got
        memcg.memory.uncharge(nr)
        if self.version == 1:
            memcg.memsw.uncharge(nr)
        memcg.stat["rss" if anon else "cache"] -= nr
        memcg.stat["pgpgout"] += 1


def mem_cgroup_charge(memcg: MemCgroup | None, pfn: int, nr: int = 1, order: int = 0) -> int:
    """mem_cgroup_charge() of a new anonymous folio for an mm whose memcg is `memcg` (None: not
    accounted); 0, -ENOMEM or OOM_WAIT."""
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
    if pfns and tree._try_counters(memcg, len(pfns)) is not None:
        raise AssertionError(f"bulk charge beyond the room of {memcg.path}")
    tree.page_memcg.update((pfn, (memcg, 1, True)) for pfn in pfns)
    for key in ("rss", "pgpgin", "pgfault"):
        memcg.stat[key] += len(pfns)
