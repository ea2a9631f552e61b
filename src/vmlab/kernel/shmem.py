"""shmem objects (tmpfs files, memfds, MAP_SHARED|MAP_ANONYMOUS memory), after mm/shmem.c (6.18): their
overcommit charge (shmem_acct_size/shmem_unacct_size) and their pages' way to swap and back.

A MAP_SHARED|MAP_ANONYMOUS object (shmem_zero_setup) is charged its whole size when made, unless the
mapping is VM_NORESERVE, and uncharged when the object is evicted (its last reference went).
Not modelled: the per-page charge of VM_NORESERVE objects (memfd, MAP_NORESERVE shared anonymous
memory) as their pages are allocated (shmem_acct_blocks), and the re-charge of a resized object.

Swap. A shmem page has no file behind it: reclaim unmaps a dirty one (its PTEs simply go: a later
fault finds the page through i_pages) and writes it to swap (shmem_writeout): the folio moves from
the page cache to the swap cache, and its index in i_pages now holds the swap entry
(`Inode.swapped`), which keeps one reference to the slot; the object joins shmem_swaplist. When the
write has completed, reclaim frees the folio from the swap cache as it does an anon one. A clean
shmem page (faulted in for reading, never written: zeroes) is simply dropped. A lookup of a swapped
index (a fault, read(), write()) reads it back (shmem_swapin_folio: slot-cluster readahead, a major
fault when it took I/O), puts it back in the page cache, dirty, and frees the slot; truncation and
the object's end free the slots of its swapped pages; swapoff reads back every swapped page of the
area first (shmem_unuse). MADV_PAGEOUT of a mapping sends its written pages the same way.
Meminfo's Shmem counts the pages in the page cache, not those on swap (nor their folios while they
are in the swap cache: SwapCached); a mapping's smaps Swap counts the object's pages on swap
(task_mmu), cachestat counts them evicted. MADV_WILLNEED reads a range's pages on swap into the swap
cache (madvise.shmem_swapin_range); MADV_REMOVE punches a hole (truncate.punch_hole): the range's pages
and slots go. Not modelled: large shmem folios on swap (a large folio is kept).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmlab.kernel.memcontrol import ANON, SHMEM, MemCgroup, count_vm_events_mm
from vmlab.kernel.mm_types import VM_NORESERVE, Inode, MmStruct
from vmlab.kernel.page_flags import F_DIRTY, PG
from vmlab.kernel.swap_state import (
    add_to_swap_cache,
    delete_from_swap_cache,
    free_swap_and_cache,
    swap_cache_get_folio,
    swap_cluster_readahead,
    swap_read_folio,
    swap_wait_writeback,
    swap_writeout,
)
from vmlab.kernel.swapfile import get_swap_page, swap_duplicate, swap_free, swp_offset, swp_type
from vmlab.kernel.uapi import ENOMEM, PAGE_SHIFT, ULONG_MAX, page_align
from vmlab.kernel.util import security_vm_enough_memory_mm, vm_unacct_memory
from vmlab.kernel.xarray import xa_erase_unused

if TYPE_CHECKING:
    from vmlab.kernel.mmap import VmSysctl
    from vmlab.kernel.page_alloc import PhysMem


def shmem_acct_size(mm: MmStruct, size: int, vm_flags: int, sysctl: VmSysctl) -> int:
    """shmem_acct_size() from __shmem_file_setup(), before the inode exists: charge VM_ACCT(size) for
    a reserving object, checked against the caller's mm; the pages charged (0 for VM_NORESERVE), or
    -ENOMEM. The caller records the charge in the new inode's acct_pages."""
    if vm_flags & VM_NORESERVE or mm.pt is None:
        return 0
    pages = page_align(size) >> PAGE_SHIFT
    err = security_vm_enough_memory_mm(mm, pages, sysctl)
    return err if err else pages


def shmem_unacct_size(mem: PhysMem, inode: Inode) -> None:
    """shmem_unacct_size() from shmem_evict_inode(): give back what shmem_acct_size charged."""
    vm_unacct_memory(mem, inode.acct_pages)
    inode.acct_pages = 0


# --- swap ----------------------------------------------------------------------------------------------

def shmem_writeout(mem: PhysMem, inode: Inode, head: int) -> bool:
    """shmem_writeout() from reclaim's pageout() of a dirty shmem page, unmapped and isolated (its
    references: the page cache's and reclaim's): give it a slot, move it from the page cache to the
    swap cache (shmem_delete_from_page_cache: i_pages keeps the swap entry, which holds one reference
    to the slot, and the object joins shmem_swaplist) and start its write (swap_writeout: clean and
    under write-back until the request completes). False, nothing changed (reclaim activates it:
    "redirty"), when no slot is free or the page belongs to a large folio."""
    if inode.folio_orders:
        return False
    state = mem.swap
    entry = get_swap_page(state)
    if not entry:
        return False
    mm = mem.mem_map
    index = int(mm.index_a[head])
    add_to_swap_cache(mem, head, entry)
    swap_duplicate(state, entry)
    del inode.i_pages[index]
    inode.swapped[index] = entry
    state.shmem_swaplist[inode.handle] = inode
    mem.shadow_nodes.page_out(inode, index)
    mm.mapping_a[head] = 0
    mm._refcount_a[head] -= 1  # the page cache's reference; the swap cache holds its own
    if mem.memcgs is not None:  # counted as swap cache now, no longer as shmem
        mem.memcgs.set_kind(head, ANON)
    swap_writeout(mem, head)
    return True


def shmem_swapin_folio(mem: PhysMem, inode: Inode, index: int, memcg: MemCgroup | None = None,
                       fault: bool = False) -> tuple[int | None, bool]:
    """shmem_swapin_folio() of swapped page `index`: its folio from the swap cache, else read with the
    slots around it (shmem_swapin_cluster: swap_cluster_readahead), one swap I/O; a `fault` that read
    counts a major fault (pgmajfault, also in `memcg`, the faulting mm's). The folio's write, if in
    flight, is waited for; then it goes back to the page cache (shmem_add_to_page_cache), leaves the
    swap cache dirty, and the slot is freed. (pfn or None when out of memory, whether it took I/O)."""
    state = mem.swap
    entry = inode.swapped[index]
    head = swap_cache_get_folio(mem, entry, None, 0)
    major = head is None
    if head is None:
        swap_cluster_readahead(mem, entry)
        head = state.cache.get(entry)
        if head is None:
            head = swap_read_folio(mem, entry)
        # Memory ran out, or the readahead's allocations OOM-killed the object's last user, whose
        # end freed its slots.
        if head is None or inode.swapped.get(index) != entry:
            return None, True
        refault = bool(mem.mem_map.flags_a[head] >> PG.workingset & 1)
        mem.clock.advance(mem.clock.costs.swap_io_ns, memstall=refault)
        if fault:
            count_vm_events_mm(mem, memcg, "pgmajfault")
    swap_wait_writeback(mem, head)
    mm = mem.mem_map
    mm.mapping_a[head] = inode.handle
    mm.index_a[head] = index
    inode.i_pages[index] = head
    _unswap(mem, inode, index)
    inode.xa_nodes.page_in(index)  # its slot held the swap entry: no node changes
    mm._refcount_a[head] += 1  # the page cache's reference
    if mem.memcgs is not None:
        mem.memcgs.set_kind(head, SHMEM)
    delete_from_swap_cache(mem, head)
    mm.flags_a[head] |= F_DIRTY
    swap_free(state, entry)
    return head, major


def shmem_free_swap(mem: PhysMem, inode: Inode, first: int, last: int = ULONG_MAX) -> None:
    """shmem_undo_range()'s swap entries: the slots of the object's swapped pages [first, last] are
    freed (free_swap_and_cache: a folio still in the swap cache goes too, once its write is done) and
    their entries leave i_pages."""
    for index in sorted(i for i in inode.swapped if first <= i <= last):
        entry = _unswap(mem, inode, index)
        free_swap_and_cache(mem, entry)
        xa_erase_unused(mem, inode, index)


def shmem_unuse(mem: PhysMem, area: int) -> int:
    """shmem_unuse() from swapoff: every swapped page of swap area `area` of every object on
    shmem_swaplist is read back into its page cache; 0 or -ENOMEM."""
    for inode in list(mem.swap.shmem_swaplist.values()):
        for index, entry in sorted(inode.swapped.items()):
            if swp_type(entry) != area or inode.swapped.get(index) != entry:
                continue
            pfn, _ = shmem_swapin_folio(mem, inode, index)
            if pfn is None and mem.swap.info(entry).swap_map[swp_offset(entry)]:
                return -ENOMEM
    return 0


def _unswap(mem: PhysMem, inode: Inode, index: int) -> int:
    """Index `index` of the object no longer holds a swap entry: the entry it held; the object leaves
    shmem_swaplist with its last one."""
    entry = inode.swapped.pop(index)
    if not inode.swapped:
        mem.swap.shmem_swaplist.pop(inode.handle, None)
    return entry
