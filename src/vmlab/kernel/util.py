"""Overcommit accounting, after mm/util.c (6.18): the machine-wide committed counter, the commit limit and
__vm_enough_memory(), with the boot defaults of the reserves (init_admin_reserve, init_user_reserve).

The counter is `PhysMem.vm_committed_as` (pages), the kernel's percpu `vm_committed_as`. The model
keeps it exact: the kernel's check reads the approximate percpu_counter_read_positive() (each CPU may
hold up to `vm_committed_as_batch` pages unfolded: 0.4% of RAM per CPU in mode 2, 25% otherwise),
/proc/meminfo's Committed_AS the exact sum. So mode 2 agrees with the host only away from the limit
by more than nr_cpus * batch (about 94 MiB on this 2-CPU, 24 GiB host).

Where the kernel charges and uncharges (each caller names its kernel function):
- mmap_region (accountable_mapping: private writable, not VM_NORESERVE), less the accounted pages a
  MAP_FIXED replaces; munmap and exit_mmap uncharge VM_ACCOUNT VMAs;
- do_brk_flags (brk, the ELF bss); insert_vm_struct (exec's first stack page); acct_stack_growth
  (every stack growth, VM_ACCOUNT or not);
- mremap: growth in place or by a move charges the size difference (MREMAP_DONTUNMAP: the new
  length); the moved source is unmapped without uncharging;
- mprotect_fixup: write permission added to a VMA with none of VM_ACCOUNT/WRITE/SHARED/NORESERVE
  charges it; write removed from an untouched anonymous VMA uncharges it;
- dup_mmap: each VM_ACCOUNT VMA of the parent, checked against the parent's mm;
- shmem_acct_size: a MAP_SHARED|MAP_ANONYMOUS object (unless VM_NORESERVE), uncharged at eviction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmlab.kernel.mm_types import VM_ACCOUNT, MmStruct, VmArea
from vmlab.kernel.uapi import ENOMEM, PAGE_SHIFT

if TYPE_CHECKING:
    from collections.abc import Iterable

    from vmlab.kernel.mmap import VmSysctl
    from vmlab.kernel.page_alloc import PhysMem

# vm.overcommit_memory values (include/uapi/linux/mman.h).
OVERCOMMIT_GUESS = 0
OVERCOMMIT_ALWAYS = 1
OVERCOMMIT_NEVER = 2
#: Defaults of sysctl_user_reserve_kbytes / sysctl_admin_reserve_kbytes before boot adjusts them.
USER_RESERVE_MAX_KB = 1 << 17  # 128 MiB
ADMIN_RESERVE_MAX_KB = 1 << 13  # 8 MiB


def _kb_to_pages(kbytes: int) -> int:
    """kbytes >> (PAGE_SHIFT - 10)."""
    return kbytes >> (PAGE_SHIFT - 10)


def init_user_reserve(mem: PhysMem) -> int:
    """init_user_reserve(): min(3% of the free pages at boot (free / 32), 128 MiB), in kB.

    The host computes it at subsys_initcall time; with deferred struct-page init only part of RAM is
    free then (this 24 GiB host shows 100403 kB), so the model's value from its whole free RAM is larger.
    """
    return min(mem.nr_free_pages * (1 << (PAGE_SHIFT - 10)) // 32, USER_RESERVE_MAX_KB)


def init_admin_reserve(mem: PhysMem) -> int:
    """init_admin_reserve(): min(3% of the free pages at boot (free / 32), 8 MiB), in kB."""
    return min(mem.nr_free_pages * (1 << (PAGE_SHIFT - 10)) // 32, ADMIN_RESERVE_MAX_KB)


def vm_commit_limit(mem: PhysMem, sysctl: VmSysctl) -> int:
    """vm_commit_limit(): overcommit_kbytes if set, else overcommit_ratio% of RAM (no hugetlb pages), plus
    swap; in pages (CommitLimit)."""
    if sysctl.overcommit_kbytes:
        allowed = _kb_to_pages(sysctl.overcommit_kbytes)
    else:
        allowed = mem.totalram_pages * sysctl.overcommit_ratio // 100
    return allowed + mem.swap.total_swap_pages


def vm_memory_committed(mem: PhysMem) -> int:
    """vm_memory_committed(): the committed pages, never negative (Committed_AS)."""
    return max(mem.vm_committed_as, 0)


def vm_acct_memory(mem: PhysMem, pages: int) -> None:
    """vm_acct_memory(): add `pages` to the committed counter."""
    mem.vm_committed_as += pages


def vm_unacct_memory(mem: PhysMem, pages: int) -> None:
    """vm_unacct_memory(): take `pages` off the committed counter."""
    mem.vm_committed_as -= pages


def __vm_enough_memory(mem: PhysMem, sysctl: VmSysctl, mm: MmStruct | None, pages: int,
                       cap_sys_admin: bool) -> int:
    """__vm_enough_memory(): charge `pages`, then keep the charge (0) or undo it (-ENOMEM).

    Mode 1 always succeeds; mode 0 fails only a single request above RAM + swap (6.18: no free-memory
    estimate any more); mode 2 fails once the committed pages (the request included) reach the commit
    limit less the admin reserve (for a task without CAP_SYS_ADMIN) and less min(total_vm / 32, user
    reserve) of the requesting mm.
    """
    vm_acct_memory(mem, pages)
    if sysctl.overcommit_memory == OVERCOMMIT_ALWAYS:
        return 0
    if sysctl.overcommit_memory == OVERCOMMIT_GUESS:
        if pages <= mem.totalram_pages + mem.swap.total_swap_pages:
            return 0
    else:
        allowed = vm_commit_limit(mem, sysctl)
        if not cap_sys_admin:
            allowed -= _kb_to_pages(sysctl_admin_reserve_kbytes(mem, sysctl))
        if mm is not None:
            allowed -= min(mm.total_vm // 32, _kb_to_pages(sysctl_user_reserve_kbytes(mem, sysctl)))
        if vm_memory_committed(mem) < allowed:
            return 0
    vm_unacct_memory(mem, pages)
    return -ENOMEM


def sysctl_user_reserve_kbytes(mem: PhysMem, sysctl: VmSysctl) -> int:
    """vm.user_reserve_kbytes: the sysctl if set, else the boot default for this machine."""
    return init_user_reserve(mem) if sysctl.user_reserve_kbytes is None else sysctl.user_reserve_kbytes


def sysctl_admin_reserve_kbytes(mem: PhysMem, sysctl: VmSysctl) -> int:
    """vm.admin_reserve_kbytes: the sysctl if set, else the boot default for this machine."""
    return init_admin_reserve(mem) if sysctl.admin_reserve_kbytes is None else sysctl.admin_reserve_kbytes


def security_vm_enough_memory_mm(mm: MmStruct, pages: int, sysctl: VmSysctl) -> int:
    """security_vm_enough_memory_mm(): __vm_enough_memory for the task owning `mm` (cap_vm_enough_memory
    gives CAP_SYS_ADMIN). The machine is the mm's (mm.pt.mem); an mm not on a machine (no page tables,
    unit tests of VMA rules only) is never refused and charges nothing."""
    if mm.pt is None or not pages:
        return 0
    return __vm_enough_memory(mm.pt.mem, sysctl, mm, pages, mm.cap_sys_admin)


def mm_acct(mm: MmStruct, pages: int) -> None:
    """vm_acct_memory() on the machine of `mm` (no check), where the kernel charges unconditionally."""
    if mm.pt is not None:
        vm_acct_memory(mm.pt.mem, pages)


def mm_unacct(mm: MmStruct, pages: int) -> None:
    """vm_unacct_memory() on the machine of `mm`."""
    if mm.pt is not None:
        vm_unacct_memory(mm.pt.mem, pages)


def accounted_pages(vmas: Iterable[VmArea]) -> int:
    """The pages of the VM_ACCOUNT VMAs among `vmas` (nr_accounted of the munmap and exit paths)."""
    return sum(v.pages for v in vmas if v.vm_flags & VM_ACCOUNT)
