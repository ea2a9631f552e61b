"""mlock, mlock2, munlock, mlockall, munlockall, after mm/mlock.c (6.18).

Locking changes vm_flags (split/merge like mprotect, M5) and mlocks or munlocks the pages already
mapped (mlock_vma_pages_range, vmlab.kernel.mlock_folio); population of the pages is the caller's
(`populate` callback), as mm_populate() is in the kernel.
"""

from __future__ import annotations

from collections.abc import Callable

from vmlab.kernel.mlock_folio import mlock_vma_pages_range
from vmlab.kernel.mm_types import (
    VM_DROPPABLE,
    VM_HUGETLB,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_LOCKONFAULT,
    VM_SPECIAL,
    MmStruct,
    VmArea,
)
from vmlab.kernel.mmap import VmSysctl
from vmlab.kernel.uapi import (
    EAGAIN,
    EFAULT,
    EINVAL,
    ENOMEM,
    MCL_CURRENT,
    MCL_FUTURE,
    MCL_ONFAULT,
    MLOCK_ONFAULT,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    page_align,
    ul,
)
from vmlab.kernel.vma import vma_modify_flags

#: VMAs mlock_fixup() never locks (nor counts in VmLck): special, hugetlb, and droppable ones, whose
#: pages may be dropped at any time. (It still populates them.)
VM_NEVER_LOCKED = VM_SPECIAL | VM_HUGETLB | VM_DROPPABLE

#: Faults in [start, end) as __mm_populate() does; returns 0 or -errno.
Populator = Callable[[int, int], int]


def _fixup(mm: MmStruct, vma: VmArea, start: int, end: int, newflags: int, max_map_count: int) -> int:
    """mlock_fixup(): [start, end) of `vma` gets `newflags` (split or merged), locked_vm follows, and
    when VM_LOCKED comes or goes the pages already mapped there are mlocked or munlocked; 0 or
    -errno."""
    oldflags = vma.vm_flags
    result = vma_modify_flags(mm, vma, start, end, newflags, max_map_count)
    if isinstance(result, int):
        return result
    _account_lock(mm, oldflags, newflags, (end - start) >> PAGE_SHIFT)
    if (oldflags ^ newflags) & VM_LOCKED and mm.pt is not None:
        mlock_vma_pages_range(mm, mm.pt.mem, result, start, end)
    return 0


def _account_lock(mm: MmStruct, oldflags: int, newflags: int, nr_pages: int) -> None:
    """mlock_fixup(): locked_vm (VmLck) follows VM_LOCKED."""
    if newflags & VM_LOCKED and not oldflags & VM_LOCKED:
        mm.locked_vm += nr_pages
    elif oldflags & VM_LOCKED and not newflags & VM_LOCKED:
        mm.locked_vm -= nr_pages


def apply_vma_lock_flags(mm: MmStruct, start: int, length: int, flags: int, sysctl: VmSysctl) -> int:
    """apply_vma_lock_flags(): set the lock bits on every VMA of the range; a hole is ENOMEM, a range
    that wraps past 2^64 EINVAL."""
    end = ul(start + length)
    if end < start:
        return -EINVAL
    if end == start:
        return 0
    if mm.vma_lookup(start) is None:
        return -ENOMEM
    nstart = start
    for vma in mm.vmas_in(start, end):
        if vma.vm_start > nstart:
            return -ENOMEM
        newflags = (vma.vm_flags & ~VM_LOCKED_MASK) | flags
        tmp = min(vma.vm_end, end)
        if newflags != vma.vm_flags and not vma.vm_flags & VM_NEVER_LOCKED:
            err = _fixup(mm, vma, nstart, tmp, newflags, sysctl.max_map_count)
            if err:
                return err
        nstart = tmp
    return -ENOMEM if nstart < end else 0


def do_mlock(mm: MmStruct, start: int, length: int, flags: int, sysctl: VmSysctl,
             populate: Populator | None = None) -> int:
    """do_mlock(): lock then populate (VM_LOCKONFAULT skips population)."""
    length = ul(page_align(length + (start & (PAGE_SIZE - 1))))
    start &= PAGE_MASK
    err = apply_vma_lock_flags(mm, start, length, flags, sysctl)
    if err or populate is None or flags & VM_LOCKONFAULT:
        return err
    err = populate(start, start + length)
    # __mlock_posix_error_return(): a fault that failed is ENOMEM to mlock, no memory is EAGAIN.
    return {-EFAULT: -ENOMEM, -ENOMEM: -EAGAIN}.get(err, err)


def sys_mlock2(mm: MmStruct, start: int, length: int, flags: int, sysctl: VmSysctl,
               populate: Populator | None = None) -> int:
    """SYSCALL_DEFINE3(mlock2): MLOCK_ONFAULT is the only flag."""
    if flags & ~MLOCK_ONFAULT:
        return -EINVAL
    vm_flags = VM_LOCKED | (VM_LOCKONFAULT if flags & MLOCK_ONFAULT else 0)
    return do_mlock(mm, start, length, vm_flags, sysctl, populate)


def sys_munlock(mm: MmStruct, start: int, length: int, sysctl: VmSysctl) -> int:
    """SYSCALL_DEFINE2(munlock)."""
    length = ul(page_align(length + (start & (PAGE_SIZE - 1))))
    return apply_vma_lock_flags(mm, start & PAGE_MASK, length, 0, sysctl)


def sys_mlockall(mm: MmStruct, flags: int, sysctl: VmSysctl, populate: Populator | None = None) -> int:
    """apply_mlockall_flags(): MCL_FUTURE sets def_flags; MCL_CURRENT locks every VMA."""
    if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
        return -EINVAL
    to_add = VM_LOCKED | (VM_LOCKONFAULT if flags & MCL_ONFAULT else 0)
    mm.def_flags &= ~VM_LOCKED_MASK
    if flags & MCL_FUTURE:
        mm.def_flags |= to_add
    if flags & MCL_CURRENT:
        for vma in mm:
            newflags = (vma.vm_flags & ~VM_LOCKED_MASK) | to_add
            if newflags != vma.vm_flags and not vma.vm_flags & VM_NEVER_LOCKED:
                _fixup(mm, vma, vma.vm_start, vma.vm_end, newflags, sysctl.max_map_count)
        if populate is not None and not flags & MCL_ONFAULT:
            for vma in mm:
                populate(vma.vm_start, vma.vm_end)
    return 0


def sys_munlockall(mm: MmStruct, sysctl: VmSysctl) -> int:
    """SYSCALL_DEFINE0(munlockall): clear def_flags and every VMA's lock bits."""
    mm.def_flags &= ~VM_LOCKED_MASK
    for vma in mm:
        if vma.vm_flags & VM_LOCKED_MASK:
            _fixup(mm, vma, vma.vm_start, vma.vm_end, vma.vm_flags & ~VM_LOCKED_MASK, sysctl.max_map_count)
    return 0
