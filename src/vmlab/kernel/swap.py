"""The LRU lists, after mm/swap.c and include/linux/mm_inline.h: the node's lruvec with its five lists,
adding a new folio, and the two-step promotion of `folio_mark_accessed()`.

Each list is an insertion-ordered dict of head PFNs: the first key is the kernel's list tail (the
oldest, where reclaim scans), the last is its head (where list_add puts a folio). PG_lru says a folio
is on some list, PG_active and PG_unevictable and !PG_swapbacked say which (folio_lru_list()).

Memory cgroups: the kernel keeps one lruvec per memcg per node and no node-wide lists. The model keeps
the node's lists (global reclaim scans them, as the kernel's would with every page in the root memcg)
and, beside them, one mirror LruVec per memcg (`MemCgroup.lruvec`): the node lruvec's `memcg_pages`
names the mirror of a charged folio, and every add, delete and rotation on the node lists is repeated
on it. A memcg's lists are thus its folios in node-list order (what the kernel's per-memcg lruvec
holds), memcg reclaim reads them, and isolates through the node lruvec. Global reclaim does not
round-robin the memcgs (mem_cgroup_iter) as the kernel does: it scans the node lists in their order.

The LRU moves go through the CPU's folio batches (cpu_fbatches, `PhysMem.fbatches`, CpuFbatches), as
on SMP kernels: a new folio waits in lru_add off every list (PG_lru clear), a second use's activation
in lru_activate (still inactive), MADV_COLD's deactivation in lru_deactivate, MADV_FREE's in
lru_lazyfree, an invalidation's failure in lru_deactivate_file, a reclaim write-back's end in
lru_move_tail; each entry holds a reference, and a batch moves when it holds 31 folios, at once for a
large folio, and at every lru_add_drain(). kpageflags shows it on this kernel
(tests/test_host_lru_add.py); smaps' LazyFree does not count a folio still waiting. mlock's batch is
vmlab.kernel.mlock_folio's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, ClassVar, Final

import numpy as np

from vmlab.kernel.page_flags import (
    F_ACTIVE,
    F_DIRTY,
    F_DIRTY_OR_WRITEBACK,
    F_HEAD,
    F_LRU,
    F_MLOCKED,
    F_RECLAIM,
    F_REFERENCED,
    F_SWAPBACKED,
    F_SWAPCACHE,
    F_UNEVICTABLE,
    MAPCOUNT_NONE,
    PAGE_MAPPING_ANON,
    PG,
    PG_anon_exclusive,
)

if TYPE_CHECKING:
    from vmlab.kernel.memcontrol import MemCgroup
    from vmlab.kernel.page_alloc import MemMap, PhysMem

# enum lru_list.
LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE, LRU_UNEVICTABLE = range(5)
NR_LRU_LISTS: Final = 5
LRU_BASE_ANON, LRU_BASE_FILE = LRU_INACTIVE_ANON, LRU_INACTIVE_FILE
LRU_ACTIVE: Final = 1
#: The lists by their /proc/vmstat counter names (nr_inactive_anon, ...).
LRU_NAMES: Final = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")



def folio_lru_list_of(flags: int) -> int:
    """folio_lru_list(): the list a folio with page flags `flags` belongs on."""
    if flags & F_UNEVICTABLE:
        return LRU_UNEVICTABLE
    lru = LRU_BASE_ANON if flags & F_SWAPBACKED else LRU_BASE_FILE
    return lru + LRU_ACTIVE if flags & F_ACTIVE else lru


#: The page flags folio_lru_list() looks at, and the list for each combination of them.
LRU_KIND: Final = F_UNEVICTABLE | F_SWAPBACKED | F_ACTIVE
LRU_OF_KIND: Final = {u | s | a: folio_lru_list_of(u | s | a)
                for u in (0, F_UNEVICTABLE) for s in (0, F_SWAPBACKED) for a in (0, F_ACTIVE)}


def is_file_lru(lru: int) -> bool:
    """is_file_lru()."""
    return lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)


def is_active_lru(lru: int) -> bool:
    """is_active_lru()."""
    return lru in (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE)


class LruVec:
    """`struct lruvec` of the node: the five lists and how many pages each holds (a THP counts 512)."""

    __slots__ = ("activate_stats", "anon_cost", "file_cost", "lists", "lruvec_stats", "memcg_pages",
                 "nonresident_age", "nr_pages", "plain", "refaults")

    def __init__(self) -> None:
        self.lists: tuple[OrderedDict[int, None], ...] = tuple(OrderedDict() for _ in range(NR_LRU_LISTS))
        self.nr_pages = [0] * NR_LRU_LISTS
        #: The list sizes as the memcg statistics last flushed them (pn->lruvec_stats, folded in from the
        #: per-CPU counters by an rstat flush): what lruvec_page_state() reads, so what the refault test
        #: weighs a refault distance against (memcontrol.flush_memcg_stats_dwork updates them).
        self.lruvec_stats = [0] * NR_LRU_LISTS
        #: workingset_activate_anon and _file as last flushed (the same rstat copy; a memcg's own, its
        #: subtree's summed when read), what reclaim compares with `refaults` to see a new workingset
        #: being established.
        self.activate_stats = [0, 0]
        #: lruvec->anon_cost / file_cost: the recent cost of reclaiming each type (lru_note_cost), which
        #: get_scan_count balances against swappiness.
        self.anon_cost = 0
        self.file_cost = 0
        #: lruvec->nonresident_age: evictions plus activations so far, the clock of refault distances.
        self.nonresident_age = 0
        #: lruvec->refaults[WORKINGSET_ANON/FILE]: workingset_activate_* (as flushed) when reclaim last
        #: finished.
        self.refaults = [0, 0]
        #: The model-only `plain LRU` policy: one list per type (the inactive one), an access moves a
        #: folio to its head, nothing is ever activated; reclaim evicts from the tail.
        self.plain = False
        #: The node lruvec only: the memcg tree's charges (page_memcg: head pfn -> (memcg, ...), the
        #: memcg holding its mirror `lruvec`); None while the machine has no memcgs.
        self.memcg_pages: dict[int, tuple[MemCgroup, int, str]] | None = None

    def add(self, mm: MemMap, head: int, *, tail: bool = False) -> None:
        """lruvec_add_folio() (or _tail): put folio `head` on the list its flags name and set PG_lru.
        (folio_lru_list_of by table and _and_mirror inlined: every new page passes here.)"""
        flags = mm.flags_a[head]
        if flags & F_LRU:
            raise AssertionError(f"pfn {head:#x} is already on an LRU list")
        lru = LRU_OF_KIND[flags & LRU_KIND]
        nr = 1 << (mm.flags_a[head + 1] & 0xFF) if flags & F_HEAD else 1
        pages = self.memcg_pages
        got = pages.get(head) if pages else None
        for lruvec in (self,) if got is None else (self, got[0].lruvec):
            lst = lruvec.lists[lru]
            lst[head] = None
            if tail:
                lst.move_to_end(head, last=False)
            lruvec.nr_pages[lru] += nr
        mm.flags_a[head] = flags | F_LRU

    def add_folios(self, mm: MemMap, heads: Iterable[int]) -> int:
        """lruvec_add_folio() of each of `heads` (not on a list), in order: onto the head of the list
        its flags name (and of its memcg's mirror when charged), PG_lru set. The same as `add` of each
        at the head, with the lists bound once per batch; the pages added."""
        flags_a = mm.flags_a
        pages = self.memcg_pages
        lists, nr_pages = self.lists, self.nr_pages
        total = 0
        for head in heads:
            flags = flags_a[head]
            if flags & F_LRU:
                raise AssertionError(f"pfn {head:#x} is already on an LRU list")
            lru = LRU_OF_KIND[flags & LRU_KIND]
            nr = 1 << (flags_a[head + 1] & 0xFF) if flags & F_HEAD else 1
            lists[lru][head] = None
            nr_pages[lru] += nr
            got = pages.get(head) if pages else None
            if got is not None:
                mirror = got[0].lruvec
                mirror.lists[lru][head] = None
                mirror.nr_pages[lru] += nr
            flags_a[head] = flags | F_LRU
            total += nr
        return total

    def _and_mirror(self, head: int) -> tuple[LruVec, ...]:
        """This lruvec and, when folio `head` is charged to a memcg, that memcg's mirror."""
        pages = self.memcg_pages
        got = pages.get(head) if pages else None
        return (self,) if got is None else (self, got[0].lruvec)

    def add_bulk(self, mm: MemMap, pfns: np.ndarray) -> None:
        """lruvec_add_folio() for many small folios of one kind (same flags, not yet on a list)."""
        if not len(pfns):
            return
        flags = int(mm.flags[int(pfns[0])])
        lru = folio_lru_list_of(flags)
        for lruvec in self._and_mirror(int(pfns[0])):  # one kind: one memcg (mem_cgroup_charge_bulk)
            lruvec.lists[lru].update(dict.fromkeys(pfns.tolist()))
            lruvec.nr_pages[lru] += len(pfns)
        mm.flags[pfns] |= np.uint64(F_LRU)

    def delete(self, mm: MemMap, head: int) -> int:
        """lruvec_del_folio(): take folio `head` off its list and clear PG_lru; returns the list."""
        lru = folio_lru_list_of(mm.flags_a[head])
        self.delete_folios(mm, (head,), lru)
        return lru

    def delete_folios(self, mm: MemMap, heads: Iterable[int], lru: int) -> int:
        """lruvec_del_folio() of each of `heads`, all on list `lru` (of this lruvec, and of its memcg's
        mirror when charged): off the lists, PG_lru cleared; the pages taken off."""
        flags_a = mm.flags_a
        pages = self.memcg_pages
        lst = self.lists[lru]
        total = 0
        for head in heads:
            flags = flags_a[head]
            nr = 1 << (flags_a[head + 1] & 0xFF) if flags & F_HEAD else 1
            del lst[head]
            if pages:
                _mirror_delete(pages, head, lru, nr)
            flags_a[head] = flags & ~F_LRU
            total += nr
        self.nr_pages[lru] -= total
        return total

    def delete_oldest(self, mm: MemMap, lru: int, nr_pages: int, *,
                      get: bool = False) -> tuple[list[int], int]:
        """lruvec_del_folio() of the folios at the tail of list `lru`, oldest first, until `nr_pages`
        pages are taken (the last folio may pass it) or the list is empty: popped off the list (and off
        their memcg's mirror when charged), PG_lru cleared, and with `get` a reference taken on each
        (folio_try_get, as isolate_lru_folios does). The same as delete_folios of those folios;
        (folios, pages taken off)."""
        flags_a = mm.flags_a
        refcount = mm._refcount_a
        inc = 1 if get else 0
        pages = self.memcg_pages
        lst = self.lists[lru]
        pop = lst.popitem
        taken: list[int] = []
        append = taken.append
        total = 0
        while total < nr_pages and lst:
            head = pop(last=False)[0]
            flags = flags_a[head]
            nr = 1 << (flags_a[head + 1] & 0xFF) if flags & F_HEAD else 1
            if pages:
                _mirror_delete(pages, head, lru, nr)
            flags_a[head] = flags & ~F_LRU
            refcount[head] += inc
            append(head)
            total += nr
        self.nr_pages[lru] -= total
        return taken, total

    def rotate(self, mm: MemMap, head: int) -> None:
        """Move folio `head` (on a list) to the head of its list (the plain-LRU policy's access)."""
        lru = folio_lru_list_of(int(mm.flags[head]))
        for lruvec in self._and_mirror(head):
            lruvec.lists[lru].move_to_end(head)

    def lru_size(self, lru: int) -> int:
        """lruvec_page_state of NR_LRU_BASE + lru: pages on list `lru`."""
        return self.nr_pages[lru]

    def oldest(self, lru: int, n: int) -> list[int]:
        """Up to `n` folios from the tail of list `lru`, oldest first, left on the list (what reclaim
        would scan next; delete_oldest takes them)."""
        return list(islice(self.lists[lru], n))


def _mirror_delete(memcg_pages: dict[int, tuple[MemCgroup, int, str]], head: int, lru: int, nr: int) -> None:
    """The memcg mirror's part of lruvec_del_folio(): folio `head` (of `nr` pages) leaves list `lru` of
    its memcg's lruvec, when it is charged to one."""
    got = memcg_pages.get(head)
    if got is not None:
        mirror = got[0].lruvec
        del mirror.lists[lru][head]
        mirror.nr_pages[lru] -= nr


def _folio_nr_pages(mm: MemMap, head: int, flags: int) -> int:
    """folio_nr_pages() of a head page whose flags are `flags`."""
    return 1 << (mm.flags_a[head + 1] & 0xFF) if flags & F_HEAD else 1


def folio_relist(mem: PhysMem, head: int, set_flags: int, clear_flags: int, *, tail: bool = False) -> None:
    """lruvec_del_folio(), the flags changed, lruvec_add_folio() (or _tail): folio `head` moves to the
    list its new flags name."""
    mm = mem.mem_map
    mem.lruvec.delete(mm, head)
    mm.flags_a[head] = (mm.flags_a[head] | set_flags) & ~clear_flags
    mem.lruvec.add(mm, head, tail=tail)


def page_cache_release(mem: PhysMem, pfn: int) -> None:
    """__page_cache_release(): a folio about to be freed leaves its LRU list (before its flags change)."""
    mm = mem.mem_map
    head = mm.compound_head(pfn)
    if mm.flags_a[head] & F_LRU:
        mem.lruvec.delete(mm, head)


#: Page state a freed folio must not carry into the buddy allocator.
_PAGE_STATE: Final = ((1 << PG.swapbacked) | (1 << PG.uptodate) | (1 << PG.dirty) | (1 << PG_anon_exclusive)
               | (1 << PG.referenced) | (1 << PG.active) | (1 << PG.workingset) | (1 << PG.reclaim))


def put_page(mem: PhysMem, pfn: int) -> None:
    """folio_put() (mm/swap.c): drop a reference to the page's folio; at zero it leaves its LRU list
    and returns to the buddy allocator. A folio still in the swap cache is never freed here (the
    cache holds a reference)."""
    mm = mem.mem_map
    link = mm.lru_next_a[pfn]
    head = -2 - link if link < -1 else pfn  # compound_head()
    flags = mm.flags_a[head]
    order = mm.flags_a[head + 1] & 0xFF if flags & F_HEAD else 0  # folio_order()
    if mm._refcount_a[head] == 1:
        if flags & F_SWAPCACHE:
            raise AssertionError(f"the last reference of swap-cache folio {head:#x} dropped: {mm[head]!r}")
        if flags & F_LRU:  # __page_cache_release()
            mem.lruvec.delete(mm, head)
        if order:
            n = 1 << order
            mm.mapping[head:head + n] = 0
            mm._mapcount[head:head + n] = MAPCOUNT_NONE
            mm.flags[head:head + n] &= ~np.uint64(_PAGE_STATE)
            mm.flags[head + 1] &= ~np.uint64(1 << PG.workingset)
        else:  # scalar stores: a slice operation costs 30 times as much
            mm.mapping_a[head] = 0
            mm._mapcount_a[head] = MAPCOUNT_NONE
            mm.flags_a[head] = mm.flags_a[head] & ~_PAGE_STATE
        mm.private_a[head] = 0
    mem.free_pages(head, order)


def folio_mark_accessed(mem: PhysMem, pfn: int) -> None:
    """folio_mark_accessed(): the first use sets PG_referenced; a second one, on an inactive folio,
    activates it (moves it to the active list) and clears PG_referenced — the two-step promotion that
    keeps a page used once from displacing the working set."""
    mm = mem.mem_map
    link = mm.lru_next_a[pfn]
    head = -2 - link if link < -1 else pfn  # compound_head()
    flags = mm.flags_a[head]
    if mem.lruvec.plain:
        if flags & F_LRU:
            mem.lruvec.rotate(mm, head)
        return
    if not flags & F_REFERENCED:
        mm.flags_a[head] = flags | F_REFERENCED
    elif not flags & (F_UNEVICTABLE | F_ACTIVE):
        if flags & F_LRU:
            folio_activate(mem, head)  # queued (still inactive), unless that filled the batch
            flags = mm.flags_a[head]
        elif head in mem.fbatches.lru_add:  # __lru_cache_activate_folio(): it will join the LRU active
            flags |= F_ACTIVE
        mm.flags_a[head] = flags & ~F_REFERENCED
        # workingset_activation(): an activation ages the inactive list of the folio's lruvec (its
        # memcg's, up to the node's) as an eviction does.
        nr = _folio_nr_pages(mm, head, flags)
        pages = mem.lruvec.memcg_pages
        got = pages.get(head) if pages else None
        if got is None:
            mem.lruvec.nonresident_age += nr
        else:
            from vmlab.kernel.workingset import workingset_age_nonresident  # (it imports this module)

            workingset_age_nonresident(mem, got[0], nr)


def lru_view(mem: PhysMem) -> str:
    """Every LRU list with its folios from head (newest) to tail (oldest), one list per line, then the
    CPU's lru_add batch: the new folios waiting for their lists, oldest first."""
    lines = []
    for lru, name in enumerate(LRU_NAMES):
        pfns = " ".join(f"{p:#x}" for p in reversed(mem.lruvec.lists[lru]))
        lines.append(f"{name} ({mem.lruvec.nr_pages[lru]} pages): {pfns}".rstrip())
    waiting = mem.fbatches.lru_add
    lines.append(f"lru_add batch ({len(waiting)} folios): {' '.join(f'{p:#x}' for p in waiting)}".rstrip())
    return "\n".join(lines) + "\n"


# --- the CPU's folio batches (mm/swap.c cpu_fbatches) -------------------------------------------------------

#: FOLIO_BATCH_SIZE: a per-CPU folio batch is moved once it holds this many folios.
FOLIO_BATCH_SIZE: Final = 31


class CpuFbatches:
    """struct cpu_fbatches of the model's one CPU: the folio batches mm/swap.c moves onto or between
    the LRU lists, each entry holding a reference on its folio. A batch is moved when it holds
    FOLIO_BATCH_SIZE folios or a large folio joins it, and by lru_add_drain(), in this order."""

    __slots__ = (
        "lru_activate",
        "lru_add",
        "lru_deactivate",
        "lru_deactivate_file",
        "lru_lazyfree",
        "lru_move_tail",
    )

    def __init__(self) -> None:
        #: New folios (PG_lru clear) waiting to join their lists (folio_add_lru).
        self.lru_add: list[int] = []
        #: Folios whose reclaim write-back ended, for the inactive tail (folio_rotate_reclaimable).
        self.lru_move_tail: list[int] = []
        #: Page-cache folios an invalidation could not drop (deactivate_file_folio).
        self.lru_deactivate_file: list[int] = []
        #: Active folios MADV_COLD deactivates (folio_deactivate).
        self.lru_deactivate: list[int] = []
        #: Anon folios MADV_FREE frees lazily (folio_mark_lazyfree).
        self.lru_lazyfree: list[int] = []
        #: Inactive folios a second use activates (folio_activate); one may be queued twice.
        self.lru_activate: list[int] = []

    #: The batches in lru_add_drain_cpu()'s order.
    ORDER: ClassVar[tuple[str, ...]] = ("lru_add", "lru_move_tail", "lru_deactivate_file", "lru_deactivate",
                                        "lru_lazyfree", "lru_activate")

    def batches(self) -> tuple[list[int], ...]:
        """Every batch, in lru_add_drain_cpu()'s order (ORDER)."""
        return tuple(getattr(self, name) for name in self.ORDER)


#: A batch's move (the kernel's move_fn, here over the batch's folios in order).
MoveFn = Callable[["PhysMem", list[int]], None]


def folio_batch_add_and_move(mem: PhysMem, batch: list[int], head: int, move: MoveFn) -> None:
    """folio_batch_add_and_move(): folio `head` joins `batch` (one reference taken); a full batch, or
    one a large folio just joined (folio_may_be_lru_cached), is moved at once."""
    mm = mem.mem_map
    mm._refcount_a[head] += 1
    batch.append(head)
    if len(batch) >= FOLIO_BATCH_SIZE or mm.flags_a[head] & F_HEAD:
        folio_batch_move_lru(mem, batch, move)


def folio_batch_move_large(mem: PhysMem, batch: list[int], move: MoveFn) -> None:
    """After the frames of a large page-cache folio joined `batch`: the batch moves at once, as
    folio_batch_add_and_move() does for a large folio (folio_may_be_lru_cached). The model keeps
    such a folio as order-0 frames, which that test cannot tell from small folios (only an inode
    lookup could, on the hot path), so the callers that handle the folio whole say so here."""
    if batch:
        folio_batch_move_lru(mem, batch, move)


def folio_batch_move_lru(mem: PhysMem, batch: list[int], move: MoveFn) -> None:
    """folio_batch_move_lru(): the folios of `batch`, in order, through `move` (for lru_add every new
    folio; for the others only a folio still on a list: one reclaim isolated meanwhile is passed
    over), then the batch's references dropped (folios_put: a folio whose other references went
    meanwhile, unmapped or truncated while it waited, is freed)."""
    folios = batch[:]
    batch.clear()
    mm = mem.mem_map
    flags_a, refcount = mm.flags_a, mm._refcount_a
    move(mem, folios if move is lru_add else [head for head in folios if flags_a[head] & F_LRU])
    for head in folios:
        if refcount[head] > 1:
            refcount[head] -= 1
        else:
            put_page(mem, head)


def folio_add_lru(mem: PhysMem, pfn: int) -> None:
    """folio_add_lru(): a new folio (page cache or anon) joins the CPU's lru_add batch, PG_lru still
    clear, until lru_add() puts it on its list."""
    folio_batch_add_and_move(mem, mem.fbatches.lru_add, mem.mem_map.compound_head(pfn), lru_add)


def folio_putback_lru(mem: PhysMem, head: int) -> None:
    """folio_putback_lru(): an isolated folio goes back through folio_add_lru() (the CPU's lru_add
    batch) and reclaim's reference is dropped. When that reference is the folio's last it is freed
    at once (the kernel frees it when the batch moves)."""
    if mem.mem_map._refcount_a[head] == 1:
        put_page(mem, head)
        return
    folio_add_lru(mem, head)
    put_page(mem, head)


def lru_add(mem: PhysMem, folios: list[int]) -> None:
    """lru_add() of each new folio, in order: onto the list its flags name; an mlocked one goes to the
    unevictable list, inactive, with a mlock_count of 0 (unevictable_pgs_culled), one no longer
    mlocked leaves it (unevictable_pgs_rescued)."""
    mm = mem.mem_map
    flags_a = mm.flags_a
    for head in folios:
        flags = flags_a[head]
        if flags & (F_MLOCKED | F_UNEVICTABLE):
            flags_a[head] = folio_evictable_flags(mem, head, flags)
    mem.lruvec.add_folios(mm, folios)


def folio_add_lru_bulk(mem: PhysMem, pfns: np.ndarray) -> None:
    """folio_add_lru() of each of `pfns`, new small folios of one kind (a run of first-touch faults),
    in order, done at once: the batch's folios and as many of `pfns` as fill whole batches are moved
    (the same lists, in the same order, as batch after batch), the rest wait in the batch."""
    batch = mem.fbatches.lru_add
    keep = (len(batch) + len(pfns)) % FOLIO_BATCH_SIZE
    moved = len(pfns) - keep
    if moved > 0:
        folio_batch_move_lru(mem, batch, lru_add)
        mem.lruvec.add_bulk(mem.mem_map, pfns[:moved])
    waiting = pfns[max(moved, 0):].tolist()
    for pfn in waiting:
        mem.mem_map._refcount_a[pfn] += 1
    batch.extend(waiting)


def folio_evictable_flags(mem: PhysMem, head: int, flags: int) -> int:
    """lru_add()'s test of folio_evictable() for folio `head` with flags `flags`, counted: the flags it
    joins a list with. Mlocked: unevictable and not active, its mlock_count 0 (the lock was found, not
    counted: reclaim or the next mlock fixes it), unevictable_pgs_culled when it was not unevictable;
    else unevictable cleared, unevictable_pgs_rescued when it was."""
    nr = _folio_nr_pages(mem.mem_map, head, flags)
    if flags & F_MLOCKED:
        if not flags & F_UNEVICTABLE:
            mem.events["unevictable_pgs_culled"] += nr
        mem.mlock_count[head] = 0
        return (flags & ~F_ACTIVE) | F_UNEVICTABLE
    if flags & F_UNEVICTABLE:
        mem.events["unevictable_pgs_rescued"] += nr
    return flags & ~F_UNEVICTABLE


def folio_rotate_reclaimable(mem: PhysMem, pfn: int) -> None:
    """folio_rotate_reclaimable(): the write-back reclaim started on a folio (PG_reclaim) completed: a
    clean, evictable folio on the LRU is queued for the tail of its inactive list (lru_move_tail),
    where reclaim frees it next. Its caller has cleared PG_reclaim."""
    head = mem.mem_map.compound_head(pfn)
    flags = mem.mem_map.flags_a[head]
    if flags & F_LRU and not flags & (F_DIRTY | F_UNEVICTABLE):
        folio_batch_add_and_move(mem, mem.fbatches.lru_move_tail, head, lru_move_tail)


def lru_move_tail(mem: PhysMem, folios: list[int]) -> None:
    """lru_move_tail() of each folio: an evictable one goes to the tail of its inactive list,
    PG_active cleared (an active one too: 6.18 does not check), pgrotated counting its pages."""
    mm = mem.mem_map
    for head in folios:
        flags = mm.flags_a[head]
        if flags & F_UNEVICTABLE:
            continue
        folio_relist(mem, head, 0, F_ACTIVE, tail=True)
        mem.events["pgrotated"] += _folio_nr_pages(mm, head, flags)


def deactivate_file_folio(mem: PhysMem, head: int) -> None:
    """deactivate_file_folio(): a page-cache folio an invalidation could not drop (dirty, or held by
    someone) is queued for lru_deactivate_file, unless it is unevictable or off the LRU."""
    flags = mem.mem_map.flags_a[head]
    if flags & F_LRU and not flags & F_UNEVICTABLE:
        folio_batch_add_and_move(mem, mem.fbatches.lru_deactivate_file, head, lru_deactivate_file)


def lru_deactivate_file(mem: PhysMem, folios: list[int]) -> None:
    """lru_deactivate_file() of each folio: an unmapped, evictable page-cache folio loses PG_active and
    PG_referenced; a dirty or under-write-back one goes to the head of the inactive list marked
    PG_reclaim (its write-back's end rotates it to the tail), a clean one to the tail (pgrotated);
    pgdeactivate counts it when it was active. A mapped one is left alone."""
    mm = mem.mem_map
    for head in folios:
        flags = mm.flags_a[head]
        if flags & F_UNEVICTABLE or _folio_mapped(mm, head, flags):
            continue
        nr = _folio_nr_pages(mm, head, flags)
        if flags & F_DIRTY_OR_WRITEBACK:
            folio_relist(mem, head, F_RECLAIM, F_ACTIVE | F_REFERENCED)
        else:
            folio_relist(mem, head, 0, F_ACTIVE | F_REFERENCED, tail=True)
            mem.events["pgrotated"] += nr
        if flags & F_ACTIVE:
            mem.events["pgdeactivate"] += nr


def _folio_mapped(mm: MemMap, head: int, flags: int) -> bool:
    """folio_mapped(): some page of the folio is mapped."""
    nr = _folio_nr_pages(mm, head, flags)
    return any(mm._mapcount_a[p] >= 0 for p in range(head, head + nr))


def folio_deactivate(mem: PhysMem, head: int) -> None:
    """folio_deactivate(): an active, evictable folio on the LRU is queued for lru_deactivate (MADV_COLD);
    it stays on the active list until the batch moves."""
    flags = mem.mem_map.flags_a[head]
    if flags & F_ACTIVE and flags & F_LRU and not flags & F_UNEVICTABLE:
        folio_batch_add_and_move(mem, mem.fbatches.lru_deactivate, head, lru_deactivate)


def lru_deactivate(mem: PhysMem, folios: list[int]) -> None:
    """lru_deactivate() of each folio: an active, evictable one moves to the head of its inactive
    list, PG_active and PG_referenced cleared (pgdeactivate counts its pages)."""
    mm = mem.mem_map
    for head in folios:
        flags = mm.flags_a[head]
        if flags & F_UNEVICTABLE or not flags & F_ACTIVE:
            continue
        folio_relist(mem, head, 0, F_ACTIVE | F_REFERENCED)
        mem.events["pgdeactivate"] += _folio_nr_pages(mm, head, flags)


def _lazyfree_candidate(mm: MemMap, head: int) -> bool:
    """folio_mark_lazyfree()'s and lru_lazyfree()'s test: an anon, swap-backed folio that is neither
    in the swap cache nor unevictable."""
    flags = mm.flags_a[head]
    return bool(mm.mapping_a[head] & PAGE_MAPPING_ANON) and bool(flags & F_SWAPBACKED) \
        and not flags & (F_SWAPCACHE | F_UNEVICTABLE)


def folio_mark_lazyfree(mem: PhysMem, head: int) -> None:
    """folio_mark_lazyfree(): a candidate folio on the LRU is queued for lru_lazyfree (MADV_FREE); it
    stays on its anon list, swap-backed, until the batch moves. One off the LRU (isolated by someone
    else) is left alone."""
    if _lazyfree_candidate(mem.mem_map, head) and mem.mem_map.flags_a[head] & F_LRU:
        folio_batch_add_and_move(mem, mem.fbatches.lru_lazyfree, head, lru_lazyfree)


def lru_lazyfree(mem: PhysMem, folios: list[int]) -> None:
    """lru_lazyfree() of each folio: a candidate still becomes a clean lazyfree folio, PG_active,
    PG_referenced and PG_swapbacked cleared, at the head of the inactive file list (pglazyfree counts
    its pages)."""
    mm = mem.mem_map
    for head in folios:
        flags = mm.flags_a[head]
        if not _lazyfree_candidate(mm, head):
            continue
        folio_relist(mem, head, 0, F_ACTIVE | F_REFERENCED | F_SWAPBACKED)
        mem.events["pglazyfree"] += _folio_nr_pages(mm, head, flags)


def folio_activate(mem: PhysMem, head: int) -> None:
    """folio_activate(): an inactive, evictable folio on the LRU is queued for lru_activate; it stays
    on its inactive list, not active, until the batch moves. A folio may be queued twice."""
    flags = mem.mem_map.flags_a[head]
    if not flags & (F_ACTIVE | F_UNEVICTABLE) and flags & F_LRU:
        folio_batch_add_and_move(mem, mem.fbatches.lru_activate, head, lru_activate)


def lru_activate(mem: PhysMem, folios: list[int]) -> None:
    """lru_activate() of each folio: an inactive, evictable one moves to the head of its active list
    (pgactivate counts its pages). A small folio no memcg mirror list holds (every activation of a
    cached page without memcgs) moves in line: lruvec_del_folio() and lruvec_add_folio() of
    LruVec.delete / LruVec.add without PG_lru's round trip."""
    mm = mem.mem_map
    flags_a = mm.flags_a
    lruvec = mem.lruvec
    lists, nr_pages = lruvec.lists, lruvec.nr_pages
    moved = 0
    for head in folios:
        flags = flags_a[head]
        if flags & (F_ACTIVE | F_UNEVICTABLE):
            continue
        if flags & F_HEAD or lruvec.memcg_pages:
            folio_relist(mem, head, F_ACTIVE, 0)
            moved += _folio_nr_pages(mm, head, flags)
            continue
        lru, active = LRU_OF_KIND[flags & LRU_KIND], LRU_OF_KIND[(flags | F_ACTIVE) & LRU_KIND]
        del lists[lru][head]
        nr_pages[lru] -= 1
        lists[active][head] = None
        nr_pages[active] += 1
        flags_a[head] = flags | F_ACTIVE
        moved += 1
    mem.events["pgactivate"] += moved


#: Each batch's move, by the batch's place in CpuFbatches.batches().
_MOVES: Final = (lru_add, lru_move_tail, lru_deactivate_file, lru_deactivate, lru_lazyfree, lru_activate)


def lru_add_drain(mem: PhysMem) -> None:
    """lru_add_drain() of the model's CPU: lru_add_drain_cpu() moves every folio batch, in the
    kernel's order (CpuFbatches.batches), then mlock_drain_local() the mlock batch."""
    for batch, move in zip(mem.fbatches.batches(), _MOVES, strict=True):
        if batch:
            folio_batch_move_lru(mem, batch, move)
    if mem.mlock_fbatch:
        from vmlab.kernel.mlock_folio import mlock_folio_batch  # (it imports this module)

        mlock_folio_batch(mem)
