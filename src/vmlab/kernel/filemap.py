"""The page cache, after mm/filemap.c: an inode's cached pages (`i_pages`), read() through the cache
(filemap_read), and the page-cache side of an mmap fault (filemap_fault). How far each miss reads
ahead is vmlab.kernel.readahead; the hints of fadvise(2) are vmlab.kernel.fadvise.

A host file enters the model with the set of pages the host had cached (fs.host_residency); those
come in without I/O, any other page costs a read (a major fault when a fault asked for it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from vmlab.kernel import readahead, xarray
from vmlab.kernel.memcontrol import (
    MemCgroup,
    count_vm_events_mm,
    mem_cgroup_cancel_charge,
    mem_cgroup_charge_cache,
    mem_cgroup_charging,
    mem_cgroup_commit_cache,
    mem_cgroup_precharge,
    mem_cgroup_uncharge_refused,
)
from vmlab.kernel.mm_types import File, Inode, VmArea
from vmlab.kernel.page_alloc import NO_PFN, PhysMem
from vmlab.kernel.page_flags import (
    F_ACTIVE,
    F_HEAD,
    F_LRU,
    F_REFERENCED,
    F_UPTODATE,
    F_WORKINGSET,
    PG,
    PG_readahead,
)
from vmlab.kernel.shmem import shmem_swapin_folio
from vmlab.kernel.swap import (
    FOLIO_BATCH_SIZE,
    folio_batch_move_large,
    folio_batch_move_lru,
    folio_mark_accessed,
    lru_activate,
    lru_add,
)
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE
from vmlab.kernel.workingset import workingset_refault

#: MAX_PAGECACHE_ORDER on x86_64 with THP: a page-cache folio is at most PMD-sized.
MAX_PAGECACHE_ORDER: Final = 9


def i_size_pages(inode: Inode) -> int:
    """Pages of the file up to EOF (DIV_ROUND_UP(i_size, PAGE_SIZE))."""
    return (inode.size + PAGE_SIZE - 1) >> PAGE_SHIFT


def host_cached(inode: Inode, index: int) -> bool:
    """Whether the host had this page cached when the model first saw the file (all, if unknown)."""
    return inode.host_cached is None or index in inode.host_cached


def host_pages_pending(inode: Inode) -> bool:
    """Whether cached_page() may still bring in pages the host had cached: not shmem, and the host's
    set is unknown (all) or not empty. When False, the cache holds exactly `i_pages`."""
    return not inode.shmem and (inode.host_cached is None or bool(inode.host_cached))


def page_present(inode: Inode, index: int) -> bool:
    """Whether the cache holds page `index` (xa_load() finds a folio): the model's own pages, and the
    host's cached ones not yet brought in."""
    if index in inode.i_pages:
        return True
    return (index not in inode.shadows and not inode.shmem and index < i_size_pages(inode)
            and host_cached(inode, index))


def folio_head(inode: Inode, index: int) -> tuple[int, int]:
    """(index of the head page, order) of the folio holding page `index` of the cache."""
    if not inode.folio_orders:
        return index, 0
    for order in range(1, MAX_PAGECACHE_ORDER + 1):
        head = index & ~((1 << order) - 1)
        found = inode.folio_orders.get(head)
        if found is not None and head + (1 << found) > index:
            return head, found
    return index, 0


def folio_heads_split(mem: PhysMem, inode: Inode, first: int, end: int) -> None:
    """After the large folio that covered pages [first, end) was split (or left as small pages): each
    cached page that now heads a folio counts its own pgpgout when uncharged (memcg folio_tails)."""
    if mem.memcgs is not None:
        heads = [i for i in range(first, end) if i in inode.i_pages and folio_head(inode, i)[0] == i]
        mem.memcgs.folio_heads_split(inode.i_pages[i] for i in heads)


def split_large_folio(inode: Inode, index: int) -> None:
    """The large folio holding cached page `index` becomes small pages (its order forgotten), as it
    must before one of its pages leaves the cache: the model keeps no large folio with a hole in it.
    (The kernel removes a large folio whole, or splits it where truncation cuts it; the model frees
    the frames one at a time: reclaim takes them together off the LRU, vmscan._cache_folio_frames,
    then frees each.)"""
    if inode.folio_orders:
        head, order = folio_head(inode, index)
        if order:
            del inode.folio_orders[head]


def split_folio_at(inode: Inode, index: int) -> None:
    """folio_split() (try_folio_split_to_order(folio, page, 0)): the non-uniform split of the large
    folio holding cached page `index`, as truncation does it: the folio is halved again and again, the
    half without `index` kept as one folio each time, until `index` is a page of its own (a 64-page
    folio at 64 split at page 100 leaves 64+32, 96+4, 100, 101, 102+2, 104+8, 112+16)."""
    head, order = folio_head(inode, index)
    if not order:
        return
    del inode.folio_orders[head]
    while order:
        order -= 1
        half = 1 << order
        other = head + half if index < head + half else head
        if order:
            inode.folio_orders[other] = order
        head = head if index < head + half else head + half


def folio_test_readahead(mem: PhysMem, inode: Inode, index: int) -> bool:
    """Whether the folio holding cached page `index` is marked PG_readahead (on its head page)."""
    head, _ = folio_head(inode, index)
    pfn = inode.i_pages.get(head)
    return pfn is not None and mem.mem_map.test(pfn, PG_readahead)


def add_to_page_cache(mem: PhysMem, inode: Inode, index: int, *, charge: bool = True,
                      noretry: bool = False, charged_to: MemCgroup | None = None,
                      first: bool = True, xa: bool = True) -> int | None:
    """filemap_add_folio(): a new uptodate page of the file at `index`, held by the cache (one ref),
    charged to the running task's memcg first (mem_cgroup_charge; `noretry` for readahead's
    __GFP_NORETRY); None when memory or the charge fails. `charge` off for a page the host had
    cached (already charged to whoever read it, on the host), or one of a large folio charged whole
    to `charged_to` beforehand (mem_cgroup_precharge; `first`: the folio's first frame).
    The run of one page of add_to_page_cache_run()."""
    pfns, _, _ = add_to_page_cache_run(mem, inode, index, 1, lookup=False, charge=charge, noretry=noretry,
                                       charged_to=charged_to, first=first, xa=xa)
    return pfns[0] if pfns else None


def add_to_page_cache_run(mem: PhysMem, inode: Inode, index: int, nr: int, *, mark: int = -1,
                          lookup: bool = True, charge: bool = True, noretry: bool = False,
                          charged_to: MemCgroup | None = None, first: bool = True,
                          xa: bool = True) -> tuple[list[int], bool, bool]:
    """filemap_add_folio() of each page of [index, index + nr) in turn, as add_to_page_cache() of one
    page describes (allocation, memcg charge, i_pages, the refault of its shadow, the LRU), until
    memory or the charge fails or, with `lookup`, a page the cache has (page_present, looked at just
    before the page's turn: each allocation may wake kswapd, which may evict). Each page's slot in
    i_pages is an order-0 entry (xarray.xa_store_page: new nodes charged, a larger shadow split),
    unless the caller (`xa` off) stored the folio's entry. The page at index `mark` gets PG_readahead
    as it is added. Returns (the PFNs added in index order, whether the run stopped on a failure,
    whether a page added was PG_workingset: readahead's ractl->_workingset).

    One loop with the per-page steps bound to locals: the miss path of every read (readahead adds its
    runs of missing pages here); the general per-page steps (a memcg charge, a refault) stay calls."""
    pfns: list[int] = []
    workingset = False
    mm = mem.mem_map
    mapping_a, index_a, flags_a = mm.mapping_a, mm.index_a, mm.flags_a
    i_pages, shadows, handle, shmem = inode.i_pages, inode.shadows, inode.handle, inode.shmem
    address_spaces, alloc_fast, memcgs = mem.address_spaces, mem.alloc_page_fast, mem.memcgs
    lru_batch, refcount = mem.fbatches.lru_add, mm._refcount_a
    new_flags = _NEW_SHMEM if shmem else F_UPTODATE
    memcg_step = charged_to is not None or (charge and memcgs is not None and mem_cgroup_charging(mem))
    xa_orders, xa_store_page = inode.xa_nodes.orders, xarray.xa_store_page
    block_pages, xa_shift = inode.xa_nodes.block_pages, xarray.XA_CHUNK_SHIFT
    for idx in range(index, index + nr):
        # page_present(), its commonest answers first: cached, or evicted (a shadow).
        if lookup and (idx in i_pages or (idx not in shadows and page_present(inode, idx))):
            return pfns, False, workingset
        pfn = alloc_fast()
        if pfn == NO_PFN:  # below the low watermark: alloc_pages()' slow path
            got = mem.alloc_pages(0)
            if got is None:
                return pfns, True, workingset
            pfn = got
        if memcg_step:
            if charged_to is not None:
                mem_cgroup_commit_cache(charged_to, pfn, shmem, first)
            elif mem_cgroup_charge_cache(mem, pfn, shmem, noretry):
                mem.free_pages(pfn)
                return pfns, True, workingset
        # (the commonest case, a refault into an order-0 shadow, changes no node)
        if xa and (xa_orders or idx not in shadows) and xa_store_page(mem, inode, idx, charge, noretry):
            mem.free_pages(pfn)
            return pfns, True, workingset
        mapping_a[pfn] = handle
        index_a[pfn] = idx
        flags = flags_a[pfn] | new_flags
        i_pages[idx] = pfn
        address_spaces[handle] = inode
        block = idx >> xa_shift  # XaNodes.block_pages: its block's first page may take its node off the list
        n = block_pages.get(block, 0)
        block_pages[block] = n + 1
        if not n:
            mem.shadow_nodes.touch_index(inode, idx)
        shadow = shadows.pop(idx, None)
        if shadow is not None:
            flags_a[pfn] = flags
            workingset_refault(mem, pfn, 1, shadow)
            flags = flags_a[pfn]
            if memcgs is not None and memcgs.page_memcg:  # none charged: no memcg to count it
                memcgs.count_refault(pfn, shmem)
        if idx == mark:
            flags |= _READAHEAD
        flags_a[pfn] = flags
        # folio_add_lru() of a new order-0 page, in line: into the CPU's lru_add batch, one more
        # reference; a full batch moves.
        refcount[pfn] += 1
        lru_batch.append(pfn)
        if len(lru_batch) >= FOLIO_BATCH_SIZE:
            folio_batch_move_lru(mem, lru_batch, lru_add)
        if flags & F_WORKINGSET:
            workingset = True
        pfns.append(pfn)
    return pfns, False, workingset


def filemap_add_folio(mem: PhysMem, inode: Inode, index: int, order: int, *,
                      noretry: bool = False) -> list[int] | None:
    """filemap_add_folio() of a new folio of 2^order pages at `index` (aligned to its size): its frames,
    head first; None when a page of the range is cached already (-EEXIST) or memory or the memcg charge
    fails. The folio is charged whole (one try_charge of 2^order pages; `noretry` is readahead's
    __GFP_NORETRY) before the range is looked at, as on the kernel: a charge that finds a page there
    may have reclaimed, and is counted in and given back (pgpgin, pgpgout). Then each of the model's
    frames of it is committed to that memcg and added (the LRU: a large folio's add moves the CPU's
    lru_add batch); a large folio's order goes in inode.folio_orders. The shadow entries of the
    range are replaced by the folio, and the last of them is its shadow (__filemap_add_folio's last
    conflicting entry): one workingset_refault() for the whole folio (folio_refault). When memory
    runs out part way (the model allocates the frames one by one), the frames added stay as small
    pages, the rest of the charge is given back and the rest of the range keeps its shadows. Reclaim
    meanwhile leaves the frames added alone (each holds the allocation's reference until the folio
    is whole)."""
    nr = 1 << order
    err, memcg = mem_cgroup_precharge(mem, nr, order, inode.shmem, noretry=noretry)
    if err:
        return None
    # __filemap_add_folio() after the charge: a page of the range cached (-EEXIST), or no node.
    if (any(page_present(inode, i) for i in range(index, index + nr))
            or _xa_store_folio(mem, inode, index, order, noretry)):
        mem_cgroup_uncharge_refused(memcg, nr)
        return None
    shadows = {i: inode.shadows.pop(i) for i in range(index, index + nr) if i in inode.shadows}
    pfns: list[int] = []
    # The kernel's folio is one allocation, whose reference its caller holds: each frame here keeps
    # one until the folio is whole, so that the reclaim a later frame's allocation runs passes the
    # earlier ones over.
    refcount = mem.mem_map._refcount_a
    for i in range(index, index + nr):
        pfn = add_to_page_cache(mem, inode, i, charge=False, charged_to=memcg, first=i == index, xa=False)
        if pfn is not None:
            refcount[pfn] += 1
        if pfn is None:
            mem_cgroup_cancel_charge(memcg, index + nr - i)
            inode.shadows.update((j, shadow) for j, shadow in shadows.items() if j >= i)
            folio_heads_split(mem, inode, index, i)  # the frames added stay small pages
            # The frames added stay small pages: order-0 entries, like the shadows kept.
            xarray.xa_update(mem, inode, [(index, order)], [
                (j, 0) for j in range(index, index + nr) if j in inode.i_pages or j in inode.shadows],
                charge=False)
            break
        pfns.append(pfn)
    if order:
        folio_batch_move_large(mem, mem.fbatches.lru_add, lru_add)
    if shadows and pfns:
        folio_refault(mem, inode, pfns, shadows[max(shadows)])
    for pfn in pfns:
        refcount[pfn] -= 1  # the cache's reference remains
    if len(pfns) < nr:
        return None
    if order:
        inode.folio_orders[index] = order
    return pfns


def _xa_store_folio(mem: PhysMem, inode: Inode, index: int, order: int, noretry: bool) -> int:
    """__filemap_add_folio()'s store of the folio's entry (`index`, `order`) in i_pages: over the
    shadow entries its range holds (replaced), or into a larger one (xas_try_split() first). 0 or
    -ENOMEM (nothing stored)."""
    nodes = inode.xa_nodes
    shadows = inode.shadows
    old = {nodes.entry_at(i) for i in range(index, index + (1 << order)) if i in shadows}
    if len(old) == 1 and next(iter(old))[1] > order:
        return xarray.xa_split(mem, inode, index, order, noretry)
    return xarray.xa_update(mem, inode, sorted(old), [(index, order)], noretry=noretry)


def folio_refault(mem: PhysMem, inode: Inode, pfns: list[int], shadow: int) -> None:
    """workingset_refault() of a new folio whose frames `pfns` (head first) were just added, inactive:
    one decision for the folio from `shadow`, counted for all its pages; when it is recent, every
    frame becomes active (and workingset when the shadow says so): one still in the CPU's lru_add
    batch joins the list its flags then name, one the batch moved already is moved to the active list
    in order, as the folio would have joined it. (A frame that reclaim took meanwhile, while a later
    one was allocated, is left out.) The refault counts in the folio's memcg."""
    mm = mem.mem_map
    lruvec = mem.lruvec
    frames = [pfn for pfn in pfns if inode.i_pages.get(mm.index_a[pfn]) == pfn
              and (mm.flags_a[pfn] & F_LRU or pfn in mem.fbatches.lru_add)]
    if not frames:
        return
    listed = [pfn for pfn in frames if mm.flags_a[pfn] & F_LRU]
    for pfn in listed:
        lruvec.delete(mm, pfn)
    workingset_refault(mem, frames[0], len(pfns), shadow)
    bits = mm.flags_a[frames[0]] & (F_ACTIVE | F_WORKINGSET)
    memcgs = mem.memcgs
    for pfn in frames:
        mm.flags_a[pfn] |= bits
    for pfn in listed:
        lruvec.add(mm, pfn)
    for pfn in frames:
        if memcgs is not None and memcgs.page_memcg:
            memcgs.count_refault(pfn, inode.shmem)


def filemap_get_order(size: int) -> int:
    """filemap_get_order() (fgf_set_order): the folio order a write of `size` bytes asks for,
    ilog2(size) - PAGE_SHIFT; 0 for a page or less."""
    shift = max(size, 1).bit_length() - 1
    return shift - PAGE_SHIFT if shift > PAGE_SHIFT else 0


def write_begin_get_folio(mem: PhysMem, inode: Inode, index: int,
                          length: int) -> tuple[int, int, bool] | None:
    """__filemap_get_folio(FGP_WRITEBEGIN | fgf_set_order(length)), as ext4's write_begin asks for the
    folio a write of `length` bytes at page `index` goes to: the cached folio holding the page, any
    order; else a new one of the order `length` asks for (at most MAX_PAGECACHE_ORDER, only order 0
    without large-folio support), smaller when `index` is not aligned to it (__ffs(index)), and smaller
    again, down to order 0, while the range holds a cached page or memory fails. Returns (head index,
    order, whether it is new: its data not read yet), None when no page could be had."""
    while True:
        if cached_page(mem, inode, index) is not None:
            head, order = folio_head(inode, index)
            return head, order, False
        order = min(filemap_get_order(length), MAX_PAGECACHE_ORDER) if inode.large_folios else 0
        if index & ((1 << order) - 1):
            order = (index & -index).bit_length() - 1  # __ffs(index)
        while order > 0:
            if filemap_add_folio(mem, inode, index, order) is not None:
                return index, order, True
            order -= 1
        # A small page is allocated, then charged (filemap_alloc_folio, then filemap_add_folio's
        # mem_cgroup_charge); the model charges a large folio before it allocates its frames.
        if add_to_page_cache(mem, inode, index) is not None:
            return index, 0, True
        if not page_present(inode, index):  # -ENOMEM, not a page that came meanwhile (-EEXIST)
            return None


#: PG_readahead.
_READAHEAD: Final = 1 << PG_readahead


#: The flags of a new page-cache page: uptodate, and swapbacked in shmem.
_NEW_SHMEM: Final = F_UPTODATE | (1 << PG.swapbacked)


def cached_page(mem: PhysMem, inode: Inode, index: int) -> int | None:
    """filemap_get_folio() without I/O: the cached page, bringing in one the host had cached; for
    shmem, shmem_get_folio(): a page on swap is read back (shmem_swapin_folio)."""
    pfn = inode.i_pages.get(index)
    if pfn is None and index in inode.swapped:
        return shmem_swapin_folio(mem, inode, index)[0]
    if (pfn is None and not inode.shmem and index < i_size_pages(inode) and index not in inode.shadows
            and host_cached(inode, index)):
        pfn = add_to_page_cache(mem, inode, index, charge=False)
    return pfn


def read_page(mem: PhysMem, inode: Inode, index: int) -> tuple[int | None, bool]:
    """The page at `index`, read in alone if needed (filemap_create_folio / write_begin): (pfn or None
    when out of memory, whether it took I/O). shmem has no backing store: a missing page is a new
    zeroed one, a page on swap is read back."""
    if index in inode.swapped:
        return shmem_swapin_folio(mem, inode, index)
    pfn = cached_page(mem, inode, index)
    if pfn is not None:
        return pfn, False
    pfn = add_to_page_cache(mem, inode, index)
    if inode.shmem or pfn is None:
        return pfn, False
    read_folio(mem, inode, index, 1)
    return pfn, True


def read_folio(mem: PhysMem, inode: Inode, head: int, nr: int) -> None:
    """filemap_read_folio() of the new folio of `nr` pages at index `head`: one read I/O, a memory stall
    (psi_memstall) when the folio is a workingset refault."""
    pfn = inode.i_pages[head]
    ractl = readahead.ReadaheadControl(mem, _nofile(inode), head,
                                       workingset=bool(mem.mem_map.flags_a[pfn] >> PG.workingset & 1))
    readahead.read_pages(ractl, nr)


def _nofile(inode: Inode) -> File:
    """A struct file for I/O made without one (the write path's read of a partial page)."""
    return File(inode)


def filemap_get_read_batch(mem: PhysMem, inode: Inode, index: int, max_index: int) -> list[int]:
    """filemap_get_read_batch(): the cached pages from `index` on, up to `max_index`, stopping at a hole,
    after FOLIO_BATCH_SIZE pages (a folio_batch), or after a page marked PG_readahead (PFNs in index
    order)."""
    batch: list[int] = []
    folios = 0
    while index <= max_index:
        pfn = cached_page(mem, inode, index)
        if pfn is None:
            break
        head, order = folio_head(inode, index)
        if head == index or not batch:
            if folios == FOLIO_BATCH_SIZE:
                break
            folios += 1
        batch.append(pfn)
        if folio_test_readahead(mem, inode, index) and index == min(max_index, head + (1 << order) - 1):
            break
        index += 1
    return batch


def mark_folio_accessed(mem: PhysMem, inode: Inode, head: int, order: int) -> None:
    """folio_mark_accessed() of the cached folio of 2^order pages at index `head`: the model keeps a
    large folio as order-0 frames (readahead.py), so each of its cached pages takes the step; a large
    folio's activation moves the CPU's lru_activate batch at once (folio_may_be_lru_cached)."""
    pages = inode.i_pages
    for index in range(head, head + (1 << order)):
        pfn = pages.get(index)
        if pfn is not None:
            folio_mark_accessed(mem, pfn)
    if order:
        folio_batch_move_large(mem, mem.fbatches.lru_activate, lru_activate)


def mark_page_cache_accessed(mem: PhysMem, pfn: int) -> int:
    """folio_mark_accessed() of the page-cache folio that holds frame `pfn` (all of a large folio);
    returns the index of the folio's head page (-1 if the frame belongs to no known mapping)."""
    inode = mem.address_spaces.get(mem.mem_map.mapping_a[pfn])
    if inode is None:
        folio_mark_accessed(mem, pfn)
        return -1
    head, order = folio_head(inode, mem.mem_map.index_a[pfn])
    mark_folio_accessed(mem, inode, head, order)
    return head


def filemap_read(mem: PhysMem, file: File, pos: int, count: int, *, ra_done: bool = False) -> list[int]:
    """filemap_read(): read `count` bytes at `pos` through the cache; the pages copied from, in order.

    Each round (filemap_get_pages) takes the cached run at the position; on a miss it reads ahead
    synchronously first; when the run ends on a PG_readahead page, asynchronous readahead starts
    there. Every folio of the round is marked accessed, the first one unless the previous read ended
    in it (6.18: `if (i > 0) folio_mark_accessed(folio)`; older kernels marked only the first folio of each
    batch was marked). A large folio is marked as one: all its pages. f_ra.prev_pos becomes the end
    of what was read. `ra_done`: the caller already ran the first round's synchronous readahead
    (page_cache_sync_ra of the request at `pos`), so a miss there goes straight to read_page().
    """
    inode, ra = file.inode, file.f_ra
    last_pos = ra.prev_pos
    copied: list[int] = []
    end = pos + count
    while count and pos < end and pos < inode.size:
        index, last_index = pos >> PAGE_SHIFT, (end + PAGE_SIZE - 1) >> PAGE_SHIFT
        batch = filemap_get_read_batch(mem, inode, index, last_index - 1)
        if not batch and not ra_done:
            readahead.page_cache_sync_ra(readahead.ReadaheadControl(mem, file, index), last_index - index)
            batch = filemap_get_read_batch(mem, inode, index, last_index - 1)
        if not batch:
            pfn, _ = read_page(mem, inode, index)
            if pfn is None:
                break
            batch = [pfn]
        ra_done = False
        tail_index = mem.mem_map.index_a[batch[-1]]
        if folio_test_readahead(mem, inode, tail_index):
            head, order = folio_head(inode, tail_index)
            mem.mem_map._refcount[batch] += 1  # the batch's references: readahead may reclaim
            readahead.page_cache_async_ra(readahead.ReadaheadControl(mem, file, head), inode.i_pages[head],
                                          order, last_index - head)
            mem.mem_map._refcount[batch] -= 1
        first, first_order = folio_head(inode, index)
        shift = PAGE_SHIFT + first_order
        if last_pos < 0 or (last_pos - 1) >> shift != pos >> shift:  # !pos_same_folio()
            mark_folio_accessed(mem, inode, first, first_order)
        end_offset = min(inode.size, end)
        marked = first
        for pfn in batch:
            if pos >= end_offset:
                break
            head, order = folio_head(inode, pos >> PAGE_SHIFT)
            if head != marked:  # a later folio of the batch (i > 0)
                mark_folio_accessed(mem, inode, head, order)
                marked = head
            pos = min(end_offset, ((pos >> PAGE_SHIFT) + 1) << PAGE_SHIFT)
            last_pos = pos
            copied.append(pfn)
    ra.prev_pos = last_pos
    mem.clock.advance(mem.clock.costs.hit_ns * len(copied))  # the copy to user space
    return copied


def replay_reads(mem: PhysMem, file: File, indexes: Iterable[int]) -> int:
    """One-page read()s of `file` at page indexes `indexes`, in order: the same state, time and counters
    as filemap_read(mem, file, index << PAGE_SHIFT, PAGE_SIZE) for each (tests/test_replay.py), and
    the pages copied.

    The lean path for trace replay: a hit — the page in i_pages, its folio small — is a dict lookup, a
    look at the page's flags, folio_mark_accessed() only when it would change something (not for a page
    already active and referenced, nor for a second read of the page the previous one ended in; its
    first use, setting PG_referenced, in line), and the copy's Costs.hit_ns, charged for a run of hits
    at once; a small page marked PG_readahead first runs page_cache_async_ra() from it under the read's
    reference, as filemap_read() does. A plain miss (a whole page inside the file, no large folios, not
    a page the host had cached) runs page_cache_sync_ra() itself and, when that leaves a small page at
    the index, continues as a hit. Anything else (a large folio; a page the host had cached; EOF; a miss
    readahead could not fill) goes through filemap_read() itself.
    """
    inode, ra = file.inode, file.f_ra
    i_pages_get = inode.i_pages.get
    flags = mem.mem_map.flags_a
    clock = mem.clock
    hit_ns = clock.costs.hit_ns
    full_pages = inode.size >> PAGE_SHIFT  # pages wholly inside the file
    plain = mem.lruvec.plain
    copied = pending = 0
    prev_pos = ra.prev_pos
    shadows = inode.shadows
    ractl, sync_ra = readahead.ReadaheadControl(mem, file, 0), readahead.page_cache_sync_ra
    refcount = mem.mem_map._refcount_a
    shmem = inode.shmem
    for index in indexes:
        pfn = i_pages_get(index)
        if (pfn is None and index < full_pages and not inode.folio_orders and not shmem
                and (index in shadows or not host_cached(inode, index))):
            if pending:
                clock.advance(pending * hit_ns)
                pending = 0
            ra.prev_pos = prev_pos
            ractl.index = index  # a fresh control: readahead leaves its _workingset clear
            sync_ra(ractl, 1)
            pfn = i_pages_get(index)
            if pfn is None or inode.folio_orders:  # not filled, or large folios: the rest of the read
                copied += len(filemap_read(mem, file, index << PAGE_SHIFT, PAGE_SIZE, ra_done=True))
                prev_pos = ra.prev_pos
                continue
        flags_ = F_HEAD if pfn is None or index >= full_pages or inode.folio_orders else flags[pfn]
        if flags_ & _SLOW:
            if pending:
                clock.advance(pending * hit_ns)
                pending = 0
            ra.prev_pos = prev_pos
            if flags_ & F_HEAD:  # not a small page inside the file
                copied += len(filemap_read(mem, file, index << PAGE_SHIFT, PAGE_SIZE))
                prev_pos = ra.prev_pos
                continue
            assert pfn is not None  # (F_HEAD stands in for a missing page)
            # A small page marked PG_readahead: filemap_read()'s asynchronous readahead from it, the
            # page held by the read's reference meanwhile; then the rest of the read as a hit.
            refcount[pfn] += 1
            ractl.index = index
            readahead.page_cache_async_ra(ractl, pfn, 0, 1)
            refcount[pfn] -= 1
            flags_ = flags[pfn]
        assert pfn is not None
        if prev_pos < 0 or (prev_pos - 1) >> PAGE_SHIFT != index:
            if not (flags_ & F_REFERENCED or plain):
                flags[pfn] = flags_ | F_REFERENCED  # folio_mark_accessed()'s first use, in line
            elif plain or flags_ & _SETTLED != _SETTLED:
                folio_mark_accessed(mem, pfn)
        prev_pos = (index + 1) << PAGE_SHIFT
        pending += 1
        copied += 1
    ra.prev_pos = prev_pos
    if pending:
        clock.advance(pending * hit_ns)
    return copied


#: Page flags that take a cached page off the plain hit: a readahead mark (asynchronous readahead
#: first) or a compound page (filemap_read(); replay_reads' stand-in flags for any other case too).
_SLOW: Final = (1 << PG_readahead) | F_HEAD
#: A folio folio_mark_accessed() leaves alone: referenced and active.
_SETTLED: Final = (1 << PG.referenced) | (1 << PG.active)


def next_uptodate_folios(mem: PhysMem, inode: Inode, start_pgoff: int,
                         end_pgoff: int) -> Iterator[tuple[int, int, int]]:
    """next_uptodate_folio() in a loop, as filemap_map_pages() walks i_pages over [start_pgoff,
    end_pgoff] (the caller has clipped end_pgoff to the file's last page): each cached folio that
    may be mapped, as (xa_index, head index, order). xa_index is where the walk met the folio: its
    head, or start_pgoff for a large folio that begins before the window (xas_next_entry() lands on
    the multi-index entry at the index it was asked for). Holes and shadow entries are passed by; so
    is a folio marked PG_readahead (!uptodate folios and locked ones do not occur in the model), and
    the walk goes on after the folio's last page (sibling slots are skipped). The host's cached pages
    come in through cached_page(), as order-0 folios."""
    i_pages, host = inode.i_pages, host_pages_pending(inode)
    flags = mem.mem_map.flags_a
    index = start_pgoff
    while index <= end_pgoff:
        pfn = i_pages.get(index)
        if pfn is None and host:
            pfn = cached_page(mem, inode, index)
        if pfn is None:
            index += 1
            continue
        if not inode.folio_orders:  # all order 0: the page is its own folio
            if not flags[pfn] & _READAHEAD:
                yield index, index, 0
            index += 1
            continue
        head, order = folio_head(inode, index)
        if not folio_test_readahead(mem, inode, head):
            yield index, head, order
        index = head + (1 << order)


def folio_within_file(inode: Inode, head: int, order: int) -> bool:
    """filemap_map_pages()'s test before it maps a large folio whole or by PMD (6.18, "Fix logic
    around SIGBUS in filemap_map_pages"): `file_end >= folio_next_index(folio) ||
    shmem_mapping(mapping)` with file_end the index of the file's LAST page. So the folio must end
    before that page: a folio that holds the last page fails, even one ending exactly at EOF (which
    finish_fault(), counting file_end in pages, lets through: folio_ends_in_file())."""
    return inode.shmem or i_size_pages(inode) - 1 >= head + (1 << order)


def folio_ends_in_file(inode: Inode, head: int, order: int) -> bool:
    """finish_fault()'s test before it maps a large folio whole or by PMD (6.18, "do not populate page
    table entries beyond i_size"): `!shmem_mapping(mapping) && file_end < folio_next_index(folio)`
    falls back to one page, file_end being DIV_ROUND_UP(i_size, PAGE_SIZE). So a folio ending at or
    before EOF qualifies."""
    return inode.shmem or i_size_pages(inode) >= head + (1 << order)


def filemap_fault(mem: PhysMem, vma: VmArea, pgoff: int, tried: bool = False,
                  memcg: MemCgroup | None = None) -> tuple[int | None, bool]:
    """filemap_fault(): the page-cache page for an mmap fault at file page `pgoff`: (pfn or None when
    out of memory, major). A cached page may start asynchronous readahead, except on the retry of a
    fault (`tried`: FAULT_FLAG_TRIED); a missing one is a major fault (pgmajfault, also in `memcg`,
    the faulting mm's) that reads around it (or just it, under MADV_RANDOM) synchronously."""
    assert vma.vm_file is not None
    file, inode = vma.vm_file, vma.vm_file.inode
    if pgoff in inode.swapped:  # shmem_fault() of a page on swap: a major fault
        return shmem_swapin_folio(mem, inode, pgoff, memcg, fault=True)
    if inode.shmem:
        return read_page(mem, inode, pgoff)
    ractl = readahead.ReadaheadControl(mem, file, pgoff)
    pfn = cached_page(mem, inode, pgoff)
    if pfn is not None:
        head, order = folio_head(inode, pgoff)
        if not tried:
            mem.mem_map._refcount_a[pfn] += 1  # the fault's reference: readahead may reclaim, not it
            readahead.do_async_mmap_readahead(ractl, inode.i_pages.get(head, pfn), order, vma.vm_flags)
            mem.mem_map._refcount_a[pfn] -= 1
        return pfn, False
    count_vm_events_mm(mem, memcg, "pgmajfault")  # no page in the page cache at all
    readahead.do_sync_mmap_readahead(ractl, vma.vm_flags)
    pfn = cached_page(mem, inode, pgoff)
    if pfn is None:
        pfn, _ = read_page(mem, inode, pgoff)
    return pfn, True


def cached_folios(inode: Inode) -> list[tuple[int, int]]:
    """The folios holding the inode's cached pages, as (first index, pages) in index order (a large
    folio's pages the model no longer holds not counted). The host's cached pages not yet brought in
    count as small folios."""
    folios: list[tuple[int, int]] = []
    for index in residency(inode):
        head, order = folio_head(inode, index)
        if folios and folios[-1][0] == head and order:
            folios[-1] = (head, folios[-1][1] + 1)
        else:
            folios.append((head if order else index, 1))
    return folios


def residency(inode: Inode) -> list[int]:
    """The indices of the file's pages in the cache, as mincore() of a mapping of all of it shows."""
    return [i for i in range(i_size_pages(inode)) if page_present(inode, i)]
