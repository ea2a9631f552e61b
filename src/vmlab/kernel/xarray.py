"""The walks of page_cache_next_miss() and page_cache_prev_miss() (mm/filemap.c) over a file's page
cache as the kernel's XArray holds it (lib/xarray.c: xas_next, xas_prev, xas_load).

A large folio is one multi-index entry: a canonical slot at its head and sibling slots after it, in
the node whose slots are as large as it allows (an order-2 folio takes 4 slots of a leaf; order 6..9,
1..8 slots of a shift-6 node). xas_load() of an index inside such a folio leaves the cursor at the
canonical slot while xa_index keeps the index asked for, and xas_next()/xas_prev() then step both by
one within a leaf: the walk looks at slots `lag` entries behind (next) or ahead of (prev, also behind
in index) the index it reports, until it leaves the leaf, where xas_set_offset() resynchronises. So
after a read of pages 0-3 (order 0), 4-19 (order 2) and 20-35, page_cache_next_miss(5) is 37, not 36,
and page_cache_prev_miss(19) of 0-19 is 2, not ULONG_MAX (measured on 6.18: the async window started
at 37, tests/test_diff_readahead.py "next_miss_in_large_folio"). Without large folios the walk is an
exact scan, and the callers keep their plain loops.

The tree's shape is the smallest that holds the entries (xas_shrink() after deletions): no node for
an empty cache or a lone order-0 entry at index 0, else a top node of the smallest shift whose 64
slots cover the highest entry and hold the largest folio. Nodes are (shift, base) pairs.

The nodes themselves (XaNodes, one per inode): i_pages is XA_FLAGS_ACCOUNT, so each xa_node a store
allocates is a slab object charged to the running task's memcg (memcontrol's object stock) and each
one freed gives its charge back; xa_update() is a store with those charges. The page cache stores an
order-0 entry per new small page (xa_store_page), a folio's entry over the shadows of its range or
into a larger shadow split for it (xas_try_split(), a non-uniform split: split_entries), and erases
an entry when its last page goes with no shadow left (truncation, invalidation: xa_erase_unused).
Reclaim leaves a shadow of the folio's order in its slots: the nodes stay, until the workingset
shrinker frees those that hold only shadows (workingset.ShadowNodes, vmscan.shrink_shadow_nodes:
without it, a 512 MiB file read in a 16 MiB memcg left the model's kmem at 300 pages to the
kernel's 39). Not modelled: nodes freed after an RCU grace period (here at once), and the slab pages
themselves: a node is charged but takes no frame (meminfo's Slab stays 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Final

from vmlab.kernel import filemap
from vmlab.kernel.memcontrol import OBJCG_PTR, MemCgroup, memcg_kmem_charge_obj, memcg_kmem_uncharge_obj
from vmlab.kernel.mm_types import Inode
from vmlab.kernel.uapi import ULONG_MAX

if TYPE_CHECKING:
    from vmlab.kernel.page_alloc import PhysMem

XA_CHUNK_SHIFT: Final = 6
XA_CHUNK_SIZE: Final = 1 << XA_CHUNK_SHIFT
XA_CHUNK_MASK: Final = XA_CHUNK_SIZE - 1

#: Slot contents.
NULL, VALUE, ENTRY, SIBLING, NODE = range(5)
#: xa_node's special values: the walk has not started (XAS_RESTART, frozen), ran off the tree
#: (XAS_BOUNDS), or points at xa_head itself, an entry (NULL).
RESTART, BOUNDS, HEAD = "restart", "bounds", "head"

Node = tuple[int, int]  # (shift, first index covered)


@dataclass
class XaState:
    """`struct xa_state` of one walk over `inode`'s page cache."""

    inode: Inode
    index: int
    node: Node | str = RESTART
    offset: int = 0

    @cached_property
    def top(self) -> Node | str | None:
        """xa_head: None (empty), HEAD (one order-0 entry at index 0) or the top node."""
        inode = self.inode
        last = max(inode.i_pages, default=-1)
        last = max(last, max(inode.shadows, default=-1))
        if filemap.host_pages_pending(inode):
            host = (range(filemap.i_size_pages(inode)) if inode.host_cached is None else inode.host_cached)
            last = max(last, max((i for i in host if filemap.page_present(inode, i)), default=-1))
        if last < 0:
            return None
        if last == 0 and not inode.folio_orders:
            return HEAD
        shift = XA_CHUNK_SHIFT if max(inode.folio_orders.values(), default=0) >= XA_CHUNK_SHIFT else 0
        while last >> shift > XA_CHUNK_MASK:
            shift += XA_CHUNK_SHIFT
        return shift, 0

    def slot(self, node: Node, offset: int) -> tuple[int, int]:
        """(kind, argument) of slot `offset` of `node`: the sibling's canonical offset, else 0."""
        shift, base = node
        lo = base + (offset << shift)
        inode = self.inode
        head, order = filemap.folio_head(inode, lo)
        present = filemap.page_present(inode, lo)
        if present and order >= shift and (shift == 0 or order >= XA_CHUNK_SHIFT) and (
                shift + XA_CHUNK_SHIFT > order):
            return (ENTRY, 0) if head == lo else (SIBLING, (head - base) >> shift)
        if shift == 0:
            return (VALUE, 0) if lo in inode.shadows else (NULL, 0)
        if any(filemap.page_present(inode, i) or i in inode.shadows for i in range(lo, lo + (1 << shift))):
            return NODE, 0
        return NULL, 0

    def get_offset(self, node: Node) -> int:
        """get_offset(): the slot of xa_index in `node`."""
        return (self.index >> node[0]) & XA_CHUNK_MASK

    def set_bounds(self) -> int:
        """set_bounds(): the walk left the tree; a NULL entry."""
        self.node = BOUNDS
        return NULL

    def descend_from(self, node: Node, kind: int) -> int:
        """The loop ending __xas_next/__xas_prev: go down through node slots to the entry at offset."""
        while kind == NODE:
            shift, base = node
            node = (shift - XA_CHUNK_SHIFT, base + (self.offset << shift))
            self.node = node
            self.offset = self.get_offset(node)
            kind, _ = self.slot(node, self.offset)
        return kind

    def load(self) -> int:
        """xas_load() from the head: xas_start(), then xas_descend() level by level (a sibling moves the
        cursor to its canonical slot, xa_index stays)."""
        top = self.top
        if top is None or (top == HEAD and self.index):
            return self.set_bounds()
        if top == HEAD:
            self.node = HEAD
            return ENTRY
        assert isinstance(top, tuple)
        if self.index >> top[0] > XA_CHUNK_MASK:
            return self.set_bounds()
        node = top
        while True:
            self.node = node
            offset = self.get_offset(node)
            kind, arg = self.slot(node, offset)
            if kind == SIBLING:
                offset = arg
                kind, _ = self.slot(node, offset)
            self.offset = offset
            if kind != NODE or node[0] == 0:
                return kind
            node = (node[0] - XA_CHUNK_SHIFT, node[1] + (offset << node[0]))

    def step(self, delta: int) -> int:
        """xas_next() (delta 1) or xas_prev() (delta -1): the next entry's kind."""
        node = self.node
        edge = XA_CHUNK_MASK if delta > 0 else 0
        if isinstance(node, tuple) and node[0] == 0 and self.offset != edge:
            self.index = (self.index + delta) & ULONG_MAX
            self.offset += delta
            return self.slot(node, self.offset)[0]
        if node != RESTART:  # !xas_frozen()
            self.index = (self.index + delta) & ULONG_MAX
        if node == HEAD:
            return self.set_bounds()
        if not isinstance(node, tuple):
            return self.load()
        if self.offset != self.get_offset(node):
            self.offset += delta
        while self.offset in (XA_CHUNK_SIZE, -1):
            shift, base = node
            if shift == self.top[0]:  # type: ignore[index]
                return self.set_bounds()
            parent = (shift + XA_CHUNK_SHIFT, base & ~((1 << (shift + 2 * XA_CHUNK_SHIFT)) - 1))
            self.offset = ((base >> (shift + XA_CHUNK_SHIFT)) & XA_CHUNK_MASK) + delta
            node = self.node = parent
        return self.descend_from(node, self.slot(node, self.offset)[0])


def next_miss(inode: Inode, index: int, max_scan: int) -> int:
    """page_cache_next_miss(): xas_next() from `index` until a NULL or value entry (its xa_index),
    0 on wrap-around, index + max_scan when none in max_scan steps."""
    xas = XaState(inode, index)
    for _ in range(max_scan):
        kind = xas.step(1)
        if kind in (NULL, VALUE):
            return xas.index
        if xas.index == 0:
            return 0
    return (index + max_scan) & ULONG_MAX


def prev_miss(inode: Inode, index: int, max_scan: int) -> int:
    """page_cache_prev_miss(): xas_prev() from `index` until a NULL or value entry or ULONG_MAX; the
    xa_index it stopped at."""
    xas = XaState(inode, index)
    for _ in range(max_scan):
        kind = xas.step(-1)
        if kind in (NULL, VALUE) or xas.index == ULONG_MAX:
            break
    return xas.index


# --- the nodes of the page cache's XArray ------------------------------------------------------------

#: The full-height tree's top node: its 64 slots cover every page index of a 64-bit file offset.
TOP_SHIFT: Final = 48
#: What one xa_node charges: obj_full_size() of the radix_tree_node slab, its object size (584 on
#: x86_64, /proc/slabinfo) and the obj_cgroup pointer kept for it. Measured: 1,041 nodes (a page
#: read every 64 of 65,536) charged 151 kmem pages; 584 bytes a node would make 149.
XA_NODE_SIZE: Final = 584 + OBJCG_PTR

Entry = tuple[int, int]  # (first index, order) of one entry: a folio or a shadow


@dataclass
class XaNodes:
    """The xa_nodes of one inode's i_pages (lib/xarray.c), counted so that each node's allocation and
    free can be charged (the page cache's XArray is XA_FLAGS_ACCOUNT: radix_tree_node objects are
    __GFP_ACCOUNT slab, charged to the allocating task's memcg).

    An entry of order k (a folio, or the shadow it left) sits in the node of shift 6 * (k // 6) and
    takes 2^(k mod 6) of its slots (sibling entries), so an order-9 folio needs no leaf. The kernel's
    tree is the smallest that holds its entries: xas_expand() adds levels only to reach an index,
    xas_shrink() drops a top node whose only slot in use is slot 0 holding a node (or, for a leaf, an
    order-0 entry, which xa_head then holds). So the tree is a function of the entries: here a
    full-height tree (`masks`: node -> bitmap of the slots in use, a node kept while one is) less
    the chain of top nodes xas_shrink() would drop (`chain`). The entries of order > 0 are in
    `orders` (head -> order; an index in use and not covered there is an order-0 entry): the layout
    of i_pages as the kernel has it, which the model's folio_orders is not (it forgets a large
    folio's order once reclaim takes it frame by frame, while the kernel's shadow keeps the order).
    `owner`: the memcg each real node was charged to."""

    masks: dict[Node, int] = field(default_factory=dict)
    orders: dict[int, int] = field(default_factory=dict)
    #: How many entries of `orders` have each order (entry_at() tries each order present once).
    order_counts: dict[int, int] = field(default_factory=dict)
    chain: tuple[Node, ...] = ()
    owner: dict[Node, MemCgroup] = field(default_factory=dict)
    #: How many pages of each block of XA_CHUNK_SIZE indexes (index >> XA_CHUNK_SHIFT) are cached:
    #: what tells a node of only shadows (shadow_only) without looking at its slots' pages.
    block_pages: dict[int, int] = field(default_factory=dict)

    def nr_nodes(self) -> int:
        """How many xa_nodes the tree has."""
        return len(self.masks) - len(self.chain)

    def entry_at(self, index: int) -> Entry:
        """The entry (head, order) whose slots hold `index`: a multi-index entry covering it, else
        (index, 0)."""
        for order in self.order_counts:
            head = index & ~((1 << order) - 1)
            if self.orders.get(head) == order:
                return head, order
        return index, 0

    def slot_node(self, head: int, order: int) -> Node:
        """The node whose slots hold the entry (head, order)."""
        return self._slot(head, order)[0]

    def page_in(self, index: int) -> None:
        """A page at `index` joined the cache (block_pages; the page cache's miss path counts it in
        line)."""
        block = index >> XA_CHUNK_SHIFT
        self.block_pages[block] = self.block_pages.get(block, 0) + 1

    def page_out(self, index: int) -> bool:
        """The page at `index` left the cache; True when its block has none left (its node may now
        hold only shadows)."""
        block = index >> XA_CHUNK_SHIFT
        n = self.block_pages[block] - 1
        if n:
            self.block_pages[block] = n
            return False
        del self.block_pages[block]
        return True

    def shadow_only(self, node: Node) -> bool:
        """node->count == node->nr_values: `node` is a node of the tree (not of the chain the kernel
        does not have) every slot in use of which holds a shadow entry: no child node, and no page
        cached in its slots' ranges (block_pages)."""
        mask = self.masks.get(node, 0)
        if not mask or node in self.chain:
            return False
        shift, base = node
        if not shift:
            return base >> XA_CHUNK_SHIFT not in self.block_pages
        if shift > XA_CHUNK_SHIFT:  # no entry is that large: only child nodes
            return False
        for slot in range(XA_CHUNK_SIZE):  # a slot of a shift-6 node spans one block
            if mask >> slot & 1:
                first = base + (slot << shift)
                if (0, first) in self.masks or first >> XA_CHUNK_SHIFT in self.block_pages:
                    return False
        return True

    def node_entries(self, node: Node) -> list[Entry]:
        """The entries whose slots are in `node` (one that holds no child node)."""
        shift, base = node
        mask, span = self.masks[node], 1 << shift
        used = (base + slot * span for slot in range(XA_CHUNK_SIZE) if mask >> slot & 1)
        return sorted({self.entry_at(index) for index in used})

    def update(self, remove: list[Entry], add: list[Entry]) -> tuple[list[Node], list[Node], list[Node]]:
        """Take the entries `remove` out of the tree and put `add` in (a store that replaces entries,
        a split, an erase): the nodes this allocates and those it frees, top nodes the kernel does
        not have (the chain) left out, and every node it changed (for workingset_update_node). A node
        emptied by a removal and filled again by an addition was never freed (xas_store() replaces in
        place)."""
        before: dict[Node, bool] = {}
        for index, order in remove:
            self._clear(index, order, before)
            if order:
                del self.orders[index]
                left = self.order_counts[order] - 1
                if left:
                    self.order_counts[order] = left
                else:
                    del self.order_counts[order]
        for index, order in add:
            self._set(index, order, before)
            if order:
                self.orders[index] = order
                self.order_counts[order] = self.order_counts.get(order, 0) + 1
        masks = self.masks
        touched = list(before)
        created = [n for n, was in before.items() if not was and n in masks]
        freed = [n for n, was in before.items() if was and n not in masks]
        old_chain, chain = self.chain, self._top_chain()
        self.chain = chain
        if old_chain == chain:
            return [n for n in created if n not in chain], [n for n in freed if n not in chain], touched
        grown = [n for n in old_chain if n not in chain and n in masks and n not in created]
        shrunk = [n for n in chain if n not in old_chain and n not in created]
        return ([n for n in created if n not in chain] + grown,
                [n for n in freed if n not in old_chain] + shrunk, touched)

    def _slot(self, index: int, order: int) -> tuple[Node, int]:
        """The node an entry sits in and the bitmap of its slots there."""
        shift = order // XA_CHUNK_SHIFT * XA_CHUNK_SHIFT
        span = shift + XA_CHUNK_SHIFT
        bits = ((1 << (1 << (order - shift))) - 1) << ((index >> shift) & XA_CHUNK_MASK)
        return (shift, index >> span << span), bits

    def _set(self, index: int, order: int, before: dict[Node, bool]) -> None:
        """Mark the entry's slots in use, and each new node's slot in its parent."""
        node, bits = self._slot(index, order)
        masks = self.masks
        while True:
            mask = masks.get(node, 0)
            before.setdefault(node, mask != 0)
            if mask & bits:
                raise AssertionError(f"xarray slot in use twice: node {node}, slots {bits:#x}")
            masks[node] = mask | bits
            if mask or node[0] == TOP_SHIFT:
                return
            node, bits = _parent_slot(node)

    def _clear(self, index: int, order: int, before: dict[Node, bool]) -> None:
        """Mark the entry's slots free, and each emptied node's slot in its parent."""
        node, bits = self._slot(index, order)
        masks = self.masks
        while True:
            mask = masks.get(node, 0)
            before.setdefault(node, mask != 0)
            if mask & bits != bits:
                raise AssertionError(f"xarray slot not in use: node {node}, slots {bits:#x}")
            mask &= ~bits
            if mask:
                masks[node] = mask
                return
            del masks[node]
            if node[0] == TOP_SHIFT:
                return
            node, bits = _parent_slot(node)

    def _top_chain(self) -> tuple[Node, ...]:
        """The full-height tree's nodes above the kernel's: from the top down, each whose only slot in
        use is slot 0 holding a node, and a leaf whose only entry is order 0 at index 0."""
        masks = self.masks
        chain: list[Node] = []
        node = (TOP_SHIFT, 0)
        while masks.get(node) == 1:
            shift = node[0]
            if shift == 0:
                chain.append(node)
                break
            child = (shift - XA_CHUNK_SHIFT, 0)
            if child not in masks:  # slot 0 holds a multi-index entry: no shrink
                break
            chain.append(node)
            node = child
        return tuple(chain)


def _parent_slot(node: Node) -> tuple[Node, int]:
    """The node above `node` and the bit of the slot that points to it."""
    shift, base = node
    span = shift + 2 * XA_CHUNK_SHIFT
    offset = (base >> (shift + XA_CHUNK_SHIFT)) & XA_CHUNK_MASK
    return (shift + XA_CHUNK_SHIFT, base >> span << span), 1 << offset


def xa_update(mem: PhysMem, inode: Inode, remove: list[Entry], add: list[Entry], *, charge: bool = True,
              noretry: bool = False, nowait_first: bool = True) -> int:
    """A store into `inode`'s i_pages that takes the entries `remove` out and puts `add` in, with its
    nodes' slab charges: each node it allocates is charged (when `charge`) to the running task's memcg
    (xas_alloc(): a GFP_NOWAIT try under the lock first when `nowait_first`, then xas_nomem() with
    the caller's gfp, `noretry` for readahead's __GFP_NORETRY), each node it frees uncharges the memcg
    that paid for it. 0, or -ENOMEM when a charge failed: then the store is undone."""
    nodes = inode.xa_nodes
    created, freed, touched = nodes.update(remove, add)
    for node in touched:
        mem.shadow_nodes.touch(inode, node)
    owner = nodes.owner
    if charge:
        for node in created:
            err, memcg = memcg_kmem_charge_obj(mem, XA_NODE_SIZE, nowait=nowait_first)
            if err:
                err, memcg = memcg_kmem_charge_obj(mem, XA_NODE_SIZE, noretry=noretry)
            if err:
                _, unmade, _ = nodes.update(add, remove)
                _uncharge_nodes(owner, unmade)
                return err
            if memcg is not None:
                owner[node] = memcg
    _uncharge_nodes(owner, freed)
    return 0


def _uncharge_nodes(owner: dict[Node, MemCgroup], freed: list[Node]) -> None:
    """The freed nodes' charges go back to the memcgs that paid them."""
    for node in freed:
        memcg = owner.pop(node, None)
        if memcg is not None:
            memcg_kmem_uncharge_obj(memcg, XA_NODE_SIZE)


def split_entries(head: int, order: int, index: int, new_order: int) -> list[Entry]:
    """xas_try_split() repeated (a non-uniform split, as __filemap_add_folio() and folio_split() do
    it): the entry (head, order) halved again and again, the half without `index` kept whole each
    time, down to the entry of `new_order` at `index`; the pieces, that one first."""
    pieces = [(index >> new_order << new_order, new_order)]
    while order > new_order:
        order -= 1
        half = 1 << order
        if index < head + half:
            pieces.append((head + half, order))
        else:
            pieces.append((head, order))
            head += half
    return pieces


def xa_split(mem: PhysMem, inode: Inode, index: int, new_order: int, noretry: bool = False) -> int:
    """Split the entry that holds `index`, if it is larger than `new_order`, so that an entry of
    `new_order` holds it (split_entries); 0 or -ENOMEM (nothing split)."""
    head, order = inode.xa_nodes.entry_at(index)
    if order <= new_order:
        return 0
    return xa_update(mem, inode, [(head, order)], split_entries(head, order, index, new_order),
                     noretry=noretry)


def xa_store_page(mem: PhysMem, inode: Inode, index: int, charge: bool = True, noretry: bool = False) -> int:
    """The order-0 entry of a new page at `index`: in place of its shadow (a larger one split first),
    or into an empty slot (its new nodes charged when `charge`). 0 or -ENOMEM (nothing stored)."""
    if index in inode.shadows:
        return xa_split(mem, inode, index, 0, noretry)
    return xa_update(mem, inode, [], [(index, 0)], charge=charge, noretry=noretry)


def xa_erase_unused(mem: PhysMem, inode: Inode, index: int) -> None:
    """After page `index` left the cache with no shadow in its place: the entry that held it goes
    from the tree once none of its pages is cached or shadowed (a large folio leaves the model's
    cache frame by frame)."""
    head, order = inode.xa_nodes.entry_at(index)
    if order:
        pages, shadows = inode.i_pages, inode.shadows
        if any(i in pages or i in shadows for i in range(head, head + (1 << order))):
            return
    xa_update(mem, inode, [(head, order)], [])


def xa_uncharge(inode: Inode) -> None:
    """The charges of the inode's nodes go back to the memcgs that paid them; the nodes stay, charged
    to nobody (as the nodes of a file read before any memcg existed)."""
    owner = inode.xa_nodes.owner
    _uncharge_nodes(owner, list(owner))


def xa_destroy(inode: Inode) -> None:
    """The inode's cache is gone (its last reference went): every node is freed."""
    nodes = inode.xa_nodes
    xa_uncharge(inode)
    nodes.masks.clear()
    nodes.orders.clear()
    nodes.order_counts.clear()
    nodes.block_pages.clear()
    nodes.chain = ()
