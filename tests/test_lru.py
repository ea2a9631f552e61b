"""The LRU lists (mm/swap.c): where new folios go, the two-step promotion, and leaving at free."""

from hypothesis import example, given, settings
from hypothesis import strategies as st

from vmlab.kernel.filemap import add_to_page_cache
from vmlab.kernel.mm_types import Inode
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import PG
from vmlab.kernel.swap import (
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    folio_activate,
    folio_mark_accessed,
    page_cache_release,
)
from vmlab.kernel.xarray import xa_erase_unused


def _mem() -> PhysMem:
    return PhysMem(64 << 20)


def test_new_cache_page_joins_inactive_file_then_second_access_activates() -> None:
    mem = _mem()
    inode = Inode("/f", ino=1, size=1 << 20)
    pfn = add_to_page_cache(mem, inode, 0)
    assert pfn is not None
    lru = mem.lruvec
    assert list(lru.lists[LRU_INACTIVE_FILE]) == [pfn] and lru.nr_pages[LRU_INACTIVE_FILE] == 1
    folio_mark_accessed(mem, pfn)  # first use: referenced, stays inactive
    assert mem.mem_map.test(pfn, PG.referenced) and pfn in lru.lists[LRU_INACTIVE_FILE]
    folio_mark_accessed(mem, pfn)  # second use: active, referenced cleared
    assert list(lru.lists[LRU_ACTIVE_FILE]) == [pfn] and not lru.lists[LRU_INACTIVE_FILE]
    assert mem.mem_map.test(pfn, PG.active) and not mem.mem_map.test(pfn, PG.referenced)
    assert mem.events["pgactivate"] == 1


def test_shmem_pages_are_on_the_anon_lists_and_leave_at_release() -> None:
    mem = _mem()
    inode = Inode("/dev/zero (deleted)", ino=2, size=1 << 20, shmem=True)
    pfn = add_to_page_cache(mem, inode, 3)
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


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=120))
@example([(1, False), (1, False), (1, False), (2, True), (2, True), (7, False), (7, False), (7, False)])
def test_folio_activate_of_a_small_folio_is_delete_then_add(steps: list[tuple[int, bool]]) -> None:
    """folio_activate()'s in-line move leaves the lists, counts, flags and events that
    LruVec.delete + LruVec.add leave, for file and shmem pages, inactive, active or off the LRU."""
    mems = [_mem(), _mem()]
    inodes = [(Inode("/f", ino=1, size=1 << 20), Inode("/s", ino=2, size=1 << 20, shmem=True)) for _ in mems]
    for index, shmem in steps:
        for mem, activate, files in zip(mems, (folio_activate, _general_activate), inodes, strict=True):
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
