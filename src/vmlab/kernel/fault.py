"""The user page-fault entry, after arch/x86/mm/fault.c:do_user_addr_fault and mm/mmap.c:expand_stack.

Find the VMA, grow a stack, check access rights (SIGSEGV), then handle_mm_fault(); a completed fault is
counted in the task's min_flt or maj_flt (mm_account_fault, P1), a failed one is not.

The same entry serves the kernel's own accesses to user memory (copy_to_user, copy_from_user of a
read() or write()): those faults come from kernel mode (`user_mode` False), so they are not
FAULT_FLAG_USER faults (a refused memcg charge never makes the task wait), and their failure is the
exception fixup's short copy (kernelmode_fixup_or_oops), never pagefault_out_of_memory().
"""

from __future__ import annotations

from dataclasses import dataclass

from vmlab.kernel.memory import (
    VM_FAULT_ERROR,
    VM_FAULT_MAJOR,
    VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
    VM_FAULT_SIGSEGV,
    FaultTrace,
    VmFault,
    handle_mm_fault,
)
from vmlab.kernel.mm_types import FAULT_FLAG_USER, VM_EXEC, VM_GROWSDOWN, VM_READ, VM_WRITE, MmStruct, VmArea
from vmlab.kernel.mmap import STACK_GUARD_GAP, VmSysctl, acct_stack_growth
from vmlab.kernel.pgtable import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, pte_index
from vmlab.kernel.rmap import anon_vma_prepare
from vmlab.kernel.uapi import ENOMEM, EPERM, PAGE_MASK, PAGE_SHIFT

SIGSEGV = "SIGSEGV"
SIGBUS = "SIGBUS"
SIGKILL = "SIGKILL"
#: The fault failed for lack of memory after the OOM killer ran (or could not run): the caller decides,
#: as pagefault_out_of_memory() does, whether the task dies (a pending SIGKILL) or retries.
FAULT_OOM = "VM_FAULT_OOM"


@dataclass
class FaultStats:
    """A task's fault counters (task_struct min_flt, maj_flt)."""

    min_flt: int = 0
    maj_flt: int = 0

    def account(self, ret: int) -> None:
        """mm_account_fault(): a completed fault counts once, as major if it did I/O."""
        if ret & VM_FAULT_ERROR:
            return
        if ret & VM_FAULT_MAJOR:
            self.maj_flt += 1
        else:
            self.min_flt += 1


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
        if acct_stack_growth(mm, vma, grow, sysctl):
            return -ENOMEM
        vma.vm_pgoff -= grow
        mm.set_range(vma, address, vma.vm_end)
        mm.vm_stat_account(vma.vm_flags, grow)
    return 0


def access_error(vma: VmArea, write: bool) -> bool:
    """access_error(): a write needs VM_WRITE; any other access needs one of read/write/exec."""
    if write:
        return not vma.vm_flags & VM_WRITE
    return not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC)


def do_user_addr_fault(mm: MmStruct, address: int, write: bool, rlimit_stack: int | None,
                       sysctl: VmSysctl, stats: FaultStats,
                       trace: FaultTrace | None = None, *, user_mode: bool) -> str | None:
    """do_user_addr_fault(): handle a fault at user `address`, taken in user mode (FAULT_FLAG_USER) or
    by the kernel touching user memory; the fatal signal (FAULT_OOM: out of memory), or None."""
    if trace is not None:
        trace.call("do_user_addr_fault", f"{'write' if write else 'read'} at {address:#x}")
        trace.depth += 1
        trace.call("find_vma", "the VMA holding the address")
    vma = mm.find_vma(address)
    if vma is None:
        return SIGSEGV
    if vma.vm_start > address and (
            not vma.vm_flags & VM_GROWSDOWN or expand_downwards(mm, vma, address, rlimit_stack, sysctl)):
        return SIGSEGV
    if access_error(vma, write):
        return SIGSEGV
    assert mm.pt is not None, "the machine gives every mm its page tables"
    ret = handle_mm_fault(VmFault(mm, vma, address & PAGE_MASK, write, mm.pt.mem, trace,
                                  flags=FAULT_FLAG_USER if user_mode else 0))
    if ret & VM_FAULT_SIGBUS:
        return SIGBUS
    if ret & VM_FAULT_SIGSEGV:
        return SIGSEGV
    if ret & VM_FAULT_OOM:
        return FAULT_OOM
    stats.account(ret)
    clock = mm.pt.mem.clock
    clock.advance(clock.costs.minor_fault_ns)  # the fault path's own time (any I/O was charged apart)
    return None


def mmu_permits(mm: MmStruct, address: int, write: bool) -> bool:
    """What the MMU does before any fault: the entry (PTE or 2 MiB PMD) is present and, for a write,
    writable. On success it sets the accessed (and dirty) bit, as the hardware does."""
    pt = mm.pt
    assert pt is not None
    ptes = pt.pte_offset_map(address)
    if ptes is None:  # no PTE table: a 2 MiB leaf, or nothing mapped
        pmd = pt.get_pmd(address)
        if not (pmd & _PAGE_PSE and pmd & _PAGE_PRESENT) or (write and not pmd & _PAGE_RW):
            return False
        want = _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
        if pmd & want != want:
            pt.set_pmd_leaf_bits(address, want)
        return True
    slot = pte_index(address)
    pte = int(ptes[slot])
    if not pte & _PAGE_PRESENT or (write and not pte & _PAGE_RW):
        return False
    want = pte | _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
    if want != pte:
        ptes[slot] = want
    return True


def user_access(mm: MmStruct, address: int, write: bool, rlimit_stack: int | None, sysctl: VmSysctl,
                stats: FaultStats, trace: FaultTrace | None = None, *, user_mode: bool) -> str | None:
    """One load or store at a user address, by the task in user mode or by the kernel on its behalf
    (`user_mode` False: copy_to_user and the like): no fault when the MMU permits it, else the fault
    path. A fault that returns without mapping the page (a handler that found the PTE changed under
    it) restarts the instruction, which faults again."""
    while mm.pt is None or not mmu_permits(mm, address, write):
        sig = do_user_addr_fault(mm, address, write, rlimit_stack, sysctl, stats, trace, user_mode=user_mode)
        if sig is not None:
            return sig
    return None
