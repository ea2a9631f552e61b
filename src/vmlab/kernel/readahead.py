"""Readahead, after mm/readahead.c (6.18): the on-demand window of each open file (`FileRaState`),
synchronous readahead on a cache miss, asynchronous readahead when a read reaches the page marked
PG_readahead, forced readahead for POSIX_FADV_WILLNEED, and the read-around of an mmap fault
(do_sync_mmap_readahead / do_async_mmap_readahead of mm/filemap.c).

Arithmetic on page indices is the kernel's unsigned long arithmetic (prev_pos -1 at open makes the
first read at a non-zero index look random, as it does in the kernel).

Large folios: ext4 here supports them (mapping_large_folio_support), and the folio order readahead
asks for decides where the window ends (aligned to the order) and which folio carries the mark, so
the residency after a sequential read depends on it (tests/test_diff_readahead.py). The model keeps
the order of each large folio in Inode.folio_orders; its frames stay order-0 pages. Each read_pages()
that submits pages is one read I/O: it charges Costs.major_fault_ns to the machine's clock, however
many pages ride along, and is a memory stall (PSI) when it reads back a folio of the workingset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from vmlab.kernel import filemap, xarray
from vmlab.kernel.mm_types import VM_EXEC, VM_RAND_READ, VM_SEQ_READ, File, FileRaState
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import F_WORKINGSET, F_WRITEBACK, PG_readahead
from vmlab.kernel.uapi import PAGE_SHIFT, ULONG_MAX, ul

#: MMAP_LOTSAMISS: after this many mmap misses more than hits, mmap faults stop reading around.
MMAP_LOTSAMISS: Final = 100
#: force_page_cache_ra() reads in chunks of 2 MiB.
FORCE_CHUNK_PAGES: Final = (2 << 20) >> PAGE_SHIFT


def roundup_pow_of_two(n: int) -> int:
    """roundup_pow_of_two() for n >= 1."""
    return 1 << (n - 1).bit_length()


def get_init_ra_size(size: int, max_pages: int) -> int:
    """get_init_ra_size(): the first window for a read of `size` pages: 4x a small read, 2x a medium
    one, else the maximum."""
    newsize = roundup_pow_of_two(size)
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(ra: FileRaState, max_pages: int) -> int:
    """get_next_ra_size(): the next window after one of ra.size pages: 4x while small, then 2x, then
    the maximum."""
    cur = ra.size
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


@dataclass
class ReadaheadControl:
    """`struct readahead_control`: which file and where the next pages go (`_index`)."""

    mem: PhysMem
    file: File
    index: int
    #: Read I/O requests submitted so far by this control (each read_pages() with pages).
    ios: int = 0
    #: ractl->_workingset: a folio of the batch being added was in the workingset (a refault).
    workingset: bool = False

    @property
    def ra(self) -> FileRaState:
        """ractl->ra: the file's readahead state."""
        return self.file.f_ra


def page_cache_next_miss(file: File, index: int, max_scan: int) -> int:
    """page_cache_next_miss(): the first index >= `index` not in the cache, looking at `max_scan`
    entries; index + max_scan when all are present, 0 on wrap-around. With large folios in the cache,
    the XArray walk's own answer (vmlab.kernel.xarray: it can step over a hole)."""
    inode = file.inode
    if inode.folio_orders:
        return xarray.next_miss(inode, index, max_scan)
    for i in range(index, index + max_scan):
        if not filemap.page_present(inode, ul(i)):
            return ul(i)
        if ul(i) == ULONG_MAX:
            return 0
    return ul(index + max_scan)


def page_cache_prev_miss(file: File, index: int, max_scan: int) -> int:
    """page_cache_prev_miss(): the first index <= `index` not in the cache scanning down `max_scan`
    entries; the last one looked at when all were present, ULONG_MAX below index 0. With large folios
    in the cache, the XArray walk's own answer (vmlab.kernel.xarray: it can stop short)."""
    inode = file.inode
    if inode.folio_orders:
        return xarray.prev_miss(inode, index, max_scan)
    i = index
    i_pages, shadows = inode.i_pages, inode.shadows
    for _ in range(max_scan):
        # page_present(), its commonest answers first: cached, or evicted (a shadow).
        if i == ULONG_MAX or (i not in i_pages and (i in shadows or not filemap.page_present(inode, i))):
            return i
        i = (i - 1) & ULONG_MAX  # ul()
    return ul(i + 1)


def read_pages(ractl: ReadaheadControl, nr_pages: int) -> None:
    """read_pages(): submit the batch just added; one read I/O when it holds pages.

    The model's I/O is synchronous, so its time stands for both the submission and the reader's wait
    on the locked folio. The kernel counts either as a memory stall when the batch holds a refault of
    the workingset: read_pages() enters psi_memstall when ractl->_workingset, and folio_wait_bit_common()
    when the !uptodate folio waited for is PG_workingset. The flag is reset for the next batch."""
    if nr_pages:
        ractl.ios += 1
        mem = ractl.mem
        clock, events = mem.clock, mem.events
        clock.advance(clock.costs.major_fault_ns, memstall=ractl.workingset)
        events["ra_io"] += 1
        events["pgpgin"] += nr_pages * 4
    ractl.workingset = False


def _note_added(ractl: ReadaheadControl, pfn: int) -> None:
    """`ractl->_workingset |= folio_test_workingset(folio)` for a folio just added to the cache."""
    if ractl.mem.mem_map.flags_a[pfn] & F_WORKINGSET:
        ractl.workingset = True


def page_cache_ra_unbounded(ractl: ReadaheadControl, nr_to_read: int, lookahead_size: int) -> None:
    """page_cache_ra_unbounded(): add the missing pages of [index, index+nr_to_read) and submit them,
    one I/O per run of missing pages; the page lookahead_size before the end gets PG_readahead."""
    inode, mem = ractl.file.inode, ractl.mem
    index = ractl.index
    end = index + nr_to_read
    mark = end - lookahead_size if lookahead_size <= nr_to_read else -1
    while True:  # a run of missing pages, then the page the cache has that ended it
        pfns, failed, workingset = filemap.add_to_page_cache_run(mem, inode, index, end - index, mark=mark,
                                                                 noretry=True)
        if workingset:  # _note_added()
            ractl.workingset = True
        index += len(pfns)
        if failed or index >= end:
            break
        read_pages(ractl, len(pfns))
        index += 1
    read_pages(ractl, len(pfns))
    ractl.index = end


def do_page_cache_ra(ractl: ReadaheadControl, nr_to_read: int, lookahead_size: int) -> None:
    """do_page_cache_ra(): page_cache_ra_unbounded() clipped at the page holding the last byte."""
    isize = ractl.file.inode.size
    index = ractl.index
    if not isize or index > (isize - 1) >> PAGE_SHIFT:
        return
    page_cache_ra_unbounded(ractl, min(nr_to_read, ((isize - 1) >> PAGE_SHIFT) - index + 1), lookahead_size)


def force_page_cache_ra(ractl: ReadaheadControl, nr_to_read: int) -> None:
    """force_page_cache_ra(): read exactly the pages asked for (at most max(io_pages, ra_pages)), in
    2 MiB chunks, with no PG_readahead mark."""
    inode = ractl.file.inode
    nr_to_read = min(nr_to_read, max(inode.io_pages, ractl.ra.ra_pages))
    while nr_to_read:
        chunk = min(FORCE_CHUNK_PAGES, nr_to_read)
        start = ractl.index
        do_page_cache_ra(ractl, chunk, 0)
        ractl.index = start + chunk
        nr_to_read -= chunk


def ra_alloc_folio(ractl: ReadaheadControl, index: int, mark: int, order: int) -> bool:
    """ra_alloc_folio(): add a folio of 2^order pages at `index` (filemap_add_folio, readahead's
    __GFP_NORETRY charge), marked PG_readahead when it starts at `mark` rounded down to its size; False
    (-EEXIST, -ENOMEM) when a page of it is cached already or memory ran out."""
    pfns = filemap.filemap_add_folio(ractl.mem, ractl.file.inode, index, order, noretry=True)
    if pfns is None:
        return False
    for pfn in pfns:
        _note_added(ractl, pfn)
    nr = 1 << order
    if index == mark - mark % nr:
        ractl.mem.mem_map.set(pfns[0], PG_readahead)
    return True


def page_cache_ra_order(ractl: ReadaheadControl, ra: FileRaState) -> None:
    """page_cache_ra_order(): read the window [ra.start, ra.start+ra.size) in folios of order
    min(ra.order, MAX_PAGECACHE_ORDER, ilog2(size)), smaller where the index is not aligned or EOF is
    near; the folio holding start+size-async_size gets PG_readahead. Without large-folio support, or
    from the first cached page met, it reads order-0 pages (do_page_cache_ra)."""
    inode = ractl.file.inode
    start = index = ractl.index
    if not inode.large_folios:
        ra.order = 0
        do_page_cache_ra(ractl, ra.size, ra.async_size)
        return
    if inode.size == 0:
        return
    limit = min((inode.size - 1) >> PAGE_SHIFT, index + ra.size - 1)
    mark = index + ra.size - ra.async_size
    new_order = min(filemap.MAX_PAGECACHE_ORDER, ra.order, ra.size.bit_length() - 1)
    ra.order = new_order
    ok = True
    while index <= limit:
        order = new_order
        if index & ((1 << order) - 1):
            order = (index & -index).bit_length() - 1  # __ffs(index)
        while order > 0 and index + (1 << order) - 1 > limit:
            order -= 1
        ok = ra_alloc_folio(ractl, index, mark, order)
        if not ok:
            break
        index += 1 << order
    read_pages(ractl, index - start)
    if ok:
        return
    ractl.index = index
    if ra.size > index - start:
        do_page_cache_ra(ractl, ra.size - (index - start), ra.async_size)


def ractl_max_pages(ractl: ReadaheadControl, req_size: int) -> int:
    """ractl_max_pages(): ra_pages, or up to the device's io_pages for a larger request."""
    max_pages = ractl.ra.ra_pages
    io_pages = ractl.file.inode.io_pages
    if req_size > max_pages and io_pages > max_pages:
        max_pages = min(req_size, io_pages)
    return max_pages


def page_cache_sync_ra(ractl: ReadaheadControl, req_count: int) -> None:
    """page_cache_sync_ra(): a read of `req_count` pages missed the cache at ractl.index.

    FMODE_RANDOM (or ra_pages 0) reads just the request; a read at index 0, an oversized one or one
    right after the previous read starts a new window; otherwise the cached pages just before the
    index (a stream's trace) size the window, and with none the read is standalone (no state change).

    A read of one page, standalone or forced (most misses of a random reader), is read here:
    force_page_cache_ra() / do_page_cache_ra() of one page come down to page_cache_ra_unbounded()'s
    one run, add_to_page_cache_run() of the page then read_pages() of what was added, which this
    does itself (what those three do for any other request)."""
    file = ractl.file
    inode, ra = file.inode, file.f_ra
    ra_pages = ra.ra_pages
    index = ractl.index
    if file.fmode_random or not ra_pages:  # do_forced_ra (of one page without ra_pages)
        if (req_count != 1 and ra_pages) or not (ra_pages or inode.io_pages):
            force_page_cache_ra(ractl, req_count if ra_pages else 1)
            return
        ractl.index = index + 1  # force_page_cache_ra()'s, even past EOF
    else:
        max_pages = ra_pages if req_count <= ra_pages else ractl_max_pages(ractl, req_count)
        prev_index = (ra.prev_pos & ULONG_MAX) >> PAGE_SHIFT  # ul() inlined, as below
        window = True
        if not index or req_count > max_pages or (index - prev_index) & ULONG_MAX <= 1:
            ra.size = get_init_ra_size(req_count, max_pages)
            ra.async_size = ra.size - req_count if ra.size > req_count else ra.size >> 1
        else:
            i = index - 1  # page_cache_prev_miss()'s first look, in line: most random misses stop there
            if i not in inode.i_pages and (i in inode.shadows or not filemap.page_present(inode, i)):
                miss = i
            else:
                miss = page_cache_prev_miss(file, i, max_pages)
            contig_count = (index - miss - 1) & ULONG_MAX
            if contig_count > req_count:
                if miss == ULONG_MAX:
                    contig_count *= 2
                ra.size = min(contig_count + req_count, max_pages)
                ra.async_size = 1
            elif req_count != 1:
                do_page_cache_ra(ractl, req_count, 0)
                return
            else:
                window = False  # standalone: the one page, below
        if window:
            ra.start = index
            ra.order = 0
            page_cache_ra_order(ractl, ra)  # ractl.index is ra.start
            return
    # One page: do_page_cache_ra()'s EOF clip, then page_cache_ra_unbounded()'s one run.
    if not inode.size or index > (inode.size - 1) >> PAGE_SHIFT:
        return
    pfns, _, workingset = filemap.add_to_page_cache_run(ractl.mem, inode, index, 1, noretry=True)
    if workingset:  # _note_added()
        ractl.workingset = True
    read_pages(ractl, len(pfns))
    ractl.index = index + 1


def page_cache_async_ra(ractl: ReadaheadControl, pfn: int, order: int, req_count: int) -> None:
    """page_cache_async_ra(): a read reached the folio (head page `pfn`, 2^order pages) marked
    PG_readahead; ractl.index is where the reader is.

    A folio under write-back is passed by, its mark kept: PG_readahead is PG_reclaim's bit, which
    folio_end_writeback() then clears. Otherwise the mark is cleared. At the expected place the
    window moves on and grows; elsewhere (another stream's mark) the cached run after the index sizes
    a new one. The window end is aligned down to the order it asks for (1 << min(order,
    ffs(max_pages) - 1)).
    """
    ra = ractl.ra
    if not ra.ra_pages or ractl.mem.mem_map.flags_a[pfn] & F_WRITEBACK:
        return
    ractl.mem.mem_map.clear(pfn, PG_readahead)
    index = ractl.index
    max_pages = ractl_max_pages(ractl, req_count)
    expected = ra.start + ra.size - ra.async_size
    expected -= expected % (1 << order)  # round_down(..., folio_nr_pages(folio))
    if index == expected:
        ra.start += ra.size
        ra.size = max(ra.size, get_next_ra_size(ra, max_pages))
    else:
        start = page_cache_next_miss(ractl.file, index + 1, max_pages)
        if not start or start - index > max_pages:
            return
        ra.start = start
        ra.size = start - index + req_count
        ra.size = get_next_ra_size(ra, max_pages)
    ra.order += 2
    align = 1 << min(ra.order, (max_pages & -max_pages).bit_length() - 1)
    end = ra.start + ra.size
    aligned_end = end - end % align
    if aligned_end > ra.start:
        ra.size -= end - aligned_end
    ra.async_size = ra.size
    ractl.index = ra.start
    page_cache_ra_order(ractl, ra)


def do_sync_mmap_readahead(ractl: ReadaheadControl, vm_flags: int) -> None:
    """do_sync_mmap_readahead(): an mmap fault missed the cache at ractl.index.

    VM_RAND_READ reads nothing ahead; VM_SEQ_READ reads like a sequential read() of ra_pages; else,
    unless the file misses far more than it hits (mmap_miss > MMAP_LOTSAMISS), the ra_pages window
    centred on the fault is read, with the mark a quarter from its end. (x86 has no exec_folio_order,
    and a VM_HUGEPAGE mapping is not modelled: its PMD-sized read needs large folios.)
    """
    ra = ractl.ra
    if vm_flags & (VM_RAND_READ | VM_EXEC) == VM_RAND_READ or not ra.ra_pages:
        return
    if vm_flags & VM_SEQ_READ:
        page_cache_sync_ra(ractl, ra.ra_pages)
        return
    if ra.mmap_miss < MMAP_LOTSAMISS * 10:
        ra.mmap_miss += 1
    if ra.mmap_miss > MMAP_LOTSAMISS:
        return
    ra.start = max(0, ractl.index - ra.ra_pages // 2)
    ra.size = ra.ra_pages
    ra.async_size = ra.ra_pages // 4
    ra.order = 0
    ractl.index = ra.start
    page_cache_ra_order(ractl, ra)


def do_async_mmap_readahead(ractl: ReadaheadControl, pfn: int, order: int, vm_flags: int) -> None:
    """do_async_mmap_readahead(): an mmap fault found its page cached in the folio with head page `pfn`
    (2^order pages): one hit off mmap_miss, and a folio marked PG_readahead starts asynchronous
    readahead of ra_pages."""
    ra = ractl.ra
    if vm_flags & VM_RAND_READ or not ra.ra_pages:
        return
    if ra.mmap_miss:
        ra.mmap_miss -= 1
    if ractl.mem.mem_map.test(pfn, PG_readahead):
        page_cache_async_ra(ractl, pfn, order, ra.ra_pages)
