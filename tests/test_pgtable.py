"""x86_64 page tables (vmlab.kernel.pgtable): entry encoding against the kernel's definitions, walks,
table allocation accounting and freeing."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import KPF
from vmlab.kernel.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SAVED_DIRTY,
    PAGE_NONE,
    PAGE_READONLY,
    PAGE_SHARED,
    PMD_SIZE,
    PageTables,
    __swp_entry,
    __swp_offset,
    __swp_type,
    format_walk,
    pfn_pte,
    pte_dirty,
    pte_mkclean,
    pte_mkdirty,
    pte_mkold,
    pte_mkwrite,
    pte_mkyoung,
    pte_modify,
    pte_none,
    pte_pfn,
    pte_present,
    pte_write,
    pte_wrprotect,
    pte_young,
)

USER_TOP = 1 << 47


def test_pte_bits_of_a_real_anonymous_pte() -> None:
    """A writable anonymous page after a write fault: PRESENT|RW|USER|ACCESSED|DIRTY|NX + pfn."""
    pte = pte_mkdirty(pte_mkyoung(pfn_pte(0x1357DA, PAGE_SHARED)))
    assert pte == 0x80000001357DA067
    assert pte_pfn(pte) == 0x1357DA


def test_wrprotect_moves_dirty_to_saved_dirty_and_back() -> None:
    pte = pte_mkdirty(pfn_pte(5, PAGE_SHARED))
    ro = pte_wrprotect(pte)
    assert not ro & _PAGE_RW and not ro & _PAGE_DIRTY and ro & _PAGE_SAVED_DIRTY and pte_dirty(ro)
    assert pte_mkwrite(ro) == pte
    assert not pte_dirty(pte_mkclean(ro))
    assert not pte_young(pte_mkold(pte)) and pte_mkyoung(pte_mkold(pte)) == pte
    # pte_mkdirty on a read-only entry sets the saved bit, never Write=0,Dirty=1.
    assert pte_mkdirty(pfn_pte(5, PAGE_READONLY)) & (_PAGE_DIRTY | _PAGE_SAVED_DIRTY) == _PAGE_SAVED_DIRTY


def test_prot_none_inverts_the_pfn() -> None:
    """L1TF: a PROT_NONE entry holds the PFN inverted, and pte_pfn() undoes it."""
    pte = pfn_pte(0x1234, PAGE_NONE)
    assert not pte & _PAGE_PRESENT and pte_present(pte)
    assert (pte >> 12) & 0xFFFF != 0x1234
    assert pte_pfn(pte) == 0x1234


def test_pte_modify_keeps_the_entrys_age_and_dirt() -> None:
    """mprotect's pte_modify(): accessed and dirty come from the entry, never from the new protection
    (every protection_map entry carries _PAGE_ACCESSED, so taking them from it would make each page
    young: reclaim would then keep pages the kernel evicts, as tests/test_lru_host_random.py found).
    An old page stays old through PROT_NONE and back, its PFN through the inversion; a dirty
    writable page made read-only keeps its dirt as SAVED_DIRTY, and gets it back made writable."""
    old = pte_mkold(pfn_pte(0x1234, PAGE_READONLY))
    none = pte_modify(old, PAGE_NONE)
    assert pte_present(none) and not none & _PAGE_PRESENT and not pte_young(none)
    assert pte_pfn(none) == 0x1234
    assert pte_modify(none, PAGE_READONLY) == old
    assert pte_young(pte_modify(pte_mkyoung(old), PAGE_NONE))
    dirty = pte_mkdirty(pte_mkyoung(pfn_pte(7, PAGE_SHARED)))
    ro = pte_modify(dirty, PAGE_READONLY)
    assert not ro & (_PAGE_RW | _PAGE_DIRTY) and ro & _PAGE_SAVED_DIRTY and pte_dirty(ro) and pte_young(ro)
    assert pte_modify(ro, PAGE_SHARED) == dirty
    assert not pte_dirty(pte_modify(pfn_pte(7, PAGE_SHARED), PAGE_READONLY))


def test_a_reused_page_after_fork_is_writable_dirty_and_young_with_no_saved_dirty() -> None:
    """fork() write-protects the parent's dirty anonymous page (Dirty moves to SAVED_DIRTY); once the
    child has gone, the parent's write reuses the page (wp_page_reuse: maybe_mkwrite(pte_mkdirty(
    pte_mkyoung()))), and pte_mkwrite folds SAVED_DIRTY back into Dirty: the entry is the one a first
    write makes, not one with both dirty bits."""
    backend = ModelBackend(64 << 20)
    pid = backend.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=64 << 20))
    addr = backend.syscall(pid, "mmap", (0, 4096, 3, 0x22, -1, 0))
    assert backend.access(pid, addr, 4096, True) is None
    pt = backend.tasks[pid].mm.pt
    assert pt is not None
    first = pt.get_pte(addr)
    backend.exit(backend.fork(pid))
    assert pt.get_pte(addr) & _PAGE_SAVED_DIRTY and not pte_write(pt.get_pte(addr))
    assert backend.access(pid, addr, 4096, True) is None
    assert pt.get_pte(addr) == first


@given(st.integers(0, 31), st.integers(0, (1 << 50) - 2))  # all-ones offset of type 0 would be pte_none
def test_swap_entry_round_trip(swp_type: int, offset: int) -> None:
    e = __swp_entry(swp_type, offset)
    assert (__swp_type(e), __swp_offset(e)) == (swp_type, offset)
    assert not e & (_PAGE_PRESENT | _PAGE_PSE | _PAGE_ACCESSED | _PAGE_DIRTY | 0x100)
    assert not pte_none(e) and not pte_present(e)


def test_swap_entry_layout() -> None:
    """Type in bits 59-63, offset inverted from bit 9 (pgtable_64.h)."""
    assert __swp_entry(1, 0) == (1 << 59) | (((1 << 50) - 1) << 9)
    assert __swp_entry(0, 0x1234) == ((~0x1234 & ((1 << 50) - 1)) << 9)


def test_set_walk_clear_round_trip_and_accounting() -> None:
    mem = PhysMem(256 << 20)
    free0 = mem.nr_free_pages
    pt = PageTables(mem)
    page = mem.alloc_pages(0)
    assert page is not None
    va = 0x7FFF12345000
    assert pt.set_pte(va, pfn_pte(page, PAGE_SHARED)) == 0
    w = pt.walk(va + 0x123)
    assert [s.level for s in w.steps] == ["pgd", "pud", "pmd", "pte"]
    assert (w.leaf, w.pfn, w.paddr) == ("pte", page, (page << 12) + 0x123)
    assert pt.nr_tables() == 4 and pt.pgtables_bytes == 3 * 4096  # PUD, PMD, PTE; not the PGD
    assert mem.stable_page_flags(w.steps[2].table_pfn) & (1 << KPF.PGTABLE)
    text = format_walk(w)
    assert "PGD" in text and f"physical {(page << 12) + 0x123:#x}" in text and "PRESENT|RW|USER" in text
    addrs, olds = pt.clear_range(va, va + 4096)
    assert addrs.tolist() == [va] and olds.tolist() == [pfn_pte(page, PAGE_SHARED)]
    assert pt.walk(va).leaf is None and "none" in format_walk(pt.walk(va))
    assert pt.free_pgtables(va, va + 4096) == 3
    assert pt.pgtables_bytes == 0 and pt.nr_tables() == 1
    mem.free_pages(page)
    pt.destroy()
    assert mem.nr_free_pages == free0
    mem.check_buddy()


def test_free_pgtables_respects_neighbours() -> None:
    """A PTE table also covering a neighbouring VMA (below `ceiling`) is kept."""
    mem = PhysMem(256 << 20)
    pt = PageTables(mem)
    base = 0x40000000
    pt.set_pte(base, pfn_pte(7, PAGE_READONLY))
    pt.clear_range(base, base + 4096)
    assert pt.free_pgtables(base, base + 4096, floor=0, ceiling=base + 8192) == 0
    assert pt.free_pgtables(base, base + 4096, floor=0, ceiling=base + PMD_SIZE) == 1


def test_pmd_leaf() -> None:
    mem = PhysMem(256 << 20)
    pt = PageTables(mem)
    head = mem.alloc_pages(9, compound=True)
    assert head is not None
    va = 0x600000
    assert pt.set_pmd_leaf(va, pfn_pte(head, PAGE_SHARED)) == 0
    w = pt.walk(va + 0x12345)
    assert (w.leaf, w.paddr) == ("pmd", (head << 12) + 0x12345)
    assert pt.pgtables_bytes == 2 * 4096
    assert "2 MiB page" in format_walk(w)
    addrs, olds = pt.clear_range(va, va + PMD_SIZE)
    assert addrs.tolist() == [va] and olds[0] & _PAGE_PSE


@given(st.lists(st.integers(0, (USER_TOP >> 12) - 1), min_size=1, max_size=40, unique=True))
@settings(max_examples=40, deadline=None)
def test_random_mappings_round_trip(vpns: list[int]) -> None:
    """Every set PTE reads back; pgtables_bytes is 4096 x the non-PGD tables; clearing and freeing
    everything returns all table frames."""
    mem = PhysMem(128 << 20)
    free0 = mem.nr_free_pages
    pt = PageTables(mem)
    for i, vpn in enumerate(vpns):
        assert pt.set_pte(vpn << 12, pfn_pte(1000 + i, PAGE_SHARED)) == 0
    for i, vpn in enumerate(vpns):
        assert pt.get_pte(vpn << 12) == pfn_pte(1000 + i, PAGE_SHARED)
        assert pt.walk((vpn << 12) | 0xABC).paddr == ((1000 + i) << 12) | 0xABC
    assert pt.pgtables_bytes == 4096 * (pt.nr_tables() - 1)
    assert pt.nr_tables() - 1 == len({v >> 9 for v in vpns}) + len({v >> 18 for v in vpns}) \
        + len({v >> 27 for v in vpns})
    addrs, _ = pt.clear_range(0, USER_TOP)
    assert sorted(addrs.tolist()) == sorted(v << 12 for v in vpns)
    pt.free_pgtables(0, USER_TOP)
    assert pt.pgtables_bytes == 0
    pt.destroy()
    assert mem.nr_free_pages == free0


def test_bulk_map_range() -> None:
    mem = PhysMem(256 << 20)
    pt = PageTables(mem)
    pfns = mem.alloc_pages_bulk(3000)
    start = 0x7F0000001000
    assert pt.map_range(start, pfns, PAGE_READONLY) == 0
    for i in (0, 1, 510, 511, 1234, 2999):
        assert pt.get_pte(start + i * 4096) == pfn_pte(int(pfns[i]), PAGE_READONLY)
    assert pt.get_pte(start + 3000 * 4096) == 0 and pt.get_pte(start - 4096) == 0
    assert pt.pgtables_bytes == 4096 * (2 + 6)  # PUD, PMD, and 6 PTE tables: 3000 pages from slot 1
    addrs, olds = pt.clear_range(start, start + 3000 * 4096)
    assert len(addrs) == 3000 and np.array_equal([pte_pfn(int(e)) for e in olds], pfns)
