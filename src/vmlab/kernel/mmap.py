"""mmap, munmap and brk, after mm/mmap.c, mm/vma.c and arch/x86/kernel/sys_x86_64.c (6.18).

Reference rules: kernel-6.18-x86_64.md §1 (L1, L5, L7), §2 (G1–G8), §3 (M4, M6, M8, M10–M12).
Every function returns the kernel's value: an address or 0 on success, -errno on failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vmlab.kernel.char_mem import can_mmap, is_dev_zero
from vmlab.kernel.memory import unmap_region
from vmlab.kernel.mm_types import (
    VM_ACCOUNT,
    VM_DATA_DEFAULT_FLAGS,
    VM_DONTDUMP,
    VM_DROPPABLE,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_LOCKED,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_NOHUGEPAGE,
    VM_NORESERVE,
    VM_READ,
    VM_SHARED,
    VM_SYNC,
    VM_WIPEONFORK,
    VM_WRITE,
    File,
    MmStruct,
    VmArea,
)
from vmlab.kernel.shmem import shmem_acct_size
from vmlab.kernel.uapi import (
    EACCES,
    EEXIST,
    EINVAL,
    ENODEV,
    ENOMEM,
    EOPNOTSUPP,
    EOVERFLOW,
    HUGETLB_FLAG_ENCODE_MASK,
    HUGETLB_FLAG_ENCODE_SHIFT,
    LEGACY_MAP_MASK,
    MAP_32BIT,
    MAP_DROPPABLE,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_GROWSDOWN,
    MAP_HUGETLB,
    MAP_LOCKED,
    MAP_NORESERVE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MAP_STACK,
    MAP_SYNC,
    MAP_TYPE,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    PMD_SIZE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    page_align,
)
from vmlab.kernel.util import accounted_pages, mm_unacct, security_vm_enough_memory_mm
from vmlab.kernel.vma import VmaMergeState, gather_munmap_vmas, vma_merge_new_range

#: The largest file offset + 1 a regular file may have (file_mmap_size_max(): MAX_LFS_FILESIZE).
MAX_LFS_FILESIZE = (1 << 63) - 1
TASK_SIZE = 0x7FFFFFFFF000  # 47-bit user space, 4-level paging (§0.1)
DEFAULT_MAP_WINDOW = TASK_SIZE
STACK_GUARD_GAP = 256 << PAGE_SHIFT  # stack_guard_gap, 1 MiB
SIZE_128M = 128 << 20
RLIM_INFINITY = (1 << 64) - 1
TASK_UNMAPPED_BASE = page_align(TASK_SIZE // 3)


@dataclass(frozen=True)
class VmSysctl:
    """The vm.* sysctls that change address-space behaviour (overcommit: see util.py)."""

    max_map_count: int = 65530
    mmap_min_addr: int = 4096
    overcommit_memory: int = 0
    overcommit_ratio: int = 50
    overcommit_kbytes: int = 0
    #: None: the boot default computed from the machine's free memory (init_*_reserve).
    admin_reserve_kbytes: int | None = None
    user_reserve_kbytes: int | None = None


#: Makes the shmem file behind a MAP_SHARED|MAP_ANONYMOUS mapping of a given length (shmem_zero_setup()).
ShmemFactory = Callable[[int], File]


# --- layout ------------------------------------------------------------------------------------------

def mmap_base(rlimit_stack: int | None) -> int:
    """arch/x86/mm/mmap.c:mmap_base() with no randomisation: TASK_SIZE less the stack gap (L5)."""
    gap = RLIM_INFINITY if rlimit_stack is None else rlimit_stack
    pad = STACK_GUARD_GAP  # stack_maxrandom_size() is 0 without PF_RANDOMIZE
    if gap + pad < (1 << 64):
        gap += pad
    gap = min(max(gap, SIZE_128M), TASK_SIZE // 6 * 5)
    return page_align(TASK_SIZE - gap)


def arch_pick_mmap_layout(mm: MmStruct, rlimit_stack: int | None, legacy: bool) -> None:
    """arch_pick_mmap_layout(): top-down below the stack gap, or bottom-up from TASK_UNMAPPED_BASE."""
    mm.task_size = TASK_SIZE
    mm.mmap_legacy_base = TASK_UNMAPPED_BASE
    mm.topdown = not legacy
    mm.mmap_base = TASK_UNMAPPED_BASE if legacy else mmap_base(rlimit_stack)


# --- get_unmapped_area ----------------------------------------------------------------------------------

def vm_start_gap(vma: VmArea) -> int:
    """vm_start_gap(): a VM_GROWSDOWN VMA claims stack_guard_gap below its start."""
    if vma.vm_flags & VM_GROWSDOWN:
        return max(vma.vm_start - STACK_GUARD_GAP, 0)
    return vma.vm_start


def unmapped_area_topdown(mm: MmStruct, length: int, low: int, high: int) -> int:
    """unmapped_area_topdown(): the top of the highest gap in [low, high) that holds `length` bytes."""
    vmas = mm._vmas
    i = mm._index_after(high - 1) if high > 0 else 0
    # Gaps are (end of VMA i-1, start gap of VMA i), walking i downward from the first VMA at/above high.
    while True:
        upper = vm_start_gap(vmas[i]) if i < len(vmas) else high
        lower = vmas[i - 1].vm_end if i > 0 else 0
        top = min(upper, high)
        if top - max(lower, low) >= length and top >= length:
            return top - length
        if lower <= low or i == 0:
            return -ENOMEM
        i -= 1


def unmapped_area(mm: MmStruct, length: int, low: int, high: int) -> int:
    """unmapped_area(): the bottom of the lowest gap in [low, high) that holds `length` bytes."""
    vmas = mm._vmas
    i = mm._index_after(low)
    while True:
        lower = max(vmas[i - 1].vm_end if i > 0 else 0, low)
        upper = min(vm_start_gap(vmas[i]) if i < len(vmas) else high, high)
        if upper - lower >= length:
            return lower
        if i >= len(vmas) or vmas[i].vm_start >= high:
            return -ENOMEM
        i += 1


def _mmap_address_hint_valid(addr: int, length: int) -> bool:
    """mmap_address_hint_valid(): inside TASK_SIZE and on one side of DEFAULT_MAP_WINDOW."""
    if TASK_SIZE - length < addr:
        return False
    return (addr > DEFAULT_MAP_WINDOW) == (addr + length > DEFAULT_MAP_WINDOW)


def arch_get_unmapped_area(mm: MmStruct, addr: int, length: int, flags: int) -> int:
    """arch_get_unmapped_area(): the legacy bottom-up search (also MAP_32BIT, and top-down's fallback)."""
    if flags & MAP_FIXED:
        return addr
    if flags & MAP_32BIT:
        begin, end = 0x40000000, 0x80000000
    else:
        begin, end = mm.mmap_legacy_base, TASK_SIZE
    if length > end:
        return -ENOMEM
    if addr:
        addr = page_align(addr)
        vma = mm.find_vma(addr)
        if end - length >= addr and (vma is None or addr + length <= vm_start_gap(vma)):
            return addr
    return unmapped_area(mm, length, begin, end)


def arch_get_unmapped_area_topdown(mm: MmStruct, addr: int, length: int, flags: int) -> int:
    """arch_get_unmapped_area_topdown(): an exact hint if free, else the highest fitting gap (G2, G3)."""
    if length > TASK_SIZE:
        return -ENOMEM
    if flags & MAP_FIXED:
        return addr
    if not flags & MAP_32BIT:
        if addr:
            addr &= PAGE_MASK
            if _mmap_address_hint_valid(addr, length):
                vma = mm.find_vma(addr)
                if vma is None or addr + length <= vm_start_gap(vma):
                    return addr
        found = unmapped_area_topdown(mm, length, PAGE_SIZE, mm.mmap_base)
        if found >= 0:
            return found
    return arch_get_unmapped_area(mm, 0, length, flags)


def mm_get_unmapped_area(mm: MmStruct, addr: int, length: int, flags: int) -> int:
    """mm_get_unmapped_area(): the search the mm's layout selected."""
    if mm.topdown:
        return arch_get_unmapped_area_topdown(mm, addr, length, flags)
    return arch_get_unmapped_area(mm, addr, length, flags)


def _thp_get_unmapped_area(mm: MmStruct, addr: int, length: int, off: int, flags: int) -> int:
    """__thp_get_unmapped_area(): search len + 2M and align so that addr ≡ off mod 2M (G6, G7); 0 = no."""
    off_end = off + length
    off_align = (off + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
    if off_end <= off_align or off_end - off_align < PMD_SIZE:
        return 0
    ret = mm_get_unmapped_area(mm, addr, length + PMD_SIZE, flags)
    if ret < 0:
        return 0
    if ret == addr:
        return addr
    off_sub = (off - ret) & (PMD_SIZE - 1)
    if mm.topdown and not off_sub:
        return ret + PMD_SIZE
    return ret + off_sub


def get_unmapped_area(mm: MmStruct, file: File | None, addr: int, length: int, pgoff: int,
                      flags: int) -> int:
    """__get_unmapped_area(): choose the filesystem's, THP-aligned or plain search; check the result."""
    if length > TASK_SIZE:
        return -ENOMEM
    thp = False
    if file is not None and is_dev_zero(file.inode) and flags & MAP_SHARED:
        file = None  # get_unmapped_area_zero(): a shared one is placed as shmem's, a private one THP-aligned
    if file is not None:
        thp = file.inode.thp_aligned or is_dev_zero(file.inode)
    elif not flags & MAP_SHARED and not addr and length % PMD_SIZE == 0:
        thp, pgoff = True, 0  # anonymous private: THP-align PMD-multiple lengths without a hint
    if file is None:
        pgoff = 0
    result = 0
    if thp:
        result = _thp_get_unmapped_area(mm, addr, length, pgoff << PAGE_SHIFT, flags)
    if not result:
        result = mm_get_unmapped_area(mm, addr, length, flags)
    if result < 0:
        return result
    if result > TASK_SIZE - length:
        return -ENOMEM
    if result & ~PAGE_MASK:
        return -EINVAL
    return result


# --- mmap ------------------------------------------------------------------------------------------------

def calc_vm_prot_bits(prot: int) -> int:
    """calc_vm_prot_bits(): PROT_* to VM_READ/WRITE/EXEC."""
    return ((VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0)
            | (VM_EXEC if prot & PROT_EXEC else 0))


def calc_vm_flag_bits(flags: int) -> int:
    """calc_vm_flag_bits(): MAP_GROWSDOWN/LOCKED/SYNC/STACK to vm_flags (MAP_STACK sets VM_NOHUGEPAGE)."""
    return ((VM_GROWSDOWN if flags & MAP_GROWSDOWN else 0) | (VM_LOCKED if flags & MAP_LOCKED else 0)
            | (VM_SYNC if flags & MAP_SYNC else 0) | (VM_NOHUGEPAGE if flags & MAP_STACK else 0))


def accountable_mapping(file: File | None, vm_flags: int) -> bool:
    """accountable_mapping(): private writable mappings are charged to the commit (VM_ACCOUNT, M6)."""
    return (vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE


def do_mmap(mm: MmStruct, file: File | None, addr: int, length: int, prot: int, flags: int, pgoff: int,
            sysctl: VmSysctl, make_shmem: ShmemFactory | None = None) -> int:
    """do_mmap(): validate, find an address, compute vm_flags and map (G1, G4, G5, M11, M12)."""
    if not length:
        return -EINVAL
    if not flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        addr &= PAGE_MASK
        if addr and addr < sysctl.mmap_min_addr:
            addr = page_align(sysctl.mmap_min_addr)
    length = page_align(length)
    if not length or length > 1 << 64:
        return -ENOMEM
    if pgoff + (length >> PAGE_SHIFT) >= 1 << 64:
        return -EOVERFLOW
    if mm.map_count > sysctl.max_map_count:
        return -ENOMEM
    if flags & MAP_FIXED_NOREPLACE:
        flags |= MAP_FIXED
    mtype = flags & MAP_TYPE
    if mtype not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, MAP_DROPPABLE):
        return -EINVAL
    if file is None and mtype == MAP_SHARED_VALIDATE:
        return -EINVAL
    addr = get_unmapped_area(mm, file, addr, length, pgoff, flags)
    if addr < 0:
        return addr
    if flags & MAP_FIXED_NOREPLACE and mm.find_vma_intersection(addr, addr + length):
        return -EEXIST
    vm_flags = (calc_vm_prot_bits(prot) | calc_vm_flag_bits(flags) | mm.def_flags
                | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC)
    if file is not None and pgoff > (MAX_LFS_FILESIZE - length) >> PAGE_SHIFT:
        return -EOVERFLOW  # !file_mmap_ok(): the mapping would reach past the largest file offset
    if file is not None:
        if mtype == MAP_DROPPABLE:
            return -EINVAL  # the file branch's MAP_TYPE switch has no MAP_DROPPABLE case
        if mtype == MAP_SHARED:
            flags &= LEGACY_MAP_MASK  # unknown flags are ignored, for old programs
        if mtype in (MAP_SHARED, MAP_SHARED_VALIDATE) and flags & ~(
                LEGACY_MAP_MASK | (MAP_SYNC if file.inode.fop_mmap_sync else 0)):
            return -EOPNOTSUPP
        if mtype in (MAP_SHARED, MAP_SHARED_VALIDATE):
            if prot & PROT_WRITE and not file.writable:
                return -EACCES
            vm_flags |= VM_SHARED | VM_MAYSHARE
            if not file.writable:
                vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
        if not file.readable:
            return -EACCES
        if not can_mmap(file.inode):
            return -ENODEV  # no f_op->mmap: a directory or a character device other than /dev/zero
        if vm_flags & VM_GROWSDOWN:
            return -EINVAL
    elif mtype == MAP_SHARED:
        if vm_flags & VM_GROWSDOWN:
            return -EINVAL
        pgoff = 0
        vm_flags |= VM_SHARED | VM_MAYSHARE
    else:
        if mtype == MAP_DROPPABLE:
            # Neither locked nor a stack; not reserved, and wiped at fork and left out of core dumps,
            # since its pages may go at any time.
            if flags & (MAP_LOCKED | MAP_HUGETLB) or vm_flags & VM_GROWSDOWN:
                return -EINVAL
            vm_flags |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP
        pgoff = addr >> PAGE_SHIFT
    if flags & MAP_NORESERVE and sysctl.overcommit_memory != 2:
        vm_flags |= VM_NORESERVE
    return mmap_region(mm, file, addr, length, vm_flags, pgoff, sysctl, make_shmem)


def hugetlb_anon_mmap_error(flags: int, length: int) -> int:
    """ksys_mmap_pgoff() of MAP_ANONYMOUS|MAP_HUGETLB on a machine with no huge pages reserved
    (nr_hugepages 0, as this host): a page size with no hstate (only 2 MiB, the default, and 1 GiB
    exist on x86-64) is -EINVAL; then do_mmap's checks of the hugetlbfs file it sets up (an empty
    length, an invalid mapping type, flags MAP_SHARED_VALIDATE does not take), and otherwise
    hugetlb_reserve_pages() fails: -ENOMEM."""
    if (flags >> HUGETLB_FLAG_ENCODE_SHIFT) & HUGETLB_FLAG_ENCODE_MASK not in (0, 21, 30):
        return -EINVAL
    mtype = flags & MAP_TYPE
    if not length or mtype not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
        return -EINVAL
    if mtype == MAP_SHARED_VALIDATE and flags & ~LEGACY_MAP_MASK:
        return -EOPNOTSUPP
    return -ENOMEM


def mmap_region(mm: MmStruct, file: File | None, addr: int, length: int, vm_flags: int, pgoff: int,
                sysctl: VmSysctl, make_shmem: ShmemFactory | None = None) -> int:
    """__mmap_region(): charge, unmap what is there, then merge with a neighbour or insert a new VMA.

    An accountable mapping is charged its pages less the VM_ACCOUNT pages it replaces (those are then
    unmapped without uncharging); a refused charge leaves the old mappings alone (the kernel leaves
    them split at the edges of the range: not modelled). A shared anonymous mapping's shmem object (also
    a shared mapping of /dev/zero's, which keeps its offset) is charged by shmem_acct_size before it is
    made. A file whose filesystem takes MAP_SYNC refuses VM_SYNC once charged (its mmap hook: no DAX).
    """
    end = addr + length
    charged = 0
    if accountable_mapping(file, vm_flags):
        charged = (length >> PAGE_SHIFT) - accounted_pages(_clipped(mm, addr, end))
        if security_vm_enough_memory_mm(mm, charged, sysctl):
            return -ENOMEM
        vm_flags |= VM_ACCOUNT
    if file is not None and vm_flags & VM_SYNC and file.inode.fop_mmap_sync:
        mm_unacct(mm, charged)
        return -EOPNOTSUPP
    zero_shared = vm_flags & VM_SHARED and (file is None or is_dev_zero(file.inode))
    shmem_pages = 0
    if zero_shared:
        shmem_pages = shmem_acct_size(mm, length, vm_flags, sysctl)
        if shmem_pages < 0:
            mm_unacct(mm, charged)
            return shmem_pages
    err = munmap_range(mm, addr, end, sysctl, uncharge=not vm_flags & VM_ACCOUNT)
    if err:
        mm_unacct(mm, charged + shmem_pages)
        return err
    if zero_shared:
        assert make_shmem is not None, "MAP_SHARED|MAP_ANONYMOUS needs a shmem factory"
        vma = VmArea(addr, end, vm_flags, pgoff)
        mm.vm_area_alloc(vma)  # __mmap_new_vma(): the VMA, then shmem_zero_setup()'s file
        vma.vm_file = make_shmem(length)
        vma.vm_file.inode.acct_pages = shmem_pages
    else:
        merged = vma_merge_new_range(mm, VmaMergeState(addr, end, vm_flags, pgoff, file))
        if merged is not None:
            mm.vm_stat_account(vm_flags, length >> PAGE_SHIFT)
            return addr
        vma = VmArea(addr, end, vm_flags, pgoff, file)
    mm.insert(vma)
    mm.vm_stat_account(vm_flags, length >> PAGE_SHIFT)
    return addr


def _clipped(mm: MmStruct, start: int, end: int) -> list[VmArea]:
    """The parts of the VMAs overlapping [start, end) that lie inside it (what a munmap would gather),
    as detached copies."""
    parts = []
    for vma in mm.vmas_in(start, end):
        part = vma.copy()
        part.vm_start, part.vm_end = max(vma.vm_start, start), min(vma.vm_end, end)
        parts.append(part)
    return parts


def remove_vma(mm: MmStruct, vma: VmArea) -> None:
    """Unlink a VMA and drop its size from the mm's counters (the caller zaps its pages)."""
    mm.hiwater_vm = max(mm.hiwater_vm, mm.total_vm)  # update_hiwater_vm()
    mm.remove(vma)
    mm.vm_stat_account(vma.vm_flags, -vma.pages)


def do_munmap(mm: MmStruct, start: int, length: int, sysctl: VmSysctl) -> int:
    """do_vmi_munmap(): unmap [start, start+len); holes are fine, only splits can fail (M8, M11)."""
    if start & ~PAGE_MASK or start > TASK_SIZE or length > TASK_SIZE - start:
        return -EINVAL
    end = start + page_align(length)
    if end == start:
        return -EINVAL
    return munmap_range(mm, start, end, sysctl)


def munmap_range(mm: MmStruct, start: int, end: int, sysctl: VmSysctl, uncharge: bool = True) -> int:
    """do_vmi_align_munmap(): split at the edges, unlink the VMAs of [start, end), zap their pages and
    free their page tables, and uncharge the VM_ACCOUNT ones (vms_complete_munmap_vmas; not when
    `uncharge` is off: the caller keeps their charge); 0, or -ENOMEM when a split is refused (then
    nothing changed)."""
    vmas = gather_munmap_vmas(mm, start, end, sysctl.max_map_count)
    if isinstance(vmas, int):
        return vmas
    for vma in vmas:
        remove_vma(mm, vma)
    if uncharge:
        mm_unacct(mm, accounted_pages(vmas))
    if vmas and mm.pt is not None:
        unmap_region(mm, mm.pt.mem, start, end, vmas)
    return 0


# --- stack growth ----------------------------------------------------------------------------------------

def acct_stack_growth(mm: MmStruct, vma: VmArea, grow: int, sysctl: VmSysctl) -> int:
    """acct_stack_growth()'s final test: charge `grow` pages of stack growth; 0 or -ENOMEM.

    The kernel charges every growth, VM_ACCOUNT or not; the growth of a VMA without VM_ACCOUNT (a
    read-only MAP_GROWSDOWN mapping) is never uncharged, which the model counts in vm_committed_leak.
    """
    if security_vm_enough_memory_mm(mm, grow, sysctl):
        return -ENOMEM
    if not vma.vm_flags & VM_ACCOUNT and mm.pt is not None:
        mm.pt.mem.vm_committed_leak += grow
    return 0


# --- brk -------------------------------------------------------------------------------------------------

def do_brk_flags(mm: MmStruct, prev: VmArea | None, addr: int, length: int, flags: int,
                 sysctl: VmSysctl) -> int:
    """do_brk_flags(): extend `prev` if it ends at addr and can merge, else insert a new anon VMA."""
    if flags & ~VM_EXEC:
        return -EINVAL
    flags |= VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT | mm.def_flags
    if mm.map_count > sysctl.max_map_count:
        return -ENOMEM
    if security_vm_enough_memory_mm(mm, length >> PAGE_SHIFT, sysctl):
        return -ENOMEM
    if prev is not None and prev.vm_end == addr:
        state = VmaMergeState(addr, addr + length, flags, addr >> PAGE_SHIFT, None)
        if vma_merge_new_range(mm, state, just_expand=True) is not None:
            mm.vm_stat_account(flags, length >> PAGE_SHIFT)
            return 0
    mm.insert(VmArea(addr, addr + length, flags, addr >> PAGE_SHIFT))
    mm.vm_stat_account(flags, length >> PAGE_SHIFT)
    return 0


def vm_brk_flags(mm: MmStruct, addr: int, request: int, flags: int, sysctl: VmSysctl) -> int:
    """vm_brk_flags(): map anonymous memory at a fixed address (the ELF loader's bss)."""
    length = page_align(request)
    if not length:
        return 0
    err = do_munmap(mm, addr, length, sysctl)
    if err:
        return err
    return do_brk_flags(mm, mm.vma_below(addr), addr, length, flags, sysctl)


def sys_brk(mm: MmStruct, brk: int, sysctl: VmSysctl) -> int:
    """SYSCALL_DEFINE1(brk): move the program break; the new brk, or the old one on failure (M10)."""
    origbrk = mm.brk
    if brk < mm.start_brk:
        return origbrk
    newbrk, oldbrk = page_align(brk), page_align(mm.brk)
    if oldbrk == newbrk:
        mm.brk = brk
        return brk
    if brk <= mm.brk:
        vma = mm.find_vma_intersection(newbrk, oldbrk)
        if vma is None or vma.vm_start >= oldbrk:
            return origbrk
        mm.brk = brk
        if do_munmap(mm, newbrk, oldbrk - newbrk, sysctl):
            mm.brk = origbrk
            return origbrk
        return brk
    nxt = mm.find_vma_intersection(oldbrk, newbrk + PAGE_SIZE + STACK_GUARD_GAP)
    if nxt is not None and newbrk + PAGE_SIZE > vm_start_gap(nxt):
        return origbrk
    prev = mm.vma_below(oldbrk)
    if prev is not None and prev.vm_start < mm.start_brk:
        prev = None  # vma_prev_limit(): only a VMA at or above start_brk is the heap
    if do_brk_flags(mm, prev, oldbrk, newbrk - oldbrk, 0, sysctl) < 0:
        return origbrk
    mm.brk = brk
    return brk
