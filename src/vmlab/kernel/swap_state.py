"""The swap cache and swap-out, after mm/swap_state.c, mm/rmap.c (try_to_unmap_one for anon folios),
mm/page_io.c and the anon branch of mm/vmscan.c:shrink_folio_list (6.18).

The swap cache (`SwapState.cache`) maps a swap entry to the folio holding its data: PG_swapcache set,
folio->private (`mem_map.private`) = the entry, one reference held by the cache, SWAP_HAS_CACHE in the
slot's map byte. A folio there may be mapped (swapped in, its slot kept), unmapped (being swapped
out, or read ahead and not yet used), or both in turn.

`reclaim_anon_folio(mem, head, walk)` is what vmscan (and MADV_PAGEOUT) call for an isolated anon
folio: add it to swap, unmap it everywhere (PTEs become swap entries), write it, and release it from
the swap cache once clean.

Swap-in (`swapin_readahead`, called by memory.do_swap_page) reads the faulting entry and, with
vm.page-cluster, the swap PTEs around it in the VMA (swap_vma_readahead), the window growing with
readahead hits as __swapin_nr_pages() computes it; while an active area is on a rotational device
(the swap file's host disk says so: this machine's virtio disk does) it reads the aligned block of
slots around the entry instead (swap_cluster_readahead), with one global hit count.

A folio that leaves the swap cache by reclaim leaves a workingset shadow in `SwapState.shadows`; a
swap-in of that entry is a refault (workingset_refault).
"""

from __future__ import annotations

from collections.abc import Callable

from vmlab.kernel.memcontrol import MemCgroup, mem_cgroup_swapin_charge
from vmlab.kernel.mm_types import MM_ANONPAGES, MM_SWAPENTS, VM_LOCKED, MmStruct, VmArea
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import (
    F_ACTIVE,
    F_DIRTY,
    F_HEAD,
    F_RECLAIM,
    F_SWAPCACHE,
    F_WRITEBACK,
    PAGE_MAPPING_ANON,
    PG,
    PG_anon_exclusive,
    PG_readahead,
)
from vmlab.kernel.pgtable import (
    PMD_MASK,
    PMD_SIZE,
    pte_dirty,
)
from vmlab.kernel.rmap import Mapping
from vmlab.kernel.swap import folio_add_lru, folio_rotate_reclaimable, lru_add_drain, put_page
from vmlab.kernel.swapfile import (
    SWAP_HAS_CACHE,
    SwapInfo,
    SwapState,
    get_swap_page,
    is_swap_slot_pte,
    pte_swp_mkexclusive,
    pte_to_swp_entry,
    put_swap_folio,
    swap_free,
    swap_slot_in_use,
    swp_entry,
    swp_entry_to_pte,
    swp_offset,
    swp_swapcount,
    swp_type,
)
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE
from vmlab.kernel.workingset import workingset_eviction, workingset_refault

SWAP_RA_ORDER_CEILING = 5
SWAP_RA_WIN_SHIFT = PAGE_SHIFT // 2
SWAP_RA_HITS_MASK = (1 << SWAP_RA_WIN_SHIFT) - 1
SWAP_RA_HITS_MAX = SWAP_RA_HITS_MASK
SWAP_RA_WIN_MASK = (PAGE_SIZE - 1) & ~SWAP_RA_HITS_MASK


def _ra_fields(ra: int) -> tuple[int, int, int]:
    """SWAP_RA_ADDR, SWAP_RA_WIN and SWAP_RA_HITS of a swap_readahead_info value."""
    return ra & ~(PAGE_SIZE - 1), (ra & SWAP_RA_WIN_MASK) >> SWAP_RA_WIN_SHIFT, ra & SWAP_RA_HITS_MASK


def swap(mem: PhysMem) -> SwapState:
    """The machine's swap state."""
    return mem.swap


# --- the swap cache -----------------------------------------------------------------------------------

def add_to_swap_cache(mem: PhysMem, head: int, entry: int) -> None:
    """add_to_swap_cache(): the folio holds `entry`'s data; the cache takes a reference. The slot must
    already carry SWAP_HAS_CACHE (get_swap_page / swapcache_prepare)."""
    mm = mem.mem_map
    state = mem.swap
    if entry in state.cache or int(mm.flags[head]) & F_SWAPCACHE:
        raise AssertionError(f"add_to_swap_cache({head:#x}, {entry:#x}): already cached")
    state.cache[entry] = head
    mm.flags[head] = int(mm.flags[head]) | F_SWAPCACHE | (1 << PG.swapbacked) | (1 << PG.uptodate)
    mm.private[head] = entry
    mm._refcount[head] += 1


def delete_from_swap_cache(mem: PhysMem, head: int, shadow: int | None = None) -> None:
    """delete_from_swap_cache() / __delete_from_swap_cache(): the folio leaves the cache (leaving
    `shadow` in its place, if given), the slot loses SWAP_HAS_CACHE, the cache's reference is
    dropped (which frees the folio when nothing else holds it)."""
    mm = mem.mem_map
    state = mem.swap
    entry = int(mm.private[head])
    if state.cache.get(entry) != head:
        raise AssertionError(f"delete_from_swap_cache({head:#x}): entry {entry:#x} not cached by it")
    if int(mm.flags[head]) & F_WRITEBACK:
        raise AssertionError(f"swap-cache folio {head:#x} dropped while its write to {entry:#x} is in flight")
    if int(mm.flags[head]) & F_DIRTY and swp_swapcount(state, entry):
        raise AssertionError(f"dirty swap-cache folio {head:#x} dropped without write-back while "
                             f"{swp_swapcount(state, entry)} PTEs refer to slot {entry:#x}")
    del state.cache[entry]
    mm.flags[head] = int(mm.flags[head]) & ~F_SWAPCACHE
    mm.private[head] = 0
    put_swap_folio(state, entry)
    if shadow is not None and swap_slot_in_use(state, entry):
        state.shadows[entry] = shadow
    put_page(mem, head)


def swap_cache_get_folio(mem: PhysMem, entry: int, vma: VmArea | None, addr: int) -> int | None:
    """swap_cache_get_folio() + swap_update_readahead(): the cached folio of `entry`, if any; a folio
    brought in by readahead counts a hit (swap_ra_hit) in the VMA's readahead state, or in the global
    one of swap_cluster_readahead when VMA readahead is off."""
    head = mem.swap.cache.get(entry)
    if head is None:
        return None
    mm = mem.mem_map
    flags = int(mm.flags[head])
    readahead = bool(flags >> PG_readahead & 1)
    if readahead:
        mm.flags[head] = flags & ~(1 << PG_readahead)
        mem.events["swap_ra_hit"] += 1
    if vma is not None and mem.swap.vma_readahead():
        _, win, hits = _ra_fields(vma.swap_readahead_info)
        if readahead:
            hits = min(hits + 1, SWAP_RA_HITS_MAX)
        vma.swap_readahead_info = _ra_val(addr, win, hits)
    elif readahead:
        mem.swap.swapin_readahead_hits += 1
    return head


def folio_free_swap(mem: PhysMem, head: int) -> bool:
    """folio_free_swap(): drop a swap-cache folio's slot when no PTE refers to it any more (the data
    lives only in memory again, so the folio becomes dirty). True if it was freed from the cache."""
    mm = mem.mem_map
    flags = int(mm.flags[head])
    if not flags & F_SWAPCACHE or flags & F_WRITEBACK:
        return False
    if swp_swapcount(mem.swap, int(mm.private[head])):
        return False
    mm.flags[head] = flags | F_DIRTY
    delete_from_swap_cache(mem, head)
    return True


def free_swap_and_cache(mem: PhysMem, entry: int) -> None:
    """free_swap_and_cache_nr(): a PTE holding `entry` went (zap); when only the swap cache still
    holds the slot and its folio is unmapped, the folio leaves the cache too (__try_to_reclaim_swap
    with TTRS_UNMAPPED) and is freed."""
    state = mem.swap
    if swap_free(state, entry) != SWAP_HAS_CACHE:
        return
    head = state.cache.get(entry)  # none yet while a swap-in holds SWAP_HAS_CACHE across its charge
    if head is not None and int(mem.mem_map._mapcount[head]) < 0:
        folio_free_swap(mem, head)


# --- swap-out -----------------------------------------------------------------------------------------

def add_to_swap(mem: PhysMem, head: int) -> bool:
    """add_to_swap() / folio_alloc_swap(): give an anon folio a slot and put it in the swap cache,
    dirty (it has not been written yet). False when no swap space is left."""
    entry = get_swap_page(mem.swap)
    if not entry:
        return False
    add_to_swap_cache(mem, head, entry)
    mem.mem_map.flags[head] = int(mem.mem_map.flags[head]) | F_DIRTY
    return True


def try_to_unmap(mem: PhysMem, head: int, mappings: list[Mapping]) -> bool:
    """try_to_unmap() of a small anon folio in the swap cache, given its mappings (the rmap walk): each
    PTE becomes its swap entry (exclusive if the page was, PageAnonExclusive cleared), the entry gains
    a reference, RSS moves from anon to swap, a dirty PTE makes the folio dirty. False (nothing
    changed) if a mapping VMA is VM_LOCKED (the kernel then mlocks the folio and keeps it), or if the
    walk did not find every mapping (one being set up or moved: the folio stays)."""
    mm_map = mem.mem_map
    if len(mappings) != int(mm_map._mapcount[head]) + 1:
        return False
    if any(vma.vm_flags & VM_LOCKED for _, vma, _, _, _ in mappings):
        return False
    entry = int(mm_map.private[head])
    si = mem.swap.info(entry)
    swp_pte = swp_entry_to_pte(entry)
    for mm, _vma, _addr, ptes, slot in mappings:
        pte = int(ptes[slot])
        if pte_dirty(pte):
            mm_map.flags[head] = int(mm_map.flags[head]) | F_DIRTY
        exclusive = bool(int(mm_map.flags[head]) >> PG_anon_exclusive & 1)
        ptes[slot] = pte_swp_mkexclusive(swp_pte) if exclusive else swp_pte
        si.swap_map[swp_offset(entry)] += 1
        mm.rss[MM_ANONPAGES] -= 1
        mm.rss[MM_SWAPENTS] += 1
        mm_map._mapcount[head] -= 1
        mm_map.flags[head] = int(mm_map.flags[head]) & ~(1 << PG_anon_exclusive)
        put_page(mem, head)
    return True


def swap_writeout(mem: PhysMem, head: int) -> None:
    """pageout() -> swap_writeout() -> swap_writepage(): write the folio to its slot, for reclaim:
    clean, under write-back and PG_reclaim until the write completes (the data is in the slot at
    once). The write is a bio to the area's device (blk_mq: under reclaim's plug it merges with the
    writes to the slots before it; the reclaimer does not wait for it) and counts in pswpout and, as
    every write pageout() starts, in nr_vmscan_write. Its completion (end_swap_bio_write) is
    _end_swap_write."""
    mm = mem.mem_map
    mm.flags[head] = (int(mm.flags[head]) & ~F_DIRTY) | F_WRITEBACK | F_RECLAIM
    entry = int(mm.private[head])
    si = mem.swap.info(entry)
    si.written[swp_offset(entry)] = True
    mem.events["pswpout"] += 1
    mem.events["nr_vmscan_write"] += 1
    mem.block.submit_page(si.bdev, swp_offset(entry), lambda: _end_swap_write(mem, head, entry))


def _end_swap_write(mem: PhysMem, head: int, entry: int) -> None:
    """folio_end_writeback() of the swap write of `entry` from folio `head`: PG_writeback cleared (and
    counted in nr_written, as every folio's write is); a folio reclaim still wants (PG_reclaim) loses
    the mark and is rotated to the inactive tail (folio_rotate_reclaimable), for the next scan to
    free. A folio under write-back stays in the swap cache (folio_free_swap and reclaim leave it)."""
    mm = mem.mem_map
    flags = int(mm.flags[head])
    if not flags & F_SWAPCACHE or int(mm.private[head]) != entry or not flags & F_WRITEBACK:
        raise AssertionError(f"swap write of {entry:#x} ended on pfn {head:#x}, no longer its: {mm[head]!r}")
    mm.flags[head] = flags & ~(F_WRITEBACK | F_RECLAIM)
    mem.events["nr_written"] += 1
    if flags & F_RECLAIM:
        folio_rotate_reclaimable(mem, head)


def swap_wait_writeback(mem: PhysMem, head: int) -> None:
    """folio_wait_writeback() of a swap-cache folio: the task sleeps until its write completes,
    sending the requests its plug holds first (schedule() flushes the plug)."""
    mem.block.flush_plug()
    if not mem.clock.sleep_until(lambda: not mem.mem_map.flags_a[head] & F_WRITEBACK):
        raise AssertionError(f"pfn {head:#x} is under write-back with no write pending")


def reclaim_anon_folio(mem: PhysMem, head: int, walk: Callable[[int], list[Mapping]],
                       target: MemCgroup | None = None) -> bool:
    """shrink_folio_list() for one isolated (off-LRU) anon folio on which the caller holds the isolation
    reference: add it to swap, unmap it (every mapping `walk` finds), write it if dirty, and take it
    out of the swap cache (leaving a shadow, aged in the lruvec of `target`: the memcg reclaim is for,
    None for the node) when clean and no longer used. True: only the caller's
    reference is left, the caller frees the folio.

    False: it stays, and the caller puts it back on the list its flags name. PG_active is set where
    the kernel activates it (activate_locked: no swap space, a large folio, an mlocked mapping, an
    extra reference); a folio just written stays inactive (shrink_folio_list's `keep`): the write's
    completion rotates it to the inactive tail and a later pass frees it. A folio whose write is still
    in flight (met by MADV_PAGEOUT: mapped again since) is marked PG_reclaim and activated, as
    shrink_folio_list does outside a v1 memcg (vmscan handles write-back before it calls this).
    """
    mm = mem.mem_map
    flags = int(mm.flags[head])
    if flags & F_WRITEBACK:
        mm.flags[head] = flags | F_RECLAIM | F_ACTIVE
        return False
    if flags & F_HEAD or not flags >> PG.swapbacked & 1 or (
            not flags & F_SWAPCACHE and not int(mm.mapping[head]) & PAGE_MAPPING_ANON):
        mm.flags[head] = flags | F_ACTIVE  # THP swap is not modelled (shmem: vmscan's _shmem_pageout)
        return False
    if not flags & F_SWAPCACHE and not add_to_swap(mem, head):
        mm.flags[head] = int(mm.flags[head]) | F_ACTIVE
        return False
    if int(mm._mapcount[head]) >= 0 and not try_to_unmap(mem, head, walk(head)):
        mm.flags[head] = int(mm.flags[head]) | F_ACTIVE
        return False
    if int(mm.flags[head]) & F_DIRTY:
        swap_writeout(mem, head)
        return False
    if int(mm._refcount[head]) != 2:  # __remove_mapping(): only the swap cache and the isolation
        mm.flags[head] = int(mm.flags[head]) | F_ACTIVE
        return False
    shadow = workingset_eviction(mem, head, 1, target)
    if mem.memcgs is not None:
        mem.memcgs.swapout(head, int(mm.private[head]))  # memcg1_swapout(): memsw stays with the slot
    delete_from_swap_cache(mem, head, shadow)
    return True


# --- swap-in ------------------------------------------------------------------------------------------

def swap_read_folio(mem: PhysMem, entry: int) -> int | None:
    """__read_swap_cache_async() + swap_read_folio(): a new folio for `entry`, in the swap cache and on
    the inactive anon list, its data read (pswpin); None without memory, or when the slot is free or
    was freed while memory was sought (swapcache_prepare() -> -ENOENT: an allocation's OOM kill, this
    one's or an earlier readahead page's, ended its last user). The slot must not be cached."""
    state = mem.swap
    si: SwapInfo = state.info(entry)
    if not si.swap_map[swp_offset(entry)]:
        return None
    if not si.written[swp_offset(entry)]:
        raise AssertionError(f"swap-in of slot {entry:#x}, which was never written")
    pfn = mem.alloc_pages(0)
    if pfn is None:
        return None
    if not si.swap_map[swp_offset(entry)]:  # swapcache_prepare() -> -ENOENT: the allocation's reclaim
        mem.free_pages(pfn)                 # OOM-killed the last owner and its exit freed the slot
        return None
    if entry in state.cache:  # reclaim during the allocation cannot bring it in: a model bug
        raise AssertionError(f"swap entry {entry:#x} got cached while reading it")
    si.swap_map[swp_offset(entry)] |= SWAP_HAS_CACHE  # swapcache_prepare(): the slot stays ours
    if mem_cgroup_swapin_charge(mem, pfn, entry):  # (its reclaim may OOM-kill the slot's last owner)
        put_swap_folio(state, entry)
        mem.free_pages(pfn)
        return None
    mem.mem_map._refcount[pfn] = 0  # the allocation's reference becomes the swap cache's
    add_to_swap_cache(mem, pfn, entry)
    shadow = state.shadows.pop(entry, None)
    if shadow is not None:  # before the LRU add (__read_swap_cache_async): it may set PG_active
        workingset_refault(mem, pfn, 1, shadow)
        if mem.memcgs is not None:
            mem.memcgs.count_refault(pfn, True)
    folio_add_lru(mem, pfn)
    mem.events["pswpin"] += 1
    return pfn


def _ra_val(addr: int, win: int, hits: int) -> int:
    """SWAP_RA_VAL(): the page address, window and hits packed as swap_readahead_info keeps them."""
    return (addr & ~(PAGE_SIZE - 1)) | (win << SWAP_RA_WIN_SHIFT) | hits


def swapin_nr_pages(prev_pfn: int, pfn: int, hits: int, max_pages: int, prev_win: int) -> int:
    """__swapin_nr_pages(): the readahead window: hits + 2 rounded up to a power of two (at least 4);
    with no hits, 2 pages for an adjacent fault and 1 otherwise; at most `max_pages`, and not below
    half the previous window."""
    pages = hits + 2
    if pages == 2:
        if pfn not in (prev_pfn + 1, prev_pfn - 1):
            pages = 1
    else:
        roundup = 4
        while roundup < pages:
            roundup <<= 1
        pages = roundup
    pages = min(pages, max_pages)
    return max(pages, prev_win // 2)


def swap_vma_ra_win(mem: PhysMem, vma: VmArea, faddr: int) -> tuple[int, int, int]:
    """swap_vma_ra_win(): (window, start, end) of the readahead around fault address `faddr`, inside the
    VMA and its 2 MiB-aligned block; forward after a fault on the page below, backward after one on
    the page above, else centred."""
    max_win = 1 << min(mem.swap.page_cluster, SWAP_RA_ORDER_CEILING)
    if max_win == 1:
        return 1, faddr, faddr + PAGE_SIZE
    prev_faddr, prev_win, hits = _ra_fields(vma.swap_readahead_info)
    win = swapin_nr_pages(prev_faddr >> PAGE_SHIFT, faddr >> PAGE_SHIFT, hits, max_win, prev_win)
    vma.swap_readahead_info = _ra_val(faddr, win, 0)
    if win == 1:
        return 1, faddr, faddr + PAGE_SIZE
    if faddr == prev_faddr + PAGE_SIZE:
        left = faddr
    elif prev_faddr == faddr + PAGE_SIZE:
        left = faddr - (win << PAGE_SHIFT) + PAGE_SIZE
    else:
        left = faddr - (((win - 1) // 2) << PAGE_SHIFT)
    right = left + (win << PAGE_SHIFT)
    start = max(left, vma.vm_start, faddr & PMD_MASK)
    end = min(right, vma.vm_end, (faddr & PMD_MASK) + PMD_SIZE)
    return win, start, end


def cluster_nr_pages(state: SwapState, offset: int) -> int:
    """swapin_nr_pages(): swap_cluster_readahead's window for a fault at slot `offset`, from the hits
    since the last one (taken: the count restarts), the last fault's offset and window."""
    max_pages = 1 << state.page_cluster
    if max_pages <= 1:
        return 1
    hits, state.swapin_readahead_hits = state.swapin_readahead_hits, 0
    pages = swapin_nr_pages(state.prev_offset, offset, hits, max_pages, state.last_readahead_pages)
    if not hits:
        state.prev_offset = offset
    state.last_readahead_pages = pages
    return pages


def swap_cluster_readahead(mem: PhysMem, entry: int) -> None:
    """swap_cluster_readahead()'s reads ahead: the slots in use and not cached of the block of
    swapin_nr_pages() slots, aligned to its size, that holds `entry` (not the header, not past the
    area) into the swap cache, PG_readahead on all but `entry`'s."""
    state = mem.swap
    offset = swp_offset(entry)
    mask = cluster_nr_pages(state, offset) - 1
    if not mask:
        return
    si = state.info(entry)
    for off in range(max(offset & ~mask, 1), min(offset | mask, si.max - 1) + 1):
        e = swp_entry(swp_type(entry), off)
        if si.swap_map[off] and e not in state.cache:  # else __read_swap_cache_async: nothing to read
            _read_ahead(mem, e, off != offset)
    lru_add_drain(mem)  # "Push any new pages onto the LRU now"


def swap_vma_readahead(mem: PhysMem, mm: MmStruct, vma: VmArea, faddr: int) -> None:
    """swap_vma_readahead()'s reads ahead: the swap entries (not cached) of the PTEs in the window
    swap_vma_ra_win() gives around fault address `faddr`, into the swap cache, PG_readahead on all
    but the faulting one's; none for a window of one."""
    assert mm.pt is not None
    win, start, end = swap_vma_ra_win(mem, vma, faddr)
    if win == 1:
        return
    for addr in range(start, end, PAGE_SIZE):
        pte = mm.pt.get_pte(addr)
        if not is_swap_slot_pte(pte):
            continue
        e = pte_to_swp_entry(pte)
        if e not in mem.swap.cache and _read_ahead(mem, e, addr != faddr) is None:
            break
    lru_add_drain(mem)  # "Push any new pages onto the LRU now"


def _read_ahead(mem: PhysMem, entry: int, ahead: bool) -> int | None:
    """swap_read_folio() of one entry of a readahead window; when it is `ahead` of the fault (not the
    faulting entry) the folio gets PG_readahead and counts in swap_ra. Its pfn, or None."""
    pfn = swap_read_folio(mem, entry)
    if pfn is not None and ahead:
        mem.mem_map.set(pfn, PG_readahead)
        mem.events["swap_ra"] += 1
    return pfn


def swapin_readahead(mem: PhysMem, mm: MmStruct, vma: VmArea, faddr: int, entry: int) -> int | None:
    """swapin_readahead(): read the faulting entry and those around it into the swap cache
    (swap_vma_readahead, or swap_cluster_readahead while an active area is on a rotational device);
    one swap I/O is charged for the lot, a stall if the folio was part of the working set (a
    refault). The faulting entry's folio, or None without memory."""
    if mem.swap.vma_readahead():
        swap_vma_readahead(mem, mm, vma, faddr)
    else:
        swap_cluster_readahead(mem, entry)
    # Looked up again: reclaim for a later readahead page may have dropped an earlier one.
    target = mem.swap.cache.get(entry)
    if target is None:
        target = swap_read_folio(mem, entry)
        if target is None:
            return None
    memstall = bool(int(mem.mem_map.flags[target]) >> PG.workingset & 1)
    mem.clock.advance(mem.clock.costs.swap_io_ns, memstall=memstall)
    return target
