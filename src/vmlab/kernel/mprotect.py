"""mprotect, after mm/mprotect.c (6.18): do_mprotect_pkey and mprotect_fixup.

Reference rules: M5, M6 (VM_ACCOUNT), M9 (holes: ENOMEM after the earlier part changed).
"""

from __future__ import annotations

from vmlab.kernel.mm_types import (
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_GROWSDOWN,
    VM_HUGETLB,
    VM_NORESERVE,
    VM_SHARED,
    VM_WRITE,
    MmStruct,
    VmArea,
)
from vmlab.kernel.mmap import VmSysctl, calc_vm_prot_bits
from vmlab.kernel.uapi import (
    EACCES,
    EINVAL,
    ENOMEM,
    PAGE_MASK,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_READ,
    PROT_SEM,
    PROT_WRITE,
    page_align,
)
from vmlab.kernel.vma import vma_modify_flags


def mprotect_fixup(mm: MmStruct, vma: VmArea, start: int, end: int, newflags: int,
                   sysctl: VmSysctl) -> int:
    """mprotect_fixup(): apply newflags to [start, end) ⊆ vma, adjusting VM_ACCOUNT (M6); 0 or -errno."""
    oldflags = vma.vm_flags
    if newflags == oldflags:
        return 0
    if newflags & VM_WRITE:
        if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and vma.is_anonymous() and vma.anon_vma is None:
        newflags &= ~VM_ACCOUNT
    result = vma_modify_flags(mm, vma, start, end, newflags, sysctl.max_map_count)
    return result if isinstance(result, int) else 0


def do_mprotect(mm: MmStruct, start: int, length: int, prot: int, sysctl: VmSysctl) -> int:
    """do_mprotect_pkey(): change protection of every VMA in the range, in order, stopping at a hole."""
    grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
    prot &= ~(PROT_GROWSDOWN | PROT_GROWSUP)
    if grows == PROT_GROWSDOWN | PROT_GROWSUP:
        return -EINVAL
    if start & ~PAGE_MASK:
        return -EINVAL
    if not length:
        return 0
    length = page_align(length)
    end = start + length
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
        err = mprotect_fixup(mm, vma, nstart, tmp, newflags, sysctl)
        if err:
            return err
        nstart = tmp
    return -ENOMEM if nstart < end else 0
