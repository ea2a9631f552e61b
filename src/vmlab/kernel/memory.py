"""The page-fault path and page-table lifetime, after mm/memory.c (6.18): handle_mm_fault and its
branches (do_anonymous_page, do_read_fault with fault-around, do_cow_fault, do_shared_fault,
do_wp_page), zap_page_range, free_pgtables, copy_page_range (fork) and exit_mmap.

Reference rules: kernel-6.18-x86_64.md §5 (P1–P15). Each handler returns VM_FAULT_* bits; the caller
accounts the fault (minflt or majflt) unless an error bit is set. A `FaultTrace` collects the call path
when the user asked for it (`--trace`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from vmlab.kernel import swap_state
from vmlab.kernel.filemap import (
    filemap_fault,
    folio_ends_in_file,
    folio_head,
    folio_within_file,
    i_size_pages,
    mark_page_cache_accessed,
    next_uptodate_folios,
)
from vmlab.kernel.memcontrol import (
    count_vm_events_mm,
    mem_cgroup_charge,
    mem_cgroup_charge_bulk,
    mem_cgroup_end_user_fault,
    mem_cgroup_room,
    mem_cgroup_user_fault,
)
from vmlab.kernel.mlock_folio import folio_add_lru_vma, mlock_vma_folio, munlock_vma_folio
from vmlab.kernel.mm_types import (
    FAULT_FLAG_USER,
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    VM_DROPPABLE,
    VM_EXEC,
    VM_HUGEPAGE,
    VM_LOCKED,
    VM_MAYWRITE,
    VM_MIXEDMAP,
    VM_NOHUGEPAGE,
    VM_PFNMAP,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    Inode,
    MmStruct,
    VmArea,
)
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import (
    F_HEAD,
    F_LRU,
    F_WORKINGSET,
    MAPCOUNT_NONE,
    PAGE_MAPPING_ANON,
    PG,
    PG_anon_exclusive,
    PG_swapcache,
)
from vmlab.kernel.page_writeback import balance_dirty_pages, folio_mark_dirty
from vmlab.kernel.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SAVED_DIRTY,
    _PAGE_USER,
    PAGE_NONE,
    PMD_MASK,
    PMD_SIZE,
    PTRS_PER_TABLE,
    PageTables,
    __swp_entry,
    __swp_entry_to_pte,
    pfn_pte,
    pte_dirty,
    pte_huge,
    pte_index,
    pte_mkdirty,
    pte_mkspecial,
    pte_mkwrite,
    pte_mkyoung,
    pte_pfn,
    pte_present,
    pte_special,
    pte_write,
    pte_wrprotect,
)
from vmlab.kernel.rmap import anon_vma_prepare, vma_has_recency
from vmlab.kernel.shmem import shmem_unuse
from vmlab.kernel.swap import folio_add_lru_bulk, lru_add_drain, put_page
from vmlab.kernel.swapfile import (
    is_swap_slot_pte,
    pte_swp_clear_exclusive,
    pte_swp_exclusive,
    pte_to_swp_entry,
    swap_duplicate,
    swap_free,
    swp_offset,
    swp_type,
    vm_swap_full,
)
from vmlab.kernel.uapi import ENOMEM, PAGE_SHIFT, PAGE_SIZE
from vmlab.kernel.util import accounted_pages, vm_unacct_memory

# vm_fault_t bits (include/linux/mm_types.h)
VM_FAULT_OOM = 0x000001
VM_FAULT_SIGBUS = 0x000002
VM_FAULT_MAJOR = 0x000004
VM_FAULT_SIGSEGV = 0x000040
VM_FAULT_NOPAGE = 0x000100
VM_FAULT_RETRY = 0x000400
VM_FAULT_FALLBACK = 0x000800
VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV

#: A guard-region marker (MADV_GUARD_INSTALL): a non-present entry that raises SIGSEGV on access; swap
#: type 31 is the model's stand-in for the kernel's PTE-marker swap type.
GUARD_MARKER = __swp_entry_to_pte(__swp_entry(31, 1 << 3))

FAULT_AROUND_PAGES = 16  # fault_around_bytes = 64 KiB (§0.5)
HPAGE_PMD_NR = PMD_SIZE >> PAGE_SHIFT


@dataclass
class FaultTrace:
    """The call path of one fault, as the lecture draws it: (depth, function, note) in call order."""

    lines: list[tuple[int, str, str]] = field(default_factory=list)
    depth: int = 0

    def call(self, name: str, note: str = "") -> None:
        self.lines.append((self.depth, name, note))

    def render(self) -> str:
        return "\n".join(("    " * d + ("\\_ " if d else "") + name + (f"   // {note}" if note else ""))
                         for d, name, note in self.lines)


@dataclass
class VmFault:
    """`struct vm_fault`: one fault being handled."""

    mm: MmStruct
    vma: VmArea
    address: int  # page aligned
    write: bool
    mem: PhysMem
    trace: FaultTrace | None = None
    #: vmf->prealloc_pte: a PTE table frame allocated (and charged) for the fault before it needed
    #: it, not linked yet; do_fault() frees it when unused.
    prealloc_pte: int | None = None
    #: FAULT_FLAG_TRIED: this is the retry of a fault that dropped the mmap lock for I/O.
    tried: bool = False
    #: The other FAULT_FLAG_* bits the caller passes: FAULT_FLAG_USER for a fault from user mode (not a
    #: kernel uaccess fault, not GUP), which a v1 memcg OOM with oom_kill_disable makes the task wait.
    flags: int = 0

    @property
    def pgoff(self) -> int:
        """linear_page_index(): the file (or anon) page index of the faulting address."""
        return self.vma.vm_pgoff + ((self.address - self.vma.vm_start) >> PAGE_SHIFT)

    def call(self, name: str, note: str = "") -> None:
        if self.trace is not None:
            self.trace.call(name, note)
            self.trace.depth += 1


# --- protections -------------------------------------------------------------------------------------

def vma_wants_writenotify(vma: VmArea) -> bool:
    """vma_wants_writenotify(): shared writable mappings of files with page_mkwrite (not shmem)."""
    return (vma.vm_flags & (VM_SHARED | VM_WRITE) == VM_SHARED | VM_WRITE and vma.vm_file is not None
            and not vma.vm_file.inode.shmem)


def vm_page_prot(vma: VmArea) -> int:
    """vma->vm_page_prot: protection_map[] of the VMA's flags, write-protected for private and
    write-notify mappings (so a write faults), PAGE_NONE without access rights."""
    f = vma.vm_flags
    if not f & (VM_READ | VM_WRITE | VM_EXEC):
        return PAGE_NONE
    prot = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | (0 if f & VM_EXEC else _PAGE_NX)
    if f & VM_SHARED and f & VM_WRITE and not vma_wants_writenotify(vma):
        prot |= _PAGE_RW
    return prot


def _mk_pte(pfn: int, vma: VmArea, write: bool) -> int:
    """mk_pte() + maybe_mkwrite(): a writable, dirty entry for a write fault on a writable VMA."""
    prot = vm_page_prot(vma)
    if write and vma.vm_flags & VM_WRITE:
        prot |= _PAGE_RW | _PAGE_DIRTY
    return pfn_pte(pfn, prot)


# --- pages and their references ------------------------------------------------------------------------

def _is_anon(mem: PhysMem, pfn: int) -> bool:
    return bool(mem.mem_map.mapping_a[pfn] & PAGE_MAPPING_ANON)


def mm_counter(mem: PhysMem, pfn: int) -> int:
    """mm_counter(): the rss_stat slot a mapped page counts in."""
    if _is_anon(mem, pfn):
        return MM_ANONPAGES
    return MM_SHMEMPAGES if mem.mem_map.test(pfn, PG.swapbacked) else MM_FILEPAGES


def add_mm_counter(mm: MmStruct, member: int, value: int) -> None:
    """add_mm_counter()."""
    mm.rss[member] += value


def update_hiwater_rss(mm: MmStruct) -> None:
    """update_hiwater_rss(): VmHWM is raised only at exec and exit, not at munmap (measured: after an
    munmap the kernel's VmHWM is the current RSS); status shows the larger of it and the RSS."""
    rss = mm.rss[MM_FILEPAGES] + mm.rss[MM_ANONPAGES] + mm.rss[MM_SHMEMPAGES]
    mm.hiwater_rss = max(mm.hiwater_rss, rss)


def page_mapcount(mem: PhysMem, pfn: int) -> int:
    """page_mapcount(): how many page tables map this page."""
    return mem.mem_map._mapcount_a[pfn] + 1


def _add_rmap(mem: PhysMem, pfn: int) -> None:
    """folio_add_*_rmap_pte() + folio_get(): one more mapping of the page, one more reference on its
    folio (a subpage of a THP references the head)."""
    mm = mem.mem_map
    mm._mapcount_a[pfn] += 1
    mm._refcount_a[mm.compound_head(pfn)] += 1


def _remove_rmap(mem: PhysMem, pfn: int) -> None:
    """folio_remove_rmap_pte() + free_swap_cache() + put_page(): the last reference of an anon page
    frees it; its swap-cache copy goes when no swap PTE needs it. A page of an anon THP mapped no
    more while other pages of it are leaves the THP partially mapped: it is queued for the deferred
    split shrinker (deferred_split_folio)."""
    mm = mem.mem_map
    mm._mapcount_a[pfn] -= 1
    if mm._mapcount_a[pfn] == MAPCOUNT_NONE and _is_anon(mem, pfn):
        mm.clear(pfn, PG_anon_exclusive)
        if mm.test(pfn, PG_swapcache):  # free_swap_cache(): an unmapped page keeps no slot it needn't
            swap_state.folio_free_swap(mem, pfn)
        head = mm.compound_head(pfn)
        if mm.flags_a[head] & F_HEAD and (mm._mapcount[head:head + HPAGE_PMD_NR] >= 0).any():
            deferred_split_folio(mem, head)
    put_page(mem, pfn)


def deferred_split_folio(mem: PhysMem, head: int) -> None:
    """deferred_split_folio(partially_mapped): a partially mapped anon THP joins the split queue
    once (PG_partially_mapped), counted in thp_deferred_split_page; the shrinker splits it under
    reclaim, freeing the pages no one maps (huge_memory.deferred_split_scan)."""
    if head not in mem.deferred_split:
        mem.deferred_split[head] = None
        mem.events["thp_deferred_split_page"] += 1


def anon_folio_flags(vma: VmArea) -> int:
    """The page flags folio_add_new_anon_rmap() and the fault give a new anon folio of `vma`:
    uptodate, exclusive, and swap-backed unless the VMA is droppable (its folios are born lazyfree:
    on the file LRU, and reclaim drops them, written or not)."""
    flags = (1 << PG.uptodate) | (1 << PG_anon_exclusive)
    return flags if vma.vm_flags & VM_DROPPABLE else flags | (1 << PG.swapbacked)


def new_anon_page(vmf: VmFault) -> int | None:
    """alloc_anon_folio() + folio_add_new_anon_rmap(): a zeroed private page, mapped once."""
    anon_vma_prepare(vmf.mm, vmf.vma)
    pfn = folio_prealloc(vmf)
    if pfn is not None:
        folio_add_new_anon_rmap(vmf, pfn)
    return pfn


def folio_prealloc(vmf: VmFault) -> int | None:
    """folio_prealloc(): a new page for the fault's private mapping, charged to the mm's memcg (the
    charge refused: the page is freed again, None); not mapped yet and on no list, so that dropping
    it is free_pages()."""
    pfn = vmf.mem.alloc_pages(0)
    if pfn is None:
        return None
    if mem_cgroup_charge(vmf.mm.memcg, pfn):
        vmf.mem.free_pages(pfn)
        return None
    return pfn


def folio_add_new_anon_rmap(vmf: VmFault, pfn: int) -> None:
    """folio_add_new_anon_rmap() + folio_add_lru_vma(): the new page `pfn` of the fault's VMA (which
    has its anon_vma) is anon, exclusive and mapped once, and joins the LRU (mlocked, through the mlock
    batch, in a locked VMA)."""
    anon_vma = vmf.vma.anon_vma
    assert anon_vma is not None
    mm = vmf.mem.mem_map
    mm.mapping[pfn] = (anon_vma.id << 2) | PAGE_MAPPING_ANON
    mm.index[pfn] = vmf.pgoff
    mm.flags_a[pfn] = mm.flags_a[pfn] | anon_folio_flags(vmf.vma)
    mm._mapcount[pfn] = 0  # mapped once; the allocation's reference is the mapping's
    folio_add_lru_vma(vmf.mem, pfn, vmf.vma)


def vmf_inode(vma: VmArea) -> Inode:
    """The inode behind a file VMA."""
    assert vma.vm_file is not None
    return vma.vm_file.inode


def file_pages(vma: VmArea) -> int:
    """Pages of the VMA's file up to EOF."""
    return i_size_pages(vmf_inode(vma))


# --- the fault handlers -----------------------------------------------------------------------------------

def handle_mm_fault(vmf: VmFault) -> int:
    """handle_mm_fault(): a FAULT_FLAG_USER fault runs with the task's in_user_fault set (its refused
    memcg charges may make it wait: mem_cgroup_enter_user_fault) and, when it did not fail for memory
    after all, drops any memcg OOM it met (mem_cgroup_oom_synchronize(false)); then __handle_mm_fault.
    Every fault, the failed ones too, counts one pgfault (mm_account_fault: /proc/vmstat and the mm's
    memcg), a fault in user mode or for get_user_pages alike (the model's retry happens inside)."""
    vmf.call("handle_mm_fault")
    if not vmf.flags & FAULT_FLAG_USER:
        ret = _handle_mm_fault(vmf)
    else:
        with mem_cgroup_user_fault(vmf.mem) as state:
            ret = _handle_mm_fault(vmf)
        mem_cgroup_end_user_fault(vmf.mem, state, bool(ret & VM_FAULT_OOM))
    count_vm_events_mm(vmf.mem, vmf.mm.memcg, "pgfault")
    return ret


def _handle_mm_fault(vmf: VmFault) -> int:
    """__handle_mm_fault() -> handle_pte_fault(): dispatch on the entry's state."""
    pt = vmf.mm.pt
    assert pt is not None
    if thp_fault_allowed(vmf):
        ret = create_huge_pmd(vmf)
        if not ret & VM_FAULT_FALLBACK:
            return ret
    pmd = pt.get_pmd(vmf.address)
    if pte_huge(pmd):
        if vmf.write and not pte_write(pmd):
            return do_huge_pmd_wp_page(vmf, pmd)
        return 0
    pte = pt.get_pte(vmf.address)
    vmf.call("handle_pte_fault")
    if not pte:
        if vmf.vma.special_name is not None:
            return special_mapping_fault(vmf)
        if vmf.vma.is_anonymous():
            return do_anonymous_page(vmf)
        return do_fault(vmf)
    if not pte_present(pte):
        if pte == GUARD_MARKER:
            return VM_FAULT_SIGSEGV
        if is_swap_slot_pte(pte):
            return do_swap_page(vmf, pte)
        return VM_FAULT_SIGBUS
    if vmf.write and not pte_write(pte):
        return do_wp_page(vmf, pte)
    pt.set_pte(vmf.address, pte | _PAGE_ACCESSED | (_PAGE_DIRTY if vmf.write else 0))
    return 0


def do_anonymous_page(vmf: VmFault) -> int:
    """do_anonymous_page(): the PTE table first (pte_alloc(): allocated and charged to the memcg before
    any page, so a refused table charge is VM_FAULT_OOM with nothing else done), then a read maps the
    shared zero page and a write gets a new zeroed page (P2, P3)."""
    pt = vmf.mm.pt
    assert pt is not None
    if not pt.pte_alloc(vmf.address):
        return VM_FAULT_OOM
    if not vmf.write:
        vmf.call("do_anonymous_page", "read: map the shared zero page, read-only")
        entry = pte_mkspecial(pfn_pte(vmf.mem.my_zero_pfn(vmf.address), vm_page_prot(vmf.vma) & ~_PAGE_RW))
        return VM_FAULT_OOM if pt.set_pte(vmf.address, entry) else 0
    vmf.call("do_anonymous_page", "write: a new zeroed page")
    pfn = new_anon_page(vmf)
    if pfn is None or not _install_new_anon(vmf, pfn):
        return VM_FAULT_OOM
    add_mm_counter(vmf.mm, MM_ANONPAGES, 1)
    return 0


def _install_new_anon(vmf: VmFault, pfn: int) -> bool:
    """Map the new anon page `pfn` writable at the fault address, whose PTE table do_anonymous_page()
    allocated before the page; False, with the page given back (its rmap, LRU place and reference
    dropped), should the table be gone (the mm torn down meanwhile)."""
    pt = vmf.mm.pt
    assert pt is not None
    if pt.set_pte(vmf.address, _mk_pte(pfn, vmf.vma, True)):
        _remove_rmap(vmf.mem, pfn)
        return False
    return True


def special_mapping_fault(vmf: VmFault) -> int:
    """The vvar/vdso mappings: [vvar] and [vvar_vclock] are PFN maps (special entries, no RSS); [vdso]
    maps the machine's vDSO image pages, which count as file pages (special_mapping_fault)."""
    vma, pt, mem = vmf.vma, vmf.mm.pt, vmf.mem
    assert pt is not None and vma.special_name is not None
    index = (vmf.address - vma.vm_start) >> PAGE_SHIFT
    if vma.vm_flags & VM_PFNMAP:
        vmf.call("vvar_fault", "a PFN mapping: no struct page")
        entry = pte_mkspecial(pfn_pte(mem.my_zero_pfn(vmf.address), vm_page_prot(vma)))
        return VM_FAULT_OOM if pt.set_pte(vmf.address, entry) else 0
    vmf.call("special_mapping_fault", vma.special_name)
    frames = mem.special_pages.setdefault(vma.special_name, [])
    while len(frames) <= index:
        pfn = mem.alloc_pages(0)
        if pfn is None:
            return VM_FAULT_OOM
        frames.append(pfn)  # the image's own reference keeps it
    pfn = frames[index]
    if pt.set_pte(vmf.address, pfn_pte(pfn, vm_page_prot(vma))):
        return VM_FAULT_OOM
    _add_rmap(mem, pfn)
    add_mm_counter(vmf.mm, MM_FILEPAGES, 1)
    return 0


def do_fault(vmf: VmFault) -> int:
    """do_fault(): a file (or shmem) page: read, private write (COW) or shared write. The PUD and PMD
    tables come first (__handle_mm_fault: pud_alloc(), pmd_alloc()), the PTE table is preallocated
    by the handler before it needs it (do_fault_around, __do_fault) and freed here when unused
    (pte_free of vmf->prealloc_pte). A handler that read its page from disk returns VM_FAULT_RETRY
    (filemap_fault dropped the mmap lock for the I/O): everything it allocated is given back and the
    fault is taken again once with FAULT_FLAG_TRIED, which counts as a major fault."""
    pt = vmf.mm.pt
    assert pt is not None
    if not pt.pmd_alloc(vmf.address):
        return VM_FAULT_OOM
    if not vmf.write:
        handler = do_read_fault
    elif not vmf.vma.vm_flags & VM_SHARED:
        handler = do_cow_fault
    else:
        handler = do_shared_fault
    ret = handler(vmf)
    _free_prealloc_pte(vmf)
    if ret & VM_FAULT_RETRY:
        vmf.call("do_fault", "retry: the page was read with the mmap lock dropped")
        vmf.tried = True
        ret = handler(vmf) & ~VM_FAULT_RETRY | VM_FAULT_MAJOR
        _free_prealloc_pte(vmf)
    return ret


def _free_prealloc_pte(vmf: VmFault) -> None:
    """do_fault()'s end: the preallocated PTE table the fault did not use is freed (and uncharged)."""
    if vmf.prealloc_pte is not None:
        pt = vmf.mm.pt
        assert pt is not None
        pt.pte_free(vmf.prealloc_pte)
        vmf.prealloc_pte = None


def _prealloc_pte(vmf: VmFault) -> bool:
    """pte_alloc_one() into vmf->prealloc_pte when the fault's PMD entry is none and the fault holds
    no table yet (do_fault_around, __do_fault); False when the table (its frame or its memcg charge)
    was refused."""
    pt = vmf.mm.pt
    assert pt is not None
    if vmf.prealloc_pte is None and pt.pmd_none(vmf.address):
        vmf.prealloc_pte = pt.pte_alloc_one()
        return vmf.prealloc_pte is not None
    return True


def _install_prealloc_pte(vmf: VmFault) -> None:
    """pmd_install() of vmf->prealloc_pte (filemap_map_pmd, finish_fault): it becomes the PTE table
    of the fault's 2 MiB when that PMD entry is still none."""
    pt = vmf.mm.pt
    assert pt is not None
    if vmf.prealloc_pte is not None and pt.pmd_install(vmf.address, vmf.prealloc_pte):
        vmf.prealloc_pte = None


def __do_fault(vmf: VmFault) -> tuple[int, int | None]:
    """__do_fault(): preallocate the PTE table when the PMD entry is none (before ->fault, which may
    wait on writeback: memcg reclaim must not run under the page lock), then vma->vm_ops->fault
    (filemap_fault / shmem_fault): SIGBUS beyond EOF. (ret, the page's pfn or None): ret holds
    VM_FAULT_OOM when the table or the page could not be had, VM_FAULT_RETRY when the page was read
    from disk (the page is cached then, not held)."""
    if not _prealloc_pte(vmf):
        return VM_FAULT_OOM, None
    vmf.call("__do_fault -> vma->vm_ops->fault", "filemap_fault / shmem_fault")
    if beyond_eof(vmf.vma, vmf.address):
        return VM_FAULT_SIGBUS, None
    pfn, major = filemap_fault(vmf.mem, vmf.vma, vmf.pgoff, vmf.tried, vmf.mm.memcg)
    if pfn is None:
        return VM_FAULT_OOM, None
    if major and not vmf.tried:
        return VM_FAULT_RETRY, None
    return (VM_FAULT_MAJOR if major else 0), pfn


def finish_fault(vmf: VmFault, pfn: int, cow: bool) -> int:
    """finish_fault() (6.18): map the fault's page - the new anon copy `pfn` of a COW fault (`cow`), else
    the page-cache page `pfn` (writable and dirty for a shared write). The PTE table is the
    preallocated one when the PMD entry is still none (pte_alloc() without one). 0, VM_FAULT_NOPAGE
    or VM_FAULT_OOM.

    A page-cache page of a large folio maps the WHOLE folio (nr_pages = folio_nr_pages; "try to map
    the entire file folio in finish_fault()"), all its PTEs alike (a shared write makes them all
    writable and dirty), when
    - the folio ends at or before EOF, or is shmem (folio_ends_in_file; else needs_fallback),
    - it lies inside the VMA (vma_off >= idx, vma_off + nr - idx <= vma_pages) and inside the fault's
      PTE table (pte_off >= idx, pte_off + nr - idx <= PTRS_PER_PTE), idx being the page's place in
      the folio, vma_off and pte_off the fault's in the VMA and in its table,
    - and every PTE of that range is none; else (needs_fallback) only the faulting page is mapped.
    A PMD-sized folio with the PMD entry none would be mapped by PMD (do_set_pmd): not modelled, it
    is mapped by PTEs like any other. For one page, a PTE set meanwhile is left as it is
    (VM_FAULT_NOPAGE; a COW copy is dropped). userfaultfd (per-page faults) is not modelled."""
    pt = vmf.mm.pt
    assert pt is not None
    if pt.pmd_none(vmf.address):
        if vmf.prealloc_pte is not None:
            _install_prealloc_pte(vmf)
        elif not pt.pte_alloc(vmf.address):
            return VM_FAULT_OOM
    if cow:
        if pt.get_pte(vmf.address):
            vmf.mem.free_pages(pfn)
            return VM_FAULT_NOPAGE
        folio_add_new_anon_rmap(vmf, pfn)
        if not _install_new_anon(vmf, pfn):
            return VM_FAULT_OOM
        add_mm_counter(vmf.mm, MM_ANONPAGES, 1)
        return 0
    start, nr = _whole_folio_range(vmf)
    if nr > 1 and pt.entries(start, start + (nr << PAGE_SHIFT))[0].size:
        start, nr = vmf.address, 1  # !pte_range_none(): needs_fallback, one page
    if nr == 1 and pt.get_pte(vmf.address):
        return VM_FAULT_NOPAGE
    inode = vmf_inode(vmf.vma)
    first = vmf.pgoff - ((vmf.address - start) >> PAGE_SHIFT)
    for i in range(nr):
        page = pfn if nr == 1 else inode.i_pages.get(first + i)
        if page is not None and not _map_file_page(vmf, start + (i << PAGE_SHIFT), page, vmf.write):
            return VM_FAULT_OOM
    return 0


def _whole_folio_range(vmf: VmFault) -> tuple[int, int]:
    """(first address, pages) finish_fault() would map for the page-cache page of the fault: its whole
    large folio when the folio ends in the file and lies inside the VMA and the fault's PTE table,
    else just the faulting page (see finish_fault)."""
    vma = vmf.vma
    inode = vmf_inode(vma)
    head, order = folio_head(inode, vmf.pgoff)
    if not order or not folio_ends_in_file(inode, head, order) or not _folio_fits(vma, head, order):
        return vmf.address, 1
    return vmf.address - ((vmf.pgoff - head) << PAGE_SHIFT), 1 << order


def _folio_fits(vma: VmArea, head: int, order: int) -> bool:
    """Whether the file folio of 2^order pages at index `head` lies inside the VMA and inside one PTE
    table of it: finish_fault's vma_off/pte_off bounds and filemap_map_folio_range's
    folio_within_vma and same-PMD test, which come to the same thing."""
    nr = 1 << order
    addr0 = vma.vm_start + ((head - vma.vm_pgoff) << PAGE_SHIFT)
    return (vma.vm_pgoff <= head and head + nr <= vma.vm_pgoff + vma.pages
            and addr0 & PMD_MASK == (addr0 + (nr << PAGE_SHIFT) - 1) & PMD_MASK)


def beyond_eof(vma: VmArea, address: int) -> bool:
    """The page lies at or past the end of the file (the fault raises SIGBUS)."""
    return vma.vm_pgoff + ((address - vma.vm_start) >> PAGE_SHIFT) >= file_pages(vma)


def _map_file_page(vmf: VmFault, address: int, pfn: int, write: bool) -> bool:
    """finish_fault()/set_pte_range(): map one page-cache page (a small folio mapped in a locked VMA
    is mlocked: folio_add_file_rmap_ptes); False when a table could not be had."""
    pt = vmf.mm.pt
    assert pt is not None
    _add_rmap(vmf.mem, pfn)  # before the entry: a table allocation may reclaim, and must not take it
    if pt.set_pte(address, _mk_pte(pfn, vmf.vma, write)):
        _remove_rmap(vmf.mem, pfn)
        return False
    add_mm_counter(vmf.mm, mm_counter(vmf.mem, pfn), 1)
    if vmf.vma.vm_flags & VM_LOCKED:
        mlock_vma_folio(vmf.mem, vmf.mem.mem_map.compound_head(pfn), vmf.vma)
    return True


def do_fault_around(vmf: VmFault) -> int:
    """do_fault_around(): the window of FAULT_AROUND_PAGES (16) PTE slots around the fault, aligned
    down to 16 and clipped to the VMA and to the one PTE table holding the fault (P6); a PMD entry
    that is none gets its PTE table preallocated first (vmf->prealloc_pte, charged: VM_FAULT_OOM
    when refused); then ->map_pages(), filemap_map_pages() of the window's file pages."""
    vma, pt = vmf.vma, vmf.mm.pt
    assert pt is not None
    pte_off = pte_index(vmf.address)
    vma_off = (vmf.address - vma.vm_start) >> PAGE_SHIFT
    from_pte = max(pte_off & ~(FAULT_AROUND_PAGES - 1), pte_off - min(pte_off, vma_off))
    to_pte = min(from_pte + FAULT_AROUND_PAGES, PTRS_PER_TABLE, pte_off + vma.pages - vma_off) - 1
    vmf.call("do_fault_around", f"window of {to_pte - from_pte + 1} pages")
    if pt.pmd_none(vmf.address) and not _prealloc_pte(vmf):
        return VM_FAULT_OOM
    return filemap_map_pages(vmf, vmf.pgoff + from_pte - pte_off, vmf.pgoff + to_pte - pte_off)


def filemap_map_pages(vmf: VmFault, start_pgoff: int, end_pgoff: int) -> int:
    """filemap_map_pages() (mm/filemap.c, 6.18): map the cached folios of file pages [start_pgoff,
    end_pgoff] that are not mapped yet; VM_FAULT_NOPAGE when the faulting page got mapped, else 0.
    (It sets PTEs through this module's helpers, so it lives here rather than in filemap.py.)

    - end_pgoff is clipped to the file's last page (file_end = DIV_ROUND_UP(i_size) - 1), and the
      walk (next_uptodate_folios) passes holes and PG_readahead folios by.
    - The FIRST folio found decides the page table: only when it ends before the file's last page
      (folio_within_file; shmem always) does filemap_map_pmd() run, which would map a PMD-sized
      folio by PMD (do_set_pmd: not modelled, such a folio is mapped by PTEs below) and otherwise
      installs the preallocated PTE table. When the first folio holds the file's last page (a large
      folio reaching EOF, or just the last page itself) and the PMD entry is none, pte_offset_map
      finds no table and NOTHING is mapped: the fault goes on to __do_fault/finish_fault.
    - Each folio then goes to filemap_map_folio_range() (a large one: possibly mapped whole) or
      filemap_map_order0_folio(); a PTE that is set (or a marker) is left alone.
    - Every page the walk passes in a folio not in the workingset (PG_workingset: recently evicted
      and refaulted, likely to be evicted again) counts as a hit, mapped already or not, and the hits
      are taken off the file's mmap_miss (down to 0): a mapping whose faults find their neighbours
      cached gets its read-around back (do_sync_mmap_readahead stops it past MMAP_LOTSAMISS)."""
    vma, pt, mem = vmf.vma, vmf.mm.pt, vmf.mem
    assert pt is not None
    inode = vmf_inode(vma)
    end_pgoff = min(end_pgoff, i_size_pages(inode) - 1)
    folios = next_uptodate_folios(mem, inode, start_pgoff, end_pgoff)
    first = next(folios, None)
    if first is None:
        return 0
    ptes = pt.pte_offset_map(vmf.address)
    if ptes is None:  # a PMD entry without a PTE table: filemap_map_pmd() has work to do, if it runs
        if not folio_within_file(inode, first[1], first[2]):
            return 0
        if pte_huge(pt.get_pmd(vmf.address)):
            return VM_FAULT_NOPAGE
        if pt.pmd_none(vmf.address):
            _install_prealloc_pte(vmf)
        ptes = pt.pte_offset_map(vmf.address)
        if ptes is None:
            return 0
    ret = hits = 0
    i_pages, flags = inode.i_pages, mem.mem_map.flags_a
    for xa_index, head, order in itertools.chain((first,), folios):
        if order:
            nr_pages = min(head + (1 << order) - 1, end_pgoff) - xa_index + 1
            got, walked = filemap_map_folio_range(vmf, ptes, head, order, xa_index, nr_pages)
        else:  # filemap_map_order0_folio()
            got, walked = _map_cached_pages(vmf, ptes, head, 1), 1
        ret |= got
        if not flags[i_pages[head]] & F_WORKINGSET:
            hits += walked
    assert vma.vm_file is not None
    ra = vma.vm_file.f_ra
    ra.mmap_miss = max(0, ra.mmap_miss - hits)
    return ret


def filemap_map_folio_range(vmf: VmFault, ptes: np.ndarray, head: int, order: int, start: int,
                            nr_pages: int) -> tuple[int, int]:
    """filemap_map_folio_range(): map file pages [start, start+nr_pages) of the cached folio at `head`
    (2^order pages) through the PTE table `ptes` of the fault, skipping slots that are set:
    (VM_FAULT_NOPAGE when the faulting page got mapped, else 0; the pages walked).

    6.18 ("map entire large folio faultaround"): a large folio is mapped WHOLE, whatever part of it the
    window covers, when it ends before the file's last page (folio_within_file), lies inside the VMA
    (folio_within_vma: its first page in the VMA and its end not past vm_end) and inside one PTE table
    (its first and last addresses under the same PMD entry)."""
    vma = vmf.vma
    if order and folio_within_file(vmf_inode(vma), head, order) and _folio_fits(vma, head, order):
        start, nr_pages = head, 1 << order
    return _map_cached_pages(vmf, ptes, start, nr_pages), nr_pages


def _map_cached_pages(vmf: VmFault, ptes: np.ndarray, start: int, nr_pages: int) -> int:
    """Map the cached file pages [start, start+nr_pages) of the fault's VMA through its PTE table
    `ptes`, leaving set slots alone; VM_FAULT_NOPAGE when the faulting page got mapped."""
    vma = vmf.vma
    i_pages = vmf_inode(vma).i_pages
    base = vma.vm_start - (vma.vm_pgoff << PAGE_SHIFT)  # the address file page 0 would have
    ret = 0
    for index in range(start, start + nr_pages):
        addr = base + (index << PAGE_SHIFT)
        pfn = i_pages.get(index)
        if pfn is None or ptes[(addr >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1)]:  # pte_index()
            continue
        if _map_file_page(vmf, addr, pfn, False) and addr == vmf.address:
            ret = VM_FAULT_NOPAGE
    return ret


def do_read_fault(vmf: VmFault) -> int:
    """do_read_fault(): fault-around first; otherwise read the page (__do_fault) and map it
    (finish_fault)."""
    vmf.call("do_read_fault")
    ret = do_fault_around(vmf)
    if ret:
        return ret & ~VM_FAULT_NOPAGE
    ret, pfn = __do_fault(vmf)
    if pfn is None:
        return ret
    return ret | finish_fault(vmf, pfn, cow=False) & ~VM_FAULT_NOPAGE


def do_cow_fault(vmf: VmFault) -> int:
    """do_cow_fault(): a private write to an unmapped file page: the anon page is allocated and
    charged first (vmf_anon_prepare, folio_prealloc), then __do_fault (the PTE table, the page-cache
    page), then the copy is mapped (finish_fault) (P7). When the fault fails or is retried, the new
    page goes back."""
    vmf.call("do_cow_fault", "private write: copy the file page")
    anon_vma_prepare(vmf.mm, vmf.vma)
    new = folio_prealloc(vmf)
    if new is None:
        return VM_FAULT_OOM
    ret, src = __do_fault(vmf)
    if src is None:
        vmf.mem.free_pages(new)
        return ret
    return ret | finish_fault(vmf, new, cow=True) & ~VM_FAULT_NOPAGE


def do_shared_fault(vmf: VmFault) -> int:
    """do_shared_fault(): a shared write maps the page-cache page writable and dirty (__do_fault, then
    finish_fault) and dirties it (P8, P9)."""
    vmf.call("do_shared_fault", "shared write: the page cache page, writable")
    ret, pfn = __do_fault(vmf)
    if pfn is None:
        return ret
    fin = finish_fault(vmf, pfn, cow=False)
    if fin & VM_FAULT_OOM:
        return fin
    if not fin & VM_FAULT_NOPAGE:
        fault_dirty_shared_page(vmf, pfn)
    return ret


def fault_dirty_shared_page(vmf: VmFault, pfn: int) -> None:
    """fault_dirty_shared_page(): a write through a shared mapping dirties the page-cache page
    (page_mkwrite, folio_mark_dirty) and lets the dirty limits throttle the writer."""
    vmf.call("fault_dirty_shared_page", "folio_mark_dirty, balance_dirty_pages_ratelimited")
    inode = vmf_inode(vmf.vma)
    dirtied = folio_mark_dirty(vmf.mem, inode, pfn)
    if dirtied and not inode.shmem:
        balance_dirty_pages(vmf.mem, dirtied)


def wp_can_reuse_anon_folio(mem: PhysMem, pfn: int) -> bool:
    """wp_can_reuse_anon_folio(): an anon page mapped once whose only reference is that mapping may be
    written in place; a swap-cache copy no PTE needs any more is dropped first (folio_free_swap)."""
    if not _is_anon(mem, pfn) or page_mapcount(mem, pfn) != 1:
        return False
    if not mem.mem_map.flags_a[mem.mem_map.compound_head(pfn)] & F_LRU:
        lru_add_drain(mem)  # a reference held by a CPU's folio batch goes first
    swap_state.folio_free_swap(mem, mem.mem_map.compound_head(pfn))
    return int(mem.mem_map._refcount[pfn]) == 1


def _mkwrite_dirty_young(entry: int) -> int:
    """maybe_mkwrite(pte_mkdirty(pte_mkyoung(entry))) of a write fault that keeps its page (PMD
    leaves alike): writable, dirty and young, a SAVED_DIRTY left by a write-protect folded back."""
    return pte_mkwrite(pte_mkdirty(pte_mkyoung(entry)))


def do_wp_page(vmf: VmFault, pte: int) -> int:
    """do_wp_page(): a write to a present read-only entry: make it writable (shared mappings, an
    exclusive anon page) or copy the page (zero page, shared anon page, private file page) (P3, P7, P14)."""
    mem, pt, vma = vmf.mem, vmf.mm.pt, vmf.vma
    assert pt is not None
    pfn = pte_pfn(pte)
    if vma.vm_flags & VM_SHARED:
        vmf.call("do_wp_page -> wp_page_shared", "write-notify: make it writable")
        pt.set_pte(vmf.address, _mkwrite_dirty_young(pte))
        fault_dirty_shared_page(vmf, pfn)
        return 0
    if not pte_special(pte) and wp_can_reuse_anon_folio(mem, pfn):
        vmf.call("do_wp_page -> wp_page_reuse", "only mapping: reuse the page")
        mem.mem_map.set(pfn, PG_anon_exclusive)
        pt.set_pte(vmf.address, _mkwrite_dirty_young(pte))
        return 0
    vmf.call("do_wp_page -> wp_page_copy", "copy-on-write")
    return wp_page_copy(vmf, pte)


def wp_page_copy(vmf: VmFault, orig_pte: int) -> int:
    """wp_page_copy(): map a new anon copy of the page `orig_pte` maps (or of the zero page). The old
    folio is held (do_wp_page's folio_get) across the allocation, which may reclaim: reclaim then
    cannot free it, but it may unmap it. So the PTE is checked again (pte_same) before the copy goes
    in; if it changed, the copy is dropped and the fault returns 0 for the access to fault again."""
    mem, pt, vma = vmf.mem, vmf.mm.pt, vmf.vma
    assert pt is not None
    pfn = pte_pfn(orig_pte)
    old = None if pte_special(orig_pte) else mem.mem_map.compound_head(pfn)
    if old is not None:
        mem.mem_map._refcount[old] += 1
    new = new_anon_page(vmf)
    if new is not None and pt.get_pte(vmf.address) == orig_pte:
        pt.set_pte(vmf.address, _mk_pte(new, vma, True))
        add_mm_counter(vmf.mm, MM_ANONPAGES, 1)
        if old is not None:
            add_mm_counter(vmf.mm, mm_counter(mem, pfn), -1)
            munlock_vma_folio(mem, old, vma)  # folio_remove_rmap_pte() of the old page
            _remove_rmap(mem, pfn)
    elif new is not None:
        vmf.call("wp_page_copy", "the PTE changed during the allocation: drop the copy, fault again")
        _remove_rmap(mem, new)
    if old is not None:
        put_page(mem, old)
    return VM_FAULT_OOM if new is None else 0


def should_try_to_free_swap(mem: PhysMem, head: int, vma: VmArea, write: bool) -> bool:
    """should_try_to_free_swap(): after a swap-in, drop the slot when swap is more than half full, the
    VMA is locked, or a write will make the page exclusive anyway (only the cache and this fault hold
    it)."""
    mm_map = mem.mem_map
    if not mm_map.test(head, PG_swapcache):
        return False
    if vm_swap_full(mem.swap) or vma.vm_flags & VM_LOCKED or mm_map.test(head, PG.mlocked):
        return True
    return write and int(mm_map._refcount[head]) == 2


def map_swapped_folio(vmf: VmFault, head: int, orig_pte: int, fault: bool) -> bool:
    """The mapping half of do_swap_page() (`fault`) and of unuse_pte() (swapoff): the PTE holding a
    swap entry maps the folio again, RSS moves from swap to anon, the slot loses this reference.
    A fault maps an exclusive page writable (dirty for a write) and may drop the slot
    (should_try_to_free_swap); unuse maps it read-only and old. Returns whether the write was done."""
    mem, vma, mm = vmf.mem, vmf.vma, vmf.mm
    pt = mm.pt
    assert pt is not None
    mm_map = mem.mem_map
    entry = pte_to_swp_entry(orig_pte)
    mm_map._refcount[head] += 1  # the mapping's reference
    swap_free(mem.swap, entry)
    if fault and should_try_to_free_swap(mem, head, vma, vmf.write):
        swap_state.folio_free_swap(mem, head)
    add_mm_counter(mm, MM_ANONPAGES, 1)
    add_mm_counter(mm, MM_SWAPENTS, -1)
    exclusive = pte_swp_exclusive(orig_pte)
    pte = pfn_pte(head, vm_page_prot(vma))
    done = False
    if exclusive or int(mm_map._refcount[head]) == 1:
        if fault and vma.vm_flags & VM_WRITE:
            pte |= _PAGE_RW
            if vmf.write:
                pte |= _PAGE_DIRTY
                done = True
        exclusive = True
    if not fault:
        pte &= ~_PAGE_ACCESSED
    if not int(mm_map.mapping[head]) & PAGE_MAPPING_ANON:  # folio_add_new_anon_rmap(): never mapped
        # __folio_set_anon(): a folio that may be mapped elsewhere too (a slot fork shared) takes the
        # oldest anon_vma, which every process that can map it chains to
        assert vma.anon_vma is not None
        anon_vma = vma.anon_vma if exclusive else vma.anon_vma.root
        mm_map.mapping[head] = (anon_vma.id << 2) | PAGE_MAPPING_ANON
        mm_map.index[head] = vmf.pgoff
    else:  # folio_add_anon_rmap_ptes() of an anon folio: mlocked again in a locked VMA
        mlock_vma_folio(mem, head, vma)
    if exclusive:
        mm_map.set(head, PG_anon_exclusive)
    mm_map._mapcount[head] += 1
    pt.set_pte(vmf.address, pte)
    return done


def do_swap_page(vmf: VmFault, pte: int) -> int:
    """do_swap_page(): a swap entry in the PTE. A folio still in the swap cache is mapped at once (a
    minor fault, a readahead hit); otherwise it is read with readahead (a major fault, pgmajfault,
    pswpin). A write to a page that cannot be made exclusive goes on to do_wp_page (COW)."""
    mem = vmf.mem
    entry = pte_to_swp_entry(pte)
    head = swap_state.swap_cache_get_folio(mem, entry, vmf.vma, vmf.address)
    ret = 0
    if head is None:
        vmf.call("do_swap_page -> swapin_readahead", "not in the swap cache: read it from swap")
        head = swap_state.swapin_readahead(mem, vmf.mm, vmf.vma, vmf.address, entry)
        if head is None:
            return VM_FAULT_OOM
        ret = VM_FAULT_MAJOR
        count_vm_events_mm(mem, vmf.mm.memcg, "pgmajfault")
    else:
        vmf.call("do_swap_page", "still in the swap cache: map it")
    if vmf.write and not mem.mem_map.flags_a[head] & F_LRU:
        lru_add_drain(mem)  # a reference a CPU's folio batch holds would make it look shared
    if vmf.write and not map_swapped_folio(vmf, head, pte, fault=True):
        pt = vmf.mm.pt
        assert pt is not None
        ret |= do_wp_page(vmf, pt.get_pte(vmf.address)) & VM_FAULT_ERROR
    elif not vmf.write:
        map_swapped_folio(vmf, head, pte, fault=True)
    return ret


def try_to_unuse(mem: PhysMem, area: int) -> int:
    """try_to_unuse() (mm/swapfile.c; here beside do_swap_page, whose mapping it shares): every swap
    PTE of swap area `area` in every live mm maps its page again (read in if not cached, no
    readahead), then every cached folio of the area no PTE refers to leaves the swap cache. 0 or -ENOMEM;
    the caller retries while slots are left (reclaim may have unmapped some pages again).

    Reading a page in may reclaim and OOM-kill: a victim's mm is torn down or its PTEs zapped while
    the walk is on it. So, as unuse_pte_range() does, each PTE is read as it is now (ptep_get_lockless),
    a failed read of a slot that was freed meanwhile is skipped (swap_map 0), and the folio is mapped
    only if the PTE still holds the entry (unuse_pte's pte_same_as_swp); otherwise it stays in the swap
    cache for the sweep at the end, which waits for each folio's write to complete before it frees
    the folio's slot. Before the mms, every shmem page on the area is read back (shmem_unuse)."""
    state = mem.swap
    if shmem_unuse(mem, area):
        return -ENOMEM
    for mm in state.mms():
        if mm.pt is None:
            continue
        for vma in list(mm):
            if vma.anon_vma is None or mm.pt is None:
                continue
            addrs, _ = mm.pt.entries(vma.vm_start, vma.vm_end)
            for addr in addrs.tolist():
                pt = mm.pt
                if pt is None:  # the mm was torn down (its task OOM-killed while a page was read)
                    break
                pte = pt.get_pte(addr)
                if not is_swap_slot_pte(pte) or swp_type(pte_to_swp_entry(pte)) != area:
                    continue
                entry = pte_to_swp_entry(pte)
                head = state.cache.get(entry)
                if head is None:
                    head = swap_state.swap_read_folio(mem, entry)
                    if head is None:
                        if not state.info(entry).swap_map[swp_offset(entry)]:
                            continue  # freed while memory was sought: nothing to bring back
                        return -ENOMEM
                    # swap_read_folio(): a workingset refault is a memory stall
                    mem.clock.advance(mem.clock.costs.swap_io_ns,
                                      memstall=bool(int(mem.mem_map.flags[head]) >> PG.workingset & 1))
                    if mm.pt is None or mm.pt.get_pte(addr) != pte:
                        continue  # not pte_same_as_swp: the entry left the PTE meanwhile
                map_swapped_folio(VmFault(mm, vma, addr, False, mem), head, pte, fault=False)
    for entry, head in list(state.cache.items()):
        if swp_type(entry) != area or state.cache.get(entry) != head:
            continue  # gone while an earlier one's write was waited for
        swap_state.swap_wait_writeback(mem, head)
        if state.cache.get(entry) == head:
            swap_state.folio_free_swap(mem, head)  # one a PTE names again stays for the caller's retry
    return 0


# --- transparent huge pages -----------------------------------------------------------------------------

def thp_fault_allowed(vmf: VmFault) -> bool:
    """P5: VM_HUGEPAGE (enabled=madvise) anonymous VMA, the aligned 2 MiB block inside it, no PTE table."""
    vma = vmf.vma
    if not vma.vm_flags & VM_HUGEPAGE or vma.vm_flags & VM_NOHUGEPAGE or not vma.is_anonymous():
        return False
    haddr = vmf.address & ~(PMD_SIZE - 1)
    if haddr < vma.vm_start or haddr + PMD_SIZE > vma.vm_end:
        return False
    return vmf.mm.pt is not None and vmf.mm.pt.get_pmd(vmf.address) == 0


def create_huge_pmd(vmf: VmFault) -> int:
    """do_huge_pmd_anonymous_page(): the huge zero page for a read, a new 2 MiB page for a write. The
    PUD and PMD tables come first (__handle_mm_fault: pud_alloc(), pmd_alloc(); VM_FAULT_OOM when
    refused)."""
    mem, pt = vmf.mem, vmf.mm.pt
    assert pt is not None
    haddr = vmf.address & ~(PMD_SIZE - 1)
    if not pt.pmd_alloc(haddr):
        return VM_FAULT_OOM
    if not vmf.write:
        vmf.call("do_huge_pmd_anonymous_page", "read: map the huge zero page")
        hz = mem.mm_get_huge_zero_folio(id(vmf.mm))
        if hz is None:
            return VM_FAULT_FALLBACK
        if pt.deposit(haddr) or pt.set_pmd_leaf(haddr, pfn_pte(hz, vm_page_prot(vmf.vma) & ~_PAGE_RW)):
            return VM_FAULT_OOM
        return 0
    vmf.call("do_huge_pmd_anonymous_page", "write: a new 2 MiB page")
    return _map_new_thp(vmf, haddr)


def _map_new_thp(vmf: VmFault, haddr: int) -> int:
    """__do_huge_pmd_anonymous_page(): allocate an order-9 folio and map it with one PMD entry
    (thp_fault_alloc; thp_fault_fallback when no folio or no charge, thp_fault_fallback_charge too
    for the latter)."""
    mem, pt = vmf.mem, vmf.mm.pt
    assert pt is not None
    anon_vma = anon_vma_prepare(vmf.mm, vmf.vma)
    pfn = mem.alloc_pages(9, compound=True)
    if pfn is None:
        mem.events["thp_fault_fallback"] += 1
        return VM_FAULT_FALLBACK
    if mem_cgroup_charge(vmf.mm.memcg, pfn, HPAGE_PMD_NR, order=9):
        mem.free_pages(pfn, 9)
        mem.events["thp_fault_fallback"] += 1
        mem.events["thp_fault_fallback_charge"] += 1
        return VM_FAULT_FALLBACK
    if pt.deposit(haddr):  # pte_alloc_one() after the folio's charge; its failure releases the folio
        mem.free_pages(pfn, 9)
        return VM_FAULT_OOM
    mm = mem.mem_map
    mm.mapping[pfn:pfn + HPAGE_PMD_NR] = (anon_vma.id << 2) | PAGE_MAPPING_ANON
    first = vmf.vma.vm_pgoff + ((haddr - vmf.vma.vm_start) >> PAGE_SHIFT)  # linear_page_index()
    mm.index[pfn:pfn + HPAGE_PMD_NR] = np.arange(first, first + HPAGE_PMD_NR, dtype=np.uint64)
    mm.flags_a[pfn] = mm.flags_a[pfn] | (anon_folio_flags(vmf.vma) & ~(1 << PG.uptodate))
    mm._mapcount[pfn:pfn + HPAGE_PMD_NR] = 0
    mm.flags[pfn + 1] |= 1 << PG.workingset  # large_rmappable: a THP to kpageflags
    folio_add_lru_vma(mem, pfn, vmf.vma)
    if pt.set_pmd_leaf(haddr, _mk_pte(pfn, vmf.vma, True)):
        return VM_FAULT_OOM
    add_mm_counter(vmf.mm, MM_ANONPAGES, HPAGE_PMD_NR)
    mem.events["thp_fault_alloc"] += 1
    return 0


def do_huge_pmd_wp_page(vmf: VmFault, pmd: int) -> int:
    """do_huge_pmd_wp_page(): a write to the huge zero page maps a new THP (P5 row 15); a THP whose
    only reference is this PMD's (folio_ref_count 1: no other mapping of any of its pages) is
    reused, made writable; otherwise the PMD is split and the one 4 KiB page copied (P5 after fork).
    (The model took a THP whose head page was mapped once for exclusive, and made the PMD writable
    while a fork child still mapped its other pages: the explore profile of test_pressure_invariants
    found it.)"""
    mem = vmf.mem
    pfn = pte_pfn(pmd)
    haddr = vmf.address & ~(PMD_SIZE - 1)
    if mem.is_huge_zero_pfn(pfn):
        vmf.call("do_huge_pmd_wp_page", "write to the huge zero page: a new THP")
        pt = vmf.mm.pt
        assert pt is not None
        pt.clear_range(haddr, haddr + PMD_SIZE)
        pt.withdraw(haddr)
        return _map_new_thp(vmf, haddr)
    pt = vmf.mm.pt
    assert pt is not None
    if mem.mem_map._refcount_a[pfn] == 1:
        vmf.call("do_huge_pmd_wp_page", "only mapping: reuse")
        pt.clear_range(haddr, haddr + PMD_SIZE)
        pt.set_pmd_leaf(haddr, _mkwrite_dirty_young(pmd))
        return 0
    vmf.call("do_huge_pmd_wp_page -> __split_huge_pmd", "shared THP: split, then copy 4 KiB")
    split_huge_pmd(vmf.mm, mem, haddr)
    return do_wp_page(vmf, pt.get_pte(vmf.address))


def split_huge_pmd(mm: MmStruct, mem: PhysMem, haddr: int) -> None:
    """__split_huge_pmd(): replace a PMD mapping by 512 PTEs mapping the same subpages (thp_split_pmd,
    counted for the huge zero page's too)."""
    pt = mm.pt
    assert pt is not None
    mem.events["thp_split_pmd"] += 1
    _, olds = pt.clear_range(haddr, haddr + PMD_SIZE)
    pt.populate_deposited(haddr)  # the deposited table becomes the PTE table: no allocation, no charge
    pmd = int(olds[0])
    pfn = pte_pfn(pmd)
    prot = pmd & (0xFFF & ~_PAGE_PSE) | (pmd & (_PAGE_NX | _PAGE_SAVED_DIRTY))  # the dirty bit, moved or not
    if mem.is_huge_zero_pfn(pfn):  # __split_huge_zero_page_pmd(): 512 mappings of the 4 KiB zero page
        for i in range(HPAGE_PMD_NR):
            addr = haddr + (i << PAGE_SHIFT)
            pt.set_pte(addr, pte_mkspecial(pfn_pte(mem.my_zero_pfn(addr), prot)))
        return
    for i in range(HPAGE_PMD_NR):
        pt.set_pte(haddr + (i << PAGE_SHIFT), pfn_pte(pfn + i, prot))
    mem.mem_map._refcount[pfn] += HPAGE_PMD_NR - 1  # each PTE now holds a reference


# --- tearing down and copying -----------------------------------------------------------------------------

def split_huge_pmds_at(mm: MmStruct, mem: PhysMem, addr: int) -> None:
    """split_huge_pmd_address(): a range edge at `addr` inside a THP mapping splits it first."""
    if mm.pt is None or not addr & (PMD_SIZE - 1):
        return
    if pte_huge(mm.pt.get_pmd(addr)):
        split_huge_pmd(mm, mem, addr & ~(PMD_SIZE - 1))


def zap_page_range(mm: MmStruct, mem: PhysMem, start: int, end: int, keep_guards: bool = False,
                   recency: bool = True, vma: VmArea | None = None) -> None:
    """zap_page_range_single() / unmap_page_range(): clear the entries of [start, end), drop the
    mappings and references of their pages and the RSS they counted (P11). MADV_DONTNEED keeps guard
    markers (`keep_guards`); munmap does not. A file folio is marked accessed once per run of its
    PTEs with a young one among them (zap_present_folio_ptes: a run is what folio_pte_batch()
    batches, consecutive PTEs of one page table mapping consecutive pages of the folio), unless the
    VMA has no recency (`recency` off): so a page-cache page used through a mapping is referenced
    after munmap, activated by a second map-use-unmap, and a folio mapped in separate places (two
    fault-around windows) is marked once for each (host-checked in tests/test_lru_host.py). The
    CPU's folio batches are not drained: on this kernel munmap(), MADV_DONTNEED and an mremap()
    that shrinks leave folios waiting in the lru_add and mlock batches there (kpageflags, measured
    in tests/test_host_mlock.py). The pages of a locked `vma` are munlocked as their mappings go
    (folio_remove_rmap_ptes: munlock_vma_folio)."""
    pt = mm.pt
    if pt is None or start >= end:
        return
    # The run of a file folio's PTEs being zapped: its mapping, its head's index, the address that
    # would continue it, and whether it was marked accessed.
    run_mapping, run_head, run_next, run_marked = -1, -1, -1, False
    locked = vma if vma is not None and vma.vm_flags & VM_LOCKED else None
    split_huge_pmds_at(mm, mem, start)
    split_huge_pmds_at(mm, mem, end)
    addrs, olds = pt.clear_range(start, end)
    for addr, entry in zip(addrs.tolist(), olds.tolist(), strict=True):
        if not pte_present(entry):
            if entry == GUARD_MARKER and keep_guards:
                pt.set_pte(addr, entry)
            elif is_swap_slot_pte(entry):
                add_mm_counter(mm, MM_SWAPENTS, -1)
                swap_state.free_swap_and_cache(mem, pte_to_swp_entry(entry))
            continue
        pfn = pte_pfn(entry)
        if entry & _PAGE_PSE:
            pt.withdraw(addr)
            if mem.is_huge_zero_pfn(pfn):
                continue  # the mm keeps its huge-zero reference until exit (MMF_HUGE_ZERO_FOLIO)
            mem.mem_map._mapcount[pfn:pfn + HPAGE_PMD_NR] -= 1
            add_mm_counter(mm, MM_ANONPAGES, -HPAGE_PMD_NR)
            if locked is not None:
                munlock_vma_folio(mem, pfn, locked)
            put_page(mem, pfn)
            continue
        if pte_special(entry):
            continue  # the zero page: no struct page to account
        if not _is_anon(mem, pfn):
            if pte_dirty(entry):  # SAVED_DIRTY too
                inode = mem.address_spaces.get(int(mem.mem_map.mapping[pfn]))
                if inode is not None:  # zap_present_folio_ptes(): a dirty PTE dirties the folio
                    folio_mark_dirty(mem, inode, pfn)
            mapping = int(mem.mem_map.mapping[pfn])
            if (addr != run_next or not addr % PMD_SIZE or mapping != run_mapping or run_head < 0
                    or _file_folio_head(mem, pfn) != run_head):
                run_mapping, run_head, run_marked = mapping, _file_folio_head(mem, pfn), False
            run_next = addr + PAGE_SIZE
            if entry & _PAGE_ACCESSED and recency and not run_marked:
                mark_page_cache_accessed(mem, pfn)
                run_marked = True
        add_mm_counter(mm, mm_counter(mem, pfn), -1)
        if locked is not None:
            munlock_vma_folio(mem, mem.mem_map.compound_head(pfn), locked)
        _remove_rmap(mem, pfn)


def _file_folio_head(mem: PhysMem, pfn: int) -> int:
    """The index of the head page of the (logical) page-cache folio holding frame `pfn`; -1 when the
    frame belongs to no known mapping."""
    inode = mem.address_spaces.get(int(mem.mem_map.mapping[pfn]))
    if inode is None:
        return -1
    return folio_head(inode, int(mem.mem_map.index[pfn]))[0]


def free_pgtables(mm: MmStruct, start: int, end: int) -> None:
    """free_pgtables(): free the page tables of an unmapped range that no neighbouring VMA shares
    (floor = the previous VMA's end, ceiling = the next VMA's start)."""
    if mm.pt is None:
        return
    prev = mm.vma_below(start)
    nxt = mm.find_vma(start)
    mm.pt.free_pgtables(start, end, prev.vm_end if prev else 0, nxt.vm_start if nxt else 0)


def unmap_region(mm: MmStruct, mem: PhysMem, start: int, end: int, vmas: list[VmArea]) -> None:
    """unmap_region(): zap the pages of `vmas` (already removed from the tree, covering [start, end)),
    each with its own recency, then free their tables."""
    for vma in vmas:
        zap_page_range(mm, mem, vma.vm_start, vma.vm_end, recency=vma_has_recency(vma), vma=vma)
    free_pgtables(mm, start, end)


def exit_mmap(mm: MmStruct, mem: PhysMem) -> None:
    """exit_mmap(): zap every VMA, free all page tables, uncharge the VM_ACCOUNT VMAs and remove
    them (their files' references go); then the mm's own objects go (__mmdrop)."""
    if mm.pt is None:
        mm.free_objects()
        return
    update_hiwater_rss(mm)
    vm_unacct_memory(mem, accounted_pages(mm))
    for vma in mm:
        zap_page_range(mm, mem, vma.vm_start, vma.vm_end, recency=vma_has_recency(vma), vma=vma)
    mm.pt.destroy()
    mm.pt = None
    for vma in list(mm):
        mm.remove(vma)
    mem.mm_put_huge_zero_folio(id(mm))
    mm.free_objects()


def is_cow_mapping(flags: int) -> bool:
    """is_cow_mapping(): private and possibly writable."""
    return flags & (VM_SHARED | VM_MAYWRITE) == VM_MAYWRITE


def copy_page_range(dst: MmStruct, src: MmStruct, mem: PhysMem, vma: VmArea) -> int:
    """copy_page_range(): a fork child's copy of one VMA's entries, only where vma_needs_copy() (the VMA
    has an anon_vma, or maps raw PFNs: VM_PFNMAP/VM_MIXEDMAP, like [vvar]); private pages are
    write-protected in both for COW (P14). The child gets every table the parent has over the VMA's
    range, whether or not an entry of the range is set in it (copy_pte_range allocates before it
    looks: a child's VmPTE counts them), each allocated (and charged to the forking task's memcg) in
    address order before the entries under it; 0, or -ENOMEM when one is refused (the parent's
    entries not copied yet are left as they were)."""
    if (vma.anon_vma is None and not vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP)) or src.pt is None \
            or dst.pt is None:
        return 0
    cow = is_cow_mapping(vma.vm_flags)
    tables = src.pt.tables_for_copy(vma.vm_start, vma.vm_end)
    addrs, olds = src.pt.clear_range(vma.vm_start, vma.vm_end)
    t = 0  # the tables up to the entry's (its own among them: the parent has it) come first
    for i, (addr, entry) in enumerate(zip(addrs.tolist(), olds.tolist(), strict=True)):
        while t < len(tables) and tables[t][0] <= addr and dst.pt.alloc_table(*tables[t]):
            t += 1
        huge = bool(entry & _PAGE_PSE)
        if (t < len(tables) and tables[t][0] <= addr) or (huge and dst.pt.deposit(addr)):
            _put_back(src.pt, addrs[i:].tolist(), olds[i:].tolist())
            return -ENOMEM
        if cow and pte_present(entry):
            entry = pte_wrprotect(entry)  # ptep_set_wrprotect(): Dirty moves to SAVED_DIRTY
        elif is_swap_slot_pte(entry):  # copy_nonpresent_pte(): the slot is shared, not exclusive
            swap_duplicate(mem.swap, pte_to_swp_entry(entry))
            entry = pte_swp_clear_exclusive(entry)
            add_mm_counter(dst, MM_SWAPENTS, 1)
        child = entry & ~_PAGE_ACCESSED if pte_present(entry) else entry  # the child's copy is old
        if huge:
            src.pt.set_pmd_leaf(addr, entry)
            dst.pt.set_pmd_leaf(addr, child)
        else:
            src.pt.set_pte(addr, entry)
            pfn = pte_pfn(entry)
            small = pte_present(entry) and not pte_special(entry)
            if small:
                _add_rmap(mem, pfn)
            dst.pt.set_pte(addr, child)
            if small:
                mem.mem_map.clear(pfn, PG_anon_exclusive)
                add_mm_counter(dst, mm_counter(mem, pfn), 1)
            continue
        if not pte_present(entry):
            continue
        pfn = pte_pfn(entry)
        if entry & _PAGE_PSE:
            if mem.is_huge_zero_pfn(pfn):
                mem.mm_get_huge_zero_folio(id(dst))
                continue
            mem.mem_map._mapcount[pfn:pfn + HPAGE_PMD_NR] += 1
            mem.mem_map._refcount[pfn] += 1
            mem.mem_map.clear(pfn, PG_anon_exclusive)
            add_mm_counter(dst, MM_ANONPAGES, HPAGE_PMD_NR)
    return 0 if all(dst.pt.alloc_table(a, shift) for a, shift in tables[t:]) else -ENOMEM


def _put_back(pt: PageTables, addrs: list[int], entries: list[int]) -> None:
    """Store entries taken out with clear_range() back where they were (PMD leaves by their PSE bit)."""
    for addr, entry in zip(addrs, entries, strict=True):
        if entry & _PAGE_PSE:
            pt.set_pmd_leaf(addr, entry)
        else:
            pt.set_pte(addr, entry)


def install_guards(mm: MmStruct, mem: PhysMem, start: int, end: int) -> None:
    """madvise_guard_install(): zap the range and fill it with guard markers."""
    assert mm.pt is not None
    zap_page_range(mm, mem, start, end)
    for addr in range(start, end, PAGE_SIZE):
        mm.pt.set_pte(addr, GUARD_MARKER)


def remove_guards(mm: MmStruct, start: int, end: int) -> None:
    """madvise_guard_remove(): clear the guard markers of the range, leaving pages alone."""
    assert mm.pt is not None
    split_huge_pmds_at(mm, mm.pt.mem, start)
    split_huge_pmds_at(mm, mm.pt.mem, end)
    addrs, olds = mm.pt.clear_range(start, end)
    kept = [(a, e) for a, e in zip(addrs.tolist(), olds.tolist(), strict=True) if e != GUARD_MARKER]
    _put_back(mm.pt, [a for a, _ in kept], [e for _, e in kept])


def move_page_tables(mm: MmStruct, mem: PhysMem, old: int, new: int, length: int) -> None:
    """move_page_tables(): carry the entries of [old, old+len) to [new, new+len) unchanged (mremap
    moves pages without faults and without RSS changes, M7); unaligned THPs are split first."""
    pt = mm.pt
    if pt is None:
        return
    if (old - new) & (PMD_SIZE - 1):
        for a in range(old & ~(PMD_SIZE - 1), old + length, PMD_SIZE):
            if pte_huge(pt.get_pmd(a)):
                split_huge_pmd(mm, mem, a)
    split_huge_pmds_at(mm, mem, old)
    split_huge_pmds_at(mm, mem, old + length)
    tables = _move_table_plan(pt, old, new, length)
    addrs, olds = pt.clear_range(old, old + length)
    for addr, entry in zip(addrs.tolist(), olds.tolist(), strict=True):
        if entry & _PAGE_PSE and pte_present(entry):
            pt.set_pmd_leaf(addr - old + new, entry)
            if addr in pt.deposited:
                pt.deposited[addr - old + new] = pt.deposited.pop(addr)
        else:
            pt.set_pte(addr - old + new, entry)
    for o, n, extent, has_ptes in tables:
        pt.pmd_alloc(n)  # alloc_new_pud() + alloc_new_pmd()
        if has_ptes:
            pt.pte_alloc(n)
            if extent == PMD_SIZE:  # move_pgt_entry(NORMAL_PMD) moved the table itself
                pt.free_pgtables(o, o + PMD_SIZE, o, o + PMD_SIZE)


def _move_table_plan(pt: PageTables, old: int, new: int, length: int) -> list[tuple[int, int, int, bool]]:
    """The page-table work of move_page_tables()'s loop, decided on the tables before the move: for each
    PMD-sized extent whose old PMD table exists, (old, new, extent, whether its old PMD entry holds a
    PTE table). The kernel allocates the new PMD table for such an extent, and a new PTE table when the
    old one exists, even with no entries in it (or moves the table whole for a full aligned extent)."""
    plan = []
    addr, end = old, old + length
    while addr < end:
        dest = addr - old + new
        extent = min(PMD_SIZE - (addr & (PMD_SIZE - 1)), PMD_SIZE - (dest & (PMD_SIZE - 1)), end - addr)
        entry = pt.lookup_pmd(addr)
        if entry is not None:
            plan.append((addr, dest, extent, entry != 0 and not entry & _PAGE_PSE))
        addr += extent
    return plan


def pte_reclaim(mm: MmStruct, start: int, end: int) -> None:
    """CONFIG_PT_RECLAIM: after MADV_DONTNEED, free the PTE tables wholly inside the range that became
    empty (so a THP fault is possible there again, P5)."""
    if mm.pt is not None:
        mm.pt.free_pgtables(start, end, start, end)


#: A bulk first-touch run shorter than this (at a memcg limit) is left to the one-by-one path.
BULK_MIN_PAGES = 16


def fault_in_fresh_anon(mm: MmStruct, mem: PhysMem, vma: VmArea, start: int, end: int) -> int:
    """A run of first-touch writes to private anonymous memory with no entries yet, done at once: the
    same state as one do_anonymous_page() write fault per page (P3). The number of pages faulted, or 0
    when the run does not qualify (the caller then takes the faults one by one)."""
    pt = mm.pt
    if (pt is None or not vma.is_anonymous() or vma.vm_flags & (VM_SHARED | VM_HUGEPAGE | VM_LOCKED)
            or not vma.vm_flags & VM_WRITE or start < vma.vm_start or end > vma.vm_end or start >= end):
        return 0
    if pt.entries(start, end)[0].size:
        return 0
    n = (end - start) >> PAGE_SHIFT
    if mm.memcg is not None:  # room for the pages and for the tables mapping them (charged alike)
        tables = pt.missing_tables(start, end)
        n = mem_cgroup_room(mm.memcg, n + tables) - tables
    if n < BULK_MIN_PAGES:
        return 0  # at a memcg limit: the faults one by one charge and OOM as the kernel's do
    end = start + (n << PAGE_SHIFT)
    pfns = mem.alloc_pages_bulk(n)
    if len(pfns) < n:
        mem.free_pages_bulk(pfns)
        return 0
    mem_cgroup_charge_bulk(mm.memcg, pfns.tolist())
    anon_vma = anon_vma_prepare(mm, vma)
    mmap_ = mem.mem_map
    mmap_.mapping[pfns] = (anon_vma.id << 2) | PAGE_MAPPING_ANON
    first = vma.vm_pgoff + ((start - vma.vm_start) >> PAGE_SHIFT)
    mmap_.index[pfns] = np.arange(first, first + n, dtype=np.uint64)
    mmap_.flags[pfns] |= np.uint64(anon_folio_flags(vma))
    mmap_._mapcount[pfns] = 0
    if pt.map_range(start, pfns, vm_page_prot(vma) | _PAGE_RW | _PAGE_DIRTY):
        mem.free_pages_bulk(pfns)
        return 0
    folio_add_lru_bulk(mem, pfns)
    add_mm_counter(mm, MM_ANONPAGES, n)
    count_vm_events_mm(mem, mm.memcg, "pgfault", n)
    mem.clock.advance(n * mem.clock.costs.minor_fault_ns)  # n faults' worth of time
    return n
