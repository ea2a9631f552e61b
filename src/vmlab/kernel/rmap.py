"""anon_vma assignment, after mm/rmap.c: __anon_vma_prepare, find_mergeable_anon_vma, anon_vma_fork.

Reference rule M3: a VMA gets an anon_vma on its first anonymous page; an adjacent VMA that differs only
in rwx, with a singular chain, lends its own.
"""

from __future__ import annotations

from vmlab.kernel.mm_types import VM_ACCESS_FLAGS, VM_IGNORE_MERGE, AnonVma, MmStruct, VmArea


def _reusable_anon_vma(old: VmArea | None, a: VmArea, b: VmArea) -> AnonVma | None:
    """reusable_anon_vma(): old's anon_vma if a and b are compatible neighbours and old's chain singular."""
    if old is None or old.anon_vma is None or old.anon_vma_chain_len != 1:
        return None
    if a.vm_end != b.vm_start or a.vm_file is not b.vm_file:
        return None
    if (a.vm_flags ^ b.vm_flags) & ~(VM_ACCESS_FLAGS | VM_IGNORE_MERGE):
        return None
    if b.vm_pgoff != a.vm_pgoff + a.pages:
        return None
    return old.anon_vma


def find_mergeable_anon_vma(mm: MmStruct, vma: VmArea) -> AnonVma | None:
    """find_mergeable_anon_vma(): try the next VMA, then the previous one."""
    nxt = mm.next_vma(vma)
    if nxt is not None:
        found = _reusable_anon_vma(nxt, vma, nxt)
        if found is not None:
            return found
    prev = mm.prev_vma(vma)
    return _reusable_anon_vma(prev, prev, vma) if prev is not None else None


def anon_vma_prepare(mm: MmStruct, vma: VmArea) -> AnonVma:
    """anon_vma_prepare(): make sure `vma` has an anon_vma before its first anonymous page."""
    if vma.anon_vma is None:
        vma.anon_vma = find_mergeable_anon_vma(mm, vma) or AnonVma()
        vma.anon_vma_chain_len = 1
    return vma.anon_vma


def anon_vma_fork(child: VmArea, parent: VmArea) -> None:
    """anon_vma_fork(): a child VMA chains to the parent's anon_vma and gets one of its own (M3)."""
    if parent.anon_vma is None:
        child.anon_vma, child.anon_vma_chain_len = None, 0
        return
    child.anon_vma = AnonVma(parent=parent.anon_vma)
    child.anon_vma_chain_len = parent.anon_vma_chain_len + 1
