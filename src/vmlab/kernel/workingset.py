"""Refault detection, after mm/workingset.c (the classic two-list LRU, not MGLRU).

When reclaim evicts a page-cache folio it leaves a shadow entry where the folio was: the lruvec's
`nonresident_age` at that moment (evictions plus activations so far) and whether the folio was part of
the workingset (PG_workingset). When the page is read in again, the refault distance is how much the
inactive list aged while the page was out. If that is no more than the memory the workingset could
have given it (the active file list, plus anon when swap could have made room), the page would have
stayed resident with a bigger inactive list: it joins the active list at once (workingset_activate_*),
and if it had been active before eviction it counts as a restore (workingset_restore_*). The list
sizes are the memcg statistics' as last flushed (lruvec_page_state(), every 2 s: memcontrol.py), so a
refault less than 2 s after the active list filled is weighed against the list as it was before: on
this host it is not activated (tests/test_refault_host.py).

The age is per lruvec, as in the kernel: reclaim of a memcg over its limit reads and ages that memcg's
lruvec (and its ancestors', whose LRU order contains it), node reclaim the node's (the root's); the
shadow names the memcg, and the refault is weighed against that lruvec's age and statistics
(tests/test_refault_host.py: evictions in a sibling memcg do not make a refault less recent).

Model shadows: `((memcg id << 48 | eviction) << 1) | workingset` in the inode's `shadows` map (the
kernel packs the node too, and keeps them in i_pages). A large folio is evicted and refaults as one:
its frames share one shadow (vmscan.remove_mapping), and a new large folio takes one decision from the
last shadow of its range (filemap.folio_refault). Truncation and invalidation clear them
(truncate.clear_shadow_entries), and the shrinker of the nodes that hold only shadows frees those
beyond an eighth of their memcg's pages (ShadowNodes here, vmscan.shrink_shadow_nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from vmlab.kernel.memcontrol import folio_memcg
from vmlab.kernel.page_flags import F_ACTIVE, F_SWAPBACKED, F_WORKINGSET
from vmlab.kernel.swap import LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE

if TYPE_CHECKING:
    from vmlab.kernel.memcontrol import MemCgroup
    from vmlab.kernel.mm_types import Inode
    from vmlab.kernel.page_alloc import PhysMem
    from vmlab.kernel.swap import LruVec
    from vmlab.kernel.xarray import Node



#: Bits of a shadow's eviction age; the memcg id sits above them (pack_shadow()).
EVICTION_BITS: Final = 48
EVICTION_MASK: Final = (1 << EVICTION_BITS) - 1


def pack_shadow(eviction: int, workingset: bool, memcg_id: int = 0) -> int:
    """pack_shadow(): the value left behind for an evicted folio: the eviction age of the lruvec that
    reclaim was shrinking, that lruvec's memcg id (0: the root, whose lruvec is the node's) and
    whether the folio was in the workingset."""
    return (memcg_id << EVICTION_BITS | eviction) << 1 | int(workingset)


def unpack_shadow(shadow: int) -> tuple[int, int, bool]:
    """unpack_shadow(): (memcg id, eviction age, was the folio in the workingset)."""
    return shadow >> (EVICTION_BITS + 1), shadow >> 1 & EVICTION_MASK, bool(shadow & 1)


def memcg_lruvecs(mem: PhysMem, memcg: MemCgroup | None) -> list[LruVec]:
    """The lruvec of `memcg` (None: the root, whose lruvec is the node's) and those of its ancestors, up
    to the node's: the lruvecs workingset_age_nonresident() ages (each memcg's LRU order is part of
    its ancestors')."""
    out: list[LruVec] = []
    while memcg is not None and memcg.parent is not None:
        out.append(memcg.lruvec)
        memcg = memcg.parent
    out.append(mem.lruvec)
    return out


def workingset_age_nonresident(mem: PhysMem, memcg: MemCgroup | None, nr_pages: int) -> None:
    """workingset_age_nonresident(): evictions and activations in `memcg` advance the inactive list's
    age of its lruvec and of its ancestors'."""
    for lruvec in memcg_lruvecs(mem, memcg):
        lruvec.nonresident_age += nr_pages


def workingset_eviction(mem: PhysMem, head: int, nr_pages: int, target: MemCgroup | None = None) -> int:
    """workingset_eviction(): the shadow of a folio being evicted now by reclaim of `target` (the memcg
    over its limit; None: the node), with target's age; ages target's lruvec and its ancestors' by
    the folio's size."""
    if target is not None and target.parent is None:
        target = None  # the root memcg: its lruvec is the node's
    lruvec = mem.lruvec if target is None else target.lruvec
    eviction = lruvec.nonresident_age
    workingset_age_nonresident(mem, target, nr_pages)
    return pack_shadow(eviction, mem.mem_map.flags_a[head] & F_WORKINGSET != 0,
                       0 if target is None else target.id)


def nr_swap_pages(mem: PhysMem) -> int:
    """get_nr_swap_pages(): free swap slots in all swap areas."""
    return mem.swap.nr_swap_pages


def workingset_size(mem: PhysMem, file: bool, memcg: MemCgroup | None = None) -> int:
    """What the workingset of `memcg`'s lruvec (None: the node's) could have given a refaulting folio
    of the type `file` names (the test of workingset_test_recent): the active file list; for anon
    also the inactive file list; plus the anon lists (the active one, and for file also the inactive
    one) while swap has free slots (nr_swap_pages inlined: every refault passes here). The list sizes
    are lruvec_page_state()'s: hierarchical, and as the memcg statistics were last flushed
    (memcontrol.flush_memcg_stats_dwork, every 2 s), not as the lists are now."""
    sizes = lruvec_sizes(mem, memcg)
    size = sizes[LRU_ACTIVE_FILE]
    if not file:
        size += sizes[LRU_INACTIVE_FILE]
    if mem.swap.nr_swap_pages > 0:
        size += sizes[LRU_ACTIVE_ANON]
        if file:
            size += sizes[LRU_INACTIVE_ANON]
    return size


def memcg_lru_stats(memcg: MemCgroup) -> list[int]:
    """lruvec_page_state() of each LRU list for a memcg below the root: its own and its descendants'
    (the statistics are hierarchical), as last flushed."""
    sizes = [0] * len(memcg.lruvec.lruvec_stats)
    for c in memcg.iter_tree():
        sizes = [a + b for a, b in zip(sizes, c.lruvec.lruvec_stats, strict=True)]
    return sizes


def lruvec_of(mem: PhysMem, memcg: MemCgroup | None) -> LruVec:
    """mem_cgroup_lruvec(): the memcg's lruvec (its mirror), the node's for the root (None)."""
    return mem.lruvec if memcg is None or memcg.parent is None else memcg.lruvec


def lruvec_sizes(mem: PhysMem, memcg: MemCgroup | None) -> list[int]:
    """lruvec_page_state() of each LRU list of the memcg's lruvec (the node's for the root), as last
    flushed."""
    return mem.lruvec.lruvec_stats if memcg is None or memcg.parent is None else memcg_lru_stats(memcg)


def lruvec_activations(mem: PhysMem, memcg: MemCgroup | None) -> list[int]:
    """lruvec_page_state() of WORKINGSET_ACTIVATE_ANON and _FILE of the memcg's lruvec (the node's for
    the root): the refault activations in it and its descendants, as last flushed."""
    if memcg is None or memcg.parent is None:
        return list(mem.lruvec.activate_stats)
    total = [0, 0]
    for c in memcg.iter_tree():
        total = [a + b for a, b in zip(total, c.lruvec.activate_stats, strict=True)]
    return total


def _eviction_lruvec(mem: PhysMem, memcg_id: int) -> tuple[LruVec, MemCgroup | None] | None:
    """The lruvec a shadow's age was read from, and its memcg (None: the root); None when the memcg is
    gone (mem_cgroup_from_id() finds nothing: the refault is not recent)."""
    if not memcg_id:
        return mem.lruvec, None
    memcgs = mem.memcgs
    memcg = memcgs.by_id(memcg_id) if memcgs is not None else None
    return None if memcg is None else (memcg.lruvec, memcg)


def workingset_test_recent(mem: PhysMem, shadow: int, file: bool) -> tuple[bool, bool]:
    """workingset_test_recent(): (the refault distance fits in the workingset of the lruvec the folio
    was evicted from, the folio was in it)."""
    memcg_id, eviction, workingset = unpack_shadow(shadow)
    found = _eviction_lruvec(mem, memcg_id)
    if found is None:
        return False, workingset
    lruvec, memcg = found
    return lruvec.nonresident_age - eviction <= workingset_size(mem, file, memcg), workingset


#: The refault counters of each kind (file, anon): refault, activate, restore.
_REFAULT_EVENTS: Final = {kind == "file": tuple(f"workingset_{what}_{kind}"
                                         for what in ("refault", "activate", "restore"))
                   for kind in ("file", "anon")}


def workingset_refault(mem: PhysMem, head: int, nr_pages: int, shadow: int) -> None:
    """workingset_refault(): a folio that was evicted is being added again (charged, before it joins
    the LRU): count the refault and, when it is recent in the lruvec it was evicted from, mark it
    active (and workingset, if it was before) and age the lruvec of the memcg it is charged to now.
    (workingset_test_recent and unpack_shadow inlined for a node eviction while no memcg has pages:
    every refault passes here.)"""
    flags_a = mem.mem_map.flags_a
    flags = flags_a[head]
    file = not flags & F_SWAPBACKED
    names = _REFAULT_EVENTS[file]  # refault, activate, restore
    events = mem.events
    events[names[0]] += nr_pages
    lruvec = mem.lruvec
    if lruvec.plain:
        return
    if shadow >> (EVICTION_BITS + 1) == 0 and not lruvec.memcg_pages:  # the node's, nothing charged
        if lruvec.nonresident_age - (shadow >> 1) > workingset_size(mem, file):
            return
        lruvec.nonresident_age += nr_pages  # workingset_age_nonresident()
    else:
        if not workingset_test_recent(mem, shadow, file)[0]:
            return
        workingset_age_nonresident(mem, folio_memcg(mem, head), nr_pages)
    _, activate, restore = names
    flags |= F_ACTIVE
    events[activate] += nr_pages
    memcg = folio_memcg(mem, head) if lruvec.memcg_pages else None
    if memcg is not None:  # mod_lruvec_state() of the folio's lruvec
        memcg.stat[activate] += nr_pages
    if shadow & 1:  # it was in the workingset
        flags |= F_WORKINGSET
        lru_note_cost(mem, memcg, file, nr_pages, 0)  # lru_note_cost_refault()
        events[restore] += nr_pages
    flags_a[head] = flags


def lru_note_cost(mem: PhysMem, memcg: MemCgroup | None, file: bool, nr_io: int, nr_rotated: int) -> None:
    """lru_note_cost(): charge the cost of reclaiming one type (I/O weighs SWAP_CLUSTER_MAX times a
    rotation) to the memcg's lruvec and every ancestor's up to the root's (the node's here: what node
    reclaim reads); in each, both costs decay by half once they exceed a quarter of its LRU pages (as
    last flushed)."""
    cost = nr_io * 32 + nr_rotated
    if not cost:
        return
    while True:
        lruvec = lruvec_of(mem, memcg)
        if file:
            lruvec.file_cost += cost
        else:
            lruvec.anon_cost += cost
        sizes = lruvec_sizes(mem, memcg)
        lrusize = (sizes[LRU_INACTIVE_ANON] + sizes[LRU_ACTIVE_ANON]
                   + sizes[LRU_INACTIVE_FILE] + sizes[LRU_ACTIVE_FILE])
        if lruvec.file_cost + lruvec.anon_cost > lrusize // 4:
            lruvec.file_cost //= 2
            lruvec.anon_cost //= 2
        if memcg is None or memcg.parent is None:
            return
        memcg = memcg.parent


# --- shadow nodes (workingset_update_node, the shadow_nodes list_lru and its shrinker) ---------------

@dataclass
class ShadowNodes:
    """The `shadow_nodes` list_lru: the xa_nodes of the page cache that hold only shadow entries, one
    list per memcg that paid for them (key: its id; None: nodes charged to no memcg), in the order
    they came to hold only shadows (workingset_update_node()); and the shrinker's deferred work per
    list (nr_deferred).

    The kernel updates a node's place as each store changes it. The model notes the nodes a change
    touched (`dirty`, by (inode handle, node), in the order first touched) and settles them when the
    shrinker or a view needs the lists (settle(): reclaim settles at each pass, so a node's place
    is that of the pass in which it came to hold only shadows)."""

    lists: dict[int | None, dict[tuple[int, Node], Inode]] = field(default_factory=dict)
    #: The list each listed node is on (list_lru's memcg of the node).
    listed: dict[tuple[int, Node], int | None] = field(default_factory=dict)
    dirty: dict[tuple[int, Node], Inode] = field(default_factory=dict)
    nr_deferred: dict[int | None, int] = field(default_factory=dict)

    def touch(self, inode: Inode, node: Node) -> None:
        """A store changed `node` of `inode`'s i_pages (xas_update()'s workingset_update_node; not for
        shmem, whose value entries are swap entries: mapping_set_update)."""
        if inode.shmem:
            return
        self.dirty[(inode.handle, node)] = inode

    def touch_index(self, inode: Inode, index: int) -> None:
        """The node of the entry at `index` may have changed (its block gained its first page or lost
        its last: XaNodes.block_pages)."""
        nodes = inode.xa_nodes
        self.touch(inode, nodes.slot_node(*nodes.entry_at(index)))

    def page_out(self, inode: Inode, index: int) -> None:
        """The page at `index` left `inode`'s cache (XaNodes.page_out): when its block has no page
        left, its node may now hold only shadows."""
        if inode.xa_nodes.page_out(index):
            self.touch_index(inode, index)

    def settle(self) -> None:
        """workingset_update_node() of every node touched since: added at the end of its memcg's list
        when it holds only shadow entries and is not listed, taken off when it does not."""
        for key, inode in self.dirty.items():
            nodes = inode.xa_nodes
            listed = self.listed.get(key, _UNLISTED)
            if nodes.shadow_only(key[1]):
                lru = list_key(nodes.owner.get(key[1]))
                if listed == lru:
                    continue
                if listed is not _UNLISTED:
                    del self.lists[listed][key]
                self.lists.setdefault(lru, {})[key] = inode
                self.listed[key] = lru
            elif listed is not _UNLISTED:
                del self.lists[listed][key]
                del self.listed[key]
        self.dirty.clear()

    def bound(self, lru: int | None) -> int:
        """At most how many nodes of list `lru` hold only shadows, without settling: those on it and
        those touched since."""
        return len(self.lists.get(lru, ())) + len(self.dirty)

    def nr_listed(self) -> int:
        """WORKINGSET_NODES: the nodes on every list (settled)."""
        self.settle()
        return len(self.listed)

    def isolate_first(self, lru: int | None) -> tuple[Inode, Node]:
        """The node at the head of list `lru`, taken off it (list_lru_walk's isolation)."""
        lst = self.lists[lru]
        key, inode = next(iter(lst.items()))
        del lst[key]
        del self.listed[key]
        return inode, key[1]

    def count(self, lru: int | None) -> int:
        """How many nodes list `lru` holds (settled: list_lru_shrink_count)."""
        self.settle()
        return len(self.lists.get(lru, ()))


def list_key(memcg: MemCgroup | None) -> int | None:
    """The key of the shadow_nodes list of nodes charged to `memcg` (None: to no memcg)."""
    return memcg.id if memcg is not None else None


#: Not on any list (a list's key may be None).
_UNLISTED: Final = -1
