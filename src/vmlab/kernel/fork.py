"""fork of an address space, after kernel/fork.c:dup_mmap (6.18): the child gets an identical VMA list
(no merging), minus VM_DONTCOPY VMAs, with mlock bits cleared and anon_vmas chained (P14, M2), and
its own page tables holding copies of the entries of VMAs with an anon_vma (COW).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from vmlab.kernel.memory import copy_page_range, exit_mmap
from vmlab.kernel.mm_types import (
    VM_ACCOUNT,
    VM_DONTCOPY,
    VM_LOCKED_MASK,
    VM_NOHUGEPAGE,
    VM_WIPEONFORK,
    MmStruct,
)
from vmlab.kernel.pgtable import PageTables
from vmlab.kernel.rmap import anon_vma_fork
from vmlab.kernel.uapi import ENOMEM
from vmlab.kernel.util import security_vm_enough_memory_mm

if TYPE_CHECKING:
    from vmlab.kernel.mmap import VmSysctl


def dup_mmap(oldmm: MmStruct, sysctl: VmSysctl) -> MmStruct | int:
    """dup_mm() + dup_mmap(): the child's mm_struct, or -ENOMEM when the commit refuses a VM_ACCOUNT
    VMA (each is charged in turn, checked against the parent's mm) or a page table of the child
    cannot be had (its PGD or a table copy_page_range() allocates: frames charged to the forking
    task's memcg); a refused fork tears the partial copy down (mmput: exit_mmap uncharges what was
    charged and frees the tables)."""
    mm = dataclasses.replace(oldmm, _starts=[], _vmas=[], locked_vm=0,
                             def_flags=oldmm.def_flags & VM_NOHUGEPAGE, pt=None, rss=[0, 0, 0, 0],
                             hiwater_rss=0)
    if oldmm.pt is not None:
        try:
            mm.pt = PageTables(oldmm.pt.mem)
        except MemoryError:
            return -ENOMEM  # mm_alloc_pgd() failed: nothing else was set up
    for mpnt in oldmm:
        if mpnt.vm_flags & VM_DONTCOPY:
            mm.vm_stat_account(mpnt.vm_flags & ~VM_LOCKED_MASK, -mpnt.pages)
            continue
        if mpnt.vm_flags & VM_ACCOUNT and security_vm_enough_memory_mm(oldmm, mpnt.pages, sysctl):
            if mm.pt is not None:
                exit_mmap(mm, mm.pt.mem)
            return -ENOMEM
        tmp = mpnt.copy()
        if tmp.vm_flags & VM_WIPEONFORK:
            tmp.anon_vma, tmp.anon_vma_chain_len = None, 0
        else:
            anon_vma_fork(tmp, mpnt)
        tmp.vm_flags &= ~VM_LOCKED_MASK
        mm.insert(tmp)
        if (not tmp.vm_flags & VM_WIPEONFORK and oldmm.pt is not None
                and copy_page_range(mm, oldmm, oldmm.pt.mem, mpnt)):
            exit_mmap(mm, oldmm.pt.mem)
            return -ENOMEM
    return mm
