"""mbind() of a range of an address space, after mm/mempolicy.c (6.18) on a machine with one memory
node, node 0 (as this host has): the policy a VMA carries, and how it splits and merges VMAs.

A range's VMAs take the new policy (mbind_range): where a VMA's policy differs, the range is cut out
of it or merged into a neighbour with an equal policy, as mprotect does with flags; VMAs with
unequal policies never merge (is_mergeable_vma's mpol_equal), so a policy shows in /proc/PID/maps.
MPOL_DEFAULT removes a policy. The checks come in the kernel's order: flags, alignment, the mode
and its nodes (mpol_new), then holes in the range (queue_pages_range: -EFAULT unless the policy
is the default; a range with no VMA at all is -EFAULT always).

Not modelled: a nodemask other than NULL (the model has no user memory to read it from: the
strace replay reports such calls), the task policy (set_mempolicy), page migration (with one node
every page is where any policy wants it: MPOL_MF_MOVE and MPOL_MF_STRICT find nothing to do), and
/proc/PID/numa_maps.
"""

from __future__ import annotations

from vmlab.kernel.mm_types import Mempolicy, MmStruct
from vmlab.kernel.uapi import (
    EFAULT,
    EINVAL,
    MPOL_BIND,
    MPOL_DEFAULT,
    MPOL_F_NUMA_BALANCING,
    MPOL_F_RELATIVE_NODES,
    MPOL_F_STATIC_NODES,
    MPOL_LOCAL,
    MPOL_MF_MOVE,
    MPOL_MF_MOVE_ALL,
    MPOL_MF_STRICT,
    MPOL_PREFERRED,
    MPOL_PREFERRED_MANY,
    MPOL_WEIGHTED_INTERLEAVE,
    PAGE_MASK,
    page_align,
)
from vmlab.kernel.vma import vma_modify_policy

MPOL_MAX = MPOL_WEIGHTED_INTERLEAVE + 1
MPOL_MODE_FLAGS = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING
MPOL_MF_VALID = MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL
# Internal policy flags (include/linux/mempolicy.h) NUMA balancing adds.
MPOL_F_MOF = 1 << 3
MPOL_F_MORON = 1 << 4
_U64 = (1 << 64) - 1


def sanitize_mpol_flags(mode: int) -> tuple[int, int] | int:
    """sanitize_mpol_flags() of mbind's mode argument (an int, as kernel_mbind takes it): (mode,
    mode flags), or -EINVAL for an unknown mode or a combination of flags refused."""
    mode = (mode & 0xFFFFFFFF) - ((mode & 0x80000000) << 1)
    flags = mode & MPOL_MODE_FLAGS
    mode &= ~MPOL_MODE_FLAGS
    if not 0 <= mode < MPOL_MAX:
        return -EINVAL
    if flags & MPOL_F_STATIC_NODES and flags & MPOL_F_RELATIVE_NODES:
        return -EINVAL
    if flags & MPOL_F_NUMA_BALANCING:
        if mode not in (MPOL_BIND, MPOL_PREFERRED_MANY):
            return -EINVAL
        flags |= MPOL_F_MOF | MPOL_F_MORON
    return mode, flags


def mpol_new(mode: int, flags: int, nodes: int) -> Mempolicy | int | None:
    """mpol_new() (with mpol_set_nodemask() on one node): the policy, None for MPOL_DEFAULT, or
    -EINVAL: nodes given to MPOL_DEFAULT or MPOL_LOCAL, none to a mode that needs them. MPOL_PREFERRED
    without nodes is local allocation (MPOL_LOCAL)."""
    if mode == MPOL_DEFAULT:
        return -EINVAL if nodes else None
    if mode == MPOL_PREFERRED and not nodes:
        if flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
            return -EINVAL
        mode = MPOL_LOCAL
    elif mode == MPOL_LOCAL:
        if nodes or flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
            return -EINVAL
    elif not nodes:
        return -EINVAL
    return Mempolicy(mode, flags, nodes)


def _range_has_hole(mm: MmStruct, start: int, end: int, discontig_ok: bool) -> bool:
    """queue_pages_range()'s range check (queue_pages_test_walk): a hole before the first VMA or
    between VMAs of [start, end), unless `discontig_ok`; no VMA at all in the range always."""
    vma = mm.find_vma(start)
    if vma is None or vma.vm_start >= end:
        return True
    if discontig_ok:
        return False
    if start < vma.vm_start:
        return True
    while vma.vm_end < end:
        nxt = mm.next_vma(vma)
        if nxt is None or nxt.vm_start != vma.vm_end:
            return True
        vma = nxt
    return False


def do_mbind(mm: MmStruct, start: int, length: int, mode: int, nodes: int, flags: int,
             max_map_count: int) -> int:
    """mbind(start, length, mode, nodemask, maxnode, flags) with the nodemask's bits `nodes` (0: a
    NULL nodemask) by a task that may use MPOL_MF_MOVE_ALL (CAP_SYS_NICE: the model's run as root):
    0 or -errno (EINVAL, EFAULT, ENOMEM from a split at max_map_count)."""
    sanitized = sanitize_mpol_flags(mode)
    if isinstance(sanitized, int):
        return sanitized
    mode, mode_flags = sanitized
    if flags & ~MPOL_MF_VALID:
        return -EINVAL
    if start & ~PAGE_MASK:
        return -EINVAL
    end = (start + (page_align(length) & _U64)) & _U64  # unsigned long arithmetic: it may wrap
    if end < start:
        return -EINVAL
    if end == start:
        return 0
    new = mpol_new(mode, mode_flags, nodes)
    if isinstance(new, int):
        return new
    if _range_has_hole(mm, start, end, discontig_ok=new is None):
        return -EFAULT
    vma = mm.find_vma(start)
    while vma is not None and vma.vm_start < end:  # mbind_range() of each VMA in the range
        if vma.vm_policy == new:
            vma = mm.next_vma(vma)
            continue
        target = vma_modify_policy(mm, vma, max(start, vma.vm_start), min(end, vma.vm_end), new,
                                   max_map_count)
        if isinstance(target, int):
            return target
        vma = mm.next_vma(target)
    return 0
