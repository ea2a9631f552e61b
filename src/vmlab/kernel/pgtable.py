"""x86_64 4-level page tables: arch/x86/include/asm/pgtable_types.h, pgtable_64_types.h, pgtable_64.h,
pgtable.h (entry bits, PFN field, swap entries, the pte_mk* helpers) and the table allocation of
mm/memory.c (__pte_alloc, __pmd_alloc, __pud_alloc) and mm/memory.c:free_pgd_range().

Entries are plain ints (u64). Each table is one frame from `PhysMem` (typed PGTY_table); its 512 entries
are a numpy uint64 array kept in `PageTables.tables[pfn]`. The P4D level is folded (4-level paging: the
machine's CPU has no la57), so a PGD entry points at a PUD table.

Every table of a user mm, the PGD included, is allocated with GFP_PGTABLE_USER (pte_alloc_one,
pmd_alloc_one, pud_alloc_one, __pgd_alloc; asm-generic/pgalloc.h), i.e. with __GFP_ACCOUNT: it is
charged to the running task's memcg (memcontrol.memcg_kmem_charge_page) and a refused charge fails the
allocation like a missing frame. The PGD is one page: order 1 only with page-table isolation
(pgd_allocation_order()), which this machine's CPU does not need.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vmlab.kernel.memcontrol import memcg_kmem_charge_bulk, memcg_kmem_charge_page
from vmlab.kernel.uapi import ENOMEM, PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from vmlab.kernel.page_alloc import PhysMem

# --- entry bits (pgtable_types.h) ----------------------------------------------------------------------
_PAGE_BIT_PRESENT = 0
_PAGE_BIT_RW = 1
_PAGE_BIT_USER = 2
_PAGE_BIT_PWT = 3
_PAGE_BIT_PCD = 4
_PAGE_BIT_ACCESSED = 5
_PAGE_BIT_DIRTY = 6
_PAGE_BIT_PSE = 7  # 2 MiB / 1 GiB page (PMD/PUD)
_PAGE_BIT_PAT = 7  # on 4 KiB pages
_PAGE_BIT_GLOBAL = 8
_PAGE_BIT_SOFTW1 = 9
_PAGE_BIT_SOFTW2 = 10
_PAGE_BIT_SOFTW3 = 11
_PAGE_BIT_PAT_LARGE = 12
_PAGE_BIT_SOFTW4 = 57
_PAGE_BIT_SOFTW5 = 58
_PAGE_BIT_PKEY_BIT0 = 59
_PAGE_BIT_NX = 63
_PAGE_BIT_SPECIAL = _PAGE_BIT_SOFTW1  # pte_special(): no struct page behind it (zero page, PFNMAP)
_PAGE_BIT_UFFD_WP = _PAGE_BIT_SOFTW2
_PAGE_BIT_SOFT_DIRTY = _PAGE_BIT_SOFTW3  # only with CONFIG_MEM_SOFT_DIRTY (not set on this machine)
_PAGE_BIT_SAVED_DIRTY = _PAGE_BIT_SOFTW5  # Dirty moved here when RW is cleared (shadow-stack safety)
_PAGE_BIT_PROTNONE = _PAGE_BIT_GLOBAL  # only when not present

_PAGE_PRESENT = 1 << _PAGE_BIT_PRESENT
_PAGE_RW = 1 << _PAGE_BIT_RW
_PAGE_USER = 1 << _PAGE_BIT_USER
_PAGE_PWT = 1 << _PAGE_BIT_PWT
_PAGE_PCD = 1 << _PAGE_BIT_PCD
_PAGE_ACCESSED = 1 << _PAGE_BIT_ACCESSED
_PAGE_DIRTY = 1 << _PAGE_BIT_DIRTY
_PAGE_PSE = 1 << _PAGE_BIT_PSE
_PAGE_GLOBAL = 1 << _PAGE_BIT_GLOBAL
_PAGE_SOFTW1 = 1 << _PAGE_BIT_SOFTW1
_PAGE_SOFTW2 = 1 << _PAGE_BIT_SOFTW2
_PAGE_SOFTW3 = 1 << _PAGE_BIT_SOFTW3
_PAGE_SOFTW4 = 1 << _PAGE_BIT_SOFTW4
_PAGE_SOFTW5 = 1 << _PAGE_BIT_SOFTW5
_PAGE_SPECIAL = 1 << _PAGE_BIT_SPECIAL
_PAGE_UFFD_WP = 1 << _PAGE_BIT_UFFD_WP
_PAGE_SOFT_DIRTY = 0  # CONFIG_MEM_SOFT_DIRTY is not set
_PAGE_SAVED_DIRTY = 1 << _PAGE_BIT_SAVED_DIRTY
_PAGE_DIRTY_BITS = _PAGE_DIRTY | _PAGE_SAVED_DIRTY
_PAGE_PROTNONE = 1 << _PAGE_BIT_PROTNONE
_PAGE_NX = 1 << _PAGE_BIT_NX

# Swap-entry bits of a non-present PTE (pgtable_types.h/pgtable_64.h).
_PAGE_SWP_SOFT_DIRTY = _PAGE_RW
_PAGE_SWP_UFFD_WP = _PAGE_USER
_PAGE_SWP_EXCLUSIVE = _PAGE_PWT

#: pmd_populate() and friends link a table with these bits (_PAGE_TABLE).
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
_KERNPG_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY

__PHYSICAL_MASK_SHIFT = 52
PTE_PFN_MASK = ((1 << __PHYSICAL_MASK_SHIFT) - 1) & ~(PAGE_SIZE - 1)
PTE_FLAGS_MASK = ~PTE_PFN_MASK & (2**64 - 1)
U64 = 2**64 - 1

# Protections as protection_map[] builds them (PAGE_NONE, PAGE_READONLY, PAGE_SHARED, ..._EXEC).
PAGE_NONE = _PAGE_PROTNONE | _PAGE_ACCESSED
PAGE_READONLY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_READONLY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
PAGE_SHARED = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_SHARED_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED

# --- geometry (pgtable_64_types.h, 4-level) -------------------------------------------------------------
PTRS_PER_TABLE = 512
PGDIR_SHIFT = 39
P4D_SHIFT = 39  # folded
PUD_SHIFT = 30
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT
PMD_MASK = ~(PMD_SIZE - 1)
#: The levels a walk visits, top down: (name, shift).
LEVELS: tuple[tuple[str, int], ...] = (("pgd", PGDIR_SHIFT), ("pud", PUD_SHIFT), ("pmd", PMD_SHIFT),
                                       ("pte", PAGE_SHIFT))
TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE

_FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (_PAGE_PRESENT, "PRESENT"), (_PAGE_RW, "RW"), (_PAGE_USER, "USER"), (_PAGE_PWT, "PWT"),
    (_PAGE_PCD, "PCD"), (_PAGE_ACCESSED, "ACCESSED"), (_PAGE_DIRTY, "DIRTY"), (_PAGE_PSE, "PSE"),
    (_PAGE_GLOBAL, "GLOBAL"), (_PAGE_SPECIAL, "SPECIAL"), (_PAGE_UFFD_WP, "UFFD_WP"),
    (_PAGE_SOFTW3, "SOFTW3"), (_PAGE_SOFTW4, "SOFTW4"), (_PAGE_SAVED_DIRTY, "SAVED_DIRTY"),
    (_PAGE_NX, "NX"),
)


# --- entry helpers (pgtable.h) ---------------------------------------------------------------------------


def pte_none(pte: int) -> bool:
    """pte_none(): the entry is all zero."""
    return pte == 0


def pte_present(pte: int) -> bool:
    """pte_present(): present, or PROT_NONE (present to the kernel, not to the MMU)."""
    return bool(pte & (_PAGE_PRESENT | _PAGE_PROTNONE))


def __pte_needs_invert(val: int) -> bool:
    """L1TF mitigation: a non-present, non-none entry has its PFN bits stored inverted."""
    return val != 0 and not val & _PAGE_PRESENT


def protnone_mask(val: int) -> int:
    """The mask XORed into the PFN field of such an entry."""
    return PTE_PFN_MASK if __pte_needs_invert(val) else 0


def pfn_pte(pfn: int, prot: int) -> int:
    """pfn_pte(): an entry mapping `pfn` with protection bits `prot` (PFN inverted for PROT_NONE)."""
    phys = (pfn << PAGE_SHIFT) ^ protnone_mask(prot)
    return (phys & PTE_PFN_MASK) | (prot & PTE_FLAGS_MASK)


def pte_pfn(pte: int) -> int:
    """pte_pfn()."""
    return ((pte ^ protnone_mask(pte)) & PTE_PFN_MASK) >> PAGE_SHIFT


def pte_flags(pte: int) -> int:
    """pte_flags(): everything but the PFN field."""
    return pte & PTE_FLAGS_MASK


def pte_write(pte: int) -> bool:
    """pte_write()."""
    return bool(pte & _PAGE_RW)


def pte_dirty(pte: int) -> bool:
    """pte_dirty(): hardware Dirty or the saved copy."""
    return bool(pte & _PAGE_DIRTY_BITS)


def pte_young(pte: int) -> bool:
    """pte_young(): Accessed."""
    return bool(pte & _PAGE_ACCESSED)


def pte_special(pte: int) -> bool:
    """pte_special()."""
    return bool(pte & _PAGE_SPECIAL)


def pte_huge(pmd: int) -> bool:
    """pmd_leaf()/pud_leaf(): PSE set on a present upper-level entry."""
    return bool(pmd & _PAGE_PRESENT and pmd & _PAGE_PSE)


def _mksaveddirty(v: int) -> int:
    """mksaveddirty_shift(): if RW is clear, move Dirty into SAVED_DIRTY."""
    cond = (~v >> _PAGE_BIT_RW) & 1
    v |= ((v >> _PAGE_BIT_DIRTY) & cond) << _PAGE_BIT_SAVED_DIRTY
    return v & ~(cond << _PAGE_BIT_DIRTY) & U64


def _clear_saveddirty(v: int) -> int:
    """clear_saveddirty_shift(): if RW is set, move SAVED_DIRTY back into Dirty."""
    cond = (v >> _PAGE_BIT_RW) & 1
    v |= ((v >> _PAGE_BIT_SAVED_DIRTY) & cond) << _PAGE_BIT_DIRTY
    return v & ~(cond << _PAGE_BIT_SAVED_DIRTY) & U64


#: _PAGE_CHG_MASK (with _HPAGE_CHG_MASK's PSE, the same bit as 4 KiB pages' PAT): what an entry keeps
#: across a protection change. Accessed and dirty among them: mprotect() leaves a page's age alone.
_PAGE_CHG_MASK = (PTE_PFN_MASK | _PAGE_PCD | _PAGE_PWT | _PAGE_SPECIAL | _PAGE_ACCESSED | _PAGE_DIRTY_BITS
                  | _PAGE_SOFT_DIRTY | _PAGE_UFFD_WP | 1 << _PAGE_BIT_PAT)


def pte_modify(pte: int, newprot: int) -> int:
    """pte_modify(), and pmd_modify() of a PMD leaf (the same since f7491d7c81db, 2025, which stopped it
    dropping Dirty): `pte`'s page with protection `newprot`, the bits of _PAGE_CHG_MASK kept from `pte`
    (the PFN inverted or not as the new protection wants); an entry that was writable and is no longer
    moves Dirty to SAVED_DIRTY, one that was read-only and is now writable moves it back."""
    entry = pfn_pte(pte_pfn(pte), (newprot & ~_PAGE_CHG_MASK) | (pte_flags(pte) & _PAGE_CHG_MASK))
    return _mksaveddirty(entry) if pte & _PAGE_RW else _clear_saveddirty(entry)


def pte_mkwrite(pte: int) -> int:
    """pte_mkwrite_novma(): set RW (a saved Dirty becomes Dirty again)."""
    return _clear_saveddirty(pte | _PAGE_RW)


def pte_wrprotect(pte: int) -> int:
    """pte_wrprotect(): clear RW; Dirty moves to SAVED_DIRTY so Write=0,Dirty=1 never appears."""
    return _mksaveddirty(pte & ~_PAGE_RW & U64)


def pte_mkdirty(pte: int) -> int:
    """pte_mkdirty(): set Dirty (saved Dirty on a read-only entry)."""
    return _mksaveddirty(pte | _PAGE_DIRTY | _PAGE_SOFT_DIRTY)


def pte_mkclean(pte: int) -> int:
    """pte_mkclean(): clear both dirty bits."""
    return pte & ~_PAGE_DIRTY_BITS & U64


def pte_mkold(pte: int) -> int:
    """pte_mkold(): clear Accessed."""
    return pte & ~_PAGE_ACCESSED & U64


def pte_mkyoung(pte: int) -> int:
    """pte_mkyoung(): set Accessed."""
    return pte | _PAGE_ACCESSED


def pte_mkspecial(pte: int) -> int:
    """pte_mkspecial()."""
    return pte | _PAGE_SPECIAL


def pmd_mkhuge(pmd: int) -> int:
    """pmd_mkhuge(): a 2 MiB leaf."""
    return pmd | _PAGE_PSE


# --- swap entries (pgtable_64.h) ---------------------------------------------------------------------------
SWP_TYPE_BITS = 5
SWP_OFFSET_FIRST_BIT = _PAGE_BIT_PROTNONE + 1
SWP_OFFSET_SHIFT = SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS
MAX_SWAPFILES_SHIFT = 5


def __swp_entry(swp_type: int, offset: int) -> int:
    """__swp_entry(): type in bits 59-63, the offset inverted in bits 9-58 (L1TF: high PFN bits set)."""
    return (((~offset & U64) << SWP_OFFSET_SHIFT & U64) >> SWP_TYPE_BITS) | (swp_type << (64 - SWP_TYPE_BITS))


def __swp_type(entry: int) -> int:
    """__swp_type()."""
    return entry >> (64 - SWP_TYPE_BITS)


def __swp_offset(entry: int) -> int:
    """__swp_offset()."""
    return ((~entry & U64) << SWP_TYPE_BITS & U64) >> SWP_OFFSET_SHIFT


def __pte_to_swp_entry(pte: int) -> int:
    """__pte_to_swp_entry(): the value is the entry itself (the arch-specific swp_entry_t)."""
    return pte


def __swp_entry_to_pte(entry: int) -> int:
    """__swp_entry_to_pte()."""
    return entry


def is_swap_pte(pte: int) -> bool:
    """is_swap_pte(): neither none nor present."""
    return not pte_none(pte) and not pte_present(pte)


# --- the tables ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalkStep:
    """One level of a walk: the table's frame, the index used and the entry found there."""

    level: str
    table_pfn: int
    index: int
    entry: int


@dataclass(frozen=True)
class WalkResult:
    """A software page walk of `vaddr`: the steps taken, and where it ended.

    `leaf` is the level of the final mapping ("pte", or "pmd" for a 2 MiB page), None when an entry was
    not present (then `steps[-1]` is that entry: none, a swap entry or PROT_NONE).
    """

    vaddr: int
    steps: tuple[WalkStep, ...]
    leaf: str | None
    pfn: int | None
    paddr: int | None


def pgd_index(vaddr: int) -> int:
    return (vaddr >> PGDIR_SHIFT) & (PTRS_PER_TABLE - 1)


def pud_index(vaddr: int) -> int:
    return (vaddr >> PUD_SHIFT) & (PTRS_PER_TABLE - 1)


def pmd_index(vaddr: int) -> int:
    return (vaddr >> PMD_SHIFT) & (PTRS_PER_TABLE - 1)


def pte_index(vaddr: int) -> int:
    return (vaddr >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1)


class PageTables:
    """The page tables of one mm: `mm->pgd`, the tables it reaches, and `mm->pgtables_bytes`.

    pgtables_bytes counts the PUD, PMD and PTE tables (mm_inc_nr_puds/pmds/ptes), not the PGD itself.
    """

    def __init__(self, mem: PhysMem) -> None:
        self.mem = mem
        self.tables: dict[int, np.ndarray] = {}
        self.pgtables_bytes = 0
        #: The PTE table deposited with each PMD-mapped 2 MiB page, by address.
        self.deposited: dict[int, int] = {}
        #: Tables found by recent walks: (region << 1) -> PMD table (1 GiB regions) or PTE table (| 1,
        #: 2 MiB regions).
        self._walk_cache: dict[int, int] = {}
        pgd = self._alloc_table(count=False)
        if pgd is None:
            raise MemoryError("no PGD: no frame, or its memcg charge was refused")
        self.pgd = pgd

    # --- table frames --------------------------------------------------------------------------------

    def _alloc_table(self, count: bool = True) -> int | None:
        """pagetable_alloc(GFP_PGTABLE_USER) + ctor: a zeroed table frame charged to the running task's
        memcg (`count`: it counts in pgtables_bytes, as all but the PGD do); None when no frame could
        be had or the memcg charge was refused (the frame is freed again)."""
        pfn = self.pte_alloc_one()
        if pfn is not None:
            self._adopt_table(pfn, count)
        return pfn

    def _adopt_table(self, pfn: int, count: bool = True) -> None:
        """Make the allocated, charged frame `pfn` one of this mm's tables: 512 none entries."""
        self.tables[pfn] = np.zeros(PTRS_PER_TABLE, dtype=np.uint64)
        if count:
            self.pgtables_bytes += PAGE_SIZE

    def pte_alloc_one(self) -> int | None:
        """pte_alloc_one(): a table frame charged to the running task's memcg (__GFP_ACCOUNT), not
        linked anywhere yet - the fault path's vmf->prealloc_pte, which pmd_install() links or
        pte_free() gives back (frame and charge). None when no frame could be had or the charge was
        refused (the frame is freed again)."""
        mem = self.mem
        pfn = mem.alloc_pagetable_page()
        if pfn is None:
            return None
        if memcg_kmem_charge_page(mem, pfn):
            mem.free_pagetable_page(pfn)
            return None
        return pfn

    def pte_free(self, pfn: int) -> None:
        """pte_free(): free a table frame from pte_alloc_one() that was never linked, uncharging it."""
        self.mem.free_pagetable_page(pfn)

    def pmd_none(self, vaddr: int) -> bool:
        """pmd_none(): the PMD entry covering vaddr holds neither a PTE table nor a 2 MiB leaf (also
        when no PMD table covers vaddr)."""
        return self._pte_table(vaddr, allocate=False) is None and not self.get_pmd(vaddr)

    def pmd_install(self, vaddr: int, pfn: int) -> bool:
        """pmd_install() (mm_inc_nr_ptes + pmd_populate): link the preallocated table `pfn` as the PTE
        table covering vaddr, if that PMD entry is still none (the upper tables are allocated as
        needed); False when it is not (the caller keeps `pfn` and frees it) or an upper table could
        not be had."""
        pmd = self._pmd_table(vaddr, allocate=True)
        if pmd is None or int(self.tables[pmd][pmd_index(vaddr)]):
            return False
        self._adopt_table(pfn)
        self.tables[pmd][pmd_index(vaddr)] = (pfn << PAGE_SHIFT) | _PAGE_TABLE
        return True

    def _free_table(self, pfn: int) -> None:
        self._walk_cache.clear()
        del self.tables[pfn]
        self.mem.free_pagetable_page(pfn)
        self.pgtables_bytes -= PAGE_SIZE

    def _next_table(self, table: int, index: int, allocate: bool) -> int | None:
        """The table an entry points at; with `allocate`, populate a none entry (pud/pmd/pte_alloc).
        None when there is none (or it is a leaf, or allocation failed)."""
        entry = int(self.tables[table][index])
        if entry == 0:
            if not allocate:
                return None
            new = self._alloc_table()
            if new is None:
                return None
            self.tables[table][index] = (new << PAGE_SHIFT) | _PAGE_TABLE
            return new
        if not entry & _PAGE_PRESENT or entry & _PAGE_PSE:
            return None
        return (entry & PTE_PFN_MASK) >> PAGE_SHIFT

    def _pmd_table(self, vaddr: int, allocate: bool) -> int | None:
        """The PMD table covering vaddr."""
        key = (vaddr >> PUD_SHIFT) << 1
        found = self._walk_cache.get(key)
        if found is not None:
            return found
        pud = self._next_table(self.pgd, pgd_index(vaddr), allocate)
        table = None if pud is None else self._next_table(pud, pud_index(vaddr), allocate)
        if table is not None:
            self._walk_cache[key] = table
        return table

    def _pte_table(self, vaddr: int, allocate: bool) -> int | None:
        """The PTE table covering vaddr (a walk cache, like the MMU's paging-structure caches, remembers
        the tables of recently walked regions until a table is freed or a 2 MiB leaf takes the slot)."""
        key = ((vaddr >> PMD_SHIFT) << 1) | 1
        found = self._walk_cache.get(key)
        if found is not None:
            return found
        pmd = self._pmd_table(vaddr, allocate)
        table = None if pmd is None else self._next_table(pmd, pmd_index(vaddr), allocate)
        if table is not None:
            self._walk_cache[key] = table
        return table

    # --- entries -------------------------------------------------------------------------------------

    def walk(self, vaddr: int) -> WalkResult:
        """A software walk of `vaddr` from the PGD down, as the MMU (or follow_page) would."""
        steps: list[WalkStep] = []
        table = self.pgd
        for level, shift in LEVELS:
            index = (vaddr >> shift) & (PTRS_PER_TABLE - 1)
            entry = int(self.tables[table][index])
            steps.append(WalkStep(level, table, index, entry))
            if not entry & _PAGE_PRESENT:
                return WalkResult(vaddr, tuple(steps), None, None, None)
            if level == "pte" or (entry & _PAGE_PSE and level in ("pud", "pmd")):
                size = 1 << shift
                base = ((entry & PTE_PFN_MASK) & ~(size - 1))
                paddr = base | (vaddr & (size - 1))
                return WalkResult(vaddr, tuple(steps), level, paddr >> PAGE_SHIFT, paddr)
            table = (entry & PTE_PFN_MASK) >> PAGE_SHIFT
        raise AssertionError("unreachable")

    def get_pte(self, vaddr: int) -> int:
        """The PTE of vaddr, 0 when no PTE table covers it (or a PMD leaf does)."""
        table = self._pte_table(vaddr, allocate=False)
        return 0 if table is None else int(self.tables[table][pte_index(vaddr)])

    def pte_offset_map(self, vaddr: int) -> np.ndarray | None:
        """pte_offset_map(): the 512 entries of the PTE table covering vaddr, live (index them with
        pte_index(); a store there is set_pte_at() of that slot), None when no PTE table covers it (or
        a PMD leaf does).
        A caller working inside one table (filemap_map_pages) walks the levels once for all its slots."""
        table = self._pte_table(vaddr, allocate=False)
        return None if table is None else self.tables[table]

    def set_pte(self, vaddr: int, entry: int) -> int:
        """set_pte_at(), allocating missing tables (pte_alloc()); 0, or -ENOMEM if a table frame could
        not be allocated."""
        table = self._pte_table(vaddr, allocate=True)
        if table is None:
            return -ENOMEM
        self.tables[table][pte_index(vaddr)] = entry
        return 0

    def get_pmd(self, vaddr: int) -> int:
        """The PMD entry covering vaddr (0 when no PMD table)."""
        table = self._pmd_table(vaddr, allocate=False)
        return 0 if table is None else int(self.tables[table][pmd_index(vaddr)])

    def lookup_pmd(self, vaddr: int) -> int | None:
        """The PMD entry covering vaddr, or None when no PMD table covers it (get_old_pud() fails)."""
        table = self._pmd_table(vaddr, allocate=False)
        return None if table is None else int(self.tables[table][pmd_index(vaddr)])

    def pmd_alloc(self, vaddr: int) -> bool:
        """pud_alloc() + pmd_alloc(): the PUD and PMD tables covering vaddr exist; False if no frame."""
        return self._pmd_table(vaddr, allocate=True) is not None

    def pte_alloc(self, vaddr: int) -> bool:
        """pte_alloc(): a PTE table covers vaddr (never over a PMD leaf); False if none could be had."""
        return self._pte_table(vaddr, allocate=True) is not None

    def mkold_pmd_leaf(self, haddr: int) -> None:
        """pmdp_invalidate() + pmd_mkold() + set_pmd_at(): the 2 MiB leaf at `haddr` loses its accessed
        bit."""
        table = self._pmd_table(haddr, allocate=False)
        assert table is not None, f"no PMD table at {haddr:#x}"
        self.tables[table][pmd_index(haddr)] = int(self.tables[table][pmd_index(haddr)]) & ~_PAGE_ACCESSED

    def set_pmd_leaf_bits(self, vaddr: int, bits: int) -> None:
        """The MMU's update of the 2 MiB leaf covering `vaddr`: `bits` (accessed, dirty) set."""
        table = self._pmd_table(vaddr, allocate=False)
        assert table is not None, f"no PMD table at {vaddr:#x}"
        self.tables[table][pmd_index(vaddr)] = int(self.tables[table][pmd_index(vaddr)]) | bits

    def mkclean_pmd_leaf(self, haddr: int) -> None:
        """pmdp_invalidate() + pmd_mkold() + pmd_mkclean() + set_pmd_at() (madvise_free_huge_pmd): the
        2 MiB leaf at `haddr` loses its accessed and dirty bits."""
        self.mkold_pmd_leaf(haddr)
        table = self._pmd_table(haddr, allocate=False)
        assert table is not None
        self.tables[table][pmd_index(haddr)] = int(self.tables[table][pmd_index(haddr)]) & ~_PAGE_DIRTY

    def set_pmd_leaf(self, vaddr: int, entry: int) -> int:
        """set_pmd_at() of a 2 MiB leaf (THP): `entry` gets PSE; the slot must be none. 0 or -ENOMEM."""
        if vaddr & (PMD_SIZE - 1):
            raise ValueError(f"{vaddr:#x} is not 2 MiB aligned")
        table = self._pmd_table(vaddr, allocate=True)
        if table is None:
            return -ENOMEM
        index = pmd_index(vaddr)
        if int(self.tables[table][index]):
            raise AssertionError(f"PMD slot of {vaddr:#x} is in use: {int(self.tables[table][index]):#x}")
        self.tables[table][index] = pmd_mkhuge(entry)
        return 0

    def map_range(self, start: int, pfns: np.ndarray, prot: int) -> int:
        """Bulk set_pte_at() of consecutive pages from `start`: page i maps pfns[i] with `prot`, table
        frames allocated in one go; 0 or -ENOMEM (then nothing is mapped)."""
        if start & (PAGE_SIZE - 1):
            raise ValueError(f"{start:#x} is not page aligned")
        n = len(pfns)
        end = start + n * PAGE_SIZE
        chunks = range(start & PMD_MASK, end, PMD_SIZE)
        missing = [a for a in chunks if self._pte_table(a, allocate=False) is None]
        if missing:
            # Upper levels first (few, one by one), then all missing PTE tables as one bulk allocation.
            for a in missing:
                if self._pmd_table(a, allocate=True) is None:
                    return -ENOMEM
            frames = self.mem.alloc_pagetable_pages_bulk(len(missing))
            if len(frames) < len(missing) or not memcg_kmem_charge_bulk(self.mem, frames.tolist()):
                for pfn in frames.tolist():
                    self.mem.free_pagetable_page(pfn)
                return -ENOMEM
            for a, pfn in zip(missing, frames.tolist(), strict=True):
                self.tables[pfn] = np.zeros(PTRS_PER_TABLE, dtype=np.uint64)
                self.pgtables_bytes += PAGE_SIZE
                pmd = self._pmd_table(a, allocate=False)
                assert pmd is not None
                self.tables[pmd][pmd_index(a)] = (pfn << PAGE_SHIFT) | _PAGE_TABLE
        values = (pfns.astype(np.uint64) << np.uint64(PAGE_SHIFT)) | np.uint64(prot & PTE_FLAGS_MASK)
        done = 0
        for a in chunks:
            lo = max(a, start)
            hi = min(a + PMD_SIZE, end)
            table = self._pte_table(a, allocate=False)
            assert table is not None
            count = (hi - lo) >> PAGE_SHIFT
            i = pte_index(lo)
            self.tables[table][i:i + count] = values[done:done + count]
            done += count
        return 0

    def clear_range(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """ptep_get_and_clear() over [start, end) (the zap): returns (addresses, old entries) of every
        entry that was not none, PMD leaves included (their address 2 MiB aligned, PSE set). Tables
        stay; free_pgtables() frees them."""
        addrs: list[np.ndarray] = []
        olds: list[np.ndarray] = []
        self._zap_level(self.pgd, 0, 0, start, end, addrs, olds)
        if not addrs:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)
        return np.concatenate(addrs), np.concatenate(olds)

    def tables_for_copy(self, start: int, end: int) -> list[tuple[int, int]]:
        """The tables copy_page_range() gives a fork child for [start, end) of this (the parent's) page
        tables, in the order it allocates them: (address, shift) meaning "the table of entries `shift`
        wide covering address" - a PUD table (shift PUD_SHIFT) wherever the parent's PGD entry is
        present, a PMD table (PMD_SHIFT) wherever its PUD entry points at a table, a PTE table
        (PAGE_SHIFT) wherever its PMD entry does; whether or not any entry of the range below is set."""
        out: list[tuple[int, int]] = []
        for pgd_a in range(start >> PGDIR_SHIFT << PGDIR_SHIFT, end, 1 << PGDIR_SHIFT):
            if not int(self.tables[self.pgd][pgd_index(pgd_a)]) & _PAGE_PRESENT:
                continue
            out.append((max(start, pgd_a), PUD_SHIFT))
            pgd_end = min(end, pgd_a + (1 << PGDIR_SHIFT))
            for pud_a in range(max(start, pgd_a) >> PUD_SHIFT << PUD_SHIFT, pgd_end, 1 << PUD_SHIFT):
                if self._pmd_table(pud_a, False) is None:
                    continue
                out.append((max(start, pud_a), PMD_SHIFT))
                for pmd_a in range(max(start, pud_a) >> PMD_SHIFT << PMD_SHIFT,
                                   min(end, pud_a + (1 << PUD_SHIFT)), 1 << PMD_SHIFT):
                    if self._pte_table(pmd_a, False) is not None:
                        out.append((max(start, pmd_a), PAGE_SHIFT))
        return out

    def alloc_table(self, vaddr: int, shift: int) -> bool:
        """pud_alloc() (shift PUD_SHIFT), pmd_alloc() (PMD_SHIFT) or pte_alloc() (PAGE_SHIFT): the table
        of that level covering vaddr exists, with the levels above; False if a frame could not be had."""
        if shift == PUD_SHIFT:
            return self._next_table(self.pgd, pgd_index(vaddr), True) is not None
        return (self._pmd_table if shift == PMD_SHIFT else self._pte_table)(vaddr, True) is not None

    def missing_tables(self, start: int, end: int) -> int:
        """How many PUD, PMD and PTE tables mapping every page of [start, end) would allocate (what
        map_range() charges)."""
        count = 0
        levels = ((PGDIR_SHIFT, None), (PUD_SHIFT, self._pmd_table), (PMD_SHIFT, self._pte_table))
        for shift, lookup in levels:
            for a in range(start >> shift << shift, end, 1 << shift):
                if lookup is None:
                    count += not int(self.tables[self.pgd][pgd_index(a)])
                elif lookup(a, False) is None:
                    count += 1
        return count

    def deposit(self, haddr: int) -> int:
        """pgtable_trans_huge_deposit(): a PTE table set aside with each 2 MiB mapping, for splitting it
        later without allocating; counted in pgtables_bytes (VmPTE) like any table. 0 or -ENOMEM."""
        pfn = self._alloc_table()
        if pfn is None:
            return -ENOMEM
        self.deposited[haddr] = pfn
        return 0

    def populate_deposited(self, haddr: int) -> None:
        """pgtable_trans_huge_withdraw() + pmd_populate() of a split: the table deposited with the 2 MiB
        mapping at `haddr` (whose PMD slot the caller cleared) becomes its PTE table, without an
        allocation or a charge."""
        pfn = self.deposited.pop(haddr)
        pmd = self._pmd_table(haddr, allocate=False)
        if pmd is None or int(self.tables[pmd][pmd_index(haddr)]):
            raise AssertionError(f"split at {haddr:#x}: its PMD slot is not clear")
        self.tables[pmd][pmd_index(haddr)] = (pfn << PAGE_SHIFT) | _PAGE_TABLE

    def withdraw(self, haddr: int) -> None:
        """pgtable_trans_huge_withdraw() + pte_free(): the deposited table of a 2 MiB mapping goes."""
        pfn = self.deposited.pop(haddr, None)
        if pfn is not None:
            self._free_table(pfn)

    def entries(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """The (addresses, entries) of every non-none entry in [start, end), PMD leaves included (their
        address 2 MiB aligned, PSE set), without changing anything (a read-only walk_page_range)."""
        addrs: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        self._zap_level(self.pgd, 0, 0, start, end, addrs, vals, clear=False)
        if not addrs:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)
        return np.concatenate(addrs), np.concatenate(vals)

    def huge_leaves(self) -> list[int]:
        """The entry of every PMD (or PUD) leaf, found without visiting the PTE tables."""
        found: list[int] = []
        tables = [(self.pgd, 0)]
        while tables:
            table, depth = tables.pop()
            for entry in self.tables[table][np.flatnonzero(self.tables[table])].tolist():
                if not entry & _PAGE_PRESENT:
                    continue
                if entry & _PAGE_PSE:
                    found.append(entry)
                elif depth + 2 < len(LEVELS):  # the next table is not a PTE table
                    tables.append(((entry & PTE_PFN_MASK) >> PAGE_SHIFT, depth + 1))
        return found

    def _zap_level(self, table: int, depth: int, base: int, start: int, end: int,
                   addrs: list[np.ndarray], olds: list[np.ndarray], clear: bool = True) -> None:
        """zap_p*_range(): visit only the tables that exist under [start, end), collecting (and with
        `clear`, clearing) the non-none entries."""
        shift = LEVELS[depth][1]
        span = 1 << shift
        entries = self.tables[table]
        i = max(0, (start - base) >> shift)
        j = min(PTRS_PER_TABLE - 1, (end - 1 - base) >> shift) + 1
        if depth == len(LEVELS) - 1:
            nz = np.flatnonzero(entries[i:j]) + i
            if nz.size:
                addrs.append(np.uint64(base) + (nz.astype(np.uint64) << np.uint64(PAGE_SHIFT)))
                olds.append(entries[nz].copy())
                if clear:
                    entries[nz] = 0
            return
        for k in (np.flatnonzero(entries[i:j]) + i).tolist():
            entry = int(entries[k])
            lo = base + k * span
            if not entry & _PAGE_PRESENT:
                continue
            if entry & _PAGE_PSE:
                if clear and (lo < start or lo + span > end):
                    raise AssertionError(f"partial zap of the huge page at {lo:#x}: split first")
                addrs.append(np.array([lo], dtype=np.uint64))
                olds.append(np.array([entry], dtype=np.uint64))
                if clear:
                    entries[k] = 0
                continue
            self._zap_level((entry & PTE_PFN_MASK) >> PAGE_SHIFT, depth + 1, lo, start, end, addrs, olds,
                            clear)

    def free_pgtables(self, start: int, end: int, floor: int = 0, ceiling: int = 0) -> int:
        """free_pgd_range(): free every PTE, PMD and PUD table that maps part of [start, end) and whose
        whole span lies in [floor, ceiling) (ceiling 0: the top of the address space), i.e. that no
        neighbouring VMA can still use. The caller has zapped the range: a table to free must hold no
        entries except links to tables freed with it. Returns the number of tables freed."""
        top = ceiling if ceiling else 1 << 48
        return self._free_level(self.pgd, 0, 0, start, end, floor, top)

    def _free_level(self, table: int, depth: int, base: int, start: int, end: int, floor: int,
                    top: int) -> int:
        """Free the tables below entry range of `table` (level `depth`) that fall inside the limits."""
        shift = LEVELS[depth][1]
        span = 1 << shift
        entries = self.tables[table]
        freed = 0
        first = max(0, (start - base) >> shift)
        last = min(PTRS_PER_TABLE - 1, (end - 1 - base) >> shift)
        for i in range(first, last + 1):
            entry = int(entries[i])
            lo = base + i * span
            if not entry & _PAGE_PRESENT or entry & _PAGE_PSE or depth == len(LEVELS) - 1:
                continue
            child = (entry & PTE_PFN_MASK) >> PAGE_SHIFT
            freed += self._free_level(child, depth + 1, lo, start, end, floor, top) \
                if depth + 1 < len(LEVELS) - 1 else 0
            if lo >= floor and lo + span <= top:
                if np.any(self.tables[child]):
                    raise AssertionError(f"free_pgtables: {LEVELS[depth + 1][0]} table {child:#x} for "
                                         f"{lo:#x} still has entries")
                entries[i] = 0
                self._free_table(child)
                freed += 1
        return freed

    def nr_tables(self) -> int:
        """Tables allocated, the PGD included."""
        return len(self.tables)

    def destroy(self) -> None:
        """free_pgtables() over everything, then pgd_free() (exit_mmap)."""
        self.free_pgtables(0, 1 << 48)
        pgd = self.pgd
        del self.tables[pgd]
        self.mem.free_pagetable_page(pgd)


# --- rendering ------------------------------------------------------------------------------------------


def entry_flag_names(entry: int) -> str:
    """The set bits of an entry spelled out ("PRESENT|RW|USER|..."), or "none"."""
    names = [name for bit, name in _FLAG_NAMES if entry & bit]
    return "|".join(names) if names else "none"


def format_walk(walk: WalkResult) -> str:
    """What `vmlab walk PID ADDR` prints: one line per level (index, entry, flags, next table), then
    the final frame + offset = physical address, or why the walk stopped."""
    lines = [f"walk {walk.vaddr:#018x}  (pgd {pgd_index(walk.vaddr)}, p4d folded, "
             f"pud {pud_index(walk.vaddr)}, pmd {pmd_index(walk.vaddr)}, pte {pte_index(walk.vaddr)}, "
             f"offset {walk.vaddr & (PAGE_SIZE - 1):#05x})"]
    for step in walk.steps:
        head = (f"  {step.level.upper():<3} table pfn {step.table_pfn:#x} [{step.index:3d}] = "
                f"{step.entry:#018x}  {entry_flag_names(step.entry)}")
        if step.entry & _PAGE_PRESENT and step is not walk.steps[-1]:
            head += f"  -> next table pfn {(step.entry & PTE_PFN_MASK) >> PAGE_SHIFT:#x}"
        lines.append(head)
    if walk.leaf is not None and walk.paddr is not None:
        size = {"pte": "4 KiB", "pmd": "2 MiB", "pud": "1 GiB"}[walk.leaf]
        last = walk.steps[-1].entry
        frame = last & PTE_PFN_MASK & ~((1 << dict(LEVELS)[walk.leaf]) - 1)
        offset = walk.paddr - frame
        lines.append(f"  => {size} page: frame {frame:#x} (pfn {frame >> PAGE_SHIFT:#x}) + offset "
                     f"{offset:#x} = physical {walk.paddr:#x}")
    else:
        last_step = walk.steps[-1]
        if last_step.entry == 0:
            why = f"{last_step.level} entry is none: not mapped (a fault would allocate)"
        elif last_step.entry & _PAGE_PROTNONE:
            why = f"{last_step.level} entry is PROT_NONE: pfn {pte_pfn(last_step.entry):#x}, not accessible"
        else:
            why = (f"{last_step.level} entry is a swap entry: type {__swp_type(last_step.entry)}, "
                   f"offset {__swp_offset(last_step.entry):#x}")
        lines.append(f"  => {why}")
    return "\n".join(lines) + "\n"


def pmd_leaf_pfns(tables: Iterable[PageTables | None]) -> set[int]:
    """The frames that a PMD (or PUD) leaf of any of `tables` maps: the heads of the THPs mapped by a
    PMD somewhere (and the huge zero page)."""
    return {pte_pfn(entry) for pt in tables if pt is not None for entry in pt.huge_leaves()}
