"""Splitting an anonymous THP, after mm/huge_memory.c (__folio_split, 6.18): what reclaim does to a THP
it is about to swap out when the swap area cannot take the folio whole, what madvise does to one its
range covers in part, and what the deferred split shrinker does to one left partially mapped.

A swap file is not a block device, so the swap allocator gives it no large entries (cluster_alloc_
swap_entry: "Swapfile is not block device so unable to allocate large entries"): every anon THP that
reclaim decides to swap out is split into 512 small folios first (thp_split_page, thp_swpout_fallback),
and those are swapped one by one. Measured on this host: 12 MiB written with MADV_HUGEPAGE in an 8 MiB
v1 memcg with a swap file on: thp_swpout 0, thp_swpout_fallback = thp_split_page = thp_split_pmd, 5
THPs split (tests/test_host_thp_swap.py; 32 MiB in 16 MiB: 12 split, 4 left).

The split, for an isolated folio (reclaim holds one reference):
- every PMD leaf mapping it is split into PTEs first (unmap_folio's TTU_SPLIT_HUGE_PMD; remap_page maps
  the same pages back by PTEs, their young and dirty bits kept: the model splits the PMD in place);
- the folio may be split only when nothing else holds it (can_split_folio: its references are its
  mappings' and reclaim's);
- each page becomes an order-0 folio with the head's flags that __split_folio_to_order copies (dirty,
  active, referenced, workingset, swap-backed, ...), its own mapping and index, its share of the
  memcg charge (split_page_memcg), a reference per mapping;
- the new folios join reclaim's list after the head (lru_add_split_folio with a list), each with a
  reference of the list; one no longer mapped anywhere (zapped while the folio was large) is freed at
  once instead.

A THP some of whose pages are mapped no more while others are (a partial munmap, MADV_DONTNEED) is
queued for the deferred split shrinker (memory.deferred_split_folio: thp_deferred_split_page); under
reclaim the shrinker splits it, and its unmapped pages are freed (deferred_split_scan). Measured: three
such THPs in an 8 MiB memcg are split at its first reclaim, on the kernel and in the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmlab.kernel.memory import add_mm_counter, split_huge_pmd
from vmlab.kernel.mm_types import MM_ANONPAGES
from vmlab.kernel.page_alloc import NO_PFN
from vmlab.kernel.page_flags import (
    F_ACTIVE,
    F_DIRTY,
    F_HEAD,
    F_LRU,
    F_MLOCKED,
    F_REFERENCED,
    F_SWAPBACKED,
    F_SWAPCACHE,
    F_UNEVICTABLE,
    F_UPTODATE,
    F_WORKINGSET,
    PG,
    PG_anon_exclusive,
)
from vmlab.kernel.pgtable import _PAGE_PSE, pte_pfn
from vmlab.kernel.rmap import RmapIndex, ThpMapping
from vmlab.kernel.swap import folio_putback_lru, lru_add, put_page
from vmlab.kernel.uapi import PAGE_SHIFT, PMD_SIZE

if TYPE_CHECKING:
    from vmlab.kernel.memcontrol import MemCgroup
    from vmlab.kernel.page_alloc import PhysMem

#: The pages of a PMD-sized folio.
HPAGE_PMD_NR = PMD_SIZE >> PAGE_SHIFT
#: The head's flags each new folio takes (__split_folio_to_order), and the page's own exclusive mark.
_COPIED = (F_REFERENCED | F_SWAPBACKED | F_SWAPCACHE | F_MLOCKED | F_UPTODATE | F_ACTIVE | F_WORKINGSET
           | F_UNEVICTABLE | F_DIRTY | 1 << PG_anon_exclusive)
#: What a tail page keeps of its own flags: the zone and node bits above the page flags (its second
#: page's low byte held the folio's order, and PG_large_rmappable; both go).
_TAIL_KEPT = ~((1 << (PG.arch_2 + 1)) - 1)


def folio_maybe_mapped_shared(mem: PhysMem, head: int) -> bool:
    """folio_maybe_mapped_shared() of an anon THP: some page of it is mapped more than once (by
    another process, after fork); madvise leaves such a THP alone."""
    return bool((mem.mem_map._mapcount[head:head + HPAGE_PMD_NR] > 0).any())


def split_anon_folio(mem: PhysMem, rmap: RmapIndex, head: int) -> list[int] | None:
    """split_folio_to_list() of the isolated anon THP `head` for reclaim: its PMD mappings split into
    PTEs (each counted in thp_split_pmd), then the folio into order-0 folios (thp_split_page). Returns
    the new folios after the head that are still mapped, each holding a reference for the caller's
    list, in page order; the unmapped ones are freed. None when the folio may not be split (a
    reference besides its mappings' and the caller's): it stays large, its PMDs split."""
    mmap_ = mem.mem_map
    split_thp_pmds(mem, rmap.walk_thp(mem, head))
    mapcount, refcount, flags_a = mmap_._mapcount_a, mmap_._refcount_a, mmap_.flags_a
    maps = [max(mapcount[head + i] + 1, 0) for i in range(HPAGE_PMD_NR)]
    if refcount[head] != sum(maps) + 1:  # can_split_folio(): no extra pin
        return None
    copied = flags_a[head] & _COPIED
    flags_a[head] = flags_a[head] & ~F_HEAD
    mem.deferred_split.pop(head, None)
    if mem.memcgs is not None:
        mem.memcgs.split_page_memcg(head, HPAGE_PMD_NR)
    refcount[head] = maps[0] + 1
    lru_next = mmap_.lru_next_a
    tails: list[int] = []
    for i in range(1, HPAGE_PMD_NR):
        pfn = head + i
        flags_a[pfn] = flags_a[pfn] & _TAIL_KEPT | copied
        lru_next[pfn] = NO_PFN  # no compound_head link: a folio of its own
        refcount[pfn] = maps[i] + 1
        if maps[i]:
            tails.append(pfn)
        else:  # zapped while the folio was large: freed now (__folio_split's free of a 2-reference tail)
            flags_a[pfn] = flags_a[pfn] & ~(F_ACTIVE | F_UNEVICTABLE)
            mem.free_pages(pfn)
    mem.events["thp_split_page"] += 1
    return tails


def split_thp_pmds(mem: PhysMem, mappings: list[ThpMapping]) -> None:
    """__split_huge_pmd() of each PMD leaf among a THP's `mappings` (thp_split_pmd each)."""
    for mm, _vma, addr, entry in mappings:
        if entry & _PAGE_PSE:
            split_huge_pmd(mm, mem, addr)


def discard_thp_mappings(mem: PhysMem, rmap: RmapIndex, head: int) -> None:
    """try_to_unmap() of a lazyfree THP that is discarded: each PMD leaf mapping it is split first
    (thp_split_pmd: measured, one per THP discarded, with no thp_split_page), then every PTE mapping
    one of its pages goes, with that mapping's reference, mapcount and MM_ANONPAGES. The pages are
    dropped, not swapped: a later access maps a new zeroed page."""
    mmap_ = mem.mem_map
    split_thp_pmds(mem, rmap.walk_thp(mem, head))
    for mm, _vma, addr, entry in rmap.walk_thp(mem, head):
        assert mm.pt is not None
        mm.pt.set_pte(addr, 0)
        mmap_._mapcount_a[pte_pfn(entry)] -= 1
        mmap_._refcount_a[head] -= 1
        add_mm_counter(mm, MM_ANONPAGES, -1)
        mem.unmap_generation += 1


def split_folio(mem: PhysMem, head: int) -> bool:
    """split_folio() of an anon THP that nobody has isolated (madvise's split of a folio its range
    covers in part, the deferred split shrinker's): split as split_anon_folio, its pages put on the
    LRU at once, PG_lru set (lru_add_split_folio with no list: no CPU batch in between); a head no
    one maps any more is freed. True when it was split. Differs from the kernel: the kernel puts each
    new folio right after the head, where the folio was; the model puts them at the young end of
    the list their flags name, head first."""
    mmap_ = mem.mem_map
    if not mmap_.flags_a[head] & F_LRU:  # isolated by someone else (a large folio waits in no batch)
        return False
    mem.lruvec.delete(mmap_, head)  # folio_isolate_lru(): off its list, one more reference
    mmap_._refcount_a[head] += 1
    tails = split_anon_folio(mem, RmapIndex(mem.swap.mms()), head)
    if tails is None:
        folio_putback_lru(mem, head)
        return False
    for pfn in [head, *tails]:
        if mmap_._refcount_a[pfn] == 1:
            put_page(mem, pfn)
            continue
        lru_add(mem, [pfn])
        mmap_._refcount_a[pfn] -= 1
    return True


def _split_queue(mem: PhysMem, memcg: MemCgroup | None) -> list[int]:
    """The THPs on `memcg`'s deferred split queue (None: those charged to no memcg), oldest first."""
    charged = mem.memcgs.page_memcg if mem.memcgs is not None else {}
    return [head for head in mem.deferred_split if charged.get(head, (None,))[0] is memcg]


def deferred_split_count(mem: PhysMem, memcg: MemCgroup | None) -> int:
    """deferred_split_count(): how many THPs `memcg`'s split queue holds."""
    return len(_split_queue(mem, memcg))


def deferred_split_scan(mem: PhysMem, memcg: MemCgroup | None, nr_to_scan: int) -> int:
    """deferred_split_scan(): split up to `nr_to_scan` THPs of `memcg`'s queue, oldest first, each
    partially mapped (split_folio: its pages no one maps are freed); one that may not be split stays
    queued. The THPs split (the shrinker's freed count)."""
    split = 0
    for head in _split_queue(mem, memcg)[:nr_to_scan]:
        if split_folio(mem, head):
            split += 1
    return split
