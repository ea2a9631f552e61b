"""The folio half of mm/mlock.c (6.18): PG_mlocked, the unevictable list, and the CPU's mlock batch.

A folio is mlocked when it is mapped in a VM_LOCKED VMA: a new one at its fault (mlock_new_folio, from
folio_add_lru_vma), one mapped again there (mlock_vma_folio: a page-cache page's PTE, a swapped-in
page), the ones already mapped when mlock() locks the range (mlock_vma_pages_range). PG_mlocked and
NR_MLOCK (meminfo's Mlocked) change at once; the move to the unevictable list goes through the CPU's
mlock_fbatch, which is moved when it holds FOLIO_BATCH_SIZE folios, for a large folio at once, and by
lru_add_drain(): mlock() drains it before and after its walk and __mm_populate() after the faults,
so after mlock() or MAP_LOCKED every page is on the unevictable list, while MLOCK_ONFAULT faults leave
up to 30 folios off every list (PG_mlocked set, PG_lru clear; measured on this host with kpageflags).
munlock(), munmap and exit take a locked VMA's folios through the same batch (munlock_folio); a folio
several locked VMAs map keeps PG_mlocked until its mlock_count (kept while it is on the unevictable
list) runs out. Reclaim that finds a folio mapped in a locked VMA marks it too (vmscan).

Not modelled: the large-folio rules of mlock_pte_range (a PTE-mapped large folio is mlocked only when
the locked range and its PTEs cover it whole): the model mlocks small folios and PMD-mapped THPs only,
as the fault path does; reclaim culls the others when it meets them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmlab.kernel.mm_types import VM_LOCKED, VM_SPECIAL, MmStruct, VmArea
from vmlab.kernel.page_flags import F_ACTIVE, F_HEAD, F_LRU, F_MLOCKED, F_UNEVICTABLE
from vmlab.kernel.pgtable import _PAGE_PSE, pte_pfn, pte_present, pte_special
from vmlab.kernel.swap import FOLIO_BATCH_SIZE, folio_add_lru, folio_relist, lru_add_drain, put_page

if TYPE_CHECKING:
    from vmlab.kernel.page_alloc import PhysMem

#: What a folio on the mlock batch is waiting for (the kernel's low pointer bits LRU_FOLIO/NEW_FOLIO;
#: no bit: munlock).
MUNLOCK, LRU_FOLIO, NEW_FOLIO = 0, 1, 2


def _rescue(mem: PhysMem, head: int) -> None:
    """An unevictable folio no longer mlocked goes back to its evictable list (its mlock_count, kept
    only on the unevictable list, goes)."""
    folio_relist(mem, head, 0, F_UNEVICTABLE)
    mem.mlock_count.pop(head, None)
    mem.events["unevictable_pgs_rescued"] += 1 << mem.mem_map.folio_order(head)


def _mlock_folio(mem: PhysMem, head: int) -> None:
    """__mlock_folio(): a folio on a list goes to the unevictable one (counting its mlocks there); one
    off every list (isolated, or in another batch) is left alone."""
    mm = mem.mem_map
    flags = mm.flags_a[head]
    if not flags & F_LRU:
        return
    if not flags & F_MLOCKED:  # munlocked meanwhile: back to the evictable lists
        if flags & F_UNEVICTABLE:
            _rescue(mem, head)
        return
    if flags & F_UNEVICTABLE:
        mem.mlock_count[head] = mem.mlock_count.get(head, 0) + 1
        return
    folio_relist(mem, head, F_UNEVICTABLE, F_ACTIVE)
    mem.mlock_count[head] = 1
    mem.events["unevictable_pgs_culled"] += 1 << mem.mem_map.folio_order(head)


def _mlock_new_folio(mem: PhysMem, head: int) -> None:
    """__mlock_new_folio(): a new folio joins the unevictable list (an evictable one, munlocked
    meanwhile, its own list)."""
    mm = mem.mem_map
    if mm.flags_a[head] & F_MLOCKED:
        mm.flags_a[head] = mm.flags_a[head] | F_UNEVICTABLE
        mem.mlock_count[head] = 1
        mem.events["unevictable_pgs_culled"] += 1 << mem.mem_map.folio_order(head)
    mem.lruvec.add(mm, head)


def _munlock_folio(mem: PhysMem, head: int) -> None:
    """__munlock_folio(): one mlock fewer; the last clears PG_mlocked and brings the folio back to its
    evictable list (a folio off every list only loses the flag: reclaim puts it right)."""
    mm = mem.mem_map
    flags = mm.flags_a[head]
    nr = 1 << mem.mem_map.folio_order(head)
    isolated = bool(flags & F_LRU)
    if isolated and flags & F_UNEVICTABLE:
        count = mem.mlock_count.get(head, 0)
        if count:
            count -= 1
            mem.mlock_count[head] = count
        if count:
            return
    if flags & F_MLOCKED:
        mm.flags_a[head] = flags & ~F_MLOCKED
        stranded = not isolated and flags & F_UNEVICTABLE
        mem.events["unevictable_pgs_stranded" if stranded else "unevictable_pgs_munlocked"] += nr
    if isolated and flags & F_UNEVICTABLE:
        _rescue(mem, head)


def mlock_folio_batch(mem: PhysMem) -> None:
    """mlock_folio_batch(): each folio of the CPU's mlock batch, in order, to where it is going, then
    the batch's references dropped (a folio no one else holds is freed)."""
    batch = mem.mlock_fbatch
    entries = batch[:]
    batch.clear()
    for head, kind in entries:
        if kind == LRU_FOLIO:
            _mlock_folio(mem, head)
        elif kind == NEW_FOLIO:
            _mlock_new_folio(mem, head)
        else:
            _munlock_folio(mem, head)
    for head, _ in entries:
        put_page(mem, head)


def _batch_add(mem: PhysMem, head: int, kind: int) -> None:
    """folio_get() and folio_batch_add(): a full batch, or a large folio, moves the batch at once."""
    mem.mem_map._refcount_a[head] += 1
    mem.mlock_fbatch.append((head, kind))
    if len(mem.mlock_fbatch) >= FOLIO_BATCH_SIZE or mem.mem_map.flags_a[head] & F_HEAD:
        mlock_folio_batch(mem)


def _set_mlocked(mem: PhysMem, head: int) -> None:
    """PG_mlocked set (NR_MLOCK follows the flag) and unevictable_pgs_mlocked counted, once."""
    mm = mem.mem_map
    if not mm.flags_a[head] & F_MLOCKED:
        mm.flags_a[head] = mm.flags_a[head] | F_MLOCKED
        mem.events["unevictable_pgs_mlocked"] += 1 << mem.mem_map.folio_order(head)


def mlock_folio(mem: PhysMem, head: int) -> None:
    """mlock_folio(): mlock a folio on (or for a moment off) the LRU."""
    _set_mlocked(mem, head)
    _batch_add(mem, head, LRU_FOLIO)


def mlock_new_folio(mem: PhysMem, head: int) -> None:
    """mlock_new_folio(): mlock a new folio that is on no list yet."""
    _set_mlocked(mem, head)
    _batch_add(mem, head, NEW_FOLIO)


def munlock_folio(mem: PhysMem, head: int) -> None:
    """munlock_folio(): the batch decides whether this was the folio's last mlock."""
    _batch_add(mem, head, MUNLOCK)


def _locks(vma: VmArea) -> bool:
    """VM_LOCKED without VM_SPECIAL: what mlocks the folios a VMA maps."""
    return vma.vm_flags & (VM_LOCKED | VM_SPECIAL) == VM_LOCKED


def folio_add_lru_vma(mem: PhysMem, head: int, vma: VmArea) -> None:
    """folio_add_lru_vma(): a new folio of `vma` joins the LRU, through the mlock batch when the VMA
    is locked."""
    if _locks(vma):
        mlock_new_folio(mem, head)
    else:
        folio_add_lru(mem, head)


def mlock_vma_folio(mem: PhysMem, head: int, vma: VmArea) -> None:
    """mlock_vma_folio(): a small folio mapped again in a locked VMA (its rmap added) is mlocked."""
    if _locks(vma) and not mem.mem_map.flags_a[head] & F_HEAD:
        mlock_folio(mem, head)


def munlock_vma_folio(mem: PhysMem, head: int, vma: VmArea) -> None:
    """munlock_vma_folio(): a folio unmapped from a locked VMA is munlocked (always: reclaim corrects
    one another locked VMA still maps)."""
    if vma.vm_flags & VM_LOCKED:
        munlock_folio(mem, head)


def mlock_vma_pages_range(mm: MmStruct, mem: PhysMem, vma: VmArea, start: int, end: int) -> None:
    """mlock_vma_pages_range(): with the VMA's new lock bits in place, the folios already mapped in
    [start, end) are mlocked (VM_LOCKED) or munlocked (mlock_pte_range: small folios and PMD-mapped
    THPs, not the shared zero pages), between two lru_add_drain()s."""
    pt = mm.pt
    if pt is None:
        return
    lru_add_drain(mem)
    lock = bool(vma.vm_flags & VM_LOCKED)
    _, entries = pt.entries(start, end)
    for entry in entries.tolist():
        if not pte_present(entry) or pte_special(entry):
            continue
        pfn = pte_pfn(entry)
        if mem.is_huge_zero_pfn(pfn):
            continue
        head = mem.mem_map.compound_head(pfn)
        if mem.mem_map.flags_a[head] & F_HEAD and not entry & _PAGE_PSE:
            continue  # a PTE-mapped large folio (see the module text)
        if lock:
            mlock_folio(mem, head)
        else:
            munlock_folio(mem, head)
    lru_add_drain(mem)
