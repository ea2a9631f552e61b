"""The page cache, after mm/filemap.c and mm/fadvise.c: an inode's cached pages (`i_pages`), reading a
page in (with the read-around window of an mmap fault), and the hints that drop or prefetch pages.

A host file enters the model with the set of pages the host had cached (fs.host_residency); those
come in without I/O, any other page costs a read (a major fault when a fault asked for it).
"""

from __future__ import annotations

from vmlab.kernel.mm_types import Inode
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import PG
from vmlab.kernel.swap import folio_add_lru, page_cache_release
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE
from vmlab.kernel.workingset import workingset_refault

READAHEAD_PAGES = 32  # a file's ra_pages: 128 KiB

POSIX_FADV_NORMAL, POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL, POSIX_FADV_WILLNEED = 0, 1, 2, 3
POSIX_FADV_DONTNEED, POSIX_FADV_NOREUSE = 4, 5


def i_size_pages(inode: Inode) -> int:
    """Pages of the file up to EOF (DIV_ROUND_UP(i_size, PAGE_SIZE))."""
    return (inode.size + PAGE_SIZE - 1) >> PAGE_SHIFT


def host_cached(inode: Inode, index: int) -> bool:
    """Whether the host had this page cached when the model first saw the file (all, if unknown)."""
    return inode.host_cached is None or index in inode.host_cached


def add_to_page_cache(mem: PhysMem, inode: Inode, index: int) -> int | None:
    """filemap_add_folio(): a new uptodate page of the file at `index`, held by the cache (one ref)."""
    pfn = mem.alloc_pages(0)
    if pfn is None:
        return None
    mm = mem.mem_map
    mm.mapping[pfn] = inode.handle
    mm.index[pfn] = index
    mm.set(pfn, PG.uptodate)
    if inode.shmem:
        mm.set(pfn, PG.swapbacked)
    inode.i_pages[index] = pfn
    mem.address_spaces[inode.handle] = inode
    shadow = inode.shadows.pop(index, None)
    if shadow is not None:
        workingset_refault(mem, pfn, 1, shadow)
    folio_add_lru(mem, pfn)
    return pfn


def cached_page(mem: PhysMem, inode: Inode, index: int) -> int | None:
    """filemap_get_folio() without I/O: the cached page, bringing in one the host had cached."""
    pfn = inode.i_pages.get(index)
    if (pfn is None and not inode.shmem and index < i_size_pages(inode) and index not in inode.shadows
            and host_cached(inode, index)):
        pfn = add_to_page_cache(mem, inode, index)
    return pfn


def read_page(mem: PhysMem, inode: Inode, index: int, readaround: bool) -> tuple[int | None, bool]:
    """The page at `index`, read in if needed: (pfn or None when out of memory, whether it took I/O).

    shmem has no backing store: a missing page is a new zeroed one. A read of a file page that was not
    cached brings in, with `readaround` (an mmap fault), the ra_pages window centred on it.
    """
    pfn = cached_page(mem, inode, index)
    if pfn is not None:
        return pfn, False
    pfn = add_to_page_cache(mem, inode, index)
    if inode.shmem or pfn is None:
        return pfn, False
    if readaround:
        mem.mem_map._refcount[pfn] += 1  # the fault's reference: reclaim must not take it meanwhile
        start = max(0, index - READAHEAD_PAGES // 2)
        for i in range(start, min(start + READAHEAD_PAGES, i_size_pages(inode))):
            if i not in inode.i_pages:
                add_to_page_cache(mem, inode, i)
        mem.mem_map._refcount[pfn] -= 1
    return pfn, True


def generic_fadvise(mem: PhysMem, inode: Inode, offset: int, length: int, advice: int) -> int:
    """generic_fadvise(): WILLNEED reads the range in; DONTNEED drops its clean, unmapped pages (they
    are then not cached, the next access reads them). 0 or -EINVAL."""
    if advice not in range(6):
        return -22
    end = i_size_pages(inode) if length == 0 else (offset + length + PAGE_SIZE - 1) >> PAGE_SHIFT
    first = offset >> PAGE_SHIFT
    if advice == POSIX_FADV_WILLNEED:
        for index in range(first, min(end, i_size_pages(inode))):
            read_page(mem, inode, index, readaround=False)
    elif advice == POSIX_FADV_DONTNEED:
        mm = mem.mem_map
        keep = set(range(i_size_pages(inode))) if inode.host_cached is None else set(inode.host_cached)
        for index in range(first, end):
            pfn = inode.i_pages.get(index)
            if pfn is not None and int(mm._mapcount[pfn]) < 0 and not mm.test(pfn, PG.dirty):
                page_cache_release(mem, pfn)
                del inode.i_pages[index]
                mm.mapping[pfn] = 0
                mm.clear(pfn, PG.uptodate)
                mm.clear(pfn, PG.swapbacked)
                mem.free_pages(pfn, 0)
            if index not in inode.i_pages:
                keep.discard(index)
        inode.host_cached = frozenset(keep)
    return 0
