"""The LRU lists (mm/swap.c): where new folios go, the two-step promotion, and leaving at free."""

from hypothesis import example, given, settings
from hypothesis import strategies as st

from vmlab.kernel.filemap import add_to_page_cache
from vmlab.kernel.mm_types import Inode
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import PG
from vmlab.kernel.swap import (
    FOLIO_BATCH_SIZE,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    folio_activate,
    folio_batch_move_lru,
    folio_mark_accessed,
    lru_activate,
    lru_add_drain,
    lru_view,
    page_cache_release,
)
from vmlab.kernel.xarray import xa_erase_unused


def _mem() -> PhysMem:
    return PhysMem(64 << 20)


def test_new_cache_page_joins_inactive_file_then_second_access_activates() -> None:
    """A new page waits in the CPU's lru_add batch (PG_lru clear, the batch's reference), joins the
    inactive file list when the batch is drained; the second use queues it in the lru_activate batch
    (PG_referenced cleared, still inactive), and the next drain activates it."""
    mem = _mem()
    inode = Inode("/f", ino=1, size=1 << 20)
    pfn = add_to_page_cache(mem, inode, 0)
    assert pfn is not None
    lru = mem.lruvec
    assert mem.fbatches.lru_add == [pfn] and not mem.mem_map.test(pfn, PG.lru)
    assert int(mem.mem_map._refcount[pfn]) == 2 and lru.nr_pages[LRU_INACTIVE_FILE] == 0
    lru_add_drain(mem)
    assert list(lru.lists[LRU_INACTIVE_FILE]) == [pfn] and lru.nr_pages[LRU_INACTIVE_FILE] == 1
    assert not mem.fbatches.lru_add and int(mem.mem_map._refcount[pfn]) == 1
    folio_mark_accessed(mem, pfn)  # first use: referenced, stays inactive
    assert mem.mem_map.test(pfn, PG.referenced) and pfn in lru.lists[LRU_INACTIVE_FILE]
    folio_mark_accessed(mem, pfn)  # second use: queued for activation, referenced cleared
    assert mem.fbatches.lru_activate == [pfn] and int(mem.mem_map._refcount[pfn]) == 2
    assert pfn in lru.lists[LRU_INACTIVE_FILE] and not mem.mem_map.test(pfn, PG.referenced)
    assert mem.events["pgactivate"] == 0
    lru_add_drain(mem)
    assert list(lru.lists[LRU_ACTIVE_FILE]) == [pfn] and not lru.lists[LRU_INACTIVE_FILE]
    assert not mem.fbatches.lru_activate and int(mem.mem_map._refcount[pfn]) == 1
    assert mem.mem_map.test(pfn, PG.active) and not mem.mem_map.test(pfn, PG.referenced)
    assert mem.events["pgactivate"] == 1


def test_second_access_in_the_lru_add_batch_marks_the_page_active() -> None:
    """__lru_cache_activate_folio(): a page used twice while it waits in the CPU's lru_add batch is
    marked active there and joins the active list when the batch moves (no pgactivate: no move);
    a full batch of FOLIO_BATCH_SIZE moves by itself."""
    mem = _mem()
    inode = Inode("/f", ino=1, size=1 << 20)
    pfn = add_to_page_cache(mem, inode, 0)
    assert pfn is not None
    folio_mark_accessed(mem, pfn)
    folio_mark_accessed(mem, pfn)
    assert mem.mem_map.test(pfn, PG.active) and not mem.mem_map.test(pfn, PG.lru)
    others = [add_to_page_cache(mem, inode, i) for i in range(1, FOLIO_BATCH_SIZE)]
    assert not mem.fbatches.lru_add  # the 31st page filled the batch
    assert list(mem.lruvec.lists[LRU_ACTIVE_FILE]) == [pfn]
    assert list(mem.lruvec.lists[LRU_INACTIVE_FILE]) == others
    assert mem.events["pgactivate"] == 0


def test_the_lru_view_shows_the_batch_after_the_lists() -> None:
    """`show lru`: a new page is on no list but in the lru_add batch line, then on its list."""
    mem = _mem()
    pfn = add_to_page_cache(mem, Inode("/f", ino=1, size=1 << 20), 0)
    assert pfn is not None
    lines = lru_view(mem).splitlines()
    assert "inactive_file (0 pages):" in lines and lines[-1] == f"lru_add batch (1 folios): {pfn:#x}"
    lru_add_drain(mem)
    lines = lru_view(mem).splitlines()
    assert f"inactive_file (1 pages): {pfn:#x}" in lines and lines[-1] == "lru_add batch (0 folios):"


def test_shmem_pages_are_on_the_anon_lists_and_leave_at_release() -> None:
    mem = _mem()
    inode = Inode("/dev/zero (deleted)", ino=2, size=1 << 20, shmem=True)
    pfn = add_to_page_cache(mem, inode, 3)
    lru_add_drain(mem)
    assert pfn is not None and pfn in mem.lruvec.lists[LRU_INACTIVE_ANON]
    page_cache_release(mem, pfn)
    assert not mem.mem_map.test(pfn, PG.lru) and mem.lruvec.nr_pages[LRU_INACTIVE_ANON] == 0


def _general_activate(mem: PhysMem, head: int) -> None:
    """folio_activate() as LruVec.delete, PG_active, LruVec.add and the event: the reference for its
    in-line move of a small folio."""
    mm = mem.mem_map
    flags = mm.flags_a[head]
    if flags & (1 << PG.active | 1 << PG.unevictable) or not flags & 1 << PG.lru:
        return
    mem.lruvec.delete(mm, head)
    mm.set(head, PG.active)
    mem.lruvec.add(mm, head)
    mem.events["pgactivate"] += 1


def _activate_now(mem: PhysMem, head: int) -> None:
    """folio_activate(), its batch moved at once."""
    folio_activate(mem, head)
    folio_batch_move_lru(mem, mem.fbatches.lru_activate, lru_activate)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=120))
@example([(1, False), (1, False), (1, False), (2, True), (2, True), (7, False), (7, False), (7, False)])
def test_folio_activate_of_a_small_folio_is_delete_then_add(steps: list[tuple[int, bool]]) -> None:
    """folio_activate() and its batch's move (lru_activate's in-line move) leave the lists, counts,
    flags and events that LruVec.delete + LruVec.add leave, for file and shmem pages, inactive, active
    or off the LRU."""
    mems = [_mem(), _mem()]
    inodes = [(Inode("/f", ino=1, size=1 << 20), Inode("/s", ino=2, size=1 << 20, shmem=True)) for _ in mems]
    for index, shmem in steps:
        for mem, activate, files in zip(mems, (_activate_now, _general_activate), inodes, strict=True):
            inode = files[shmem]
            pfn = inode.i_pages.get(index)
            if pfn is None:
                add_to_page_cache(mem, inode, index)
            elif index % 7 == 0:
                page_cache_release(mem, pfn)
                del inode.i_pages[index]
                xa_erase_unused(mem, inode, index)
            else:
                activate(mem, pfn)
    one, two = mems
    assert [list(lst) for lst in one.lruvec.lists] == [list(lst) for lst in two.lruvec.lists]
    assert one.lruvec.nr_pages == two.lruvec.nr_pages and +one.events == +two.events
    assert one.mem_map.flags.tobytes() == two.mem_map.flags.tobytes()
