"""Truncation and cache invalidation, after mm/truncate.c: truncate_setsize() / truncate_pagecache()
(unmap the pages beyond the new end from every mapping, private COW copies included, then drop them
from the cache, dirty or not), and invalidate_mapping_pages() behind drop_caches and
POSIX_FADV_DONTNEED (only clean, unmapped pages not under write-back go). Both clear the shadow
entries of their range (clear_shadow_entries), so what is read there next is not a refault.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from vmlab.kernel.filemap import (
    folio_head,
    folio_heads_split,
    i_size_pages,
    split_folio_at,
    split_large_folio,
)
from vmlab.kernel.memory import zap_page_range
from vmlab.kernel.mm_types import VM_SHARED
from vmlab.kernel.page_flags import F_DIRTY, F_WRITEBACK, PG
from vmlab.kernel.page_writeback import (
    folio_cancel_dirty,
    folio_frames,
    folio_mark_dirty,
    folio_wait_writeback,
    mapping_vmas,
    vma_address,
)
from vmlab.kernel.pgtable import pte_pfn, pte_present
from vmlab.kernel.rmap import unmap_folio, vma_has_recency
from vmlab.kernel.shmem import shmem_free_swap
from vmlab.kernel.swap import (
    deactivate_file_folio,
    folio_batch_move_large,
    lru_add_drain,
    lru_deactivate_file,
    page_cache_release,
    put_page,
)
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE, ULONG_MAX
from vmlab.kernel.xarray import xa_erase_unused, xa_split

if TYPE_CHECKING:
    from vmlab.kernel.mm_types import Inode
    from vmlab.kernel.page_alloc import PhysMem


def forget_host_pages(inode: Inode, dropped: Iterable[int]) -> None:
    """Pages the model dropped are no longer the host's cached copies: the next access reads them."""
    gone = frozenset(dropped)
    if not gone:
        return
    cached = inode.host_cached if inode.host_cached is not None else range(i_size_pages(inode))
    inode.host_cached = frozenset(i for i in cached if i not in gone)


def unmap_mapping_pages(mem: PhysMem, inode: Inode, first: int) -> None:
    """unmap_mapping_range(mapping, first << PAGE_SHIFT, 0, even_cows=1): zap every PTE of every
    mapping of the file at page index `first` and beyond (so an access there faults, and past EOF
    raises SIGBUS)."""
    for mm, vma, lo, hi in list(mapping_vmas(inode, first, 1 << 62)):
        zap_page_range(mm, mem, vma_address(vma, lo), vma_address(vma, hi + 1), keep_guards=True,
                       recency=vma_has_recency(vma), vma=vma)


def punch_hole(mem: PhysMem, inode: Inode, first: int, last: int) -> None:
    """vfs_fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) of whole pages [first, last], as
    MADV_REMOVE asks (shmem_fallocate for a shmem object, ext4_punch_hole's
    truncate_pagecache_range for a file: data=ordered writes nothing first). unmap_mapping_range(...,
    even_cows=0): every mapping's PTEs of the file's pages there go, a private mapping's copies on
    write stay; then truncate_inode_pages_range() of the range: the pages leave the cache, dirty or
    not, their data thrown away (finding some drains the CPU's batches), and the range's shadow
    entries and a shmem object's slots go. The size stays. Measured on ext4: a written, mapped file's
    punched pages leave the cache with their dirty data, nothing written (nr_written +0), and a read
    there is a major fault. ext4 punches nothing past the page holding EOF."""
    if not inode.shmem:
        last = min(last, i_size_pages(inode) - 1)
        if last < first:
            return
    mm_map = mem.mem_map
    for mm, vma, lo, hi in list(mapping_vmas(inode, first, last)):
        start, end = vma_address(vma, lo), vma_address(vma, hi + 1)
        if vma.vm_flags & VM_SHARED:
            spans = [(start, end)]
        else:  # only the PTEs that map the file's own pages
            assert mm.pt is not None
            addrs, ptes = mm.pt.entries(start, end)
            spans = [(a, a + PAGE_SIZE) for a, pte in zip(addrs.tolist(), ptes.tolist(), strict=True)
                     if pte_present(pte) and int(mm_map.mapping[pte_pfn(pte)]) == inode.handle]
        for lo_addr, hi_addr in spans:
            zap_page_range(mm, mem, lo_addr, hi_addr, keep_guards=True, recency=vma_has_recency(vma), vma=vma)
    for index in sorted({first, last}):  # the large folios the hole covers in part: split, or kept
        if index in inode.i_pages:
            head, order = folio_head(inode, index)
            if order and (head < first or head + (1 << order) - 1 > last):
                split_partial_folio(mem, inode, max(first, head), first, last)
    doomed = []  # the folios wholly inside the hole
    for index in sorted(i for i in inode.i_pages if first <= i <= last):
        head, order = folio_head(inode, index)
        if first <= head and head + (1 << order) - 1 <= last:
            doomed.append(index)
    _drop_range(mem, inode, doomed, first, last)
    forget_host_pages(inode, range(first, min(last + 1, i_size_pages(inode))))


def _drop_range(mem: PhysMem, inode: Inode, doomed: list[int], first: int, last: int) -> None:
    """truncate_inode_pages_range()'s removal: the cached pages `doomed` (of the folios wholly inside
    pages [first, last]) leave the cache once their write-back ends, their dirty data thrown away;
    finding some drains the CPU's batches (folio_batch_release: a page that waited in one is freed
    now); then the range's shadow entries and a shmem object's slots go."""
    for index in doomed:
        folio_wait_writeback(mem, inode, index)
        folio_cancel_dirty(mem, inode, inode.i_pages[index])
        delete_from_page_cache(mem, inode, index)
    if doomed:
        lru_add_drain(mem)
    clear_shadow_entries(mem, inode, first, last)
    if inode.swapped:
        shmem_free_swap(mem, inode, first, last)


def delete_from_page_cache(mem: PhysMem, inode: Inode, index: int) -> None:
    """filemap_remove_folio() + the cache's folio_put(): the page leaves the inode's cache (and the LRU)
    and is freed once nothing else holds it. A large folio it belonged to is split first."""
    split_large_folio(inode, index)
    pfn = inode.i_pages.pop(index)
    inode.dirty_buffers.discard(index)
    inode.stale_dirty.discard(index)
    mem.shadow_nodes.page_out(inode, index)
    xa_erase_unused(mem, inode, index)
    mm = mem.mem_map
    if int(mm._refcount[pfn]) == 1:
        page_cache_release(mem, pfn)
        mm.clear(pfn, PG.uptodate)
        mm.clear(pfn, PG.swapbacked)
        mm.clear(pfn, PG.referenced)
        mm.clear(pfn, PG.active)
        mm.clear(pfn, PG.workingset)
        mm.mapping[pfn] = 0
    put_page(mem, pfn)


def split_partial_folio(mem: PhysMem, inode: Inode, split_at: int, first: int, last: int) -> bool:
    """truncate_inode_partial_folio() of the large folio holding cached page `split_at`, of which the
    pages being dropped, [first, last], are only a part: after its write-back their blocks are
    invalidated (block_invalidate_folio: clean), the folio is unmapped (try_folio_split_or_unmap: its
    pages fault in again, split or not) and split at `split_at` (split_folio_at), and, when the range
    ends inside it, the folio then holding page last + 1 is split there too (its result does not
    matter). A split must release the folio's buffer heads first, which a dirty block refuses (ext4):
    a folio with a dirty block left stays whole (False), the range's pages cached (zeroed). The split's
    pages beyond EOF leave the cache (they were kept in a folio truncation could not split)."""
    head, order = folio_head(inode, split_at)
    end = head + (1 << order)
    folio_wait_writeback(mem, inode, head)
    unmap_folio(mem, inode, inode.i_pages[split_at])
    inode.dirty_buffers.difference_update(range(max(first, head), min(last + 1, end)))
    if not inode.dirty_buffers.isdisjoint(range(head, end)):
        return False
    _release_folio(mem, inode, split_at)
    xa_split(mem, inode, split_at, 0)
    split_folio_at(inode, split_at)
    if last + 1 < end:
        head2, order2 = folio_head(inode, last + 1)
        if order2:
            unmap_folio(mem, inode, inode.i_pages[last + 1])
            if inode.dirty_buffers.isdisjoint(range(head2, head2 + (1 << order2))):
                _release_folio(mem, inode, last + 1)
                xa_split(mem, inode, last + 1, 0)
                split_folio_at(inode, last + 1)
    folio_heads_split(mem, inode, head, end)
    # __folio_split(): "Some pages can be beyond EOF: drop them from page cache" (a folio truncation
    # kept whole, split now)
    eof = i_size_pages(inode)
    for index in range(max(head, eof), end):
        if index in inode.i_pages and folio_head(inode, index)[0] >= eof:  # a new folio past it
            folio_cancel_dirty(mem, inode, inode.i_pages[index])
            delete_from_page_cache(mem, inode, index)
    return True


def _release_folio(mem: PhysMem, inode: Inode, index: int) -> None:
    """filemap_release_folio() before a page-cache folio is split: ext4's try_to_free_buffers() frees
    the buffer heads, all clean, and cleans the folio (folio_cancel_dirty: PG_dirty off, no longer
    counted dirty) but leaves its PAGECACHE_TAG_DIRTY, which the split copies to every new folio
    (Inode.stale_dirty). Measured: a dirty 256-page folio at 768 truncated at page 769 leaves page
    768 clean in kpageflags and cachestat counting 1 dirty page, before and after fsync."""
    pfn = inode.i_pages[index]
    if not mem.mem_map.flags_a[pfn] & F_DIRTY:
        return
    for frame in folio_frames(mem, inode, pfn):
        folio_cancel_dirty(mem, inode, frame)
        inode.stale_dirty.add(int(mem.mem_map.index[frame]))


def truncate_partial_folio(mem: PhysMem, inode: Inode, lstart: int) -> int:
    """The large folio that holds byte `lstart` and starts before it, if any, as truncation to
    `lstart` leaves it (split_partial_folio: split at that page, or kept whole while a block before
    `lstart` is dirty). Returns the first page index truncation may drop. Measured on this host
    (ext4): a mapped 64-page folio at 64 truncated to 100 pages leaves 64+32 96+4 when clean, the
    folio whole (nr_cache 64, 64 dirty) when written through the mapping (every block dirty), and its
    64 pages unmapped either way; a 4-page folio at 4 whose page 5 alone was written by pwrite() and
    truncated at page 5 is split: page 4 stays, dirty (the folio's PG_dirty)."""
    first = (lstart + PAGE_SIZE - 1) >> PAGE_SHIFT
    index = lstart >> PAGE_SHIFT
    if index not in inode.i_pages:
        return first
    head, order = folio_head(inode, index)
    if not order or head << PAGE_SHIFT >= lstart:
        return first
    return first if split_partial_folio(mem, inode, index, first, ULONG_MAX) else head + (1 << order)


def truncate_inode_pages(mem: PhysMem, inode: Inode, lstart: int) -> None:
    """truncate_inode_pages_range(mapping, lstart, -1): drop every page wholly beyond byte `lstart`,
    waiting for their write-back and throwing their dirty data away; a large folio that straddles
    lstart is split there or kept whole (truncate_partial_folio). The page that straddles lstart
    stays; its tail is zeroed, which (as on ext4 with 4 KiB blocks) dirties it. A shmem object's pages
    on swap beyond lstart lose their slots. Finding pages to drop
    drains the CPU's folio batches (measured: a truncate of another file moves the lru_add batch)."""
    first = (lstart + PAGE_SIZE - 1) >> PAGE_SHIFT
    kept = truncate_partial_folio(mem, inode, lstart)
    _drop_range(mem, inode, sorted(i for i in inode.i_pages if i >= kept), first, ULONG_MAX)
    if inode.host_cached is not None:
        inode.host_cached = frozenset(i for i in inode.host_cached if i < first)
    if lstart & (PAGE_SIZE - 1):
        pfn = inode.i_pages.get(lstart >> PAGE_SHIFT)
        if pfn is not None and not inode.shmem:
            folio_mark_dirty(mem, inode, pfn, (lstart >> PAGE_SHIFT,))


def block_zero_eof(mem: PhysMem, inode: Inode, oldsize: int) -> None:
    """ext4_block_zero_eof(): before a file grows past `oldsize` (a write that starts beyond it, a
    growing truncate) the rest of the block holding EOF is zeroed, which dirties its cached page
    (4 KiB blocks: the page). Measured: size 255.5 pages, page 255 cached, a 4 KiB pwrite at page 258
    or ftruncate to 2 MiB leaves page 255 dirty. Not modelled: an uncached page is then cached but
    not uptodate (read as a buffer: cachestat counts it, mincore does not)."""
    if inode.shmem or not oldsize & (PAGE_SIZE - 1):
        return
    pfn = inode.i_pages.get(oldsize >> PAGE_SHIFT)
    if pfn is not None:
        folio_mark_dirty(mem, inode, pfn, (oldsize >> PAGE_SHIFT,))


def truncate_setsize(mem: PhysMem, inode: Inode, newsize: int) -> None:
    """truncate_setsize() -> truncate_pagecache(): set i_size; when it grows, the EOF block's tail is
    zeroed first (block_zero_eof); when it shrinks, unmap the pages beyond it, drop them from the
    cache, and unmap again (a racing fault could have mapped one)."""
    oldsize = inode.size
    if newsize > oldsize:
        block_zero_eof(mem, inode, oldsize)
    inode.size = newsize
    if newsize >= oldsize:
        return
    holebegin = (newsize + PAGE_SIZE - 1) >> PAGE_SHIFT
    unmap_mapping_pages(mem, inode, holebegin)
    truncate_inode_pages(mem, inode, newsize)
    unmap_mapping_pages(mem, inode, holebegin)


def invalidate_mapping_pages(mem: PhysMem, inode: Inode, first: int = 0, last: int | None = None) -> int:
    """invalidate_mapping_pages() (mapping_try_invalidate(), behind drop_caches and
    POSIX_FADV_DONTNEED): drop each cached folio that lies wholly inside pages [first, last] (to the
    end when `last` is None) and that nothing but the cache holds: not dirty, not under write-back,
    not mapped, no other reference (mapping_evict_folio); one it refuses is deactivated
    (deactivate_file_folio), one under write-back is passed over. find_lock_entries() passes over a
    large folio that sticks out of the range, and the range is not clipped to EOF, so one that straddles
    EOF goes when the range runs to the end. The host's cached pages in the range go too. Returns
    how many pages went."""
    mm = mem.mem_map
    end = (1 << 64) - 1 if last is None else last
    gone = 0
    found = sorted(i for i in inode.i_pages if first <= i <= end)
    for index in found:
        if index not in inode.i_pages:  # gone with its folio
            continue
        head, order = folio_head(inode, index)
        nr = 1 << order
        if head != index or head + nr - 1 > end:  # the folio began before the range, or sticks out
            continue
        frames = folio_frames(mem, inode, inode.i_pages[index])
        if any(mm.flags_a[p] & F_WRITEBACK for p in frames):  # find_lock_entries() passes it by
            continue
        if any(mm._mapcount_a[p] >= 0 or mm.flags_a[p] & F_DIRTY or mm._refcount_a[p] != 1 for p in frames):
            for p in frames:  # mapping_evict_folio() refused it: a hint to reclaim it soon
                deactivate_file_folio(mem, p)
            if order:
                folio_batch_move_large(mem, mem.fbatches.lru_deactivate_file, lru_deactivate_file)
            continue
        for i in range(head, head + nr):
            delete_from_page_cache(mem, inode, i)
        gone += nr
    if found:  # folio_batch_release() of the folios looked at (a folio in the lru_add batch failed)
        lru_add_drain(mem)
    clear_shadow_entries(mem, inode, first, end)
    if inode.host_cached is None or inode.host_cached:
        forget_host_pages(inode, (i for i in range(first, min(end + 1, i_size_pages(inode)))
                                  if i not in inode.i_pages))
    return gone


def clear_shadow_entries(mem: PhysMem, inode: Inode, first: int, end: int) -> None:
    """clear_shadow_entries() (mapping_try_invalidate(), truncate_folio_batch_exceptionals()): the
    shadow entries of pages [first, end] go, a large folio's whole, and with them the nodes only they
    held; a page read there again is no refault. Measured on 6.18: a file evicted in part, then
    POSIX_FADV_DONTNEED or truncated to 0 and back, read again: 0 workingset_refault_file (8,192
    without the drop) and kmem down by 7-9 pages."""
    shadows = inode.shadows
    for index in sorted(i for i in shadows if first <= i <= end):
        if index in shadows:
            head, order = inode.xa_nodes.entry_at(index)
            for i in range(head, head + (1 << order)):
                shadows.pop(i, None)
            xa_erase_unused(mem, inode, index)


def drop_pagecache(mem: PhysMem, inodes: Iterable[Inode]) -> int:
    """drop_pagecache_sb() (echo 1 > /proc/sys/vm/drop_caches): invalidate every file's clean, unmapped
    pages; shmem pages are not cache that can be dropped. Returns the pages freed."""
    return sum(invalidate_mapping_pages(mem, inode) for inode in inodes if not inode.shmem)
