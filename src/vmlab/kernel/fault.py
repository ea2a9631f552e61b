"""The user page-fault entry, after arch/x86/mm/fault.c:do_user_addr_fault and mm/mmap.c:expand_stack.

This is the address-space half of the fault path: find the VMA, grow a stack, check access rights,
SIGSEGV/SIGBUS, and assign the anon_vma that the first anonymous page needs (M3). Page tables and frames
belong to the paging model.
"""

from __future__ import annotations

from vmlab.kernel.mm_types import (
    VM_EXEC,
    VM_GROWSDOWN,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    MmStruct,
    VmArea,
)
from vmlab.kernel.mmap import STACK_GUARD_GAP, VmSysctl
from vmlab.kernel.rmap import anon_vma_prepare
from vmlab.kernel.uapi import ENOMEM, EPERM, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE

SIGSEGV = "SIGSEGV"
SIGBUS = "SIGBUS"


def expand_downwards(mm: MmStruct, vma: VmArea, address: int, rlimit_stack: int | None,
                     sysctl: VmSysctl) -> int:
    """expand_downwards(): grow a VM_GROWSDOWN VMA down to the page of `address` (L4); 0 or -errno."""
    address &= PAGE_MASK
    if address < sysctl.mmap_min_addr:
        return -EPERM
    prev = mm.prev_vma(vma)
    if (prev is not None and not prev.vm_flags & VM_GROWSDOWN
            and prev.vm_flags & (VM_READ | VM_WRITE | VM_EXEC)
            and address - prev.vm_end < STACK_GUARD_GAP):
        return -ENOMEM
    if prev is not None and prev.vm_end > address:
        return -ENOMEM
    anon_vma_prepare(mm, vma)
    if address < vma.vm_start:
        size = vma.vm_end - address
        grow = (vma.vm_start - address) >> PAGE_SHIFT
        if grow > vma.vm_pgoff:
            return -ENOMEM
        if rlimit_stack is not None and size > rlimit_stack:
            return -ENOMEM
        vma.vm_pgoff -= grow
        mm.set_range(vma, address, vma.vm_end)
        mm.total_vm += grow
    return 0


def access_error(vma: VmArea, write: bool) -> bool:
    """access_error(): a write needs VM_WRITE; any other access needs one of read/write/exec."""
    if write:
        return not vma.vm_flags & VM_WRITE
    return not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC)


def beyond_eof(vma: VmArea, address: int) -> bool:
    """The page of a file VMA lies past the end of its file: the fault handler answers SIGBUS."""
    if vma.vm_file is None:
        return False
    pgoff = vma.vm_pgoff + ((address - vma.vm_start) >> PAGE_SHIFT)
    return pgoff >= (vma.vm_file.inode.size + PAGE_SIZE - 1) >> PAGE_SHIFT


def do_user_addr_fault(mm: MmStruct, address: int, write: bool, rlimit_stack: int | None,
                       sysctl: VmSysctl) -> tuple[VmArea | None, str | None]:
    """do_user_addr_fault() up to handle_mm_fault(): the VMA that takes the fault, or the signal."""
    vma = mm.find_vma(address)
    if vma is None:
        return None, SIGSEGV
    if vma.vm_start > address and (
            not vma.vm_flags & VM_GROWSDOWN or expand_downwards(mm, vma, address, rlimit_stack, sysctl)):
        return None, SIGSEGV
    if access_error(vma, write):
        return None, SIGSEGV
    if beyond_eof(vma, address):
        return None, SIGBUS
    if write and not vma.vm_flags & VM_SHARED:
        anon_vma_prepare(mm, vma)  # do_anonymous_page / do_cow_fault / do_wp_page
    return vma, None
