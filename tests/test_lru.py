"""The LRU lists (mm/swap.c): where new folios go, the two-step promotion, and leaving at free."""

from vmlab.kernel.filemap import add_to_page_cache
from vmlab.kernel.mm_types import Inode
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import PG
from vmlab.kernel.swap import (
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    folio_mark_accessed,
    page_cache_release,
)


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
