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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from vmlab.kernel import filemap
from vmlab.kernel.mm_types import Inode
from vmlab.kernel.uapi import ULONG_MAX

XA_CHUNK_SHIFT = 6
XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT
XA_CHUNK_MASK = XA_CHUNK_SIZE - 1

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
