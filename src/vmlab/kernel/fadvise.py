"""posix_fadvise(2), after mm/fadvise.c: the readahead mode of an open file (NORMAL, RANDOM,
SEQUENTIAL), readahead on demand (WILLNEED), and dropping a range from the page cache (DONTNEED).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmlab.kernel import readahead
from vmlab.kernel.page_writeback import write_cache_pages
from vmlab.kernel.swap import lru_add_drain
from vmlab.kernel.truncate import invalidate_mapping_pages
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from vmlab.kernel.mm_types import File
    from vmlab.kernel.page_alloc import PhysMem

LLONG_MAX = (1 << 63) - 1

POSIX_FADV_NORMAL, POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL, POSIX_FADV_WILLNEED = 0, 1, 2, 3
POSIX_FADV_DONTNEED, POSIX_FADV_NOREUSE = 4, 5


def generic_fadvise(mem: PhysMem, file: File, offset: int, length: int, advice: int) -> int:
    """generic_fadvise(): NORMAL/RANDOM/SEQUENTIAL set the file's readahead mode (SEQUENTIAL doubles
    its window; NORMAL also ends NOREUSE), NOREUSE sets FMODE_NOREUSE, WILLNEED forces readahead of
    the range, DONTNEED writes the range's dirty folios back (WB_SYNC_NONE) and drops the clean,
    unmapped folios wholly inside it (the next access reads them). A tmpfs file (shmem: its
    superblock keeps noop_backing_dev_info) ignores every advice. 0 or -EINVAL."""
    if advice not in range(6) or length < 0:
        return -22
    inode = file.inode
    if inode.shmem:
        return 0
    if advice == POSIX_FADV_NORMAL:
        file.f_ra.ra_pages = inode.ra_pages
        file.fmode_random = file.fmode_noreuse = False
    elif advice == POSIX_FADV_RANDOM:
        file.fmode_random = True
    elif advice == POSIX_FADV_SEQUENTIAL:
        file.f_ra.ra_pages = inode.ra_pages * 2
        file.fmode_random = False
    elif advice == POSIX_FADV_NOREUSE:
        file.fmode_noreuse = True
    if advice not in (POSIX_FADV_WILLNEED, POSIX_FADV_DONTNEED):
        return 0
    endbyte = offset + length
    endbyte = LLONG_MAX if not length or endbyte > LLONG_MAX else endbyte - 1
    first, last = offset >> PAGE_SHIFT, endbyte >> PAGE_SHIFT
    if advice == POSIX_FADV_WILLNEED:
        readahead.force_page_cache_ra(readahead.ReadaheadControl(mem, file, first), last - first + 1)
        return 0
    # __filemap_fdatawrite_range(WB_SYNC_NONE) first: the range's dirty folios go under write-back
    # (and are still under it when the invalidation below meets them: they stay cached, clean later)
    write_cache_pages(mem, inode, first, None if endbyte == LLONG_MAX else last, sync_all=False)
    # Partial pages at the ends are kept: the first, and the last unless the range ends at EOF.
    first = (offset + PAGE_SIZE - 1) >> PAGE_SHIFT
    if (endbyte + 1) & (PAGE_SIZE - 1) and endbyte != inode.size - 1:
        last -= 1
    if last >= first:
        # lru_add_drain() first: pages just read or written wait in the CPU's lru_add batch, whose
        # reference mapping_evict_folio() refuses (the kernel then drains every CPU and tries again:
        # the model has one)
        lru_add_drain(mem)
        invalidate_mapping_pages(mem, inode, first, last)
    return 0
