"""The overcommit charge of shmem objects, after mm/shmem.c (6.18): shmem_acct_size/shmem_unacct_size.

A MAP_SHARED|MAP_ANONYMOUS object (shmem_zero_setup) is charged its whole size when made, unless the
mapping is VM_NORESERVE, and uncharged when the object is evicted (its last reference went).
Not modelled: the per-page charge of VM_NORESERVE objects (memfd, MAP_NORESERVE shared anonymous
memory) as their pages are allocated (shmem_acct_blocks), and the re-charge of a resized object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmlab.kernel.mm_types import VM_NORESERVE, Inode, MmStruct
from vmlab.kernel.uapi import PAGE_SHIFT, page_align
from vmlab.kernel.util import security_vm_enough_memory_mm, vm_unacct_memory

if TYPE_CHECKING:
    from vmlab.kernel.mmap import VmSysctl
    from vmlab.kernel.page_alloc import PhysMem


def shmem_acct_size(mm: MmStruct, size: int, vm_flags: int, sysctl: VmSysctl) -> int:
    """shmem_acct_size() from __shmem_file_setup(), before the inode exists: charge VM_ACCT(size) for
    a reserving object, checked against the caller's mm; the pages charged (0 for VM_NORESERVE), or
    -ENOMEM. The caller records the charge in the new inode's acct_pages."""
    if vm_flags & VM_NORESERVE or mm.pt is None:
        return 0
    pages = page_align(size) >> PAGE_SHIFT
    err = security_vm_enough_memory_mm(mm, pages, sysctl)
    return err if err else pages


def shmem_unacct_size(mem: PhysMem, inode: Inode) -> None:
    """shmem_unacct_size() from shmem_evict_inode(): give back what shmem_acct_size charged."""
    vm_unacct_memory(mem, inode.acct_pages)
    inode.acct_pages = 0
