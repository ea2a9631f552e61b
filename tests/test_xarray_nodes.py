"""The page cache's XArray nodes (xarray.XaNodes) and the object stock that charges them (memcontrol).

XaNodes keeps a full-height tree and the chain of top nodes xas_shrink() would drop; here its node
count is held, after every store, against the kernel's tree built directly from its definition (the
smallest tree that holds the entries: a top node of the smallest shift that covers the highest index
and the largest entry's level, every entry's ancestors down to its own node; a lone order-0 entry at
index 0 lives in xa_head), and against the running sum of the nodes each store reported allocated and
freed. The object stock follows obj_cgroup_charge()/refill_obj_stock() byte for byte.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memcgkit import memcg_machine
from vmlab.kernel.uapi import PAGE_SIZE
from vmlab.kernel.xarray import XA_CHUNK_SHIFT, XA_NODE_SIZE, Entry, XaNodes, split_entries

SPACE = 1 << 13  # indexes 0..8191: trees of up to three levels
ORDERS = [0, 0, 0, 1, 2, 5, 6, 7, 9]


def kernel_nodes(entries: set[Entry]) -> int:
    """How many xa_nodes the kernel's tree of `entries` has, from the definition."""
    if not entries or entries == {(0, 0)}:
        return 0
    level = {e: order // XA_CHUNK_SHIFT * XA_CHUNK_SHIFT for e in entries for order in [e[1]]}
    last = max(index + (1 << order) - 1 for index, order in entries)
    top = max(level.values())
    while last >> (top + XA_CHUNK_SHIFT):
        top += XA_CHUNK_SHIFT
    nodes = set()
    for (index, _), shift in level.items():
        for s in range(shift, top + 1, XA_CHUNK_SHIFT):
            nodes.add((s, index >> (s + XA_CHUNK_SHIFT)))
    return len(nodes)


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    """Up to 60 (kind, index, order) steps: store an entry, erase one, split one, merge a range."""
    return draw(st.lists(st.tuples(st.sampled_from(["store", "store", "erase", "split", "merge"]),
                                   st.integers(0, SPACE - 1), st.sampled_from(ORDERS)), max_size=60))


def covering(entries: set[Entry], index: int) -> Entry | None:
    """The entry whose slots hold `index`, if any."""
    return next((e for e in entries if e[0] <= index < e[0] + (1 << e[1])), None)


@settings(max_examples=300, deadline=None)
@given(operations())
def test_node_count_is_the_kernels_tree(ops: list[tuple[str, int, int]]) -> None:
    """After every store (a new entry in free slots, an erase, a non-uniform split, a larger entry
    over smaller ones) the nodes kept are the kernel's, and so is the tally of nodes reported
    allocated less those reported freed."""
    nodes = XaNodes()
    entries: set[Entry] = set()
    tally = 0
    for kind, index, order in ops:
        head = index >> order << order
        inside = {e for e in entries if head <= e[0] < head + (1 << order) or covering({e}, head)}
        remove: list[Entry]
        add: list[Entry]
        if kind == "store" and not inside:
            remove, add = [], [(head, order)]
        elif kind == "erase" and (e := covering(entries, index)):
            remove, add = [e], []
        elif kind == "split" and (e := covering(entries, index)) and e[1] > 0:
            remove, add = [e], split_entries(e[0], e[1], index, min(order, e[1] - 1))
        elif kind == "merge" and inside and all(head <= e[0] and e[0] + (1 << e[1]) <= head + (1 << order)
                                               for e in inside):
            remove, add = sorted(inside), [(head, order)]
        else:
            continue
        created, freed, _ = nodes.update(remove, add)
        entries = (entries - set(remove)) | set(add)
        tally += len(created) - len(freed)
        assert nodes.nr_nodes() == kernel_nodes(entries) == tally, (kind, remove, add, sorted(entries))


def test_a_split_of_a_large_shadow_allocates_the_leaves_its_pieces_need() -> None:
    """An order-9 entry needs no leaf; splitting it for an order-0 page at 700 keeps halves of order
    8..6 in the shift-6 node and needs one leaf, for the pieces of order 5..0 (xas_try_split: one
    node per XA_CHUNK_SHIFT of orders crossed)."""
    nodes = XaNodes()
    nodes.update([], [(512, 9)])
    assert nodes.nr_nodes() == 1  # the shift-6 node over 0..4095 holds it in 8 slots
    created, freed, _ = nodes.update([(512, 9)], split_entries(512, 9, 700, 0))
    assert created == [(0, 640)] and freed == [] and nodes.nr_nodes() == 2


def test_the_object_stock_charges_whole_pages_and_gives_them_back() -> None:
    """Seven nodes of 592 bytes: the first charges a page and leaves 3,504 bytes in the stock, five
    more are served from it (544 left), the seventh charges a second page (4,048 left: charging does
    not uncharge). Freeing the first takes the stock over a page (4,640 bytes): a page goes back, 544
    bytes stay; the other six bring it to exactly a page, which stays (only more than a page goes)."""
    model, _, memcg = memcg_machine(64 << 20)
    tree = model.memcgs
    kmem0 = memcg.kmem.usage
    for _ in range(7):
        assert tree.obj_cgroup_charge(memcg, XA_NODE_SIZE) == 0
    assert memcg.kmem_obj_pages == 2 and memcg.kmem.usage - kmem0 == 2
    assert tree.obj_stock_memcg is memcg and tree.obj_stock_bytes == 2 * PAGE_SIZE - 7 * XA_NODE_SIZE
    tree.obj_cgroup_uncharge(memcg, XA_NODE_SIZE)
    assert memcg.kmem_obj_pages == 1 and tree.obj_stock_bytes == 544
    for _ in range(6):
        tree.obj_cgroup_uncharge(memcg, XA_NODE_SIZE)
    assert memcg.kmem_obj_pages == 1 and memcg.kmem.usage - kmem0 == 1 and tree.obj_stock_bytes == PAGE_SIZE


def test_a_stock_switched_to_another_memcg_keeps_the_odd_bytes() -> None:
    """drain_obj_stock(): a charge for another memcg drains the stock; whole pages are uncharged, the
    odd bytes stay with their memcg (nr_charged_bytes) and serve it when the stock comes back."""
    model, _, memcg = memcg_machine(64 << 20)
    tree = model.memcgs
    other = tree.mkdir("/u")
    assert tree.obj_cgroup_charge(memcg, XA_NODE_SIZE) == 0
    assert tree.obj_cgroup_charge(other, XA_NODE_SIZE) == 0
    assert memcg.nr_charged_bytes == PAGE_SIZE - XA_NODE_SIZE and memcg.kmem_obj_pages == 1
    tree.obj_cgroup_uncharge(memcg, XA_NODE_SIZE)  # takes the stock back with its bytes: a page's worth
    assert memcg.nr_charged_bytes == 0 and memcg.kmem_obj_pages == 1 and tree.obj_stock_bytes == PAGE_SIZE
    assert other.kmem_obj_pages == 1 and other.nr_charged_bytes == PAGE_SIZE - XA_NODE_SIZE
