"""Fault-around (do_fault_around -> filemap_map_pages, rule P6): which slots one call maps, against a
per-slot reference written out here from the kernel's rules. The window is the 16-page block of the
fault, its start raised to the VMA's start, then 16 pages on, clipped to the VMA's end and to the one
PTE table (2 MiB) holding the fault; in it a page is mapped when it lies inside EOF, its PTE is none,
the page cache holds it (or the host had it cached and it was never evicted here: it comes in) and
its folio is not marked PG_readahead."""

from __future__ import annotations

import random

import pytest

from vmlab.kernel.filemap import add_to_page_cache
from vmlab.kernel.memory import GUARD_MARKER, VM_FAULT_NOPAGE, VmFault, do_fault_around
from vmlab.kernel.mm_types import File, Inode, VmArea
from vmlab.kernel.page_flags import PG_readahead
from vmlab.kernel.pgtable import PMD_SIZE, pte_pfn, pte_present
from vmlab.kernel.uapi import MAP_FIXED, MAP_SHARED, PAGE_SIZE, PROT_READ

from modelkit import BareProc

WINDOW = 16 * PAGE_SIZE
FILE_PAGES = 700
#: Mappings (address, file page offset, pages): starting mid-block and mid-table, crossing a 2 MiB
#: boundary, and running past EOF.
MAPPINGS = ((0x7F0000000000 + 5 * PAGE_SIZE, 3, 300), (0x7F0000200000 - 37 * PAGE_SIZE, 200, 80),
            (0x7F0000400000 + 2 * PAGE_SIZE, 650, 90))


def expected_window(proc: BareProc, vma: VmArea, inode: Inode, fault: int) -> set[int]:
    """The addresses one fault-around at `fault` should map, slot by slot."""
    pmd_base = fault & ~(PMD_SIZE - 1)
    lo = max(fault & ~(WINDOW - 1), vma.vm_start, pmd_base)
    hi = min(lo + WINDOW, vma.vm_end, pmd_base + PMD_SIZE)
    eof = -(-inode.size // PAGE_SIZE)
    assert proc.mm.pt is not None
    out = set()
    for addr in range(lo, hi, PAGE_SIZE):
        index = vma.vm_pgoff + (addr - vma.vm_start) // PAGE_SIZE
        if index >= eof or proc.mm.pt.get_pte(addr) != 0:
            continue
        pfn = inode.i_pages.get(index)
        if pfn is None:
            host = inode.host_cached is not None and index in inode.host_cached
            if host and index not in inode.shadows:
                out.add(addr)
            continue
        if not proc.mem.mem_map.test(pfn, PG_readahead):
            out.add(addr)
    return out


@pytest.mark.parametrize("host_cached", [frozenset(), frozenset(range(0, FILE_PAGES, 3))],
                         ids=["model-file", "host-cached"])
def test_fault_around_maps_exactly_the_reference_slots(host_cached: frozenset[int]) -> None:
    rng = random.Random(11)
    proc = BareProc()
    mem = proc.mem
    inode = Inode("/data/fa", ino=77, size=(FILE_PAGES + 20) * PAGE_SIZE, host_cached=host_cached)
    file = File(inode)
    for index in rng.sample(range(FILE_PAGES), FILE_PAGES // 2) + list(range(FILE_PAGES, FILE_PAGES + 20)):
        pfn = add_to_page_cache(mem, inode, index)
        assert pfn is not None
        if rng.random() < 0.15:
            mem.mem_map.set(pfn, PG_readahead)
    # The file shrinks; its last pages are still cached (as between i_size_write and the truncation of
    # the page cache): fault-around must not map them, nor the rest of the now partial last page's
    # successors.
    inode.size = FILE_PAGES * PAGE_SIZE - 100
    for index in rng.sample(range(FILE_PAGES), 60):  # evicted earlier: a shadow, no host copy
        if index not in inode.i_pages:
            inode.shadows[index] = 1
    pt = proc.mm.pt
    assert pt is not None
    vmas = []
    for addr, pgoff, pages in MAPPINGS:
        length, off = pages * PAGE_SIZE, pgoff * PAGE_SIZE
        assert proc.mmap(addr, length, PROT_READ, MAP_SHARED | MAP_FIXED, file, off) == addr
        vma = proc.mm.find_vma(addr)
        assert vma is not None and vma.vm_start == addr
        vmas.append(vma)
    # Slots that are not none before any fault: guard markers, in tables that exist.
    assert pt.set_pte(MAPPINGS[0][0] + 40 * PAGE_SIZE, GUARD_MARKER) == 0
    assert pt.set_pte(MAPPINGS[1][0] + 2 * PAGE_SIZE, GUARD_MARKER) == 0
    faults = [(vma, vma.vm_start + p * PAGE_SIZE) for vma in vmas for p in range(vma.pages)]
    rng.shuffle(faults)
    mapped_total = 0
    for vma, fault in faults:
        want = expected_window(proc, vma, inode, fault)
        before = dict(zip(*(a.tolist() for a in pt.entries(vma.vm_start, vma.vm_end)), strict=True))
        vmf = VmFault(proc.mm, vma, fault, False, mem)
        table_was_there = pt.pte_offset_map(fault) is not None
        got_self = bool(do_fault_around(vmf) & VM_FAULT_NOPAGE)
        # A table preallocated for the window became its PTE table iff a page got mapped (pmd_install).
        assert (vmf.prealloc_pte is None) == (table_was_there or bool(want)), f"fault at {fault:#x}"
        if vmf.prealloc_pte is not None:
            pt.pte_free(vmf.prealloc_pte)  # what do_fault() does with an unused one
        after = dict(zip(*(a.tolist() for a in pt.entries(vma.vm_start, vma.vm_end)), strict=True))
        new = {a for a in after if a not in before}
        assert new == want, f"fault at {fault:#x}"
        assert all(after[a] == before[a] for a in before), f"fault at {fault:#x} changed a mapped slot"
        assert got_self == (fault in want)
        for a in new:
            index = vma.vm_pgoff + (a - vma.vm_start) // PAGE_SIZE
            assert pte_present(after[a]) and pte_pfn(after[a]) == inode.i_pages[index]
        mapped_total += len(new)
    assert mapped_total > 100  # the scenario exercised the mapping, not only the skips
