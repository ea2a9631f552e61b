"""fork, after kernel/fork.c (6.18).

dup_mmap: the child gets an identical VMA list (no merging), minus VM_DONTCOPY VMAs, with mlock bits
cleared and anon_vmas chained (P14, M2), and its own page tables holding copies of the entries of
VMAs with an anon_vma (COW).

The kernel objects of a process (copy_process), charged to the forking task's memcg (their caches are
SLAB_ACCOUNT, the stack's pages __GFP_ACCOUNT) and given back when the process ends: the task_struct,
its kernel stack (THREAD_SIZE, vmalloc'd: 4 pages, charged page by page), cred, files_struct,
fs_struct, sighand and signal structs and struct pid (`TaskObjects`); and each address space's
mm_struct with its rss_stat counters (percpu), charged where the mm is made (`mm_alloc`: fork's
dup_mm, exec's mm_alloc) and given back by exit_mmap. Sizes are what a slab object charges,
obj_full_size(): the cache's slab_size on this machine (/sys/kernel/slab/<cache>/slab_size, a merged
cache's where the cache is merged) plus the obj_cgroup pointer. A descriptor table beyond the 64
descriptors files_struct holds is vmlab.kernel.file's. Not modelled: the objects other clone flags or
subsystems add (threads, namespaces, io contexts, delay accounting).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from vmlab.kernel.file import FdTable
from vmlab.kernel.memcontrol import (
    OBJCG_PTR,
    memcg_charge_kernel_stack,
    memcg_kmem_charge_obj,
    memcg_kmem_uncharge_obj,
    memcg_uncharge_kernel_stack,
)
from vmlab.kernel.memory import copy_page_range, exit_mmap
from vmlab.kernel.mm_types import (
    MM_STRUCT_SIZE,
    RSS_STAT_SIZE,
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
    from vmlab.kernel.memcontrol import MemCgroup
    from vmlab.kernel.mmap import VmSysctl
    from vmlab.kernel.page_alloc import PhysMem

#: Slab objects of a process: task_struct (dup_task_struct, before the stack), then, in the kernel's
#: order, cred (copy_creds; an exec replaces it), files_struct (copy_files), fs_struct (copy_fs),
#: sighand_struct (copy_sighand) and signal_struct (copy_signal); struct pid comes after the mm
#: (alloc_pid). files_struct comes first in TASK_OBJECTS.
TASK_STRUCT_SIZE = 5888 + OBJCG_PTR
CRED_SIZE = 192 + OBJCG_PTR
TASK_OBJECTS = (704 + OBJCG_PTR, 64 + OBJCG_PTR, 2112 + OBJCG_PTR, 1152 + OBJCG_PTR)
PID_SIZE = 192 + OBJCG_PTR
#: THREAD_SIZE in pages (16 KiB on x86_64).
THREAD_SIZE_PAGES = 4


@dataclasses.dataclass
class TaskObjects:
    """The kernel objects copy_process() allocated for one process, and the memcg they are charged to
    (None: nothing accounted, a task of the root)."""

    memcg: MemCgroup | None = None
    #: The slab objects charged, in order (the cred apart: `cred`).
    sizes: list[int] = dataclasses.field(default_factory=list)
    stack: bool = False
    #: The memcg its cred is charged to (copy_creds, or the last exec's prepare_bprm_creds).
    cred: MemCgroup | None = None
    #: The size of its descriptor table and the objects an allocated one charged (vmlab.kernel.file).
    fdt: FdTable = dataclasses.field(default_factory=FdTable)

    def charge(self, mem: PhysMem, size: int) -> bool:
        """One more slab object, charged to the running task's memcg; False when the charge fails."""
        err, memcg = memcg_kmem_charge_obj(mem, size)
        if err:
            return False
        if memcg is not None:
            self.memcg = memcg
            self.sizes.append(size)
        return True

    def charge_stack(self, mem: PhysMem) -> bool:
        """The kernel stack's pages (memcg_charge_kernel_stack); False when the charge fails."""
        err, memcg = memcg_charge_kernel_stack(mem, THREAD_SIZE_PAGES)
        self.stack = memcg is not None
        return not err

    def charge_cred(self, mem: PhysMem) -> bool:
        """A new cred (copy_creds at fork, prepare_bprm_creds at exec) charged to the running task's
        memcg, the one it replaces given back (put_cred); False, the old one kept, when the charge
        fails."""
        err, memcg = memcg_kmem_charge_obj(mem, CRED_SIZE)
        if err:
            return False
        if self.cred is not None:
            memcg_kmem_uncharge_obj(self.cred, CRED_SIZE)
        self.cred = memcg
        return True

    def free(self) -> None:
        """exit_files()'s free of the descriptor table, then free_task() and the puts of
        release_task(): every object and the stack go, their charges with them."""
        self.fdt.free()
        if self.cred is not None:
            memcg_kmem_uncharge_obj(self.cred, CRED_SIZE)
            self.cred = None
        if self.memcg is None:
            return
        if self.stack:
            memcg_uncharge_kernel_stack(self.memcg, THREAD_SIZE_PAGES)
        for size in reversed(self.sizes):
            memcg_kmem_uncharge_obj(self.memcg, size)
        self.memcg, self.sizes, self.stack = None, [], False


def copy_process_objects(mem: PhysMem, parent: TaskObjects, highest_fd: int) -> TaskObjects | None:
    """The task_struct, kernel stack, cred, files (with a descriptor table for the parent's highest
    open descriptor `highest_fd` when files_struct's own is too small: dup_fd), fs, sighand and signal
    of a new process, charged in turn to the running (forking) task's memcg; None (nothing left
    charged) when a charge fails: copy_process() fails with -ENOMEM. alloc_pid's struct pid is
    charged later (the caller's objects.charge(mem, PID_SIZE), after the mm)."""
    objects = TaskObjects()
    files, *others = TASK_OBJECTS
    if (objects.charge(mem, TASK_STRUCT_SIZE) and objects.charge_stack(mem) and objects.charge_cred(mem)
            and objects.charge(mem, files)):
        fdt = parent.fdt.dup(mem, highest_fd)
        if fdt is not None:
            objects.fdt = fdt
            if all(objects.charge(mem, size) for size in others):
                return objects
    objects.free()
    return None


def mm_alloc(mem: PhysMem, mm: MmStruct) -> int:
    """allocate_mm() and mm_init() of an mm without page tables: its mm_struct, its PGD (mm.pt) and its
    rss_stat counters, each charged to the running task's memcg in that order (mm.objcg); 0, or
    -ENOMEM with nothing left charged."""
    err, mm.objcg = memcg_kmem_charge_obj(mem, MM_STRUCT_SIZE)
    if err:
        return -ENOMEM
    try:
        mm.pt = PageTables(mem)
    except MemoryError:
        mm.pt = None
    if mm.pt is None or memcg_kmem_charge_obj(mem, RSS_STAT_SIZE)[0]:
        if mm.pt is not None:
            mm.pt.destroy()
            mm.pt = None
        if mm.objcg is not None:
            memcg_kmem_uncharge_obj(mm.objcg, MM_STRUCT_SIZE)
            mm.objcg = None
        return -ENOMEM
    return 0


def dup_mmap(oldmm: MmStruct, sysctl: VmSysctl) -> MmStruct | int:
    """dup_mm() + dup_mmap(): the child's mm_struct, or -ENOMEM when the commit refuses a VM_ACCOUNT
    VMA (each is charged in turn, checked against the parent's mm) or a page table of the child
    cannot be had (its PGD or a table copy_page_range() allocates: frames charged to the forking
    task's memcg); a refused fork tears the partial copy down (mmput: exit_mmap uncharges what was
    charged and frees the tables)."""
    mm = dataclasses.replace(oldmm, _starts=[], _vmas=[], locked_vm=0,
                             def_flags=oldmm.def_flags & VM_NOHUGEPAGE, pt=None, rss=[0, 0, 0, 0],
                             hiwater_rss=0, objcg=None)
    if oldmm.pt is not None and mm_alloc(oldmm.pt.mem, mm):
        return -ENOMEM  # its mm_struct, PGD or rss_stat failed: nothing else was set up
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
