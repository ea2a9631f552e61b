"""Reverse mapping, after mm/rmap.c: anon_vma assignment (__anon_vma_prepare, find_mergeable_anon_vma,
anon_vma_fork) and the rmap walk reclaim uses (rmap_walk, folio_referenced, try_to_unmap).

Reference rule M3: a VMA gets an anon_vma on its first anonymous page; an adjacent VMA that differs only
in rwx, with a singular chain, lends its own.

The walk goes from a page to every (mm, VMA, address) that maps it: a file page through the VMAs of its
inode (the kernel's i_mmap tree), an anon page through the VMAs whose anon_vma chain holds the page's
anon_vma (the parent's VMA and those of its fork children). The model keeps no i_mmap tree: an
`RmapIndex` is built from the live mms when a reclaim pass starts (VMAs do not change during one), and
every candidate address is checked against the page tables, so a mapping the index cannot see (one
being set up or moved) is simply not found: the folio then stays mapped and reclaim keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from vmlab.kernel.mm_types import (
    MM_ANONPAGES,
    VM_ACCESS_FLAGS,
    VM_DROPPABLE,
    VM_IGNORE_MERGE,
    VM_LOCKED,
    VM_RAND_READ,
    VM_SEQ_READ,
    AnonVma,
    Inode,
    MmStruct,
    VmArea,
    link_anon_vmas,
)
from vmlab.kernel.page_flags import PAGE_MAPPING_ANON, PG
from vmlab.kernel.page_writeback import folio_frames, folio_mark_dirty
from vmlab.kernel.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_PRESENT,
    _PAGE_PSE,
    PTE_PFN_MASK,
    pte_dirty,
    pte_index,
)
from vmlab.kernel.uapi import PAGE_SHIFT, PMD_SIZE

if TYPE_CHECKING:
    from vmlab.kernel.page_alloc import PhysMem


def _reusable_anon_vma(old: VmArea | None, a: VmArea, b: VmArea) -> AnonVma | None:
    """reusable_anon_vma(): old's anon_vma if a and b are compatible neighbours and old's chain singular."""
    if old is None or old.anon_vma is None or old.anon_vma_chain_len != 1:
        return None
    if a.vm_end != b.vm_start or a.vm_file is not b.vm_file:
        return None
    if (a.vm_flags ^ b.vm_flags) & ~(VM_ACCESS_FLAGS | VM_IGNORE_MERGE):
        return None
    if b.vm_pgoff != a.vm_pgoff + a.pages:
        return None
    return old.anon_vma


def find_mergeable_anon_vma(mm: MmStruct, vma: VmArea) -> AnonVma | None:
    """find_mergeable_anon_vma(): try the next VMA, then the previous one."""
    nxt = mm.next_vma(vma)
    if nxt is not None:
        found = _reusable_anon_vma(nxt, vma, nxt)
        if found is not None:
            return found
    prev = mm.prev_vma(vma)
    return _reusable_anon_vma(prev, prev, vma) if prev is not None else None


def anon_vma_prepare(mm: MmStruct, vma: VmArea) -> AnonVma:
    """anon_vma_prepare(): make sure `vma` (linked in `mm`) has an anon_vma before its first anonymous
    page: a neighbour's or a new one, with its chain's slab objects (link_anon_vmas)."""
    if vma.anon_vma is None:
        vma.anon_vma = find_mergeable_anon_vma(mm, vma) or AnonVma()
        vma.anon_vma_chain_len = 1
        link_anon_vmas(mm, vma)
    return vma.anon_vma


def anon_vma_fork(child: VmArea, parent: VmArea) -> None:
    """anon_vma_fork(): a child VMA chains to the parent's anon_vma and gets one of its own (M3)."""
    if parent.anon_vma is None:
        child.anon_vma, child.anon_vma_chain_len = None, 0
        return
    child.anon_vma = AnonVma(parent=parent.anon_vma)
    child.anon_vma_chain_len = parent.anon_vma_chain_len + 1


# --- the rmap walk -------------------------------------------------------------------------------------

#: One mapping of a page: the mm, the VMA, the user address, and where its PTE is (page_vma_mapped_walk's
#: pvmw.pte: the entries of the PTE table, live, and the slot in them).
Mapping = tuple[MmStruct, VmArea, int, np.ndarray, int]


class RmapIndex:
    """The VMAs that may map a page, by what page->mapping names: for a file page its inode's i_mmap
    (kept live by MmStruct.insert/remove), for an anon page the anon_vma's chain of VMAs, indexed here
    from the live mms (valid while no VMA changes)."""

    __slots__ = ("anon",)

    def __init__(self, mms: Iterable[MmStruct]) -> None:
        self.anon: dict[int, list[tuple[MmStruct, VmArea]]] = {}
        for mm in mms:
            if mm.pt is None:
                continue
            for vma in mm:
                anon_vma = vma.anon_vma
                while anon_vma is not None:
                    self.anon.setdefault(anon_vma.id, []).append((mm, vma))
                    anon_vma = anon_vma.parent

    def walk(self, mem: PhysMem, pfn: int) -> list[Mapping]:
        """rmap_walk() of an order-0 page: every mapping whose PTE maps `pfn` now, with that PTE's
        table and slot (the callers read and write the entry there, as the kernel does at pvmw.pte)."""
        mmap_ = mem.mem_map
        mapping = mmap_.mapping_a[pfn]
        candidates: Iterable[tuple[MmStruct, VmArea]]
        if mapping & PAGE_MAPPING_ANON:
            candidates = self.anon.get(mapping >> 2, ())
        else:
            inode = mem.address_spaces.get(mapping)
            candidates = () if inode is None else zip(inode.i_mmap.values(), inode.i_mmap, strict=True)
        index = mmap_.index_a[pfn]
        found: list[Mapping] = []
        for mm, vma in candidates:
            offset = index - vma.vm_pgoff
            if not 0 <= offset < vma.pages or mm.pt is None:
                continue
            addr = vma.vm_start + (offset << PAGE_SHIFT)
            ptes = mm.pt.pte_offset_map(addr)
            if ptes is None:
                continue
            slot = pte_index(addr)
            pte = int(ptes[slot])
            if pte & _PAGE_PRESENT and not pte & _PAGE_PSE and (pte & PTE_PFN_MASK) >> PAGE_SHIFT == pfn:
                found.append((mm, vma, addr, ptes, slot))
        return found


    def walk_thp(self, mem: PhysMem, head: int) -> list[ThpMapping]:
        """page_vma_mapped_walk() of an anon THP over every VMA its anon_vma reaches: each entry that
        maps a page of it now, the PMD leaf that maps it whole or a PTE that maps one of its pages,
        as (mm, vma, address, entry)."""
        mmap_ = mem.mem_map
        index = mmap_.index_a[head]
        found: list[ThpMapping] = []
        for mm, vma in self.anon.get(mmap_.mapping_a[head] >> 2, ()):
            if mm.pt is None:
                continue
            start = vma.vm_start + ((index - vma.vm_pgoff) << PAGE_SHIFT)  # the folio's first page
            lo, hi = max(start, vma.vm_start), min(start + PMD_SIZE, vma.vm_end)
            if lo >= hi:
                continue
            addrs, entries = mm.pt.entries(lo, hi)
            for addr, entry in zip(addrs.tolist(), entries.tolist(), strict=True):
                pfn = (entry & PTE_PFN_MASK) >> PAGE_SHIFT
                if entry & _PAGE_PRESENT and pfn == head + ((addr - start) >> PAGE_SHIFT):
                    found.append((mm, vma, addr, entry))
        return found


#: One mapping of a THP: the mm, the VMA, the address, and the entry (a PMD leaf has PSE set).
ThpMapping = tuple[MmStruct, VmArea, int, int]


def vma_has_recency(vma: VmArea) -> bool:
    """vma_has_recency() (mm_inline.h): MADV_SEQUENTIAL / MADV_RANDOM mappings, and those of a file
    with POSIX_FADV_NOREUSE, say their accesses predict nothing, so their young bits do not count,
    neither to folio_referenced (invalid_folio_referenced_vma) nor when an unmap hands them to the
    folio."""
    if vma.vm_flags & (VM_SEQ_READ | VM_RAND_READ):
        return False
    return vma.vm_file is None or not vma.vm_file.fmode_noreuse


def folio_referenced(mem: PhysMem, rmap: RmapIndex, head: int,
                     frames: list[int] | None = None) -> tuple[int, int]:
    """folio_referenced(): how many mappings (VMAs) of the folio were used (a young PTE) since the last
    look, and the union of those VMAs' flags; test-and-clears each young bit (ptep_clear_flush_young).
    `frames`: the frames of a large page-cache folio (separate in the model), whose young PTEs in one
    VMA count once, as folio_referenced_one() counts a VMA. A mapping in a VM_LOCKED VMA stops the walk
    and reports VM_LOCKED. An anon THP is walked by its PMD leaf or the PTEs of its pages
    (_thp_referenced)."""
    mmap_ = mem.mem_map
    if mmap_.flags_a[head] & (1 << PG.head):
        return _thp_referenced(rmap.walk_thp(mem, head))
    used: set[int] = set()
    vm_flags = 0
    for pfn in frames or (head,):
        if mmap_._mapcount_a[pfn] < 0:
            continue
        for _, vma, _, ptes, slot in rmap.walk(mem, pfn):
            if vma.vm_flags & VM_LOCKED:
                return len(used), vm_flags | VM_LOCKED
            if not vma_has_recency(vma):
                continue
            pte = int(ptes[slot])
            if pte & _PAGE_ACCESSED:
                ptes[slot] = pte & ~_PAGE_ACCESSED
                used.add(id(vma))
                vm_flags |= vma.vm_flags
    return len(used), vm_flags


def _thp_referenced(mappings: list[ThpMapping]) -> tuple[int, int]:
    """folio_referenced() of an anon THP from its mappings: a VMA counts once if its PMD leaf, or a
    PTE of one of the folio's pages there, is young (pmdp_clear_flush_young_notify,
    ptep_clear_flush_young_notify: each young bit is cleared); a VM_LOCKED VMA stops the walk."""
    used: set[int] = set()
    vm_flags = 0
    for mm, vma, addr, entry in mappings:
        if vma.vm_flags & VM_LOCKED:
            return len(used), vm_flags | VM_LOCKED
        if not entry & _PAGE_ACCESSED or not vma_has_recency(vma):
            continue
        assert mm.pt is not None
        if entry & _PAGE_PSE:
            mm.pt.mkold_pmd_leaf(addr)
        else:
            mm.pt.set_pte(addr, entry & ~_PAGE_ACCESSED)
        used.add(id(vma))
        vm_flags |= vma.vm_flags
    return len(used), vm_flags


def try_to_unmap(mem: PhysMem, rmap: RmapIndex, head: int) -> bool:
    """try_to_unmap() of an order-0 page-cache folio: clear every PTE that maps it (a dirty PTE makes
    the folio dirty), dropping the mappings' references and RSS. Stops at a VM_LOCKED VMA (the folio is
    mlocked there). True when no mapping is left."""
    from vmlab.kernel.memory import add_mm_counter, mm_counter

    mmap_ = mem.mem_map
    counter = mm_counter(mem, head)
    for mm, vma, _, ptes, slot in rmap.walk(mem, head):
        if vma.vm_flags & VM_LOCKED:
            break
        pte = int(ptes[slot])
        ptes[slot] = 0
        if pte_dirty(pte) and not mmap_.flags_a[head] & (1 << PG.dirty):
            inode = mem.address_spaces.get(mmap_.mapping_a[head])
            if inode is not None:
                folio_mark_dirty(mem, inode, head)
        add_mm_counter(mm, counter, -1)
        mmap_._mapcount_a[head] -= 1
        mmap_._refcount_a[head] -= 1
        mem.unmap_generation += 1
    return mmap_._mapcount_a[head] < 0


def unmap_folio(mem: PhysMem, inode: Inode, pfn: int) -> None:
    """unmap_folio() (mm/huge_memory.c) of the page-cache large folio holding frame `pfn`, before it is
    split: every PTE that maps one of its frames is cleared (try_to_unmap of each frame). A file folio
    is not mapped back after the split (remap_page() restores anon folios only), so its pages fault in
    again, as small ones. Measured: MADV_COLD of 4 pages of a mapped, clean 64-page folio leaves its 64
    pages unmapped (RssFile -256 kB)."""
    rmap = RmapIndex(mem.swap.mms())
    for frame in folio_frames(mem, inode, pfn):
        if mem.mem_map._mapcount_a[frame] >= 0:
            try_to_unmap(mem, rmap, frame)


def try_to_unmap_lazyfree(mem: PhysMem, rmap: RmapIndex, head: int) -> bool:
    """try_to_unmap() of an isolated, order-0 lazyfree folio (anon, not swap-backed: MADV_FREE's, or
    a droppable mapping's): try_to_unmap_one's "MADV_FREE page check", mapping by mapping in walk
    order. A dirty PTE makes the folio dirty (folio_mark_dirty); then a dirty folio outside a
    VM_DROPPABLE VMA was written since MADV_FREE: it is swap-backed again and the walk stops, its PTE
    kept; so does it when someone besides reclaim and the mappings holds a reference (GUP, a
    speculative get). Otherwise the PTE is cleared, no swap entry taking its place (the data is
    dropped: a later access maps a new zeroed page), and the mapping's reference, mapcount and
    MM_ANONPAGES go. A VM_LOCKED VMA stops the walk. True when no mapping is left."""
    mmap_ = mem.mem_map
    for mm, vma, _, ptes, slot in rmap.walk(mem, head):
        if vma.vm_flags & VM_LOCKED:
            break
        pte = int(ptes[slot])
        if pte_dirty(pte):
            mmap_.set(head, PG.dirty)
        if mmap_.flags_a[head] & (1 << PG.dirty) and not vma.vm_flags & VM_DROPPABLE:
            mmap_.set(head, PG.swapbacked)
            break
        if mmap_._refcount_a[head] != 1 + mmap_._mapcount_a[head] + 1:
            break
        ptes[slot] = 0
        mm.rss[MM_ANONPAGES] -= 1
        mmap_._mapcount_a[head] -= 1
        mmap_._refcount_a[head] -= 1
        mem.unmap_generation += 1
    return mmap_._mapcount_a[head] < 0
