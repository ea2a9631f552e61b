"""The i386 model the lecture draws: 2-level page tables without PAE (arch/x86/include/asm/
pgtable-2level*.h, page_32_types.h, pgtable_32_areas.h) and the 3:1 split of the 4 GiB address space.

A virtual address splits 10/10/12: PGD index (bits 31-22), PTE index (bits 21-12), offset. Entry bits
are the low 12 bits of x86_64's (no NX without PAE). Tables are numpy uint32 arrays of 1024 entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PGDIR_SHIFT = 22
PTRS_PER_PGD = 1024
PTRS_PER_PTE = 1024
PAGE_OFFSET = 0xC0000000  # __PAGE_OFFSET with CONFIG_VMSPLIT_3G
TASK_SIZE = PAGE_OFFSET
__VMALLOC_RESERVE = 128 << 20
#: The most RAM the direct map can hold: -PAGE_OFFSET - __VMALLOC_RESERVE = 896 MiB (MAXMEM).
MAXMEM = (1 << 32) - PAGE_OFFSET - __VMALLOC_RESERVE
VMALLOC_OFFSET = 8 << 20
FIXADDR_TOP = 0xFFFFF000
KM_MAX_IDX = 16
NR_CPUS = 2
#: Fixmap slots: a few fixed ones (FIX_HOLE, APIC, IO-APIC, ... modelled as 16) then the kmap_local slots.
FIX_KMAP_BEGIN = 16
__end_of_fixed_addresses = FIX_KMAP_BEGIN + KM_MAX_IDX * NR_CPUS
FIXADDR_START = FIXADDR_TOP - (__end_of_fixed_addresses << PAGE_SHIFT)
LAST_PKMAP = 1024
#: PKMAP_BASE: the 4 MiB (one PGD entry) below the fixmap, aligned to a PGD boundary.
PKMAP_BASE = ((FIXADDR_START - PAGE_SIZE * (LAST_PKMAP + 1)) & ~((1 << PGDIR_SHIFT) - 1))
VMALLOC_END = PKMAP_BASE - 2 * PAGE_SIZE

_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_USER = 0x004
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_PSE = 0x080
_PAGE_GLOBAL = 0x100
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
PAGE_KERNEL = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_GLOBAL


def fix_to_virt(idx: int) -> int:
    """__fix_to_virt(): fixmap slots count down from FIXADDR_TOP."""
    return FIXADDR_TOP - (idx << PAGE_SHIFT)


def PKMAP_ADDR(nr: int) -> int:
    """PKMAP_ADDR(): the address of pkmap slot `nr`."""
    return PKMAP_BASE + (nr << PAGE_SHIFT)


def PKMAP_NR(vaddr: int) -> int:
    """PKMAP_NR(): the slot of a pkmap address."""
    return (vaddr - PKMAP_BASE) >> PAGE_SHIFT


@dataclass(frozen=True)
class Layout32:
    """Where each region of the 4 GiB virtual space lies for a machine with `ram_bytes` of RAM."""

    ram_bytes: int

    @property
    def lowmem_bytes(self) -> int:
        """RAM in the direct map (ZONE_NORMAL + ZONE_DMA); the rest is ZONE_HIGHMEM."""
        return min(self.ram_bytes, MAXMEM)

    @property
    def max_low_pfn(self) -> int:
        return self.lowmem_bytes >> PAGE_SHIFT

    @property
    def high_memory(self) -> int:
        """high_memory: the virtual address just above the direct map."""
        return PAGE_OFFSET + self.lowmem_bytes

    @property
    def vmalloc_start(self) -> int:
        """VMALLOC_START: high_memory plus an 8 MiB guard gap, rounded up to 8 MiB."""
        return (self.high_memory + VMALLOC_OFFSET) & ~(VMALLOC_OFFSET - 1)

    def regions(self) -> list[tuple[int, int, str]]:
        """(start, end, what) from the bottom of the address space to the top."""
        low = self.lowmem_bytes
        high = self.ram_bytes - low
        return [
            (0, TASK_SIZE, "user space (TASK_SIZE = 3 GiB), per process"),
            (PAGE_OFFSET, self.high_memory,
             f"direct map of lowmem: physical 0x0-{low - 1:#x} ({low >> 20} MiB), __va/__pa"),
            (self.high_memory, self.vmalloc_start, "guard gap (VMALLOC_OFFSET)"),
            (self.vmalloc_start, VMALLOC_END, "vmalloc / ioremap"),
            (PKMAP_BASE, PKMAP_ADDR(LAST_PKMAP),
             f"pkmap: {LAST_PKMAP} kmap() slots for highmem ({high >> 20} MiB of highmem)"),
            (FIXADDR_START, FIXADDR_TOP, f"fixmap (incl. {KM_MAX_IDX} kmap_local slots per CPU)"),
        ]

    def render(self) -> str:
        """The lecture's diagram as text, top of memory first."""
        lines = [f"i386 virtual address space, 3:1 split, {self.ram_bytes >> 20} MiB RAM:"]
        for start, end, what in reversed(self.regions()):
            lines.append(f"  {start:#010x}-{max(end, start + 1) - 1:#010x}  {what}")
        return "\n".join(lines) + "\n"


def __pa(vaddr: int) -> int:
    """__pa(): a direct-map (lowmem) address to physical."""
    if not PAGE_OFFSET <= vaddr < PAGE_OFFSET + MAXMEM:
        raise ValueError(f"{vaddr:#x} is not a lowmem direct-map address")
    return vaddr - PAGE_OFFSET


def __va(paddr: int) -> int:
    """__va(): physical to its direct-map address (only meaningful below MAXMEM)."""
    if not 0 <= paddr < MAXMEM:
        raise ValueError(f"{paddr:#x} is highmem: it has no permanent kernel address")
    return paddr + PAGE_OFFSET


@dataclass
class PageTables32:
    """2-level tables: a PGD of 1024 entries, each linking a 1024-entry PTE table; tables are keyed by an
    arbitrary frame number from `next_frame` (the model of i386 has no allocator of its own)."""

    next_frame: int = 0x100
    tables: dict[int, np.ndarray] = field(default_factory=dict)
    pgd: int = -1

    def __post_init__(self) -> None:
        self.pgd = self._new_table()

    def _new_table(self) -> int:
        pfn = self.next_frame
        self.next_frame += 1
        self.tables[pfn] = np.zeros(PTRS_PER_PTE, dtype=np.uint32)
        return pfn

    def set_pte(self, vaddr: int, pfn: int, prot: int = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER) -> None:
        """Map the page at vaddr to frame pfn, allocating the PTE table."""
        pgd = self.tables[self.pgd]
        i = vaddr >> PGDIR_SHIFT
        if not pgd[i] & _PAGE_PRESENT:
            pgd[i] = (self._new_table() << PAGE_SHIFT) | _PAGE_TABLE
        self.tables[int(pgd[i]) >> PAGE_SHIFT][(vaddr >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)] = \
            (pfn << PAGE_SHIFT) | prot

    def clear_pte(self, vaddr: int) -> None:
        """pte_clear()."""
        entry = int(self.tables[self.pgd][vaddr >> PGDIR_SHIFT])
        if entry & _PAGE_PRESENT:
            self.tables[entry >> PAGE_SHIFT][(vaddr >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)] = 0

    def translate(self, vaddr: int) -> int | None:
        """The MMU's walk: PGD[vaddr>>22] -> PTE[(vaddr>>12)&1023] -> frame + offset; None if not mapped.
        A PGD entry with PSE maps a 4 MiB page directly."""
        pde = int(self.tables[self.pgd][vaddr >> PGDIR_SHIFT])
        if not pde & _PAGE_PRESENT:
            return None
        if pde & _PAGE_PSE:
            return (pde & ~((1 << PGDIR_SHIFT) - 1)) | (vaddr & ((1 << PGDIR_SHIFT) - 1))
        pte = int(self.tables[pde >> PAGE_SHIFT][(vaddr >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)])
        if not pte & _PAGE_PRESENT:
            return None
        return (pte & ~(PAGE_SIZE - 1)) | (vaddr & (PAGE_SIZE - 1))
