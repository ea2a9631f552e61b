"""Page reclaim, after mm/vmscan.c (the classic active/inactive LRU of 6.18; MGLRU is not built on this
machine): kswapd and direct reclaim, get_scan_count's anon/file balance, shrink_active_list's
deactivation, shrink_inactive_list / shrink_folio_list's eviction.

How it hooks into the machine: `install(mem, mms)` puts a `Vmscan` on the node (`mem.vmscan`); the page
allocator calls `wakeup_kswapd()` when an allocation misses the low watermark and `try_to_free_pages()`
when it misses the min watermark (direct reclaim, charged to the clock as a memory stall), before it
gives up (where the OOM killer hooks in, `mem.oom_hook`).

What is reclaimed:
- clean page-cache folios, unmapped or mapped (the rmap walk clears every PTE first); a shadow entry
  stays behind for refault detection (workingset.py);
- dirty file folios are written first by `page_writeback.writeback_folio` (kswapd, on the second pass,
  as pageout() does); before that they are rotated to the active list with PG_reclaim;
- anon folios through `swap_state.reclaim_anon_folio(mem, head, walk)` when a swap area has room;
  with no swap space anon is not scanned at all (get_scan_count's SCAN_FILE), as in the kernel;
- lazyfree anon folios (MADV_FREE's and MAP_DROPPABLE's: not swap-backed, so on the file lists, and
  reclaimed with or without swap): unmapped by `rmap.try_to_unmap_lazyfree` and freed (pglazyfreed)
  when clean; one written since MADV_FREE is swap-backed again and activated; a written droppable one
  is dropped from its page tables and freed when put back (_shrink_lazyfree).

Deliberate simplifications:
- one node; reclaim is node-wide (isolate_lru_folios never skips a zone above reclaim_idx);
- kswapd runs synchronously when woken (the model has one CPU of its own), to the high watermark at
  order 0; its time advances the clock but is not a stall; high-order allocations get one direct
  reclaim pass (no compaction);
- an anon THP to be swapped out is split first, as the kernel does when the swap area cannot take
  it whole (a swap file never can: vmlab.kernel.huge_memory); a clean lazyfree THP is discarded
  whole;
- reclaim's time is charged by folio scanned (Costs.scan_ns), so a THP's look costs one page's;
- of the slab shrinkers only the workingset one (the page cache's nodes of shadows) and the THP
  deferred split one (partially mapped THPs), after each lruvec's pass, shrink_slab of its memcg;
  no laptop mode;
- of reclaim_throttle() only kswapd's wait for writes (VMSCAN_THROTTLE_WRITEBACK, once the node is
  flagged PGDAT_WRITEBACK and it meets folios marked for immediate reclaim again); not direct
  reclaim's waits (no progress, isolated folios, congested lruvecs).

Memcg reclaim (try_to_free_mem_cgroup_pages, called by memcontrol's charge loop at a limit): the same
do_try_to_free_pages loop with `sc.target` set; shrink_node walks the memcg and its descendants
(shrink_node_memcgs, stopping once enough is reclaimed), each one's lists being its mirror LruVec
(swap.py, memcontrol.py) instead of the node's. As in the kernel it is never proportional, ignores
file_is_tiny, counts no allocstall and no pgscan/pgsteal_direct (only pgscan_anon/file...), uses the
memcg's swappiness, and swaps out anon folios when swap exists and the memsw limit was not the one hit.
Its time is a memory stall. The cost and refault snapshots stay node-wide (memcontrol.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Final

from vmlab.kernel.clock import HZ, JIFFY_NS
from vmlab.kernel.filemap import split_large_folio
from vmlab.kernel.huge_memory import (
    HPAGE_PMD_NR,
    deferred_split_count,
    deferred_split_scan,
    discard_thp_mappings,
    split_anon_folio,
    split_thp_pmds,
)
from vmlab.kernel.memcontrol import MemCgroup, folio_memcg
from vmlab.kernel.mm_types import VM_DROPPABLE, VM_EXEC, VM_LOCKED, MmStruct
from vmlab.kernel.page_alloc import MAX_PAGE_ORDER, WMARK_HIGH, ZONE_NAMES, PhysMem
from vmlab.kernel.page_flags import (
    F_ACTIVE,
    F_DIRTY,
    F_DIRTY_OR_WRITEBACK,
    F_HEAD,
    F_LRU,
    F_MLOCKED,
    F_RECLAIM,
    F_REFERENCED,
    F_RESERVED,
    F_SWAPBACKED,
    F_SWAPCACHE,
    F_UNEVICTABLE,
    F_WORKINGSET,
    F_WRITEBACK,
    MAPCOUNT_NONE,
    PAGE_MAPPING_ANON,
)
from vmlab.kernel.page_writeback import folio_frames, folio_wait_writeback, writeback_folio
from vmlab.kernel.pgtable import pte_dirty
from vmlab.kernel.rmap import Mapping, RmapIndex, folio_referenced, try_to_unmap, try_to_unmap_lazyfree
from vmlab.kernel.shmem import shmem_writeout
from vmlab.kernel.swap import (
    LRU_ACTIVE,
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    LruVec,
    folio_evictable_flags,
    folio_putback_lru,
    is_file_lru,
    lru_add_drain,
    put_page,
)
from vmlab.kernel.swap_state import reclaim_anon_folio, swap_wait_writeback
from vmlab.kernel.uapi import PAGE_SIZE
from vmlab.kernel.workingset import (
    list_key,
    lru_note_cost,
    lruvec_activations,
    lruvec_of,
    lruvec_sizes,
    nr_swap_pages,
    workingset_age_nonresident,
    workingset_eviction,
)
from vmlab.kernel.xarray import XA_CHUNK_SHIFT, xa_erase_unused, xa_update

DEF_PRIORITY: Final = 12
SWAP_CLUSTER_MAX: Final = 32
MAX_SWAPPINESS: Final = 200
MAX_RECLAIM_RETRIES: Final = 16
PAGE_ALLOC_COSTLY_ORDER: Final = 3
EVICTABLE_LRUS: Final = (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)

# enum scan_balance
SCAN_EQUAL, SCAN_FRACT, SCAN_ANON, SCAN_FILE = range(4)
DEACTIVATE_ANON, DEACTIVATE_FILE = 1, 2
# enum folio_references
FOLIOREF_RECLAIM, FOLIOREF_RECLAIM_CLEAN, FOLIOREF_KEEP, FOLIOREF_ACTIVATE = range(4)


@dataclass
class ScanControl:
    """`struct scan_control`: one reclaim invocation's goal, knobs and running totals."""

    nr_to_reclaim: int
    kswapd: bool
    priority: int = DEF_PRIORITY
    may_writepage: bool = True
    may_unmap: bool = True
    may_swap: bool = True
    may_deactivate: int = 0
    force_deactivate: bool = False
    skipped_deactivate: bool = False
    cache_trim_mode: bool = False
    file_is_tiny: bool = False
    anon_cost: int = 0
    file_cost: int = 0
    nr_scanned: int = 0
    nr_reclaimed: int = 0
    rmap: RmapIndex | None = None
    #: shrink_folio_list()'s ignore_references (reclaim_pages(), MADV_PAGEOUT's): every folio is
    #: reclaimed as if folio_check_references() had said FOLIOREF_RECLAIM.
    ignore_references: bool = False
    #: target_mem_cgroup: the memcg whose limit is reclaimed for (None: node reclaim).
    target: MemCgroup | None = None
    #: The memcg whose lruvec is being shrunk under memcg reclaim (None: the node's lruvec).
    memcg: MemCgroup | None = None
    #: sc->nr of the current shrink_node() pass: pages taken off the inactive lists, those met under
    #: write-back, and those of them kswapd met marked for immediate reclaim while the node was
    #: flagged PGDAT_WRITEBACK.
    nr_taken: int = 0
    nr_writeback: int = 0
    nr_immediate: int = 0


class FolioStats:
    """`struct reclaim_stat` of one shrink_folio_list call (a plain class: one per call of it)."""

    __slots__ = ("nr_activate", "nr_pageout", "nr_unmap_fail")

    def __init__(self) -> None:
        self.nr_pageout = 0
        self.nr_activate = [0, 0]  # [anon, file]
        self.nr_unmap_fail = 0


@dataclass
class Vmscan:
    """The node's reclaimer: its sysctls, kswapd's state, and where the rmap walk finds the mms."""

    mem: PhysMem
    #: The live address spaces (the rmap walk's universe; the kernel reaches them from the pages).
    mms: Callable[[], Iterable[MmStruct]]
    swappiness: int = 60  # vm.swappiness
    kswapd_failures: int = 0
    #: PGDAT_WRITEBACK: kswapd took only folios under write-back in a pass; until the node is balanced
    #: again, kswapd meeting a folio marked for immediate reclaim throttles (reclaim_throttle).
    pgdat_writeback: bool = False
    _running: bool = False

    # --- the allocator's entry points ----------------------------------------------------------------

    def wakeup_kswapd(self, order: int, highest_zoneidx: int) -> None:
        """wakeup_kswapd() + balance_pgdat(): unless the node is balanced (or kswapd gave up after
        MAX_RECLAIM_RETRIES fruitless runs), reclaim until a zone is above its high watermark."""
        if self._running or self.kswapd_failures >= MAX_RECLAIM_RETRIES:
            return
        if pgdat_balanced(self.mem, highest_zoneidx):
            return
        self._running = True
        try:
            balance_pgdat(self, highest_zoneidx)
        finally:
            self._running = False

    def try_to_free_pages(self, order: int, highest_zoneidx: int) -> int:
        """try_to_free_pages() -> do_try_to_free_pages(): direct reclaim of SWAP_CLUSTER_MAX pages,
        raising the priority until done; the pages freed (0: no progress)."""
        if self._running:
            return 0
        self._running = True
        try:
            self.mem.events[f"allocstall_{ZONE_NAMES[highest_zoneidx].lower()}"] += 1
            return do_try_to_free_pages(self, ScanControl(nr_to_reclaim=SWAP_CLUSTER_MAX, kswapd=False))
        finally:
            self._running = False

    def try_to_free_mem_cgroup_pages(self, memcg: MemCgroup, nr_pages: int, may_swap: bool) -> int:
        """try_to_free_mem_cgroup_pages(): reclaim at least max(nr_pages, SWAP_CLUSTER_MAX) pages from
        `memcg` and its descendants at rising priority (do_try_to_free_pages); the pages freed."""
        sc = ScanControl(nr_to_reclaim=max(nr_pages, SWAP_CLUSTER_MAX), kswapd=False, may_swap=may_swap,
                         target=memcg)
        return do_try_to_free_pages(self, sc)

    def direct_reclaim_retries(self, order: int) -> int:
        """How many direct reclaim passes an allocation may make (should_reclaim_retry): costly orders
        get one (no compaction in the model), others keep going while reclaim makes progress."""
        return 1 if order > PAGE_ALLOC_COSTLY_ORDER else MAX_RECLAIM_RETRIES


def install(mem: PhysMem, mms: Callable[[], Iterable[MmStruct]], swappiness: int = 60) -> Vmscan:
    """Give the node its reclaimer (kswapd and direct reclaim) with the live mms as the rmap universe."""
    vmscan = Vmscan(mem, mms, swappiness)
    mem.vmscan = vmscan
    return vmscan


def set_lru_policy(mem: PhysMem, policy: str) -> None:
    """The model-only policy switch: `two-list` (the kernel's active/inactive LRU) or `plain` (one list
    per type, move to head on access, evict from the tail). Switch on an empty machine."""
    if policy not in ("two-list", "plain"):
        raise ValueError(f"unknown LRU policy {policy!r} (two-list or plain)")
    mem.lruvec.plain = policy == "plain"


# --- watermarks -----------------------------------------------------------------------------------------

def pgdat_balanced(mem: PhysMem, highest_zoneidx: int) -> bool:
    """pgdat_balanced(): some managed zone up to highest_zoneidx is above its high watermark (order 0)."""
    for zone in mem.zones[:highest_zoneidx + 1]:
        if zone.managed_pages and mem.zone_watermark_ok(zone, 0, zone.watermark[WMARK_HIGH], highest_zoneidx):
            return True
    return not any(z.managed_pages for z in mem.zones[:highest_zoneidx + 1])


def balance_pgdat(vmscan: Vmscan, highest_zoneidx: int) -> None:
    """balance_pgdat(): kswapd's loop from DEF_PRIORITY down: age the anon list, shrink the node by the
    high watermarks' worth, raise the priority when a pass scanned too little or freed nothing."""
    mem = vmscan.mem
    mem.events["pageoutrun"] += 1
    sc = ScanControl(nr_to_reclaim=0, kswapd=True)
    nr_to_reclaim = sum(max(z.watermark[WMARK_HIGH], SWAP_CLUSTER_MAX)
                        for z in mem.zones[:highest_zoneidx + 1] if z.managed_pages)
    while sc.priority >= 1:
        if pgdat_balanced(mem, highest_zoneidx):
            vmscan.pgdat_writeback = False  # clear_pgdat_congested()
            break
        sc.nr_scanned = 0
        sc.nr_to_reclaim = nr_to_reclaim
        sc.rmap = None
        age_active_anon(vmscan, sc)
        before = sc.nr_reclaimed
        shrink_node(vmscan, sc)
        scanned_enough = sc.nr_scanned >= sc.nr_to_reclaim
        if not scanned_enough or sc.nr_reclaimed == before:
            sc.priority -= 1
    if not sc.nr_reclaimed:
        vmscan.kswapd_failures += 1
    snapshot_refaults(mem, None)


def do_try_to_free_pages(vmscan: Vmscan, sc: ScanControl) -> int:
    """do_try_to_free_pages(): shrink the node (or the target memcg) at rising priority until
    sc.nr_to_reclaim pages are freed; when nothing was freed because active lists were never
    deactivated, retry forcing it."""
    while True:
        while sc.priority >= 0:
            sc.nr_scanned = 0
            sc.rmap = None
            shrink_node(vmscan, sc)
            if sc.nr_reclaimed >= sc.nr_to_reclaim:
                break
            sc.priority -= 1
        snapshot_refaults(vmscan.mem, sc.target)
        if sc.nr_reclaimed or not sc.skipped_deactivate or sc.force_deactivate:
            return sc.nr_reclaimed
        sc.priority, sc.force_deactivate, sc.skipped_deactivate = DEF_PRIORITY, True, False


def reclaim_throttle_writeback(vmscan: Vmscan) -> None:
    """reclaim_throttle(VMSCAN_THROTTLE_WRITEBACK) of kswapd: sleep until more than SWAP_CLUSTER_MAX
    pages have finished their writes since it began (each counted in nr_throttled_written, as
    __acct_reclaim_writeback does while a task is throttled), or HZ/10 has passed."""
    mem = vmscan.mem
    events = mem.events
    written0 = events["nr_written"]
    mem.block.flush_plug()  # schedule() sends the plugged requests
    mem.clock.sleep_until(lambda: events["nr_written"] - written0 > SWAP_CLUSTER_MAX,
                          mem.clock.now_ns + JIFFY_NS * (HZ // 10))
    events["nr_throttled_written"] += events["nr_written"] - written0


def snapshot_refaults(mem: PhysMem, target: MemCgroup | None) -> None:
    """snapshot_refaults(): the target lruvec (the memcg's, or the node's) remembers the workingset
    activations in it that reclaim has seen (lruvec_page_state(): as last flushed)."""
    lruvec_of(mem, target).refaults = lruvec_activations(mem, target)


# --- the node --------------------------------------------------------------------------------------------

def can_reclaim_anon_pages(mem: PhysMem) -> bool:
    """can_reclaim_anon_pages(): there is swap space to put anon pages in (and a swap model)."""
    return nr_swap_pages(mem) > 0


def inactive_is_low(sizes: list[int], inactive_lru: int) -> bool:
    """inactive_is_low(): of an lruvec's list `sizes`, the inactive list is smaller than the active one
    divided by the target ratio, int_sqrt(10 x total GiB) (1 below 1 GiB)."""
    inactive, active = sizes[inactive_lru], sizes[inactive_lru + LRU_ACTIVE]
    gb = (inactive + active) >> 18
    inactive_ratio = math.isqrt(10 * gb) if gb else 1
    return inactive * inactive_ratio < active


def target_sizes(vmscan: Vmscan, sc: ScanControl) -> list[int]:
    """The list sizes of the target lruvec as lruvec_page_state() reads them: the node's, or the memcg's
    with its descendants' (hierarchical), as the memcg statistics were last flushed (not the lists'
    sizes now: memcontrol.flush_memcg_stats_dwork)."""
    return lruvec_sizes(vmscan.mem, sc.target)


def prepare_scan_control(vmscan: Vmscan, sc: ScanControl) -> None:
    """prepare_scan_control(): snapshot the anon/file costs; allow deactivation of a type whose
    inactive list is low or whose workingset is refaulting; cache-trim mode when the inactive file
    list is big enough and not thrashing; file_is_tiny (node reclaim only) when file plus free is
    below the high marks. The costs, sizes and activations are the target lruvec's (the node's or the
    memcg's: a sibling's refaults do not count), the last two as the memcg statistics were last flushed
    (target_sizes); file_is_tiny reads the node's own."""
    mem = vmscan.mem
    lruvec = lruvec_of(mem, sc.target)
    sizes = target_sizes(vmscan, sc)
    sc.anon_cost, sc.file_cost = lruvec.anon_cost, lruvec.file_cost
    if sc.force_deactivate:
        sc.may_deactivate = DEACTIVATE_ANON | DEACTIVATE_FILE
    else:
        activations = lruvec_activations(mem, sc.target)
        for bit, i, lru in ((DEACTIVATE_ANON, 0, LRU_INACTIVE_ANON), (DEACTIVATE_FILE, 1, LRU_INACTIVE_FILE)):
            if activations[i] != lruvec.refaults[i] or inactive_is_low(sizes, lru):
                sc.may_deactivate |= bit
            else:
                sc.may_deactivate &= ~bit
    sc.cache_trim_mode = (bool(sizes[LRU_INACTIVE_FILE] >> sc.priority)
                          and not sc.may_deactivate & DEACTIVATE_FILE)
    node = mem.lruvec.nr_pages  # node_page_state(): the node's own counters, not the memcg statistics
    sc.file_is_tiny = (sc.target is None and not sc.may_deactivate & DEACTIVATE_ANON
                       and bool(node[LRU_INACTIVE_ANON] >> sc.priority)
                       and node[LRU_ACTIVE_FILE] + node[LRU_INACTIVE_FILE] + mem.nr_free_pages
                       <= sum(z.watermark[WMARK_HIGH] for z in mem.zones))


def shrink_node(vmscan: Vmscan, sc: ScanControl) -> None:
    """shrink_node(): one pass at sc.priority over the node's lruvec, or under memcg reclaim over the
    lruvecs of the target memcg and its descendants, pre-order, until enough is reclaimed
    (shrink_node_memcgs); each lruvec's pass is followed by shrink_slab() of that memcg (node reclaim
    runs it for what is charged to no memcg and for each memcg's)."""
    prepare_scan_control(vmscan, sc)
    before = sc.nr_reclaimed
    sc.nr_taken = sc.nr_writeback = sc.nr_immediate = 0
    mem = vmscan.mem
    if sc.target is None:
        sc.memcg = None
        shrink_lruvec(vmscan, sc)
        shrink_slab(mem, None, sc.priority)
        if mem.memcgs is not None:
            for memcg in mem.memcgs.root.iter_tree():
                if memcg is not mem.memcgs.root:
                    shrink_slab(mem, memcg, sc.priority)
    else:
        for memcg in sc.target.iter_tree():
            sc.memcg = memcg
            shrink_lruvec(vmscan, sc)
            shrink_slab(mem, memcg, sc.priority)
            if sc.nr_reclaimed >= sc.nr_to_reclaim:
                break
        sc.memcg = None
    if sc.kswapd:
        if sc.nr_writeback and sc.nr_writeback == sc.nr_taken:
            vmscan.pgdat_writeback = True  # the allocations outrun the writes
        if sc.nr_immediate:  # the folios marked for immediate reclaim came round again: wait for writes
            reclaim_throttle_writeback(vmscan)
    if sc.nr_reclaimed > before:
        vmscan.kswapd_failures = 0


def get_scan_count(vmscan: Vmscan, sc: ScanControl) -> list[int]:
    """get_scan_count(): how many pages of each evictable list to scan at this priority: all file when
    anon cannot be reclaimed (no swap) or the cache can be trimmed, equal at priority 0, else in
    proportion to swappiness against the recent cost of each type (anon weighs swappiness, file
    200 - swappiness)."""
    mem = vmscan.mem
    swappiness = vmscan.swappiness if sc.target is None else sc.target.swappiness
    sizes = _lists(vmscan, sc).nr_pages
    fraction = [0, 0]
    denominator = 0
    if not sc.may_swap or not can_reclaim_anon_pages(mem):
        balance = SCAN_FILE
    elif not sc.priority and swappiness:
        balance = SCAN_EQUAL
    elif sc.file_is_tiny:
        balance = SCAN_ANON
    elif sc.cache_trim_mode:
        balance = SCAN_FILE
    else:
        balance = SCAN_FRACT
        total_cost = sc.anon_cost + sc.file_cost
        anon_cost = total_cost + sc.anon_cost
        file_cost = total_cost + sc.file_cost
        total_cost = anon_cost + file_cost
        ap = swappiness * (total_cost + 1) // (anon_cost + 1)
        fp = (MAX_SWAPPINESS - swappiness) * (total_cost + 1) // (file_cost + 1)
        fraction = [ap, fp]
        denominator = ap + fp
    nr = [0] * len(sizes)
    for lru in EVICTABLE_LRUS:
        file = is_file_lru(lru)
        scan = sizes[lru] >> sc.priority
        if balance == SCAN_EQUAL:
            pass
        elif balance == SCAN_FRACT:
            scan = scan * fraction[file] // denominator if denominator else 0
        elif (balance == SCAN_FILE) != file:
            scan = 0
        nr[lru] = scan
    return nr


def shrink_lruvec(vmscan: Vmscan, sc: ScanControl) -> None:
    """shrink_lruvec(): scan the lists in SWAP_CLUSTER_MAX batches round robin; once enough is
    reclaimed (except node direct reclaim at DEF_PRIORITY, which finishes its batch), stop the smaller
    type and scale the other to the same proportion of its target; then rebalance the anon lists."""
    mem = vmscan.mem
    nr = get_scan_count(vmscan, sc)
    targets = list(nr)
    nr_to_reclaim = sc.nr_to_reclaim
    proportional_reclaim = not sc.kswapd and sc.target is None and sc.priority == DEF_PRIORITY
    nr_reclaimed = 0
    scan_adjusted = False
    with mem.block.plugged():  # the pass's swap writes merge into requests (blk_mq)
        while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
            for lru in EVICTABLE_LRUS:
                if nr[lru]:
                    nr_to_scan = min(nr[lru], SWAP_CLUSTER_MAX)
                    nr[lru] -= nr_to_scan
                    nr_reclaimed += shrink_list(vmscan, sc, lru, nr_to_scan)
            if nr_reclaimed < nr_to_reclaim or proportional_reclaim or scan_adjusted:
                continue
            nr_file = nr[LRU_INACTIVE_FILE] + nr[LRU_ACTIVE_FILE]
            nr_anon = nr[LRU_INACTIVE_ANON] + nr[LRU_ACTIVE_ANON]
            if not nr_file or not nr_anon:
                break
            if nr_file > nr_anon:
                stop, other = LRU_INACTIVE_ANON, LRU_INACTIVE_FILE
                percentage = nr_anon * 100 // (targets[LRU_INACTIVE_ANON] + targets[LRU_ACTIVE_ANON] + 1)
            else:
                stop, other = LRU_INACTIVE_FILE, LRU_INACTIVE_ANON
                percentage = nr_file * 100 // (targets[LRU_INACTIVE_FILE] + targets[LRU_ACTIVE_FILE] + 1)
            nr[stop] = nr[stop + LRU_ACTIVE] = 0
            for lru in (other, other + LRU_ACTIVE):
                scanned = targets[lru] - nr[lru]
                nr[lru] = targets[lru] * (100 - percentage) // 100
                nr[lru] -= min(nr[lru], scanned)
            scan_adjusted = True
    sc.nr_reclaimed += nr_reclaimed
    if can_reclaim_anon_pages(mem) and inactive_is_low(_lists(vmscan, sc).lruvec_stats, LRU_INACTIVE_ANON):
        shrink_active_list(vmscan, sc, LRU_ACTIVE_ANON, SWAP_CLUSTER_MAX)


def age_active_anon(vmscan: Vmscan, sc: ScanControl) -> None:
    """age_active_anon(): kswapd keeps the anon inactive list in proportion even when it reclaims
    only file pages (only when anon can be reclaimed at all; the sizes as last flushed)."""
    mem = vmscan.mem
    if can_reclaim_anon_pages(mem) and inactive_is_low(mem.lruvec.lruvec_stats, LRU_INACTIVE_ANON):
        shrink_active_list(vmscan, sc, LRU_ACTIVE_ANON, SWAP_CLUSTER_MAX)


#: By list: the sc.may_deactivate bit that allows deactivating it (0: not an active list).
_DEACTIVATE_BIT: Final = (0, DEACTIVATE_ANON, 0, DEACTIVATE_FILE, 0)


def shrink_list(vmscan: Vmscan, sc: ScanControl, lru: int, nr_to_scan: int) -> int:
    """shrink_list(): an active list is only deactivated (when allowed), an inactive one reclaimed."""
    bit = _DEACTIVATE_BIT[lru]
    if bit:
        if sc.may_deactivate & bit:
            shrink_active_list(vmscan, sc, lru, nr_to_scan)
        else:
            sc.skipped_deactivate = True
        return 0
    return shrink_inactive_list(vmscan, sc, lru, nr_to_scan)


# --- the lists ---------------------------------------------------------------------------------------------

def _lists(vmscan: Vmscan, sc: ScanControl) -> LruVec:
    """The lists this pass scans: the memcg's mirror under memcg reclaim, else the node's."""
    return lruvec_of(vmscan.mem, sc.memcg)


def _nr_pages(mem: PhysMem, head: int) -> int:
    """folio_nr_pages()."""
    flags = mem.mem_map.flags_a
    return 1 << (flags[head + 1] & 0xFF) if flags[head] & F_HEAD else 1


def _rmap(vmscan: Vmscan, sc: ScanControl) -> RmapIndex:
    """The pass's rmap index, built on first use (hardware accessed bits a batched replay still holds
    are written first, so folio_referenced sees them)."""
    if sc.rmap is None:
        flush = vmscan.mem.pending_accesses
        if flush is not None:
            flush()
        sc.rmap = RmapIndex(vmscan.mms())
    return sc.rmap


def _rmap_quiet(vmscan: Vmscan, sc: ScanControl) -> bool:
    """Whether the pass's rmap index exists, building it now when that has no side effect (no batched
    accesses to write): then building it earlier than its first use changes nothing, and the fused
    paths, which need it, may run."""
    if sc.rmap is None:
        if vmscan.mem.pending_accesses is not None:
            return False
        sc.rmap = RmapIndex(vmscan.mms())
    return True


def _charge_scan(vmscan: Vmscan, sc: ScanControl, nr_folios: int) -> None:
    """Reclaim's CPU time for `nr_folios` folios (a THP is one: one PMD to look at) on the simulated
    clock: a stall when the allocating task does it itself."""
    mem = vmscan.mem
    if nr_folios:
        mem.clock.advance(nr_folios * mem.clock.costs.scan_ns, memstall=not sc.kswapd)


def isolate_lru_folios(vmscan: Vmscan, sc: ScanControl, lru: int, nr_to_scan: int) -> tuple[list[int], int]:
    """isolate_lru_folios(): take folios off the tail of `lru` (of the lruvec being shrunk) until
    nr_to_scan pages, each with a reference held by reclaim (folio_try_get) and PG_lru cleared; the
    node lruvec takes them off (and off their memcg's mirror); (folios, pages scanned). A large
    page-cache folio is taken whole (_cache_folio_frames), however far past nr_to_scan. Node reclaim
    pops them off the node list's tail (LruVec.delete_oldest); memcg reclaim, or any while a large
    page-cache folio exists, reads the list and takes them off the node lruvec in one batch."""
    mem = vmscan.mem
    mmap_ = mem.mem_map
    flags, refcount = mmap_.flags_a, mmap_._refcount_a
    node = mem.lruvec
    large = _large_cache_folios(mem)
    lists = _lists(vmscan, sc)
    if lists is node and not large:
        return node.delete_oldest(mmap_, lru, nr_to_scan, get=True)
    lst = lists.lists[lru]
    taken: list[int] = []
    seen: set[int] = set()
    scanned = 0
    for head in lst:
        if scanned >= nr_to_scan:
            break
        if head in seen:
            continue
        for pfn in _cache_folio_frames(mem, head, lst) if large else (head,):
            scanned += 1 << (flags[pfn + 1] & 0xFF) if flags[pfn] & F_HEAD else 1
            refcount[pfn] += 1
            taken.append(pfn)
            seen.add(pfn)
    node.delete_folios(mmap_, taken, lru)
    return taken, scanned


def _cache_folio_frames(mem: PhysMem, pfn: int, lst: Container[int]) -> list[int]:
    """The frames isolate_lru_folios takes for the folio at `pfn` on list `lst`: the frame itself, or,
    when it belongs to a large page-cache folio, every frame of the folio still on that list, in
    index order: the kernel's one struct folio on the LRU, taken whole and counted in pages (a
    2 MiB folio at the tail is a whole batch of 32 pages and more)."""
    frames = page_cache_folio(mem, pfn)
    return frames if len(frames) == 1 else [f for f in frames if f == pfn or f in lst]


def page_cache_folio(mem: PhysMem, pfn: int) -> list[int]:
    """The frames of the large page-cache folio that frame `pfn` belongs to, in index order, or [pfn]
    (the model keeps a large page-cache folio's frames as order-0 pages, each on the LRU, its order in
    inode.folio_orders)."""
    mapping = mem.mem_map.mapping_a[pfn]
    inode = None if mapping & PAGE_MAPPING_ANON else mem.address_spaces.get(mapping)
    if inode is None or not inode.folio_orders:
        return [pfn]
    return folio_frames(mem, inode, pfn)


def move_folios_to_lru(vmscan: Vmscan, folios: Iterable[int]) -> int:
    """move_folios_to_lru(): put isolated folios back at the head of the list their flags name (an
    mlocked one on the unevictable list: folio_putback_lru), dropping reclaim's reference; a folio
    whose last other reference went meanwhile is freed. Active ones age the workingset clock of their
    lruvec (their memcg's and its ancestors', up to the node's). Pages moved. The folios go back in
    order in batches (LruVec.add_folios), each flushed before a free."""
    mem = vmscan.mem
    mmap_ = mem.mem_map
    flags_a, refcount = mmap_.flags_a, mmap_._refcount_a
    lruvec = mem.lruvec
    charged = bool(lruvec.memcg_pages)
    batch: list[int] = []
    moved = 0
    aged = 0
    for head in folios:
        if refcount[head] == 1:
            if batch:
                moved += lruvec.add_folios(mmap_, batch)
                batch.clear()
            put_page(mem, head)
            continue
        flags = flags_a[head]
        nr = 1 << (flags_a[head + 1] & 0xFF) if flags & F_HEAD else 1
        if flags & (F_MLOCKED | F_UNEVICTABLE):  # folio_putback_lru(): lru_add()'s evictable test
            flags = flags_a[head] = folio_evictable_flags(mem, head, flags)
        refcount[head] -= 1
        batch.append(head)
        if flags & F_ACTIVE:
            if charged:  # the folio's lruvec: its memcg's, aged up to the node's
                workingset_age_nonresident(mem, folio_memcg(mem, head), nr)
            else:
                aged += nr
    if batch:
        moved += lruvec.add_folios(mmap_, batch)
    lruvec.nonresident_age += aged
    return moved


def shrink_active_list(vmscan: Vmscan, sc: ScanControl, lru: int, nr_to_scan: int) -> None:
    """shrink_active_list(): deactivate folios from the active tail to the inactive head (marking them
    PG_workingset); a used, executable file folio gets one more trip around the active list. The young
    bits are test-and-cleared on the way (folio_referenced, which finds nothing on an unmapped folio:
    that one is not walked)."""
    mem = vmscan.mem
    lru_add_drain(mem)
    mmap_ = mem.mem_map
    flags_a, mapcount = mmap_.flags_a, mmap_._mapcount_a
    file = is_file_lru(lru)
    nr_deactivated = 0
    if _fused_scan(vmscan, sc, nr_to_scan):
        nr_deactivated = _deactivate_unmapped_tail(mem, lru, nr_to_scan)
    folios, nr_scanned = isolate_lru_folios(vmscan, sc, lru, nr_to_scan - nr_deactivated)
    nr_scanned += nr_deactivated
    mem.events["pgrefill"] += nr_scanned
    _charge_scan(vmscan, sc, len(folios) + nr_deactivated)
    keep_active: list[int] = []
    deactivate: list[int] = []
    nr_rotated = 0
    rmap = None
    for head in folios:
        if flags_a[head] & F_MLOCKED:
            keep_active.append(head)
            continue
        if rmap is None:
            rmap = _rmap(vmscan, sc)
        if mapcount[head] >= 0:
            referenced, vm_flags = folio_referenced(mem, rmap, head)
            if referenced and vm_flags & VM_EXEC and file:
                nr_rotated += _nr_pages(mem, head)
                keep_active.append(head)
                continue
        flags_a[head] = (flags_a[head] & ~F_ACTIVE) | F_WORKINGSET
        deactivate.append(head)
    if keep_active:
        move_folios_to_lru(vmscan, keep_active)
    if deactivate:
        nr_deactivated += move_folios_to_lru(vmscan, deactivate)
    mem.events["pgdeactivate"] += nr_deactivated
    if nr_rotated:
        lru_note_cost(mem, sc.memcg, file, 0, nr_rotated)


#: An (key, value) item's key: popping a list's tail as map(_KEY, map(popitem, repeat(False, n))).
_KEY: Final = itemgetter(0)


def _fused_scan(vmscan: Vmscan, sc: ScanControl, nr_to_scan: int) -> bool:
    """Whether a scan of up to nr_to_scan pages may take the fused paths that pop order-0 folios off a
    list's tail one by one (shrink_folio_list's from_tail, _deactivate_unmapped_tail): node reclaim
    without memcgs, no timer falling due during the scan, the pass's rmap index built or quiet to build,
    and no large page-cache folio anywhere (its frames, separate in the model, must be taken together:
    isolate_lru_folios does that)."""
    mem = vmscan.mem
    return (sc.memcg is None and not mem.lruvec.memcg_pages and _no_timer_in_scan(mem, nr_to_scan)
            and _rmap_quiet(vmscan, sc) and not _large_cache_folios(mem))


def _large_cache_folios(mem: PhysMem) -> bool:
    """Whether some file's page cache holds a large folio (whose frames reclaim must take together)."""
    return any(inode.folio_orders for inode in mem.address_spaces.values())


def _no_timer_in_scan(mem: PhysMem, nr_to_scan: int) -> bool:
    """No clock timer can fall due while reclaim's scan of up to nr_to_scan pages is charged (the last
    folio may be the largest): so nothing else runs between isolating a batch and handling it."""
    due = mem.clock.next_timer_ns()
    bound = (nr_to_scan + (1 << MAX_PAGE_ORDER)) * mem.clock.costs.scan_ns
    return due is None or due > mem.clock.now_ns + bound


def _deactivate_unmapped_tail(mem: PhysMem, lru: int, nr_to_scan: int) -> int:
    """shrink_active_list's fused prefix, for node reclaim without memcgs, once the pass's rmap index
    exists (or can be built without side effects) and no timer falls due during the scan's charge:
    while the oldest folio of active list `lru` is order 0, not mlocked or unevictable,
    unmapped (folio_referenced finds nothing) and referenced by someone besides reclaim (so putting it
    back frees nothing), and fewer than nr_to_scan pages were taken, move it straight to the head of
    the inactive list with PG_workingset. Equivalent to isolate_lru_folios, the deactivation and
    move_folios_to_lru of those folios (their reference and PG_lru come back as they were); the rest
    of the batch goes that general way. Pages deactivated."""
    mmap_ = mem.mem_map
    flags_a, refcount, mapcount = mmap_.flags_a, mmap_._refcount_a, mmap_._mapcount_a
    lruvec = mem.lruvec
    active = lruvec.lists[lru]
    inactive = lruvec.lists[lru - LRU_ACTIVE]
    nr = 0
    for head in map(_KEY, map(active.popitem, repeat(False, min(nr_to_scan, len(active))))):  # oldest first
        flags = flags_a[head]
        if flags & (F_MLOCKED | F_UNEVICTABLE | F_HEAD) or mapcount[head] >= 0 or refcount[head] < 1:
            active[head] = None  # back where it was, for the general path
            active.move_to_end(head, last=False)
            break
        flags_a[head] = (flags & ~F_ACTIVE) | F_WORKINGSET
        inactive[head] = None
        nr += 1
    lruvec.nr_pages[lru] -= nr
    lruvec.nr_pages[lru - LRU_ACTIVE] += nr
    return nr


#: The counters shrink_inactive_list bumps, by sc.kswapd and by is_file_lru.
_PGSCAN_BY: Final = ("pgscan_direct", "pgscan_kswapd")
_PGSTEAL_BY: Final = ("pgsteal_direct", "pgsteal_kswapd")
_PGSCAN_OF: Final = ("pgscan_anon", "pgscan_file")
_PGSTEAL_OF: Final = ("pgsteal_anon", "pgsteal_file")


def shrink_inactive_list(vmscan: Vmscan, sc: ScanControl, lru: int, nr_to_scan: int) -> int:
    """shrink_inactive_list(): isolate from the inactive tail, try to free each folio, put the rest
    back; counts pgscan_* / pgsteal_* and notes the cost of the type. Pages reclaimed. Node reclaim
    without memcgs whose scan lets no timer fall due, once the pass's rmap index exists (or can be
    built without side effects), reclaims the plain folios at the tail straight off the list
    (shrink_folio_list's from_tail)."""
    mem = vmscan.mem
    lru_add_drain(mem)
    file = is_file_lru(lru)
    from_tail = _fused_scan(vmscan, sc, nr_to_scan)
    stat = FolioStats()
    kept, nr_reclaimed, nr_scanned = shrink_folio_list(vmscan, sc, lru, nr_to_scan, stat, from_tail)
    sc.nr_taken += nr_scanned  # the model's isolation takes every page it scans
    if not nr_scanned:
        return 0
    if kept:
        move_folios_to_lru(vmscan, kept)
    events = mem.events
    if sc.target is None:
        events[_PGSTEAL_BY[sc.kswapd]] += nr_reclaimed
    events[_PGSTEAL_OF[file]] += nr_reclaimed
    lru_note_cost(mem, sc.memcg, file, stat.nr_pageout, nr_scanned - nr_reclaimed)
    return nr_reclaimed


def _isolate_scanned(vmscan: Vmscan, sc: ScanControl, lru: int, nr_to_scan: int,
                     nr_taken: int) -> tuple[list[int], int]:
    """shrink_inactive_list's isolation: isolate_lru_folios of up to nr_to_scan pages, then the
    pgscan_* counters and the scan's charge for those plus nr_taken pages already taken off the tail;
    (folios, pages scanned in all)."""
    folios, nr_scanned = isolate_lru_folios(vmscan, sc, lru, nr_to_scan)
    nr_scanned += nr_taken
    events = vmscan.mem.events
    if sc.target is None:  # cgroup reclaim counts pgscan_kswapd/direct in the memcg only
        events[_PGSCAN_BY[sc.kswapd]] += nr_scanned
    events[_PGSCAN_OF[is_file_lru(lru)]] += nr_scanned
    _charge_scan(vmscan, sc, len(folios) + nr_taken)
    return folios, nr_scanned


def folio_check_references(vmscan: Vmscan, sc: ScanControl, frames: list[int]) -> int:
    """folio_check_references() of the folio whose frames are `frames` (head first; more than one for
    a large page-cache folio, whose young PTEs count together and whose PG_referenced is one flag): a
    folio mapped in a locked VMA is activated (to be culled as unevictable); one with a used mapping
    gets PG_referenced and another trip, and is activated when it was referenced before, used by
    several mappings, or is executable file data; an unused one is reclaimed (only if clean, when it
    was used through read()/write() since it became inactive). Under the plain-LRU policy a used
    mapping only moves the folio to the head."""
    mem = vmscan.mem
    mmap_ = mem.mem_map
    flags_a = mmap_.flags_a
    head = frames[0]
    referenced_ptes, vm_flags = folio_referenced(mem, _rmap(vmscan, sc), head, frames)
    flags = flags_a[head]
    referenced_folio = bool(flags & F_REFERENCED)
    for pfn in frames:
        flags_a[pfn] = flags_a[pfn] & ~F_REFERENCED
    if vm_flags & VM_LOCKED:
        if not flags_a[head] & F_MLOCKED:  # mlock_vma_folio(): the folio is isolated, so only marked
            mem.events["unevictable_pgs_mlocked"] += len(frames)
        for pfn in frames:
            flags_a[pfn] = flags_a[pfn] | F_MLOCKED
        return FOLIOREF_ACTIVATE
    file = not flags & F_SWAPBACKED
    if mem.lruvec.plain:
        return FOLIOREF_KEEP if referenced_ptes else FOLIOREF_RECLAIM
    if referenced_ptes:
        for pfn in frames:
            flags_a[pfn] = flags_a[pfn] | F_REFERENCED
        if referenced_folio or referenced_ptes > 1:
            return FOLIOREF_ACTIVATE
        if vm_flags & VM_EXEC and file:
            return FOLIOREF_ACTIVATE
        return FOLIOREF_KEEP
    if referenced_folio and file:
        return FOLIOREF_RECLAIM_CLEAN
    return FOLIOREF_RECLAIM


#: Page flags that keep a folio off shrink_folio_list's fused path.
_NOT_PLAIN_CACHE: Final = (F_MLOCKED | F_UNEVICTABLE | F_HEAD | F_WRITEBACK | F_SWAPBACKED | F_DIRTY | F_LRU
                    | F_SWAPCACHE | F_RESERVED)
#: The same, for a folio still on its list (PG_lru set): shrink_folio_list's from_tail.
_NOT_PLAIN_CACHE_ON_LRU: Final = _NOT_PLAIN_CACHE & ~F_LRU


def shrink_folio_list(vmscan: Vmscan, sc: ScanControl, lru: int, nr_to_scan: int, stat: FolioStats,
                      from_tail: bool = False) -> tuple[list[int], int, int]:
    """shrink_folio_list() of the folios shrink_inactive_list isolates from the tail of list `lru`
    (up to nr_to_scan pages; _isolate_scanned): for each decide keep, activate or reclaim; reclaim
    unmaps it (rmap), writes it if dirty (or leaves it to the flusher), and frees it with a shadow
    entry. Returns (folios to put back, pages freed, pages scanned).

    Fused path: once the pass's rmap index exists, a folio that is plain clean page cache (order 0,
    not mlocked, unevictable, under writeback, dirty, swap-backed or in the swap cache; unmapped, so
    folio_referenced finds nothing; only the cache's and reclaim's references; its cache slot
    holding it; its file has no large folio, whose frames share the general path's verdict) is
    reclaimed here in line: folio_check_references' PG_referenced clear (its verdict
    is reclaim, whatever the policy), remove_mapping's page-cache removal with the shadow entry, and
    put_page's reset; the frees go to the buddy allocator in one free_unref_folios batch, flushed
    before any other folio is handled, so that the free lists see the same frees in the same order.
    Equivalent to _shrink_folio returning "freed" for it. Every other folio goes through _shrink_folio.

    from_tail (shrink_inactive_list's guard, _fused_scan: node reclaim, no memcgs, the rmap index built,
    no timer due during the scan's charge, no large page-cache folio): the same loop first pops the plain
    folios (as above, holding only the cache's reference) straight off the tail, unisolated, until a folio
    that is not plain or nr_to_scan pages; that folio goes back to the tail, and the rest of the scan is
    isolated and charged (for all pages) before the loop goes on over it. Equivalent to isolating all
    first: the popped folios' cache removal touches neither the list's remaining folios nor the clock, and
    their frees still wait in the batch until after the charge.
    """
    mem = vmscan.mem
    mmap_ = mem.mem_map
    flags_a, refcount, mapcount = mmap_.flags_a, mmap_._refcount_a, mmap_._mapcount_a
    mapping_a, index_a, private_a = mmap_.mapping_a, mmap_.index_a, mmap_.private_a
    spaces = mem.address_spaces
    lruvec = mem.lruvec
    shadow_nodes = mem.shadow_nodes
    ret: list[int] = []
    verdicts: dict[int, int] = {}
    evicted: dict[int, int] = {}
    to_free: list[int] = []
    isolated: list[int] = []  # the folio list: split THPs add their pages to it
    nr_reclaimed = 0
    nr_fused = 0
    age = lruvec.nonresident_age  # workingset_eviction's clock, kept in a local along fused folios
    cached = 0  # the mapping whose cache the locals below are (0: none)
    i_pages: dict[int, int] = {}
    shadows: dict[int, int] = {}
    folio_orders: dict[int, int] = {}
    block_pages: dict[int, int] = {}
    stale: set[int] = set()
    rmap_ready = sc.rmap is not None
    source: Iterable[int]
    if from_tail:
        held = 1  # a plain folio still on the list: the cache's reference only
        tail = lruvec.lists[lru]
        source = map(_KEY, map(tail.popitem, repeat(False, min(nr_to_scan, len(tail)))))  # oldest first
        nr_scanned = 0
    else:
        held = 2  # isolated: the cache's and reclaim's
        isolated, nr_scanned = _isolate_scanned(vmscan, sc, lru, nr_to_scan, 0)
        source = isolated
    while True:
        for head in source:
            flags = flags_a[head]
            if not (rmap_ready or flags & _NOT_PLAIN_CACHE):
                # folio_check_references would build the pass's rmap index first (which may flush
                # batched accesses and rescue unevictable folios): build it, then look again.
                lruvec.nonresident_age = age
                if to_free:
                    mem.free_unref_folios(to_free)
                    nr_fused += len(to_free)
                    to_free.clear()
                _rmap(vmscan, sc)
                rmap_ready = True
                age = lruvec.nonresident_age
                cached = 0
                flags = flags_a[head]
            # (a plain folio here finds the rmap index built: just above, or by the guard, from_tail)
            if not flags & _NOT_PLAIN_CACHE_ON_LRU and mapcount[head] == MAPCOUNT_NONE \
                    and refcount[head] == held:
                mapping = mapping_a[head]
                if mapping != cached:
                    inode = spaces.get(mapping)
                    if inode is not None and not mapping & PAGE_MAPPING_ANON:
                        cached = mapping
                        i_pages, shadows, folio_orders = inode.i_pages, inode.shadows, inode.folio_orders
                        block_pages, stale = inode.xa_nodes.block_pages, inode.stale_dirty
                # (large folios, stale dirty tags: the general path's verdicts)
                if mapping == cached and not folio_orders and not stale:
                    index = index_a[head]
                    cache_page = i_pages.pop(index, None)
                    if cache_page == head:
                        shadows[index] = age << 1 | (flags & F_WORKINGSET != 0)  # workingset_eviction()
                        block = index >> XA_CHUNK_SHIFT  # ShadowNodes.page_out(), in line
                        left = block_pages[block] - 1
                        if left:
                            block_pages[block] = left
                        else:
                            del block_pages[block]
                            assert inode is not None  # the cached mapping's
                            shadow_nodes.touch_index(inode, index)
                        age += 1
                        refcount[head] = 0
                        private_a[head] = 0  # flags and mapping: free_unref_folios clears them
                        to_free.append(head)
                        continue
                    if cache_page is not None:  # not its cache slot: remove_mapping reports it
                        i_pages[index] = cache_page
            if held == 1:  # not plain: back to the tail, and the rest is isolated
                tail[head] = None
                tail.move_to_end(head, last=False)
                break
            lruvec.nonresident_age = age
            if to_free:
                mem.free_unref_folios(to_free)
                nr_fused += len(to_free)
                to_free.clear()
            freed = _shrink_one(vmscan, sc, head, stat, verdicts, evicted, isolated)
            age = lruvec.nonresident_age
            cached = 0
            rmap_ready = sc.rmap is not None
            if freed:
                nr_reclaimed += freed
                continue
            ret.append(head)
        if held == 2:
            break
        held = 2
        nr_taken = len(to_free)  # order 0 each, all popped off the tail
        lruvec.nr_pages[lru] -= nr_taken
        isolated, nr_scanned = _isolate_scanned(vmscan, sc, lru, nr_to_scan - nr_taken, nr_taken)
        source = isolated
    lruvec.nonresident_age = age
    if to_free:
        mem.free_unref_folios(to_free)
        nr_fused += len(to_free)
    sc.nr_scanned += nr_fused
    mem.events["pgactivate"] += sum(stat.nr_activate)
    return ret, nr_reclaimed + nr_fused, nr_scanned


def _shrink_one(vmscan: Vmscan, sc: ScanControl, head: int, stat: FolioStats,
                verdicts: dict[int, int], evicted: dict[int, int], folio_list: list[int]) -> int:
    """shrink_folio_list()'s general path for one isolated folio of `folio_list` (the pass's list, to
    which a THP split for swap adds its other pages): counted as scanned, then _shrink_folio; its pages
    when freed, else 0, and a folio to activate gets PG_active (unless mlocked) and counts in
    stat.nr_activate. The caller puts back what is not freed."""
    mem = vmscan.mem
    nr = _nr_pages(mem, head)
    sc.nr_scanned += nr
    splits = mem.events["thp_split_page"]
    outcome = _shrink_folio(vmscan, sc, head, stat, verdicts, evicted, folio_list)
    if mem.events["thp_split_page"] != splits:  # a THP split on the way: the head is one page now
        nr = 1
    if outcome == "freed":
        return nr
    if outcome == "activate":
        flags_a = vmscan.mem.mem_map.flags_a
        flags = flags_a[head]
        if not flags & F_MLOCKED:
            flags_a[head] = flags | F_ACTIVE
            stat.nr_activate[not flags & F_SWAPBACKED] += nr
    return 0


def reclaim_pages(mem: PhysMem, folios: list[int]) -> int:
    """reclaim_pages() + reclaim_folio_list(), MADV_PAGEOUT's reclaim: the isolated folios (each off
    the LRU with reclaim's reference; the frames of a large page-cache folio together, head first)
    lose PG_active and go through shrink_folio_list() with references ignored, for the node (no
    target memcg), by a task that is not kswapd: each is unmapped, then an anon or shmem one is
    written to swap, a dirty file one is only marked PG_reclaim and activated for the flusher
    (nr_vmscan_immediate_reclaim), a clean one leaves the page cache with a shadow entry and is freed.
    The rest go back through folio_putback_lru(). Under a block plug, so that the burst of swap writes
    merges as in the I/O scheduler. Pages reclaimed."""
    vmscan = mem.vmscan
    assert vmscan is not None, "MADV_PAGEOUT needs reclaim (vmscan.install)"
    sc = ScanControl(nr_to_reclaim=SWAP_CLUSTER_MAX, kswapd=False, ignore_references=True)
    stat = FolioStats()
    verdicts: dict[int, int] = {}
    evicted: dict[int, int] = {}
    flags_a = mem.mem_map.flags_a
    kept: list[int] = []
    nr_reclaimed = 0
    folio_list = list(folios)
    with mem.block.plugged():
        for head in folio_list:
            flags_a[head] = flags_a[head] & ~F_ACTIVE
            freed = _shrink_one(vmscan, sc, head, stat, verdicts, evicted, folio_list)
            nr_reclaimed += freed
            if not freed:
                kept.append(head)
    mem.events["pgactivate"] += sum(stat.nr_activate)
    for head in kept:
        folio_putback_lru(mem, head)
    return nr_reclaimed


def _shrink_folio(vmscan: Vmscan, sc: ScanControl, head: int, stat: FolioStats,
                  verdicts: dict[int, int], evicted: dict[int, int], folio_list: list[int]) -> str:
    """The body of shrink_folio_list's loop for one folio: "freed", "activate" or "keep". The frames
    of a large page-cache folio, isolated together, share one folio_check_references() verdict: the
    first frame met takes it for the folio and leaves it in `verdicts` for the others, and one shadow
    entry: the first frame evicted takes it, aging the lruvec by the whole folio, and leaves it in
    `evicted` for the others (remove_mapping). An anon THP to swap out is split first, its other
    pages added to `folio_list` (_split_to_swap); a lazyfree THP is discarded whole
    (_shrink_lazyfree_thp)."""
    mem = vmscan.mem
    mmap_ = mem.mem_map
    flags = mmap_.flags_a[head]
    if flags & (F_MLOCKED | F_UNEVICTABLE):
        return "activate"
    if flags & F_WRITEBACK and not _wait_on_writeback(vmscan, sc, head):
        return "activate"
    references = FOLIOREF_RECLAIM if sc.ignore_references else verdicts.pop(head, None)
    if references is None:
        frames = page_cache_folio(mem, head)
        references = folio_check_references(vmscan, sc, frames)
        verdicts.update(dict.fromkeys((f for f in frames if f != head), references))
    if references == FOLIOREF_ACTIVATE:
        return "activate"
    if references == FOLIOREF_KEEP:
        return "keep"
    flags = mmap_.flags_a[head]
    if not flags & F_SWAPBACKED and mmap_.mapping_a[head] & PAGE_MAPPING_ANON:
        if flags & F_HEAD:
            return _shrink_lazyfree_thp(vmscan, sc, head, stat)
        return _shrink_lazyfree(vmscan, sc, head, stat)
    if flags & F_SWAPBACKED and (flags & F_SWAPCACHE or mmap_.mapping_a[head] & PAGE_MAPPING_ANON):
        if flags & F_HEAD and not _split_to_swap(vmscan, sc, head, folio_list):
            return "activate"
        if not sc.may_swap or nr_swap_pages(mem) <= 0:
            return "activate"
        rmap = _rmap(vmscan, sc)

        def walk(pfn: int) -> list[Mapping]:
            return rmap.walk(mem, pfn)

        if _free_isolated(mem, head, reclaim_anon_folio(mem, head, walk, sc.target)):
            return "freed"
        if not flags & F_WRITEBACK and mmap_.flags_a[head] & F_WRITEBACK:
            stat.nr_pageout += 1  # pageout()'s PAGE_SUCCESS: swap_writeout() started its write
        return "activate" if mmap_.flags_a[head] & F_ACTIVE else "keep"  # keep: written, not yet freed
    if mmap_._mapcount_a[head] >= 0 and not try_to_unmap(mem, _rmap(vmscan, sc), head):
        stat.nr_unmap_fail += 1
        return "activate"
    if mmap_.flags_a[head] & F_DIRTY:
        outcome = _pageout(vmscan, sc, head, references, stat)
        if outcome:
            return outcome
    return "freed" if remove_mapping(mem, head, sc.target, evicted) else "keep"


def _split_to_swap(vmscan: Vmscan, sc: ScanControl, head: int, folio_list: list[int]) -> bool:
    """shrink_folio_list()'s anon THP on its way to swap: a swap file gives no large entries
    (folio_alloc_swap fails for it, as it does with no swap space at all), so the folio is split
    (split_folio_to_list: its other pages join `folio_list`, to be reclaimed in the same pass) and
    counted in thp_swpout_fallback; the head goes on as a small folio, and the scan counts it as one
    page (its other pages count, and take reclaim's time, as they come). False when it may not be
    split (activate_locked)."""
    tails = split_anon_folio(vmscan.mem, _rmap(vmscan, sc), head)
    if tails is None:
        return False
    vmscan.mem.events["thp_swpout_fallback"] += 1
    sc.nr_scanned -= HPAGE_PMD_NR - 1
    _charge_scan(vmscan, sc, len(tails))  # each a folio of the list now, handled as any other
    folio_list.extend(tails)
    return True


def _wait_on_writeback(vmscan: Vmscan, sc: ScanControl, head: int) -> bool:
    """shrink_folio_list()'s folio under write-back (the three cases of mm/vmscan.c). Global reclaim,
    or a folio reclaim has not met before: marked PG_reclaim (so that its write's end rotates it to
    the tail), counted in sc.nr_writeback, and False: activated, out of the way while the scan looks
    for clean folios. kswapd's case 1, a folio marked PG_reclaim met while the node is flagged
    PGDAT_WRITEBACK, is activated too and counted in sc.nr_immediate (shrink_node then throttles). A
    v1 memcg's reclaim meeting a folio it marked before (no dirty throttling there: it could OOM with
    every folio in flight): it waits for the write to end (folio_wait_writeback) and True: the folio
    goes on, written. (The kernel retries it at the end of its list; the model at once.)"""
    mem = vmscan.mem
    mmap_ = mem.mem_map
    flags = mmap_.flags_a[head]
    if sc.kswapd and flags & F_RECLAIM and vmscan.pgdat_writeback:
        sc.nr_immediate += 1
        return False
    legacy = sc.target is not None and mem.memcgs is not None and mem.memcgs.version == 1
    if not (legacy and flags & F_RECLAIM):
        mmap_.flags_a[head] = flags | F_RECLAIM
        sc.nr_writeback += 1
        return False
    if flags & F_SWAPCACHE:
        swap_wait_writeback(mem, head)
    else:
        folio_wait_writeback(mem, mem.address_spaces[mmap_.mapping_a[head]], int(mmap_.index_a[head]))
    return True


def _shrink_lazyfree(vmscan: Vmscan, sc: ScanControl, head: int, stat: FolioStats) -> str:
    """shrink_folio_list() past the reference check for a lazyfree anon folio (not swap-backed: no
    swap slot is sought, so it is reclaimed with or without swap): unmap it (try_to_unmap_lazyfree;
    a folio written again comes back swap-backed and is activated, to the active anon list). A clean
    one whose only reference is now reclaim's is freed (folio_ref_freeze; pglazyfreed). A dirty one
    (a droppable mapping's, dropped from its page tables although written) meets the dirty check of
    file-LRU folios: PG_reclaim and activated for the flusher (nr_vmscan_immediate_reclaim), or kept
    when kswapd saw it before (pageout() keeps a folio without a mapping); either way reclaim's
    reference was its last, so putting it back frees it, uncounted as reclaimed (measured on this
    host: a written 8 MiB MAP_DROPPABLE region under memcg pressure went whole, pglazyfreed +0,
    pgactivate +2048)."""
    mem = vmscan.mem
    mmap_ = mem.mem_map
    if mmap_._mapcount_a[head] >= 0 and not try_to_unmap_lazyfree(mem, _rmap(vmscan, sc), head):
        stat.nr_unmap_fail += 1
        return "activate"
    flags = mmap_.flags_a[head]
    if flags & F_DIRTY:
        if sc.kswapd and flags & F_RECLAIM:
            return "keep"
        mmap_.flags_a[head] = flags | F_RECLAIM
        mem.events["nr_vmscan_immediate_reclaim"] += 1
        return "activate"
    if mmap_._refcount_a[head] != 1:
        return "keep"
    mem.events["pglazyfreed"] += 1
    put_page(mem, head)
    return "freed"


def _shrink_lazyfree_thp(vmscan: Vmscan, sc: ScanControl, head: int, stat: FolioStats) -> str:
    """A lazyfree anon THP past the reference check: try_to_unmap() with TTU_SPLIT_HUGE_PMD. A clean
    one (folio and entries not dirty) that only its mappings and reclaim hold is unmapped
    (discard_thp_mappings: its PMDs split, its PTEs dropped) and freed whole, pglazyfreed counting
    its 512 pages, the folio never split; so is a written one of a droppable mapping. Otherwise its
    PMDs are split, one written since MADV_FREE is swap-backed again, and it is activated
    (nr_unmap_fail). Measured on this host: thp_split_pmd 1 and pglazyfreed 512 for each clean THP
    discarded, thp_split_pmd 1 for a written one (tests/test_host_thp_swap.py)."""
    mem = vmscan.mem
    mmap_ = mem.mem_map
    mappings = _rmap(vmscan, sc).walk_thp(mem, head)
    droppable = any(vma.vm_flags & VM_DROPPABLE for _, vma, _, _ in mappings)
    dirty = bool(mmap_.flags_a[head] & F_DIRTY) or any(pte_dirty(entry) for *_, entry in mappings)
    if (any(vma.vm_flags & VM_LOCKED for _, vma, _, _ in mappings) or (dirty and not droppable)
            or mmap_._refcount_a[head] != len(mappings) + 1):
        split_thp_pmds(mem, mappings)
        if dirty and not droppable:
            mmap_.flags_a[head] = mmap_.flags_a[head] | F_SWAPBACKED
        stat.nr_unmap_fail += 1
        return "activate"
    discard_thp_mappings(mem, _rmap(vmscan, sc), head)
    mem.events["pglazyfreed"] += HPAGE_PMD_NR
    put_page(mem, head)
    return "freed"


def _pageout(vmscan: Vmscan, sc: ScanControl, head: int, references: int, stat: FolioStats) -> str:
    """The dirty-folio part of shrink_folio_list: for a file folio only kswapd writes, and only a folio
    it has seen dirty before (PG_reclaim); others are marked and rotated for the flusher. "" when the
    folio came back clean from a synchronous write (then it is freed). A shmem folio (not on a file
    LRU) is written to swap by any reclaimer (_shmem_pageout)."""
    mem = vmscan.mem
    mmap_ = mem.mem_map
    flags = mmap_.flags_a[head]
    if flags & F_SWAPBACKED:
        return _shmem_pageout(mem, sc, head, stat)
    if not sc.kswapd or not flags & F_RECLAIM:
        mmap_.flags_a[head] = flags | F_RECLAIM
        mem.events["nr_vmscan_immediate_reclaim"] += 1
        return "activate"
    if references == FOLIOREF_RECLAIM_CLEAN or not sc.may_writepage:
        return "keep"
    clean = writeback_folio(mem, head)
    stat.nr_pageout += 1
    mem.events["nr_vmscan_write"] += 1
    return "" if clean else "keep"


def _shmem_pageout(mem: PhysMem, sc: ScanControl, head: int, stat: FolioStats) -> str:
    """pageout() of a dirty, unmapped, isolated shmem folio: kept while someone else holds a reference
    (is_page_cache_freeable) or reclaim may not write; activated when shmem_writeout() finds no slot
    ("redirty"); else it is in the swap cache under write-back (nr_pageout) and kept: its write's end
    rotates it to the inactive tail, where the next pass frees it."""
    if mem.mem_map._refcount_a[head] != 2 or not sc.may_writepage:
        return "keep"
    inode = mem.address_spaces[mem.mem_map.mapping_a[head]]
    if not shmem_writeout(mem, inode, head):
        return "activate"
    stat.nr_pageout += 1
    return "keep"


def remove_mapping(mem: PhysMem, head: int, target: MemCgroup | None = None,
                   evicted: dict[int, int] | None = None) -> bool:
    """__remove_mapping() + free: an unmapped, clean page-cache folio whose only references are the
    cache's and reclaim's leaves the page cache (a shadow entry stays for a file folio, aged in the
    lruvec of `target`, the memcg reclaim is for: None for the node) and is freed. The frames of a
    large folio leave one shadow, as the kernel's one multi-index entry: the first frame evicted
    takes it (workingset_eviction of the whole folio) and leaves it in `evicted` for the others.
    False (kept) when someone else holds a reference or it became dirty."""
    mmap_ = mem.mem_map
    flags = mmap_.flags_a[head]
    if mmap_._refcount_a[head] != 2 or mmap_._mapcount_a[head] >= 0:
        return False
    if flags & F_DIRTY_OR_WRITEBACK:
        raise AssertionError(f"reclaim would drop dirty pfn {head:#x} without write-back: {mmap_[head]!r}")
    mapping = mmap_.mapping_a[head]
    inode = mem.address_spaces.get(mapping)
    if inode is None or mapping & PAGE_MAPPING_ANON:
        return False
    index = mmap_.index_a[head]
    if inode.i_pages.get(index) != head:
        raise AssertionError(f"pfn {head:#x} is not the cache page of index {index} of {inode.path}")
    if not flags & F_SWAPBACKED:
        shadow = evicted.pop(head, None) if evicted is not None else None
        if shadow is None:
            frames = folio_frames(mem, inode, head) if inode.folio_orders else [head]
            shadow = workingset_eviction(mem, head, len(frames), target)
            if evicted is not None and len(frames) > 1:
                evicted.update(dict.fromkeys((f for f in frames if f != head), shadow))
        inode.shadows[index] = shadow
    mem.shadow_nodes.page_out(inode, index)
    split_large_folio(inode, index)  # the model frees a large folio's frames one at a time
    del inode.i_pages[index]
    inode.stale_dirty.discard(index)
    if flags & F_SWAPBACKED:  # no shadow: the slot is empty
        xa_erase_unused(mem, inode, index)
    mmap_._refcount_a[head] -= 1  # the page cache's reference
    put_page(mem, head)  # reclaim's: frees it
    return True


def _free_isolated(mem: PhysMem, head: int, reclaimed: bool) -> bool:
    """After the swap model reclaimed an anon folio, only reclaim's reference remains: drop it."""
    if not reclaimed:
        return False
    if mem.mem_map._refcount_a[head] != 1:
        raise AssertionError(f"reclaim_anon_folio left references on pfn {head:#x}: {mem.mem_map[head]!r}")
    put_page(mem, head)
    return True


# --- the workingset shrinker (mm/workingset.c's, run by shrink_slab) ------------------------------

#: The workingset shrinker's batch (SHRINK_BATCH: its shrinker->batch is 0).
SHRINK_BATCH: Final = 128


def count_shadow_nodes(mem: PhysMem, memcg: MemCgroup | None) -> int:
    """count_shadow_nodes(): how many of the nodes on `memcg`'s list (None: the nodes charged to no
    memcg) are more than it may keep, an eighth of the pages their shadows could describe: the
    memcg's own LRU and slab pages, as last flushed (lruvec_page_state_local; for None, the node's
    LRU pages; without memcgs, its present pages); 0 when within."""
    lru = list_key(memcg)
    if memcg is not None:
        pages = sum(memcg.lruvec.lruvec_stats) + memcg.slab_stat // PAGE_SIZE
    elif mem.memcgs is not None:
        pages = sum(mem.lruvec.lruvec_stats)
    else:
        pages = sum(zone.present_pages for zone in mem.zones)
    max_nodes = pages >> (XA_CHUNK_SHIFT - 3)
    shadows = mem.shadow_nodes
    if shadows.bound(lru) <= max_nodes:
        return 0
    return max(shadows.count(lru) - max_nodes, 0)


#: shrinker->seeks of a shrinker that sets none (the deferred split shrinker's).
DEFAULT_SEEKS: Final = 2


def shrink_slab(mem: PhysMem, memcg: MemCgroup | None, priority: int) -> None:
    """shrink_slab() for `memcg` (None: the objects charged to no memcg) after its lruvec's pass: the
    workingset shrinker, then the deferred split shrinker (the model's two)."""
    shrink_shadow_nodes(mem, memcg, priority)
    shrink_deferred_split(mem, memcg, priority)


def do_shrink_slab(mem: PhysMem, freeable: int, nr_deferred: int, priority: int, seeks: int,
                   scan: Callable[[int], int]) -> tuple[int, int]:
    """do_shrink_slab() of a shrinker with `freeable` objects: a call scans freeable >> priority,
    times 4 / seeks (half the freeable when seeks is 0), plus the work deferred by earlier calls
    scaled down by `priority`, at most twice the freeable, in batches of SHRINK_BATCH (a last smaller
    one only when it covers the freeable), each by `scan` (slabs_scanned counts them). Returns (the
    objects freed, the work to defer to the next call)."""
    delta = (freeable >> priority) * 4 // seeks if seeks else freeable // 2
    total_scan = min((nr_deferred >> priority) + delta, 2 * freeable)
    freed = scanned = 0
    while total_scan >= SHRINK_BATCH or total_scan >= freeable:
        nr_to_scan = min(SHRINK_BATCH, total_scan)
        freed += scan(nr_to_scan)
        mem.events["slabs_scanned"] += nr_to_scan
        total_scan -= nr_to_scan
        scanned += nr_to_scan
    return freed, min(max(nr_deferred + delta - scanned, 0), 2 * freeable)


def shrink_shadow_nodes(mem: PhysMem, memcg: MemCgroup | None, priority: int) -> int:
    """do_shrink_slab() of the workingset shrinker (seeks 0) for `memcg`'s list, from the oldest node
    (scan_shadow_nodes). Nodes freed."""
    freeable = count_shadow_nodes(mem, memcg)
    if not freeable:
        return 0
    lru = list_key(memcg)
    shadows = mem.shadow_nodes
    freed, shadows.nr_deferred[lru] = do_shrink_slab(
        mem, freeable, shadows.nr_deferred.pop(lru, 0), priority, 0,
        lambda nr_to_scan: scan_shadow_nodes(mem, lru, nr_to_scan))
    return freed


def shrink_deferred_split(mem: PhysMem, memcg: MemCgroup | None, priority: int) -> int:
    """do_shrink_slab() of the deferred split shrinker (DEFAULT_SEEKS) for `memcg`'s queue: with few
    THPs queued it scans only at low priority (one THP queued: at priority 0, or once work deferred
    from earlier calls adds up). THPs split."""
    freeable = deferred_split_count(mem, memcg)
    if not freeable:
        return 0
    deferred = mem.deferred_split_nr_deferred
    freed, deferred[memcg] = do_shrink_slab(
        mem, freeable, deferred.pop(memcg, 0), priority, DEFAULT_SEEKS,
        lambda nr_to_scan: deferred_split_scan(mem, memcg, nr_to_scan))
    return freed


def scan_shadow_nodes(mem: PhysMem, lru: int | None, nr_to_scan: int) -> int:
    """scan_shadow_nodes(): shadow_lru_isolate() of up to `nr_to_scan` nodes from the head of list
    `lru`: a node's shadow entries go, and the node with them (xa_delete_node: a parent left empty
    goes too, the charges back); workingset_nodereclaim counts them. The nodes freed."""
    shadows = mem.shadow_nodes
    freed = 0
    for _ in range(min(nr_to_scan, len(shadows.lists.get(lru, ())))):
        inode, node = shadows.isolate_first(lru)
        entries = inode.xa_nodes.node_entries(node)
        for head, order in entries:
            for i in range(head, head + (1 << order)):
                inode.shadows.pop(i, None)
        xa_update(mem, inode, entries, [])
        mem.events["workingset_nodereclaim"] += 1
        freed += 1
    return freed
