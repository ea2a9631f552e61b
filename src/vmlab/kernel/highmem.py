"""Highmem on i386: mm/highmem.c (kmap/kunmap over the pkmap pool) and kmap_local/kmap_atomic
(per-CPU fixmap slots used as a stack), include/linux/highmem.h, arch/x86/mm/highmem_32.c.

Lowmem pages (below MAXMEM) have a permanent kernel address (struct page's `virtual`, page_address());
a highmem page gets one only while kmapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmlab.kernel.pgtable_32 import (
    FIX_KMAP_BEGIN,
    KM_MAX_IDX,
    LAST_PKMAP,
    MAXMEM,
    NR_CPUS,
    PAGE_KERNEL,
    PAGE_SHIFT,
    PKMAP_ADDR,
    PKMAP_NR,
    PageTables32,
    __va,
    fix_to_virt,
)

LAST_PKMAP_MASK = LAST_PKMAP - 1


class WouldSleep(Exception):
    """kmap() found every pkmap slot in use: the kernel puts the caller to sleep on pkmap_map_wait until
    a kunmap() frees one. The model cannot block, so it reports this instead."""


def PageHighMem(pfn: int) -> bool:
    """PageHighMem(): the frame lies above the direct map."""
    return pfn >= MAXMEM >> PAGE_SHIFT


def lowmem_page_address(pfn: int) -> int:
    """struct page's `virtual` for a lowmem page: its direct-map address."""
    return __va(pfn << PAGE_SHIFT)


@dataclass
class Highmem:
    """The kernel's highmem state: the pkmap pool (pkmap_count, the pkmap page table, page_address_htable)
    and each CPU's kmap_local stack. Kernel page tables are a `PageTables32` (init_mm)."""

    kernel_pt: PageTables32 = field(default_factory=PageTables32)
    pkmap_count: list[int] = field(default_factory=lambda: [0] * LAST_PKMAP)
    last_pkmap_nr: int = 0
    #: page_address_htable: highmem pfn -> its pkmap address while mapped.
    page_address_map: dict[int, int] = field(default_factory=dict)
    tlb_flushes: int = 0
    #: kmap_local stacks, one per CPU: the pfns mapped, bottom first.
    local_stacks: list[list[int]] = field(default_factory=lambda: [[] for _ in range(NR_CPUS)])
    atomic_depth: list[int] = field(default_factory=lambda: [0] * NR_CPUS)

    def page_address(self, pfn: int) -> int | None:
        """page_address(): the permanent address of lowmem, the pkmap address of a kmapped highmem page,
        else None."""
        if not PageHighMem(pfn):
            return lowmem_page_address(pfn)
        return self.page_address_map.get(pfn)

    # --- kmap / kunmap (the pkmap pool) ----------------------------------------------------------------

    def kmap(self, pfn: int) -> int:
        """kmap(): a kernel address for the page; lowmem returns its direct-map address. Raises
        WouldSleep when all LAST_PKMAP slots are taken (the kernel would sleep)."""
        if not PageHighMem(pfn):
            return lowmem_page_address(pfn)
        return self.kmap_high(pfn)

    def kmap_high(self, pfn: int) -> int:
        """kmap_high(): reuse the page's slot or take a new one; count one more user of it."""
        vaddr = self.page_address_map.get(pfn)
        if vaddr is None:
            vaddr = self._map_new_virtual(pfn)
        nr = PKMAP_NR(vaddr)
        self.pkmap_count[nr] += 1
        assert self.pkmap_count[nr] >= 2
        return vaddr

    def _map_new_virtual(self, pfn: int) -> int:
        """map_new_virtual(): scan round-robin for a slot with count 0; on wrapping to slot 0, first
        flush_all_zero_pkmap_entries() (slots with count 1 are mapped but unused: unmap them, one TLB
        flush for all). After a full turn without a free slot the caller would sleep."""
        count = LAST_PKMAP
        while True:
            self.last_pkmap_nr = (self.last_pkmap_nr + 1) & LAST_PKMAP_MASK
            if self.last_pkmap_nr == 0:
                self.flush_all_zero_pkmap_entries()
                count = LAST_PKMAP
            if self.pkmap_count[self.last_pkmap_nr] == 0:
                break
            count -= 1
            if count == 0:
                raise WouldSleep(f"kmap of pfn {pfn:#x}: all {LAST_PKMAP} pkmap slots in use; the caller "
                                 f"sleeps on pkmap_map_wait until a kunmap()")
        nr = self.last_pkmap_nr
        vaddr = PKMAP_ADDR(nr)
        self.kernel_pt.set_pte(vaddr, pfn, PAGE_KERNEL)
        self.pkmap_count[nr] = 1
        self.page_address_map[pfn] = vaddr
        return vaddr

    def flush_all_zero_pkmap_entries(self) -> int:
        """flush_all_zero_pkmap_entries(): unmap every slot whose count is 1 (no users left); returns
        how many were freed. The kernel does this lazily so that one TLB flush covers many kunmaps."""
        freed = 0
        for nr, c in enumerate(self.pkmap_count):
            if c != 1:
                continue
            self.pkmap_count[nr] = 0
            vaddr = PKMAP_ADDR(nr)
            pa = self.kernel_pt.translate(vaddr)
            assert pa is not None
            self.kernel_pt.clear_pte(vaddr)
            del self.page_address_map[pa >> PAGE_SHIFT]
            freed += 1
        if freed:
            self.tlb_flushes += 1
        return freed

    def kunmap(self, pfn: int) -> None:
        """kunmap(): one user fewer; the slot keeps its mapping (count 1) until the next flush."""
        if not PageHighMem(pfn):
            return
        vaddr = self.page_address_map.get(pfn)
        if vaddr is None:
            raise AssertionError(f"kunmap of pfn {pfn:#x}, which is not kmapped")
        nr = PKMAP_NR(vaddr)
        self.pkmap_count[nr] -= 1
        if self.pkmap_count[nr] == 0:
            raise AssertionError(f"kunmap of pfn {pfn:#x}: pkmap count of slot {nr} dropped to 0 (BUG)")

    # --- kmap_local / kmap_atomic (per-CPU fixmap slots) -------------------------------------------------

    def kmap_local_page(self, pfn: int, cpu: int = 0) -> int:
        """kmap_local_page(): lowmem needs no slot; highmem takes the next fixmap slot of this CPU
        (kmap_local_idx_push; more than KM_MAX_IDX nested maps is a BUG)."""
        if not PageHighMem(pfn):
            return lowmem_page_address(pfn)
        stack = self.local_stacks[cpu]
        if len(stack) >= KM_MAX_IDX:
            raise AssertionError(f"kmap_local on CPU {cpu}: more than KM_MAX_IDX={KM_MAX_IDX} nested maps")
        idx = len(stack)
        vaddr = fix_to_virt(FIX_KMAP_BEGIN + idx + KM_MAX_IDX * cpu)
        self.kernel_pt.set_pte(vaddr, pfn, PAGE_KERNEL)
        stack.append(pfn)
        return vaddr

    def kunmap_local(self, vaddr: int, cpu: int = 0) -> None:
        """kunmap_local(): must undo the most recent kmap_local of this CPU (stack order)."""
        stack = self.local_stacks[cpu]
        if not stack or vaddr != fix_to_virt(FIX_KMAP_BEGIN + len(stack) - 1 + KM_MAX_IDX * cpu):
            if self._is_lowmem_address(vaddr):
                return
            raise AssertionError(f"kunmap_local({vaddr:#x}) on CPU {cpu} out of order: the top slot is "
                                 f"{len(stack) - 1}")
        self.kernel_pt.clear_pte(vaddr)
        stack.pop()

    def kmap_atomic(self, pfn: int, cpu: int = 0) -> int:
        """kmap_atomic(): preempt_disable() + pagefault_disable() + kmap_local_page()."""
        self.atomic_depth[cpu] += 1
        return self.kmap_local_page(pfn, cpu)

    def kunmap_atomic(self, vaddr: int, cpu: int = 0) -> None:
        """kunmap_atomic(): kunmap_local() then re-enable page faults and preemption."""
        self.kunmap_local(vaddr, cpu)
        self.atomic_depth[cpu] -= 1

    @staticmethod
    def _is_lowmem_address(vaddr: int) -> bool:
        return 0xC0000000 <= vaddr < 0xC0000000 + MAXMEM
