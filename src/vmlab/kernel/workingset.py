"""Refault detection, after mm/workingset.c (the classic two-list LRU, not MGLRU).

When reclaim evicts a page-cache folio it leaves a shadow entry where the folio was: the node's
`nonresident_age` at that moment (evictions plus activations so far) and whether the folio was part of
the workingset (PG_workingset). When the page is read in again, the refault distance is how much the
inactive list aged while the page was out. If that is no more than the memory the workingset could
have given it (the active file list, plus anon when swap could have made room), the page would have
stayed resident with a bigger inactive list: it joins the active list at once (workingset_activate_*),
and if it had been active before eviction it counts as a restore (workingset_restore_*). The list
sizes are the memcg statistics' as last flushed (lruvec_page_state(), every 2 s: memcontrol.py), so a
refault less than 2 s after the active list filled is weighed against the list as it was before: on
this host it is not activated (tests/test_refault_host.py).

Model shadows: `(eviction << 1) | workingset` in the inode's `shadows` map (the kernel packs memcg id
and node too, and keeps them in i_pages). Shadows are never reclaimed (the kernel's shadow-node
shrinker is not modelled); truncation drops them with the page cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmlab.kernel.page_flags import F_ACTIVE, F_SWAPBACKED, F_WORKINGSET
from vmlab.kernel.swap import LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE

if TYPE_CHECKING:
    from vmlab.kernel.page_alloc import PhysMem



def pack_shadow(eviction: int, workingset: bool) -> int:
    """pack_shadow(): the value left behind for an evicted folio."""
    return eviction << 1 | int(workingset)


def unpack_shadow(shadow: int) -> tuple[int, bool]:
    """unpack_shadow(): (eviction age, was the folio in the workingset)."""
    return shadow >> 1, bool(shadow & 1)


def workingset_age_nonresident(mem: PhysMem, nr_pages: int) -> None:
    """workingset_age_nonresident(): evictions and activations advance the inactive list's age."""
    mem.lruvec.nonresident_age += nr_pages


def workingset_eviction(mem: PhysMem, head: int, nr_pages: int) -> int:
    """workingset_eviction(): the shadow of a folio being evicted now; ages the list by its size."""
    lruvec = mem.lruvec
    eviction = lruvec.nonresident_age
    lruvec.nonresident_age = eviction + nr_pages  # workingset_age_nonresident()
    return eviction << 1 | (mem.mem_map.flags_a[head] & F_WORKINGSET != 0)  # pack_shadow()


def nr_swap_pages(mem: PhysMem) -> int:
    """get_nr_swap_pages(): free swap slots in all swap areas."""
    return mem.swap.nr_swap_pages


def workingset_size(mem: PhysMem, file: bool) -> int:
    """What the workingset could have given a refaulting folio of the type `file` names (the test of
    workingset_test_recent): the active file list; for anon also the inactive file list; plus the
    anon lists (the active one, and for file also the inactive one) while swap has free slots
    (nr_swap_pages inlined: every refault passes here). The list sizes are lruvec_page_state()'s: as
    the memcg statistics were last flushed (memcontrol.flush_memcg_stats_dwork, every 2 s), not as the
    lists are now."""
    sizes = mem.lruvec.lruvec_stats
    size = sizes[LRU_ACTIVE_FILE]
    if not file:
        size += sizes[LRU_INACTIVE_FILE]
    if mem.swap.nr_swap_pages > 0:
        size += sizes[LRU_ACTIVE_ANON]
        if file:
            size += sizes[LRU_INACTIVE_ANON]
    return size


def workingset_test_recent(mem: PhysMem, shadow: int, file: bool) -> tuple[bool, bool]:
    """workingset_test_recent(): (the refault distance fits in the workingset, the folio was in it)."""
    eviction, workingset = unpack_shadow(shadow)
    return mem.lruvec.nonresident_age - eviction <= workingset_size(mem, file), workingset


#: The refault counters of each kind (file, anon): refault, activate, restore.
_REFAULT_EVENTS = {kind == "file": tuple(f"workingset_{what}_{kind}"
                                         for what in ("refault", "activate", "restore"))
                   for kind in ("file", "anon")}


def workingset_refault(mem: PhysMem, head: int, nr_pages: int, shadow: int) -> None:
    """workingset_refault(): a folio that was evicted is being added again (before it joins the LRU):
    count the refault and, when it is recent, mark it active (and workingset, if it was before).
    (workingset_test_recent and unpack_shadow inlined: every refault passes here.)"""
    flags_a = mem.mem_map.flags_a
    flags = flags_a[head]
    file = not flags & F_SWAPBACKED
    names = _REFAULT_EVENTS[file]  # refault, activate, restore
    events = mem.events
    events[names[0]] += nr_pages
    lruvec = mem.lruvec
    if lruvec.nonresident_age - (shadow >> 1) > workingset_size(mem, file) or lruvec.plain:
        return
    _, activate, restore = names
    flags |= F_ACTIVE
    lruvec.nonresident_age += nr_pages  # workingset_age_nonresident()
    events[activate] += nr_pages
    if shadow & 1:  # it was in the workingset
        flags |= F_WORKINGSET
        lru_note_cost(mem, file, nr_pages, 0)  # lru_note_cost_refault()
        events[restore] += nr_pages
    flags_a[head] = flags


def lru_note_cost(mem: PhysMem, file: bool, nr_io: int, nr_rotated: int) -> None:
    """lru_note_cost(): charge the cost of reclaiming one type (I/O weighs SWAP_CLUSTER_MAX times a
    rotation); both costs decay by half once they exceed a quarter of the LRU pages."""
    lruvec = mem.lruvec
    cost = nr_io * 32 + nr_rotated
    if file:
        lruvec.file_cost += cost
    else:
        lruvec.anon_cost += cost
    lrusize = (lruvec.nr_pages[LRU_INACTIVE_ANON] + lruvec.nr_pages[LRU_ACTIVE_ANON]
               + lruvec.nr_pages[LRU_INACTIVE_FILE] + lruvec.nr_pages[LRU_ACTIVE_FILE])
    if lruvec.file_cost + lruvec.anon_cost > lrusize // 4:
        lruvec.file_cost //= 2
        lruvec.anon_cost //= 2
