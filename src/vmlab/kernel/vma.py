"""VMA merging and splitting, after mm/vma.c (6.18): vma_merge_new_range, vma_merge_existing_range,
split_vma, vma_modify and the munmap gather.

Reference rules: kernel-6.18-x86_64.md §3 (M1–M13).
"""

from __future__ import annotations

from dataclasses import dataclass

from vmlab.kernel.memory import split_huge_pmds_at
from vmlab.kernel.mm_types import (
    VM_IGNORE_MERGE,
    VM_SPECIAL,
    VM_STICKY,
    AnonVma,
    File,
    Mempolicy,
    MmStruct,
    VmArea,
    link_anon_vmas,
)
from vmlab.kernel.uapi import EINVAL, ENOMEM, PAGE_SHIFT


@dataclass
class VmaMergeState:
    """`struct vma_merge_struct`: a proposed range [start, end) with the attributes it would have.

    `middle` is the existing VMA being modified (attribute changes), or None for a new range;
    `copied_from` is the source VMA of an mremap move (copy_vma()).
    """

    start: int
    end: int
    vm_flags: int
    pgoff: int
    file: File | None
    anon_vma: AnonVma | None = None
    middle: VmArea | None = None
    copied_from: VmArea | None = None
    #: The range's memory policy: a new mapping's is the default (None).
    policy: Mempolicy | None = None

    @property
    def pages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT


def _is_mergeable_vma(vmg: VmaMergeState, tgt: VmArea) -> bool:
    """is_mergeable_vma(): same flags (but the ignored/sticky ones), same struct file, not special, and
    an equal memory policy (mpol_equal)."""
    if (tgt.vm_flags ^ vmg.vm_flags) & ~VM_IGNORE_MERGE:
        return False
    return tgt.vm_file is vmg.file and tgt.special_name is None and tgt.vm_policy == vmg.policy


def _is_mergeable_anon_vma(vmg: VmaMergeState, tgt: VmArea) -> bool:
    """is_mergeable_anon_vma() (6.16+): anon_vmas agree, and no side is a fork child with none to share."""
    src = vmg.middle
    if tgt.anon_vma is None and vmg.anon_vma is not None:
        # tgt will take src's anon_vma (dup_anon_vma): src must not be a fork child's.
        return not ((src is not None and src.had_uncowed_parents())
                    or (vmg.copied_from is not None and vmg.copied_from.had_uncowed_parents()))
    if tgt.anon_vma is not None and vmg.anon_vma is None:
        return not tgt.had_uncowed_parents()
    return tgt.anon_vma is vmg.anon_vma


def _anon_vmas_compatible(a: VmArea, b: VmArea) -> bool:
    """are_anon_vmas_compatible(): for a 3-way merge prev and next must agree with each other too."""
    return a.anon_vma is None or b.anon_vma is None or a.anon_vma is b.anon_vma


def can_vma_merge_after(vmg: VmaMergeState, prev: VmArea) -> bool:
    """can_vma_merge_after(): `prev` can be extended upward over the proposed range."""
    return (prev.vm_end == vmg.start and _is_mergeable_vma(vmg, prev)
            and _is_mergeable_anon_vma(vmg, prev) and prev.vm_pgoff + prev.pages == vmg.pgoff)


def can_vma_merge_before(vmg: VmaMergeState, nxt: VmArea) -> bool:
    """can_vma_merge_before(): `nxt` can be extended downward over the proposed range."""
    return (vmg.end == nxt.vm_start and _is_mergeable_vma(vmg, nxt)
            and _is_mergeable_anon_vma(vmg, nxt) and nxt.vm_pgoff == vmg.pgoff + vmg.pages)


def dup_anon_vma(mm: MmStruct, dst: VmArea, src: VmArea | None) -> None:
    """dup_anon_vma(): a VMA of `mm` that absorbs another takes its anon_vma if it has none (and a
    clone of its chain: anon_vma_clone)."""
    if src is not None and src.anon_vma is not None and dst.anon_vma is None:
        dst.anon_vma = src.anon_vma
        dst.anon_vma_chain_len = src.anon_vma_chain_len
        link_anon_vmas(mm, dst)


def _keep_sticky(target: VmArea, *others: VmArea | VmaMergeState | None) -> None:
    for o in others:
        if o is not None:
            target.vm_flags |= o.vm_flags & VM_STICKY


def vma_merge_new_range(mm: MmStruct, vmg: VmaMergeState, just_expand: bool = False) -> VmArea | None:
    """vma_merge_new_range(): merge a not-yet-mapped range with its neighbours; the merged VMA or None.

    The left merge is decided first; a 3-way merge also needs prev and next compatible (M2, M4).
    With `just_expand` (brk), only the VMA below may grow.
    """
    if vmg.vm_flags & VM_SPECIAL:
        return None
    prev = mm.vma_below(vmg.start)
    if prev is not None and prev.vm_end != vmg.start:
        prev = None
    nxt = mm.find_vma(vmg.start)
    if nxt is not None and nxt.vm_start != vmg.end:
        nxt = None
    left = prev is not None and can_vma_merge_after(vmg, prev)
    right = (not just_expand and nxt is not None and can_vma_merge_before(vmg, nxt)
             and (not left or _anon_vmas_compatible(prev, nxt)))  # type: ignore[arg-type]
    if left and right:
        assert prev is not None and nxt is not None
        end = nxt.vm_end
        dup_anon_vma(mm, prev, nxt)
        mm.remove(nxt)
        mm.set_range(prev, prev.vm_start, end)
        target = prev
        _keep_sticky(prev, nxt, vmg)
    elif left:
        assert prev is not None
        mm.set_range(prev, prev.vm_start, vmg.end)
        target = prev
    elif right:
        assert nxt is not None
        mm.set_range(nxt, vmg.start, nxt.vm_end)
        nxt.vm_pgoff = vmg.pgoff
        target = nxt
    else:
        return None
    if target.anon_vma is None and vmg.anon_vma is not None:
        target.anon_vma = vmg.anon_vma
        target.anon_vma_chain_len = vmg.copied_from.anon_vma_chain_len if vmg.copied_from else 1
        link_anon_vmas(mm, target)
    _keep_sticky(target, vmg)
    return target


def vma_merge_existing_range(mm: MmStruct, middle: VmArea, start: int, end: int, new_flags: int,
                             policy: Mempolicy | None) -> VmArea | None:
    """vma_merge_existing_range(): give [start, end) of `middle` new flags and memory policy by merging
    into a neighbour.

    Only possible when the range touches middle's start (merge left) and/or end (merge right).
    Returns the VMA now covering [start, end), or None if no merge happened.
    """
    left_side = start == middle.vm_start
    right_side = end == middle.vm_end
    if new_flags & VM_SPECIAL or middle.special_name or not (left_side or right_side):
        return None
    vmg = VmaMergeState(start, end, new_flags,
                        middle.vm_pgoff + ((start - middle.vm_start) >> PAGE_SHIFT),
                        middle.vm_file, middle.anon_vma, middle=middle, policy=policy)
    prev = mm.prev_vma(middle) if left_side else None
    nxt = mm.next_vma(middle) if right_side else None
    merge_left = prev is not None and can_vma_merge_after(vmg, prev)
    merge_right = (nxt is not None and can_vma_merge_before(vmg, nxt)
                   and (not merge_left or _anon_vmas_compatible(prev, nxt)))  # type: ignore[arg-type]
    if not (merge_left or merge_right):
        return None
    delete_middle = left_side and right_side
    if merge_left and merge_right:
        assert prev is not None and nxt is not None
        dup_anon_vma(mm, prev, nxt if nxt.anon_vma is not None else middle)
        _keep_sticky(prev, middle, nxt)
        new_end = nxt.vm_end
        mm.remove(middle)
        mm.remove(nxt)
        mm.set_range(prev, prev.vm_start, new_end)
        return prev
    if merge_left:
        assert prev is not None
        dup_anon_vma(mm, prev, middle)
        _keep_sticky(prev, middle)
        if delete_middle:
            mm.remove(middle)
        else:
            middle.vm_pgoff += (end - middle.vm_start) >> PAGE_SHIFT
            mm.set_range(middle, end, middle.vm_end)
        mm.set_range(prev, prev.vm_start, end)
        return prev
    assert nxt is not None
    dup_anon_vma(mm, nxt, middle)
    _keep_sticky(nxt, middle)
    if delete_middle:
        mm.remove(middle)
    else:
        mm.set_range(middle, middle.vm_start, start)
    nxt.vm_pgoff -= (nxt.vm_start - start) >> PAGE_SHIFT
    mm.set_range(nxt, start, nxt.vm_end)
    return nxt


def split_vma(mm: MmStruct, vma: VmArea, addr: int, new_below: bool, max_map_count: int,
              check_count: bool = True) -> VmArea | int:
    """__split_vma()/split_vma(): cut `vma` at addr; return the new piece, or -ENOMEM at max_map_count,
    or -EINVAL for a special mapping ([vvar], [vdso]: vm_ops->may_split is special_mapping_split).

    With `new_below` the new piece is [vm_start, addr) and `vma` keeps the upper part, else the new
    piece is [addr, vm_end). The upper part's pgoff advances by the pages cut off (M5).
    """
    if check_count and mm.map_count >= max_map_count:
        return -ENOMEM
    if vma.special_name is not None:
        return -EINVAL
    if mm.pt is not None:
        split_huge_pmds_at(mm, mm.pt.mem, addr)  # vma_adjust_trans_huge()
    new = vma.copy()
    if new_below:
        new.vm_end = addr
        mm.set_range(vma, addr, vma.vm_end)
        vma.vm_pgoff += (addr - new.vm_start) >> PAGE_SHIFT
    else:
        new.vm_start = addr
        new.vm_pgoff += (addr - vma.vm_start) >> PAGE_SHIFT
        mm.set_range(vma, vma.vm_start, addr)
    mm.insert(new)
    return new


def vma_modify_flags(mm: MmStruct, vma: VmArea, start: int, end: int, new_flags: int,
                     max_map_count: int) -> VmArea | int:
    """vma_modify_flags(): give [start, end) ⊆ vma the flags `new_flags`, merging or splitting (M4, M5).

    Returns the VMA that now covers exactly [start, end), or the -errno of a refused split.
    """
    target = _vma_modify(mm, vma, start, end, new_flags, vma.vm_policy, max_map_count)
    if not isinstance(target, int):
        target.vm_flags = new_flags | (target.vm_flags & VM_STICKY)
    return target


def vma_modify_policy(mm: MmStruct, vma: VmArea, start: int, end: int, policy: Mempolicy | None,
                      max_map_count: int) -> VmArea | int:
    """vma_modify_policy() and vma_replace_policy(): give [start, end) ⊆ vma the memory policy `policy`,
    merging or splitting as for flags. Returns the VMA now covering exactly [start, end), or -errno."""
    target = _vma_modify(mm, vma, start, end, vma.vm_flags, policy, max_map_count)
    if not isinstance(target, int):
        target.vm_policy = policy
    return target


def _vma_modify(mm: MmStruct, vma: VmArea, start: int, end: int, new_flags: int, policy: Mempolicy | None,
                max_map_count: int) -> VmArea | int:
    """vma_modify(): the VMA that will cover exactly [start, end) with these flags and policy — a
    neighbour it merged into, or `vma` split at start and end; the caller sets the new attribute.
    -errno of a refused split."""
    merged = vma_merge_existing_range(mm, vma, start, end, new_flags, policy)
    if merged is not None:
        return merged
    if vma.vm_start < start:
        err = split_vma(mm, vma, start, True, max_map_count)
        if isinstance(err, int):
            return err
    if vma.vm_end > end:
        err = split_vma(mm, vma, end, False, max_map_count)
        if isinstance(err, int):
            return err
    return vma


def gather_munmap_vmas(mm: MmStruct, start: int, end: int, max_map_count: int) -> list[VmArea] | int:
    """vms_gather_munmap_vmas(): split at the edges and return the VMAs exactly inside [start, end).

    Splitting a VMA in the middle is refused with -ENOMEM at max_map_count; trimming never is (M11).
    A special mapping is never split (-EINVAL). Nothing is changed when the first split fails; when
    the last one does, the first stays split, as in the kernel (vms_abort_munmap_vmas only reattaches).
    """
    vmas = mm.vmas_in(start, end)
    if not vmas:
        return []
    first = vmas[0]
    if first.vm_start < start:
        if end < first.vm_end and mm.map_count >= max_map_count:
            return -ENOMEM
        err = split_vma(mm, first, start, True, max_map_count, check_count=False)
        if isinstance(err, int):
            return err
    last = vmas[-1]
    if last.vm_end > end:
        err = split_vma(mm, last, end, False, max_map_count, check_count=False)
        if isinstance(err, int):
            return err
    return vmas
