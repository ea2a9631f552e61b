"""Faulting pages in on behalf of a process, after mm/gup.c (6.18): __mm_populate() for mlock and
MAP_POPULATE, and faultin_page_range() for MADV_POPULATE_(READ|WRITE). Faults taken here count in the
task's min_flt like user faults (P12).

Errors as measured on the kernel: population stops at the first page whose fault would raise SIGBUS
(-EFAULT); a VMA without the needed permission is -EFAULT for mm_populate (mlock reports it as ENOMEM)
and -EINVAL for MADV_POPULATE_*; a hole is -ENOMEM for MADV_POPULATE_*.
"""

from __future__ import annotations

from vmlab.kernel.fault import FaultStats, mmu_permits
from vmlab.kernel.memory import (
    VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
    VM_FAULT_SIGSEGV,
    VmFault,
    handle_mm_fault,
)
from vmlab.kernel.mm_types import (
    VM_EXEC,
    VM_IO,
    VM_LOCKONFAULT,
    VM_PFNMAP,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    MmStruct,
    VmArea,
)
from vmlab.kernel.pgtable import _PAGE_PRESENT, _PAGE_PSE, pte_pfn, pte_special
from vmlab.kernel.swap import folio_mark_accessed, lru_add_drain
from vmlab.kernel.uapi import EFAULT, EINVAL, ENOMEM, PAGE_SIZE


def _fault_in(mm: MmStruct, vma: VmArea, start: int, end: int, write: bool, stats: FaultStats) -> int:
    """__get_user_pages(): fault in each page not already mapped as needed; -EFAULT at a SIGBUS page."""
    assert mm.pt is not None
    addr = start
    while addr < end:
        while not mmu_permits(mm, addr, write):  # faultin_page() returned 0 unmapped: retry
            ret = handle_mm_fault(VmFault(mm, vma, addr, write, mm.pt.mem))
            if ret & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV):
                return -EFAULT
            if ret & VM_FAULT_OOM:
                return -ENOMEM
            stats.account(ret)
        _touch(mm, addr)
        addr += PAGE_SIZE
    return 0


def _touch(mm: MmStruct, addr: int) -> None:
    """follow_page() with FOLL_TOUCH: the page it returns is marked accessed (not the zero pages)."""
    assert mm.pt is not None
    pmd = mm.pt.get_pmd(addr)
    entry = pmd if pmd & _PAGE_PSE else mm.pt.get_pte(addr)
    if entry & _PAGE_PRESENT and not pte_special(entry) and not mm.pt.mem.is_huge_zero_pfn(pte_pfn(entry)):
        folio_mark_accessed(mm.pt.mem, pte_pfn(entry))


def populate_vma_page_range(mm: MmStruct, vma: VmArea, start: int, end: int, stats: FaultStats) -> int:
    """populate_vma_page_range(): GUP with FOLL_WRITE on private writable VMAs, FOLL_FORCE when
    accessible, nothing for VM_LOCKONFAULT; 0 or -errno. The CPU's folio batches are drained after
    the faults (lru_add_drain), measured here with kpageflags: after MAP_POPULATE of 3 pages those
    and 3 touched just before are on the LRU (touched alone they are not yet, in the CPU's lru_add
    batch); after mlock() or MAP_LOCKED of 10 new pages all 10 are on the unevictable list, while
    MLOCK_ONFAULT faults leave them in the mlock batch."""
    if vma.vm_flags & VM_LOCKONFAULT:
        return 0
    if not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC):
        return -EFAULT
    write = (vma.vm_flags & (VM_WRITE | VM_SHARED)) == VM_WRITE
    err = _fault_in(mm, vma, start, end, write, stats)
    assert mm.pt is not None
    lru_add_drain(mm.pt.mem)
    return err


def mm_populate(mm: MmStruct, start: int, end: int, ignore_errors: bool, stats: FaultStats) -> int:
    """__mm_populate(): populate each VMA of the range, skipping VM_IO/VM_PFNMAP; stops at a hole."""
    for vma in mm.vmas_in(start, end):
        if vma.vm_flags & (VM_IO | VM_PFNMAP):
            continue
        err = populate_vma_page_range(mm, vma, max(start, vma.vm_start), min(end, vma.vm_end), stats)
        if err and not ignore_errors:
            return err
    return 0


def get_user_pages_remote(mm: MmStruct, start: int, nr_pages: int, write: bool, stats: FaultStats) -> int:
    """get_user_pages_remote() with FOLL_FORCE (FOLL_TOUCH and FOLL_REMOTE implied): fault in and mark
    accessed each of `nr_pages` pages from `start` of a VMA that covers them all, the way exec's
    get_arg_page() reaches the new mm's stack; 0, -EFAULT (no such VMA, or a SIGBUS/SIGSEGV fault) or
    -ENOMEM (the fault ran out of memory). The faults count in `stats` (the caller's task)."""
    end = start + nr_pages * PAGE_SIZE
    vma = mm.vma_lookup(start)
    if vma is None or vma.vm_end < end:
        return -EFAULT
    return _fault_in(mm, vma, start, end, write, stats)


def faultin_page_range(mm: MmStruct, start: int, end: int, write: bool, stats: FaultStats) -> int:
    """madvise_populate() -> faultin_page_range(): fault the range in as reads or writes, then drain
    the CPU's folio batches (lru_add_drain), whatever the faults returned; the range must be fully
    mapped (-ENOMEM at a hole, -EINVAL at an incompatible VMA, after the VMAs before it)."""
    assert mm.pt is not None
    addr, err = start, 0
    while addr < end and not err:
        vma = mm.vma_lookup(addr)
        if vma is None:
            err = -ENOMEM
        elif vma.vm_flags & (VM_IO | VM_PFNMAP) or not vma.vm_flags & (VM_WRITE if write else VM_READ):
            err = -EINVAL
        else:
            err = _fault_in(mm, vma, addr, min(end, vma.vm_end), write, stats)
            addr = vma.vm_end
    lru_add_drain(mm.pt.mem)
    return err
