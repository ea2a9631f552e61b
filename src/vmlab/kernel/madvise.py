"""madvise, after mm/madvise.c (6.18): the advice values that change vm_flags split or merge VMAs;
the rest act on pages only (M5). MADV_FREE makes anon folios lazily freed (madvise_free_single_vma):
they stay mapped, and reclaim discards them without swap unless they are written again (vmscan.py).
"""

from __future__ import annotations

from vmlab.kernel import uapi
from vmlab.kernel.fadvise import POSIX_FADV_WILLNEED, generic_fadvise
from vmlab.kernel.fault import FaultStats
from vmlab.kernel.filemap import folio_head, folio_heads_split, split_large_folio
from vmlab.kernel.gup import faultin_page_range
from vmlab.kernel.huge_memory import HPAGE_PMD_NR, folio_maybe_mapped_shared, split_folio
from vmlab.kernel.memory import (
    install_guards,
    pte_reclaim,
    remove_guards,
    update_hiwater_rss,
    zap_page_range,
)
from vmlab.kernel.mm_types import (
    MM_SWAPENTS,
    VM_DONTCOPY,
    VM_DONTDUMP,
    VM_DROPPABLE,
    VM_HUGEPAGE,
    VM_HUGETLB,
    VM_IO,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_MAYBE_GUARD,
    VM_MAYSHARE,
    VM_MERGEABLE,
    VM_MIXEDMAP,
    VM_NOHUGEPAGE,
    VM_PFNMAP,
    VM_RAND_READ,
    VM_SEQ_READ,
    VM_SHARED,
    VM_SPECIAL,
    VM_WIPEONFORK,
    VM_WRITE,
    MmStruct,
    VmArea,
)
from vmlab.kernel.mmap import VmSysctl
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import (
    F_DIRTY,
    F_DIRTY_OR_WRITEBACK,
    F_HEAD,
    F_LRU,
    F_SWAPCACHE,
    F_UNEVICTABLE,
    PAGE_MAPPING_ANON,
    PG,
)
from vmlab.kernel.page_writeback import folio_frames
from vmlab.kernel.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_SPECIAL,
    pte_dirty,
    pte_mkclean,
    pte_mkold,
    pte_pfn,
)
from vmlab.kernel.rmap import anon_vma_prepare, unmap_folio, vma_has_recency
from vmlab.kernel.swap import (
    folio_deactivate,
    folio_mark_lazyfree,
    folio_putback_lru,
    lru_add_drain,
)
from vmlab.kernel.swap_state import folio_free_swap, free_swap_and_cache, swap_read_folio
from vmlab.kernel.swapfile import is_swap_slot_pte, pte_to_swp_entry
from vmlab.kernel.truncate import punch_hole
from vmlab.kernel.uapi import (
    EACCES,
    EINVAL,
    ENOMEM,
    MADV_COLD,
    MADV_COLLAPSE,
    MADV_DODUMP,
    MADV_DOFORK,
    MADV_DONTDUMP,
    MADV_DONTFORK,
    MADV_DONTNEED,
    MADV_DONTNEED_LOCKED,
    MADV_FREE,
    MADV_GUARD_INSTALL,
    MADV_GUARD_REMOVE,
    MADV_HUGEPAGE,
    MADV_KEEPONFORK,
    MADV_MERGEABLE,
    MADV_NOHUGEPAGE,
    MADV_NORMAL,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_RANDOM,
    MADV_REMOVE,
    MADV_SEQUENTIAL,
    MADV_UNMERGEABLE,
    MADV_WILLNEED,
    MADV_WIPEONFORK,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    PMD_SIZE,
    page_align,
)
from vmlab.kernel.vma import vma_modify_flags
from vmlab.kernel.vmscan import page_cache_folio, reclaim_pages
from vmlab.kernel.xarray import xa_update

#: Advice that only touches page tables: it never splits a VMA.
PAGE_ADVICE = frozenset({MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE, MADV_COLD, MADV_PAGEOUT,
                         MADV_WILLNEED, MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_REMOVE,
                         MADV_COLLAPSE, MADV_GUARD_INSTALL, MADV_GUARD_REMOVE})
FLAG_ADVICE = frozenset({MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_DONTFORK, MADV_DOFORK,
                         MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_DONTDUMP, MADV_DODUMP, MADV_MERGEABLE,
                         MADV_UNMERGEABLE, MADV_HUGEPAGE, MADV_NOHUGEPAGE})

_KSM_INCOMPATIBLE = VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_MIXEDMAP | VM_HUGETLB | VM_SPECIAL


def madvise_new_flags(vma: VmArea, advice: int) -> int:
    """madvise_vma_behavior()'s vm_flags for a flag-changing advice, or -errno."""
    f = vma.vm_flags
    match advice:
        case uapi.MADV_NORMAL:
            return f & ~(VM_RAND_READ | VM_SEQ_READ)
        case uapi.MADV_RANDOM:
            return (f & ~VM_SEQ_READ) | VM_RAND_READ
        case uapi.MADV_SEQUENTIAL:
            return (f & ~VM_RAND_READ) | VM_SEQ_READ
        case uapi.MADV_DONTFORK:
            return f | VM_DONTCOPY
        case uapi.MADV_DOFORK:
            return -EINVAL if f & VM_IO else f & ~VM_DONTCOPY
        case uapi.MADV_WIPEONFORK:
            return -EINVAL if vma.vm_file is not None or f & VM_SHARED else f | VM_WIPEONFORK
        case uapi.MADV_KEEPONFORK:  # a droppable mapping stays wiped at fork and out of core dumps
            return -EINVAL if f & VM_DROPPABLE else f & ~VM_WIPEONFORK
        case uapi.MADV_DONTDUMP:
            return f | VM_DONTDUMP
        case uapi.MADV_DODUMP:
            return -EINVAL if f & (VM_SPECIAL | VM_DROPPABLE) else f & ~VM_DONTDUMP
        case uapi.MADV_MERGEABLE:  # ksm_madvise() leaves incompatible VMAs alone
            return f if f & _KSM_INCOMPATIBLE else f | VM_MERGEABLE
        case uapi.MADV_UNMERGEABLE:
            return f & ~VM_MERGEABLE
        case uapi.MADV_HUGEPAGE:
            return (f & ~VM_NOHUGEPAGE) | VM_HUGEPAGE
        case uapi.MADV_NOHUGEPAGE:
            return (f & ~VM_HUGEPAGE) | VM_NOHUGEPAGE
    raise AssertionError(f"not a flag advice: {advice}")


def _page_advice_valid(vma: VmArea, advice: int) -> int:
    """The per-VMA checks of the page-only advice values; 0 or -errno."""
    f = vma.vm_flags
    if advice in (MADV_DONTNEED, MADV_DONTNEED_LOCKED):
        forbidden = VM_PFNMAP | (0 if advice == MADV_DONTNEED_LOCKED else VM_LOCKED)
        return -EINVAL if f & forbidden else 0
    if advice == MADV_FREE:
        return -EINVAL if not vma.is_anonymous() or f & (VM_LOCKED | VM_PFNMAP) else 0
    if advice in (MADV_COLD, MADV_PAGEOUT):
        return -EINVAL if f & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB) else 0
    if advice == MADV_REMOVE:
        if f & VM_LOCKED or vma.vm_file is None:
            return -EINVAL
        return 0 if f & VM_SHARED and f & VM_WRITE else -EACCES
    if advice in (MADV_GUARD_INSTALL, MADV_GUARD_REMOVE):
        return -EINVAL if f & (VM_SPECIAL | VM_HUGETLB | VM_LOCKED_MASK) else 0
    return 0


def split_partly_covered_folios(mm: MmStruct, start: int, end: int) -> None:
    """madvise_cold_or_pageout_pte_range()'s large folios: a page-cache large folio met at a present
    PTE of [start, end) that the range does not map whole from there (madvise_folio_pte_batch finds
    fewer consecutive PTEs of it than its pages: the range starts or ends inside it, or a page of it is
    not mapped) is split to small pages, unless it may be mapped by another process (a page of it
    mapped twice) or split_folio() fails: ext4 must release the folio's buffer heads first, which a
    dirty folio or one under write-back refuses. The split unmaps the folio first (unmap_folio: its
    pages fault in again). A folio mapped whole stays large. Measured: MADV_COLD of 4 pages of a
    mapped, clean 64-page folio leaves 64 single pages, none mapped; of a dirty one, the folio."""
    pt = mm.pt
    assert pt is not None
    mem = pt.mem
    mm_map = mem.mem_map
    addrs, entries = pt.entries(start, end)
    present = {a: p for a, p in zip(addrs.tolist(), entries.tolist(), strict=True)
               if p & _PAGE_PRESENT and not p & (_PAGE_SPECIAL | _PAGE_PSE)}
    done: set[int] = set()
    for addr, pte in present.items():
        if addr in done:
            continue
        pfn = pte_pfn(pte)
        inode = mem.address_spaces.get(int(mm_map.mapping[pfn]))
        if inode is None or not inode.folio_orders or int(mm_map.mapping[pfn]) & PAGE_MAPPING_ANON:
            continue
        index = int(mm_map.index[pfn])
        head, order = folio_head(inode, index)
        if not order:
            continue
        nr = 0  # madvise_folio_pte_batch(): the folio's next pages at the next PTEs of the range
        while index + nr < head + (1 << order):
            page = inode.i_pages.get(index + nr)
            entry = present.get(addr + nr * PAGE_SIZE)
            if page is None or entry is None or pte_pfn(entry) != page:
                break
            done.add(addr + nr * PAGE_SIZE)
            nr += 1
        if nr < 1 << order and not any(mm_map._mapcount_a[p] > 0 or mm_map.flags_a[p] & F_DIRTY_OR_WRITEBACK
                                       for p in folio_frames(mem, inode, pfn)):
            unmap_folio(mem, inode, pfn)
            # split_folio(): a uniform split, its i_pages entry into order-0 entries (xas_split)
            xa_update(mem, inode, [(head, order)], [(i, 0) for i in range(head, head + (1 << order))])
            split_large_folio(inode, index)
            folio_heads_split(mem, inode, head, head + (1 << order))


def madvise_pageout(mm: MmStruct, start: int, end: int) -> None:
    """madvise_cold_or_pageout_pte_range(pageout) + reclaim_pages(): each folio of the range that is on
    the LRU and mapped only here (each of its pages once; a large page-cache folio only when the
    range maps all of it: split_partly_covered_folios split the others it could) loses PG_referenced
    (an active one becomes workingset; its PTEs keep the young bit, which reclaim_pages() does not
    look at) and is isolated; an unevictable one goes straight back (folio_putback_lru). The rest are
    reclaimed as shrink_folio_list() does with references ignored (vmscan.reclaim_pages): anon and
    shmem folios to swap, clean file folios dropped (their shadows left), dirty ones unmapped but
    kept, marked for immediate reclaim and activated. The caller is root (or owns the file), so
    can_do_file_pageout() lets file folios in. An anon THP the range maps whole, by its PMD or by PTEs
    of all its pages, is isolated whole (reclaim splits it to swap it out); one the range maps in part
    is split first (split_folio), and its pages in the range go as small ones (_pageout_thps). Measured:
    MADV_PAGEOUT of 256 written pages of a shared anonymous mapping writes all 256 to swap
    (tests/test_host_shmem_swap.py); of a clean file mapping drops every page, of a written one unmaps
    them all and keeps them dirty (tests/test_host_file_madvise.py); of THPs, tests/test_host_thp_swap.py."""
    pt = mm.pt
    assert pt is not None
    mem = pt.mem
    mm_map = mem.mem_map
    flags_a, mapcount = mm_map.flags_a, mm_map._mapcount_a
    isolated = _pageout_thps(mm, start, end)
    _, entries = pt.entries(start, end)
    present = [pte_pfn(pte) for pte in entries.tolist()
               if pte & _PAGE_PRESENT and not pte & (_PAGE_SPECIAL | _PAGE_PSE | _PAGE_PROTNONE)]
    mapped = set(present)
    taken: set[int] = set()
    for pfn in present:
        flags = flags_a[pfn]
        if pfn in taken or mm_map.compound_head(pfn) != pfn or flags & F_HEAD:
            continue
        frames = page_cache_folio(mem, pfn)  # a large page-cache folio: met at any of its pages
        taken.update(frames)
        if any(not flags_a[f] & F_LRU or mapcount[f] != 0 or f not in mapped for f in frames):
            continue
        for f in frames:
            _age_folio(mem, f)
            mem.lruvec.delete(mm_map, f)  # folio_isolate_lru(): off the list, one more reference
            mm_map._refcount_a[f] += 1
        if flags & F_UNEVICTABLE:
            for f in frames:
                folio_putback_lru(mem, f)
            continue
        isolated.extend(frames)
    reclaim_pages(mem, isolated)


def _thp_span_entries(mm: MmStruct, start: int, end: int) -> list[tuple[int, int]]:
    """The present entries, PMD leaves and PTEs, of the 2 MiB blocks [start, end) touches, the zero
    pages' aside: where the THPs a range covers in whole or in part are mapped."""
    pt = mm.pt
    assert pt is not None
    mem = pt.mem
    addrs, entries = pt.entries(start & ~(PMD_SIZE - 1), (end + PMD_SIZE - 1) & ~(PMD_SIZE - 1))
    return [(addr, entry) for addr, entry in zip(addrs.tolist(), entries.tolist(), strict=True)
            if entry & _PAGE_PRESENT and not entry & _PAGE_SPECIAL
            and not mem.is_huge_zero_pfn(pte_pfn(entry))]


def _pageout_thps(mm: MmStruct, start: int, end: int) -> list[int]:
    """madvise_cold_or_pageout_pte_range(pageout)'s anon THPs in [start, end): each mapped only here
    (no page of it mapped twice: folio_maybe_mapped_shared) and mapped whole in the range (by its PMD
    leaf, or by PTEs of all its pages) loses PG_referenced, becomes workingset if active and is
    isolated (an unevictable one put back at once); one mapped in part is split (split_folio). The
    heads isolated, for reclaim_pages()."""
    pt = mm.pt
    assert pt is not None
    mem = pt.mem
    mm_map = mem.mem_map
    pages: dict[int, int] = {}  # head -> its pages mapped in the range
    for addr, pte in _thp_span_entries(mm, start, end):
        head = mm_map.compound_head(pte_pfn(pte))
        if not mm_map.flags_a[head] & F_HEAD:
            continue
        size = PMD_SIZE if pte & _PAGE_PSE else PAGE_SIZE
        inside = min(addr + size, end) - max(addr, start)
        if inside > 0:
            pages[head] = pages.get(head, 0) + (inside >> PAGE_SHIFT)
    isolated: list[int] = []
    for head, nr in pages.items():
        if folio_maybe_mapped_shared(mem, head):
            continue
        if nr < HPAGE_PMD_NR:
            split_folio(mem, head)
            continue
        if not mm_map.flags_a[head] & F_LRU:
            continue
        _age_folio(mem, head)
        mem.lruvec.delete(mm_map, head)  # folio_isolate_lru()
        mm_map._refcount_a[head] += 1
        if mm_map.flags_a[head] & F_UNEVICTABLE:
            folio_putback_lru(mem, head)
        else:
            isolated.append(head)
    return isolated


def madvise_cold(mm: MmStruct, start: int, end: int) -> None:
    """madvise_cold_or_pageout_pte_range(cold) on [start, end): each folio on the LRU that the range
    maps and that is mapped only here (each of its pages once) loses the young bit of those entries
    and PG_referenced (an active one becomes workingset) and is deactivated: smaps no longer counts it
    Referenced, and it sits at the head of the inactive list. A PMD-mapped THP the range covers whole
    is aged the same way; one it covers in part is split first (split_folio: its PMD into PTEs, the
    folio into small ones), then its pages in the range are aged. Folios mapped twice, or off the
    LRU, are left alone; a THP mapped by PTEs already is aged whole when the range maps all of it,
    split first when it maps part (_split_partly_mapped_thps)."""
    pt = mm.pt
    assert pt is not None
    mem = pt.mem
    addrs, entries = pt.entries(start, end)
    for addr, entry in zip(addrs.tolist(), entries.tolist(), strict=True):
        if not entry & _PAGE_PSE or not entry & _PAGE_PRESENT or mem.is_huge_zero_pfn(pte_pfn(entry)):
            continue
        head = pte_pfn(entry)
        if folio_maybe_mapped_shared(mem, head):
            continue
        if addr < start or addr + PMD_SIZE > end:
            split_folio(mem, head)
            continue
        if mem.mem_map.test(head, PG.lru):
            pt.mkold_pmd_leaf(addr)
            _age_folio(mem, head)
            folio_deactivate(mem, head)
    _split_partly_mapped_thps(mm, start, end)
    mm_map = mem.mem_map
    addrs, entries = pt.entries(start, end)
    for addr, pte in zip(addrs.tolist(), entries.tolist(), strict=True):
        if not pte & _PAGE_PRESENT or pte & (_PAGE_SPECIAL | _PAGE_PSE) or pte & _PAGE_PROTNONE:
            continue
        head = mm_map.compound_head(pte_pfn(pte))
        pages = range(head, head + (1 << mm_map.folio_order(head)))
        if not mm_map.test(head, PG.lru) or any(int(mm_map._mapcount[p]) != 0 for p in pages):
            continue
        pt.set_pte(addr, pte & ~_PAGE_ACCESSED)
        _age_folio(mem, head)
        folio_deactivate(mem, head)


def _pte_mapped_thps(mm: MmStruct, start: int, end: int) -> dict[int, list[tuple[int, int]]]:
    """The THPs [start, end) maps by PTEs, each with its PTEs in the range, (address, entry)."""
    assert mm.pt is not None
    mm_map = mm.pt.mem.mem_map
    found: dict[int, list[tuple[int, int]]] = {}
    for addr, entry in _thp_span_entries(mm, start, end):
        head = mm_map.compound_head(pte_pfn(entry))
        if mm_map.flags_a[head] & F_HEAD and not entry & _PAGE_PSE and start <= addr < end:
            found.setdefault(head, []).append((addr, entry))
    return found


def _split_partly_mapped_thps(mm: MmStruct, start: int, end: int) -> None:
    """madvise_cold_or_pageout_pte_range()'s large folios mapped by PTEs: one no other process maps
    and the range maps only in part is split (split_folio: a page unmapped meanwhile is freed), its
    pages in the range then aged as small ones; one it maps whole is taken whole (measured: after
    MADV_DONTNEED of a THP's first page, MADV_COLD of its 2 MiB ages its other 511 pages,
    test_diff_thp_random)."""
    assert mm.pt is not None
    mem = mm.pt.mem
    for head, ptes in _pte_mapped_thps(mm, start, end).items():
        if len(ptes) < HPAGE_PMD_NR and not folio_maybe_mapped_shared(mem, head):
            split_folio(mem, head)


def _age_folio(mem: PhysMem, head: int) -> None:
    """What madvise_cold_or_pageout_pte_range() does to each folio it takes, cold or pageout: it
    loses PG_referenced, and an active one becomes workingset."""
    mm_map = mem.mem_map
    flags = int(mm_map.flags[head]) & ~(1 << PG.referenced)
    if flags >> PG.active & 1:
        flags |= 1 << PG.workingset
    mm_map.flags[head] = flags


def madvise_free_single_vma(mm: MmStruct, start: int, end: int) -> None:
    """madvise_free_single_vma() + madvise_free_pte_range() on [start, end) of one anonymous VMA: drain
    the CPU's batches and note the RSS high-water mark, then for each entry:
    - a swap entry is dropped (free_swap_and_cache: swapping it in would cost more than a new zeroed
      page), MM_SWAPENTS going down; guard markers stay;
    - a present small anon folio that is in the swap cache or PG_dirty is skipped when it may be
      mapped by other processes, or when its swap slot cannot be freed (PTEs elsewhere still hold
      it); otherwise it loses the slot and PG_dirty;
    - then its PTE loses its young and dirty bits, and the folio is marked lazyfree
      (folio_mark_lazyfree: the lru_lazyfree batch; a shared clean folio too, as in the kernel).
    RSS does not change: the pages stay mapped until reclaim discards them, or a write re-dirties
    them. THPs are handled first (_free_thps)."""
    pt = mm.pt
    assert pt is not None
    mem = pt.mem
    mm_map = mem.mem_map
    lru_add_drain(mem)
    update_hiwater_rss(mm)
    _free_thps(mm, start, end)
    nr_swap = 0
    addrs, entries = pt.entries(start, end)
    for addr, pte in zip(addrs.tolist(), entries.tolist(), strict=True):
        if not pte & _PAGE_PRESENT:
            if is_swap_slot_pte(pte):
                free_swap_and_cache(mem, pte_to_swp_entry(pte))
                pt.set_pte(addr, 0)
                nr_swap += 1
            continue
        if pte & (_PAGE_SPECIAL | _PAGE_PSE):
            continue
        pfn = pte_pfn(pte)
        head = mm_map.compound_head(pfn)
        flags = int(mm_map.flags[head])
        if head != pfn or flags & F_HEAD:
            continue
        if flags & (F_SWAPCACHE | F_DIRTY):
            if int(mm_map._mapcount[head]) > 0:  # folio_maybe_mapped_shared()
                continue
            if flags & F_SWAPCACHE and not folio_free_swap(mem, head):
                continue
            mm_map.flags[head] = int(mm_map.flags[head]) & ~F_DIRTY
        if pte & _PAGE_ACCESSED or pte_dirty(pte):
            pt.set_pte(addr, pte_mkold(pte_mkclean(pte)))
        folio_mark_lazyfree(mem, head)
    mm.rss[MM_SWAPENTS] -= nr_swap


def _free_thps(mm: MmStruct, start: int, end: int) -> None:
    """madvise_free_huge_pmd() and madvise_free_pte_range()'s large folios in [start, end), for each
    THP no other process maps (folio_maybe_mapped_shared). One the range maps whole, by its PMD leaf
    or by PTEs of all its pages, loses PG_dirty, its entries their young and dirty bits, and is
    marked lazyfree (a large folio's lru_lazyfree move is at once); one it maps in part is split
    (split_folio: a page unmapped meanwhile is freed), its pages in the range then handled as small
    ones (measured: after MADV_DONTNEED of a THP's first page, MADV_FREE of its 2 MiB leaves 511
    small pages clean and lazyfree as their batch moves, test_diff_thp_random)."""
    pt = mm.pt
    assert pt is not None
    mem = pt.mem
    mm_map = mem.mem_map
    for addr, entry in _thp_span_entries(mm, start, end):
        head = pte_pfn(entry)
        if not entry & _PAGE_PSE or not mm_map.flags_a[head] & F_HEAD or folio_maybe_mapped_shared(mem, head):
            continue
        if addr < start or addr + PMD_SIZE > end:
            split_folio(mem, head)
            continue
        mm_map.flags_a[head] = mm_map.flags_a[head] & ~F_DIRTY
        if entry & _PAGE_ACCESSED or pte_dirty(entry):
            pt.mkclean_pmd_leaf(addr)
        folio_mark_lazyfree(mem, head)
    for head, entries in _pte_mapped_thps(mm, start, end).items():
        if folio_maybe_mapped_shared(mem, head):
            continue
        if len(entries) < HPAGE_PMD_NR:
            split_folio(mem, head)
            continue
        mm_map.flags_a[head] = mm_map.flags_a[head] & ~F_DIRTY
        for addr, entry in entries:
            if entry & _PAGE_ACCESSED or pte_dirty(entry):
                pt.set_pte(addr, pte_mkold(pte_mkclean(entry)))
        folio_mark_lazyfree(mem, head)


def _page_advice(mm: MmStruct, vma: VmArea, start: int, end: int, advice: int) -> None:
    """What the page-only advice values do: zap, guard markers, COLD's aged and deactivated folios,
    PAGEOUT's reclaim of the range's folios, FREE's lazily freed anon folios, REMOVE's hole in the
    file, and WILLNEED's readahead of a file range or swap-in of anonymous or shmem pages."""
    if mm.pt is None:
        return
    if advice in (MADV_COLD, MADV_PAGEOUT):
        split_partly_covered_folios(mm, start, end)
    if advice == MADV_PAGEOUT:
        lru_add_drain(mm.pt.mem)
        madvise_pageout(mm, start, end)
    elif advice == MADV_FREE:
        madvise_free_single_vma(mm, start, end)
    elif advice == MADV_COLD:
        lru_add_drain(mm.pt.mem)
        madvise_cold(mm, start, end)
    elif advice == MADV_REMOVE and vma.vm_file is not None:
        # madvise_remove(): vfs_fallocate(PUNCH_HOLE | KEEP_SIZE) of the file range behind [start, end)
        first = vma.vm_pgoff + ((start - vma.vm_start) >> PAGE_SHIFT)
        punch_hole(mm.pt.mem, vma.vm_file.inode, first, first + ((end - start) >> PAGE_SHIFT) - 1)
    elif advice in (MADV_DONTNEED, MADV_DONTNEED_LOCKED):
        zap_page_range(mm, mm.pt.mem, start, end, keep_guards=True, recency=vma_has_recency(vma), vma=vma)
        pte_reclaim(mm, start, end)
    elif advice == MADV_GUARD_INSTALL:
        # Markers make the range non-empty to fork: the VMA gets an anon_vma so its tables are copied.
        anon_vma_prepare(mm, vma)
        vma.vm_flags |= VM_MAYBE_GUARD
        install_guards(mm, mm.pt.mem, start, end)
    elif advice == MADV_GUARD_REMOVE:
        remove_guards(mm, start, end)
    elif advice == MADV_WILLNEED and vma.vm_file is not None and vma.vm_file.inode.shmem:
        shmem_swapin_range(mm.pt.mem, vma, start, end)
        lru_add_drain(mm.pt.mem)
    elif advice == MADV_WILLNEED and vma.vm_file is not None:
        # madvise_willneed(): vfs_fadvise(POSIX_FADV_WILLNEED) of the file range behind [start, end)
        offset = (start - vma.vm_start) + (vma.vm_pgoff << 12)
        generic_fadvise(mm.pt.mem, vma.vm_file, offset, end - start, POSIX_FADV_WILLNEED)
    elif advice == MADV_WILLNEED:
        swapin_walk(mm, start, end)
        lru_add_drain(mm.pt.mem)  # "push any new pages onto the LRU now"


def swapin_walk(mm: MmStruct, start: int, end: int) -> None:
    """madvise_willneed() of anonymous memory (swapin_walk_pmd_entry): each swap entry among the PTEs
    of [start, end) that is not in the swap cache is read into it (read_swap_cache_async: that slot
    alone, no readahead), the PTE left as it is; a later fault finds the folio there (a minor fault).
    The reads are asynchronous: the call does not wait for them."""
    pt = mm.pt
    assert pt is not None
    mem = pt.mem
    _, entries = pt.entries(start, end)
    for pte in entries.tolist():
        if is_swap_slot_pte(pte):
            _swapin_async(mem, pte_to_swp_entry(pte))


def shmem_swapin_range(mem: PhysMem, vma: VmArea, start: int, end: int) -> None:
    """madvise_willneed() of a shmem mapping (shmem_swapin_range): each swap entry the object's
    i_pages holds for the pages [start, end) maps is read into the swap cache (read_swap_cache_async,
    that slot alone); a later fault, read() or write() takes the folio from there (no major fault)."""
    assert vma.vm_file is not None
    inode = vma.vm_file.inode
    first = vma.vm_pgoff + ((start - vma.vm_start) >> PAGE_SHIFT)
    last = vma.vm_pgoff + ((end - 1 - vma.vm_start) >> PAGE_SHIFT)
    for index in sorted(i for i in inode.swapped if first <= i <= last):
        entry = inode.swapped.get(index)  # (an allocation's OOM kill may end the object meanwhile)
        if entry is not None:
            _swapin_async(mem, entry)


def _swapin_async(mem: PhysMem, entry: int) -> None:
    """read_swap_cache_async() + folio_put(): `entry` read into the swap cache unless it is there (or
    memory runs out)."""
    if entry not in mem.swap.cache:
        swap_read_folio(mem, entry)


def do_madvise(mm: MmStruct, start: int, len_in: int, advice: int, sysctl: VmSysctl,
               stats: FaultStats | None = None) -> int:
    """do_madvise(): walk the VMAs of the range, skipping holes (ENOMEM at the end); 0 or -errno."""
    if advice not in PAGE_ADVICE and advice not in FLAG_ADVICE:
        return -EINVAL
    if start & ~PAGE_MASK:
        return -EINVAL
    length = page_align(len_in)
    if len_in and not length:
        return -EINVAL
    end = start + length
    if end == start:
        return 0
    if advice in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
        return faultin_page_range(mm, start, end, advice == MADV_POPULATE_WRITE, stats or FaultStats())
    unmapped_error = 0
    for vma in mm.vmas_in(start, end):
        if start < vma.vm_start:
            unmapped_error = -ENOMEM
            start = vma.vm_start
        tmp = min(vma.vm_end, end)
        if advice in FLAG_ADVICE:
            new_flags = madvise_new_flags(vma, advice)
            if new_flags < 0:
                return new_flags
            if new_flags != vma.vm_flags:
                result = vma_modify_flags(mm, vma, start, tmp, new_flags, sysctl.max_map_count)
                if isinstance(result, int):
                    return result
        else:
            err = _page_advice_valid(vma, advice)
            if err:
                return err
            _page_advice(mm, vma, start, tmp, advice)
        start = tmp
    if start < end:
        return -ENOMEM
    return unmapped_error
