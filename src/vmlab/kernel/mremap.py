"""mremap, after mm/mremap.c (6.18): shrink, grow in place, move (MREMAP_MAYMOVE/FIXED/DONTUNMAP).

Reference rules: M7 (pgoff of moved VMAs, merges at the destination, old_len = 0), G8.
"""

from __future__ import annotations

from vmlab.kernel.char_mem import is_dev_zero
from vmlab.kernel.fault import FaultStats
from vmlab.kernel.gup import mm_populate
from vmlab.kernel.memory import move_page_tables
from vmlab.kernel.mm_types import (
    VM_ACCOUNT,
    VM_DONTEXPAND,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_MAYSHARE,
    VM_PFNMAP,
    VM_SHARED,
    MmStruct,
    VmArea,
    unlink_anon_vmas,
)
from vmlab.kernel.mmap import TASK_SIZE, VmSysctl, do_munmap, get_unmapped_area, munmap_range
from vmlab.kernel.uapi import (
    EFAULT,
    EINVAL,
    ENOMEM,
    MAP_FIXED,
    MAP_SHARED,
    MREMAP_DONTUNMAP,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    PAGE_MASK,
    PAGE_SHIFT,
    page_align,
    ul,
)
from vmlab.kernel.util import mm_acct, mm_unacct, security_vm_enough_memory_mm
from vmlab.kernel.vma import VmaMergeState, vma_merge_new_range


def copy_vma(mm: MmStruct, vma: VmArea, addr: int, length: int, pgoff: int) -> VmArea:
    """copy_vma(): the destination VMA of a move, merged with its new neighbours if possible.

    An anonymous VMA that never faulted takes pgoff = addr >> PAGE_SHIFT so that it can merge (R6); one
    with an anon_vma keeps its pgoff and therefore usually does not (R5).
    """
    if vma.is_anonymous() and vma.anon_vma is None:
        pgoff = addr >> PAGE_SHIFT
    vmg = VmaMergeState(addr, addr + length, vma.vm_flags, pgoff, vma.vm_file, vma.anon_vma,
                        copied_from=vma, policy=vma.vm_policy)
    merged = vma_merge_new_range(mm, vmg)
    if merged is not None:
        return merged
    new = vma.copy()
    new.vm_start, new.vm_end, new.vm_pgoff = addr, addr + length, pgoff
    mm.insert(new)
    return new


def vrm_calc_charge(mm: MmStruct, vma: VmArea, new_len: int, delta: int, flags: int,
                    sysctl: VmSysctl) -> int:
    """vrm_calc_charge(): charge a VM_ACCOUNT VMA's growth `delta` (MREMAP_DONTUNMAP: all of new_len);
    the pages charged, or -ENOMEM."""
    if not vma.vm_flags & VM_ACCOUNT:
        return 0
    charged = (new_len if flags & MREMAP_DONTUNMAP else delta) >> PAGE_SHIFT
    if security_vm_enough_memory_mm(mm, charged, sysctl):
        return -ENOMEM
    return charged


def _move_vma(mm: MmStruct, vma: VmArea, old_addr: int, old_len: int, new_addr: int, new_len: int,
              flags: int, sysctl: VmSysctl, delta: int = 0, shrunk: bool = False) -> int:
    """move_vma(): charge, copy the VMA (and its pages) to new_addr, then unmap the source unless
    DONTUNMAP; a moved VM_ACCOUNT source is unmapped without uncharging (unmap_source_vma).

    `delta` is |new_len - old_len| of the call as made. After a shrink (`shrunk`, MREMAP_FIXED with
    new_len < old_len) 6.18 charges that delta again although the shrink's munmap uncharged it; nothing
    ever gives it back (measured: the host's Committed_AS keeps it after the mapping is gone), so the
    model counts it in vm_committed_leak.
    """
    if mm.map_count >= sysctl.max_map_count - 3:
        return -ENOMEM
    charged = vrm_calc_charge(mm, vma, new_len, delta, flags, sysctl)
    if charged < 0:
        return charged
    if shrunk and mm.pt is not None:
        mm.pt.mem.vm_committed_leak += charged
    new_pgoff = vma.vm_pgoff + ((old_addr - vma.vm_start) >> PAGE_SHIFT)
    whole = vma.vm_start == old_addr and vma.vm_end == old_addr + old_len
    vm_flags = vma.vm_flags
    copy_vma(mm, vma, new_addr, new_len, new_pgoff)
    if mm.pt is not None:
        move_page_tables(mm, mm.pt.mem, old_addr, new_addr, min(old_len, new_len) if old_len else 0)
    # total_vm counts both copies for a moment: the unmap of the source must not raise VmPeak.
    hiwater_vm = mm.hiwater_vm
    mm.vm_stat_account(vm_flags, new_len >> PAGE_SHIFT)
    if flags & MREMAP_DONTUNMAP:
        src = mm.vma_lookup(old_addr)
        if src is not None:
            src.vm_flags &= ~VM_LOCKED_MASK  # locked_vm is left alone: nothing is unmapped
            if whole:
                unlink_anon_vmas(src)
                src.anon_vma, src.anon_vma_chain_len = None, 0
        return new_addr
    if old_len:
        accountable_move = bool(vm_flags & VM_ACCOUNT)
        err = munmap_range(mm, old_addr, old_addr + old_len, sysctl, uncharge=not accountable_move)
        if err and accountable_move:
            mm_acct(mm, old_len >> PAGE_SHIFT)  # "OOM: unable to split vma, just get accounts right"
    mm.hiwater_vm = hiwater_vm
    return new_addr


def _set_new_addr(mm: MmStruct, vma: VmArea, addr: int, new_addr: int, new_len: int, flags: int) -> int:
    """vrm_set_new_addr(): where a move goes: MREMAP_FIXED's address, else a fresh search (hint-aware)."""
    pgoff = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
    map_flags = (MAP_FIXED if flags & MREMAP_FIXED else 0) | (MAP_SHARED if vma.vm_flags & VM_MAYSHARE else 0)
    hint = new_addr if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) else 0
    return get_unmapped_area(mm, vma.vm_file, hint, new_len, pgoff, map_flags)


def _vma_expandable(mm: MmStruct, vma: VmArea, delta: int) -> bool:
    """vma_expandable(): [vm_end, vm_end + delta) is free and inside TASK_SIZE."""
    end = vma.vm_end + delta
    return end <= TASK_SIZE and mm.find_vma_intersection(vma.vm_end, end) is None


def _check_prep_vma(vma: VmArea | None, addr: int, old_len: int, new_len: int,
                    implies_new_addr: bool) -> int:
    """check_prep_vma(): the checks that matter when the call maps something new; 0 or -errno."""
    if vma is None:
        return -EFAULT
    if not (implies_new_addr or new_len > old_len):
        return 0
    if not old_len and not vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        return -EINVAL
    if old_len > vma.vm_end - addr:
        return -EFAULT
    if new_len > old_len:
        pgoff = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
        if pgoff + (new_len >> PAGE_SHIFT) >= 1 << 64:
            return -EINVAL
        if vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
            return -EFAULT
    return 0


def _mremap_to(mm: MmStruct, vma: VmArea, addr: int, old_len: int, new_len: int, flags: int,
               new_addr: int, sysctl: VmSysctl) -> int:
    """mremap_to(): move to MREMAP_FIXED's address (unmapping it first) or, with DONTUNMAP, a hint."""
    delta, shrunk = abs(new_len - old_len), new_len < old_len
    if flags & MREMAP_FIXED:
        err = do_munmap(mm, new_addr, new_len, sysctl)
        if err:
            return err
        found = mm.vma_lookup(addr)
        if found is None:
            return -EFAULT
        vma = found
    if new_len < old_len:
        err = do_munmap(mm, addr + new_len, old_len - new_len, sysctl)
        if err:
            return err
        old_len = new_len
        found = mm.vma_lookup(addr)
        assert found is not None
        vma = found
    target = _set_new_addr(mm, vma, addr, new_addr, new_len, flags)
    if target < 0:
        return target
    return _move_vma(mm, vma, addr, old_len, target, new_len, flags, sysctl, delta, shrunk)


def _mremap_at(mm: MmStruct, vma: VmArea, addr: int, old_len: int, new_len: int, flags: int,
               sysctl: VmSysctl) -> int:
    """mremap_at(): same size is a no-op, shrink unmaps the tail, growth is in place or a move."""
    if new_len == old_len:
        return addr
    if new_len < old_len:
        err = do_munmap(mm, addr + new_len, old_len - new_len, sysctl)
        return err if err else addr
    delta = new_len - old_len
    if addr + old_len == vma.vm_end and _vma_expandable(mm, vma, delta):
        charged = vrm_calc_charge(mm, vma, new_len, delta, flags, sysctl)  # expand_vma_in_place()
        if charged < 0:
            return charged
        vmg = VmaMergeState(vma.vm_end, vma.vm_end + delta, vma.vm_flags,
                            vma.vm_pgoff + vma.pages, vma.vm_file, vma.anon_vma, middle=vma,
                            policy=vma.vm_policy)
        if vma_merge_new_range(mm, vmg) is None:
            mm_unacct(mm, charged)
            return -ENOMEM
        mm.vm_stat_account(vma.vm_flags, delta >> PAGE_SHIFT)
        return addr
    if not flags & MREMAP_MAYMOVE:
        return -ENOMEM
    target = _set_new_addr(mm, vma, addr, 0, new_len, flags)
    if target < 0:
        return target
    return _move_vma(mm, vma, addr, old_len, target, new_len, flags, sysctl, delta)


def _remap_move(mm: MmStruct, start: int, length: int, new_addr: int, flags: int, sysctl: VmSysctl) -> int:
    """remap_move() (6.17+): MREMAP_FIXED with old_len == new_len moves every VMA of the range, keeping
    the gaps between them; no gap is allowed at the start. The address of the first move, or -errno.

    A VMA whose file places its own mappings (a private /dev/zero one: get_unmapped_area_zero) moves
    only alone (vma_multi_allowed): -EFAULT when the range holds more than it. The kernel also refuses
    userfaultfd-armed VMAs, which the model does not have (ext4 files were measured to move like
    anonymous memory: thp_get_unmapped_area is known good).
    """
    end = start + length
    res, target, last_end, seen = -EFAULT, new_addr, 0, False
    for vm_start, vm_end in [(v.vm_start, v.vm_end) for v in mm.vmas_in(start, end)]:
        addr = max(vm_start, start)
        vma = mm.vma_lookup(addr)
        if vma is None:
            return -EFAULT
        size = min(end, vm_end) - addr
        if not seen and start < vm_start:
            return -EFAULT
        offset = vm_start - last_end if seen else 0
        last_end = vm_end
        if vma.vm_file is not None and is_dev_zero(vma.vm_file.inode) and (seen or vm_end < end):
            return -EFAULT  # not vma_multi_allowed()
        err = _check_prep_vma(vma, addr, size, size, True)
        moved = err or _mremap_to(mm, vma, addr, size, size, flags, target + offset, sysctl)
        if moved < 0:
            return moved
        if not seen:
            res = moved
        seen, target = True, moved + size
    return res


def do_mremap(mm: MmStruct, addr: int, old_len: int, new_len: int, flags: int, new_addr: int,
              sysctl: VmSysctl, stats: FaultStats | None = None) -> int:
    """do_mremap(): the new address, or -errno. A locked VMA that grew has its new part faulted in
    (populate_expand), those faults counted in `stats`."""
    vma = mm.vma_lookup(addr) if not addr & ~PAGE_MASK else None
    locked = vma is not None and bool(vma.vm_flags & VM_LOCKED)
    result = _do_mremap(mm, addr, old_len, new_len, flags, new_addr, sysctl)
    old_len, new_len = page_align(old_len), page_align(new_len)
    if locked and result >= 0 and new_len > old_len:
        mm_populate(mm, result + old_len, result + new_len, True, stats or FaultStats())
    return result


def _do_mremap(mm: MmStruct, addr: int, old_len: int, new_len: int, flags: int, new_addr: int,
               sysctl: VmSysctl) -> int:
    """The checks and the resize or move of do_mremap()."""
    old_len, new_len = ul(page_align(old_len)), ul(page_align(new_len))
    if flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP):
        return -EINVAL
    if addr & ~PAGE_MASK or not new_len or new_len > TASK_SIZE:  # check_mremap_params: "silly"
        return -EINVAL
    implies_new_addr = bool(flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))
    if implies_new_addr:
        if new_len > TASK_SIZE or new_addr > TASK_SIZE - new_len:
            return -EINVAL
        if new_addr & ~PAGE_MASK or not flags & MREMAP_MAYMOVE:
            return -EINVAL
        if flags & MREMAP_DONTUNMAP and old_len != new_len:
            return -EINVAL
        if addr + old_len > new_addr and new_addr + new_len > addr:
            return -EINVAL
        if mm.map_count + 2 >= sysctl.max_map_count - 3:
            return -ENOMEM
    if flags & MREMAP_FIXED and old_len == new_len:
        return _remap_move(mm, addr, old_len, new_addr, flags, sysctl)
    vma = mm.vma_lookup(addr)
    err = _check_prep_vma(vma, addr, old_len, new_len, implies_new_addr)
    if err:
        return err
    assert vma is not None
    if implies_new_addr:
        return _mremap_to(mm, vma, addr, old_len, new_len, flags, new_addr, sysctl)
    return _mremap_at(mm, vma, addr, old_len, new_len, flags, sysctl)
