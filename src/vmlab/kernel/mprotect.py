"""mprotect, after mm/mprotect.c (6.18): do_mprotect_pkey and mprotect_fixup.

Reference rules: M5, M6 (VM_ACCOUNT), M9 (holes: ENOMEM after the earlier part changed).
"""

from __future__ import annotations

from vmlab.kernel.fault import FaultStats
from vmlab.kernel.gup import populate_vma_page_range
from vmlab.kernel.memory import vm_page_prot, vma_wants_writenotify
from vmlab.kernel.mm_types import (
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_GROWSDOWN,
    VM_HUGETLB,
    VM_LOCKED,
    VM_NORESERVE,
    VM_SHARED,
    VM_WRITE,
    MmStruct,
    VmArea,
)
from vmlab.kernel.mmap import VmSysctl, calc_vm_prot_bits
from vmlab.kernel.page_flags import PG_anon_exclusive
from vmlab.kernel.pgtable import (
    _PAGE_PSE,
    _PAGE_RW,
    PAGE_NONE,
    pte_dirty,
    pte_mkwrite,
    pte_modify,
    pte_pfn,
    pte_present,
    pte_special,
)
from vmlab.kernel.uapi import (
    EACCES,
    EINVAL,
    ENOMEM,
    PAGE_MASK,
    PAGE_SHIFT,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_READ,
    PROT_SEM,
    PROT_WRITE,
    page_align,
    ul,
)
from vmlab.kernel.util import mm_unacct, security_vm_enough_memory_mm
from vmlab.kernel.vma import vma_modify_flags


def mprotect_fixup(mm: MmStruct, vma: VmArea, start: int, end: int, newflags: int,
                   sysctl: VmSysctl, stats: FaultStats | None = None) -> int:
    """mprotect_fixup(): apply newflags to [start, end) ⊆ vma, adjusting VM_ACCOUNT (M6) and charging
    the range when it gains it (uncharging when it loses it); 0 or -errno."""
    oldflags = vma.vm_flags
    if newflags == oldflags:
        return 0
    nrpages = (end - start) >> PAGE_SHIFT
    charged = 0
    if newflags & VM_WRITE:
        if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
            charged = nrpages
            if security_vm_enough_memory_mm(mm, charged, sysctl):
                return -ENOMEM
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and vma.is_anonymous() and vma.anon_vma is None:
        newflags &= ~VM_ACCOUNT
    result = vma_modify_flags(mm, vma, start, end, newflags, sysctl.max_map_count)
    if isinstance(result, int):
        mm_unacct(mm, charged)
        return result
    if oldflags & VM_ACCOUNT and not newflags & VM_ACCOUNT:
        mm_unacct(mm, nrpages)
    mm.vm_stat_account(oldflags, -nrpages)
    mm.vm_stat_account(newflags, nrpages)
    change_protection(mm, result, start, end)
    if oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED) == VM_LOCKED and newflags & VM_WRITE:
        # Private locked pages about to be written are faulted in now, so they are never COWed later.
        populate_vma_page_range(mm, result, start, end, stats or FaultStats())
    return 0


def change_protection(mm: MmStruct, vma: VmArea, start: int, end: int) -> None:
    """change_protection(): rewrite the entries of [start, end) for the VMA's new protection
    (pte_modify), making exclusive anonymous pages of a writable private VMA writable at once and dirty
    shared pages of a writable shared one (MM_CP_TRY_CHANGE_WRITABLE, P10). PROT_NONE entries stay
    "present" to the kernel (M9)."""
    pt = mm.pt
    if pt is None:
        return
    mem = pt.mem
    prot = vm_page_prot(vma)
    try_writable = bool(vma.vm_flags & VM_WRITE) and not vma_wants_writenotify(vma)
    addrs, olds = pt.clear_range(start, end)
    for addr, old in zip(addrs.tolist(), olds.tolist(), strict=True):
        if not pte_present(old):
            pt.set_pte(addr, old)
            continue
        pfn = pte_pfn(old)
        entry = pte_modify(old, prot)
        if try_writable and not entry & _PAGE_RW and prot != PAGE_NONE:
            if vma.vm_flags & VM_SHARED:
                writable = pte_dirty(old)
            else:
                writable = not pte_special(old) and mem.mem_map.test(pfn, PG_anon_exclusive)
            if writable:
                entry = pte_mkwrite(entry)
        if old & _PAGE_PSE:
            pt.set_pmd_leaf(addr, entry)
        else:
            pt.set_pte(addr, entry)


def do_mprotect(mm: MmStruct, start: int, length: int, prot: int, sysctl: VmSysctl,
                stats: FaultStats | None = None) -> int:
    """do_mprotect_pkey(): change protection of every VMA in the range, in order, stopping at a hole."""
    grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
    prot &= ~(PROT_GROWSDOWN | PROT_GROWSUP)
    if grows == PROT_GROWSDOWN | PROT_GROWSUP:
        return -EINVAL
    if start & ~PAGE_MASK:
        return -EINVAL
    if not length:
        return 0
    end = ul(start + page_align(length))  # wraps as in C: a huge length is -ENOMEM here
    if end <= start:
        return -ENOMEM
    if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM):
        return -EINVAL
    vmas = mm.vmas_in(start, end)
    if not vmas:
        return -ENOMEM
    first = vmas[0]
    if grows & PROT_GROWSDOWN:
        if first.vm_start >= end:
            return -ENOMEM
        start = first.vm_start
        if not first.vm_flags & VM_GROWSDOWN:
            return -EINVAL
    elif first.vm_start > start:
        return -ENOMEM
    nstart = start
    for vma in vmas:
        if vma.vm_start > nstart:
            return -ENOMEM
        newflags = calc_vm_prot_bits(prot) | (vma.vm_flags & ~VM_ACCESS_FLAGS)
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            return -EACCES
        tmp = min(vma.vm_end, end)
        err = mprotect_fixup(mm, vma, nstart, tmp, newflags, sysctl, stats)
        if err:
            return err
        nstart = tmp
    return -ENOMEM if nstart < end else 0
