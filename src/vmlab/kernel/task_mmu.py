"""The /proc views of the model, after fs/proc/task_mmu.c: maps, smaps, smaps_rollup, pagemap and the
memory lines of status (task_mem), byte for byte (§4, F1–F4)."""

from __future__ import annotations

from dataclasses import dataclass

from vmlab.kernel.memory import GUARD_MARKER, HPAGE_PMD_NR
from vmlab.kernel.mm_types import (
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    VM_EXEC,
    VM_HUGEPAGE,
    VM_LOCKED,
    VM_MAYSHARE,
    VM_NOHUGEPAGE,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    MmStruct,
    VmArea,
    vm_flags_mnemonics,
)
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import PAGE_MAPPING_ANON, PG
from vmlab.kernel.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_PSE,
    PMD_SIZE,
    __pte_to_swp_entry,
    __swp_offset,
    __swp_type,
    pte_dirty,
    pte_pfn,
    pte_present,
    pte_special,
)
from vmlab.kernel.swapfile import is_swap_slot_pte, pte_to_swp_entry, swp_swapcount
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE, page_align

#: The gate area is printed last and is not a VMA (L9).
VSYSCALL_LINE = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
_NAME_COLUMN = 72  # seq_setwidth(m, 25 + sizeof(void *) * 6 - 1)


def vma_name(mm: MmStruct, vma: VmArea) -> str | None:
    """get_vma_name(): file path, special name, [heap], [stack], or None."""
    if vma.vm_file is not None:
        inode = vma.vm_file.inode
        return inode.path.replace("\n", "\\012") + (" (deleted)" if inode.deleted else "")
    if vma.special_name is not None:
        return vma.special_name
    if vma.vm_start < mm.brk and vma.vm_end > mm.start_brk:
        return "[heap]"
    if vma.vm_start <= mm.start_stack <= vma.vm_end:
        return "[stack]"
    return None


def show_map_vma(mm: MmStruct, vma: VmArea) -> str:
    """show_map_vma(): one line of /proc/PID/maps, newline included."""
    f = vma.vm_flags
    perms = ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + (
        "x" if f & VM_EXEC else "-") + ("s" if f & VM_MAYSHARE else "p")
    if vma.vm_file is not None:
        inode = vma.vm_file.inode
        pgoff, major, minor, ino = vma.vm_pgoff << PAGE_SHIFT, inode.major, inode.minor, inode.ino
    else:
        pgoff = major = minor = ino = 0
    line = f"{vma.vm_start:08x}-{vma.vm_end:08x} {perms} {pgoff:08x} {major:02x}:{minor:02x} {ino} "
    name = vma_name(mm, vma)
    if name is None:
        return line + "\n"
    return line.ljust(_NAME_COLUMN) + " " + name + "\n"


def show_maps(mm: MmStruct) -> str:
    """The whole /proc/PID/maps."""
    return "".join(show_map_vma(mm, vma) for vma in mm) + VSYSCALL_LINE


def _kb_line(field: str, kb: int) -> str:
    return f"{field + ':':<16}{kb:>8} kB\n"


PSS_SHIFT = 12


@dataclass
class MemSizeStats:
    """`struct mem_size_stats`: what smaps_account() sums over a VMA's pages (bytes; pss << PSS_SHIFT)."""

    resident: int = 0
    pss: int = 0
    pss_dirty: int = 0
    pss_anon: int = 0
    pss_file: int = 0
    pss_shmem: int = 0
    pss_locked: int = 0
    shared_clean: int = 0
    shared_dirty: int = 0
    private_clean: int = 0
    private_dirty: int = 0
    referenced: int = 0
    anonymous: int = 0
    lazyfree: int = 0
    anonymous_thp: int = 0
    swap: int = 0
    swap_pss: int = 0


def smap_gather_stats(mm: MmStruct, mem: PhysMem, vma: VmArea, mss: MemSizeStats) -> None:
    """smap_gather_stats(): walk the VMA's entries; the zero page and other special entries count nowhere.
    A shmem mapping's Swap also counts the object's pages on swap in the range it maps (no SwapPss),
    all of them for a shared or read-only mapping (shmem_swap_usage), those under no PTE for a private
    writable one (smaps_pte_hole: a COW copy hides its page)."""
    if mm.pt is None:
        return
    locked = bool(vma.vm_flags & VM_LOCKED)
    mm_map = mem.mem_map
    addrs, entries = mm.pt.entries(vma.vm_start, vma.vm_end)
    if vma.vm_file is not None and vma.vm_file.inode.swapped:
        mss.swap += PAGE_SIZE * _shmem_swap_usage(vma, set(addrs.tolist()))
    for entry in entries.tolist():
        if is_swap_slot_pte(entry):  # smaps_pte_entry(): a swapped page, shared by swp_swapcount PTEs
            mss.swap += PAGE_SIZE
            count = swp_swapcount(mem.swap, pte_to_swp_entry(entry))
            mss.swap_pss += (PAGE_SIZE << PSS_SHIFT) // count if count >= 2 else PAGE_SIZE << PSS_SHIFT
            continue
        if not pte_present(entry) or pte_special(entry):
            continue
        pfn = pte_pfn(entry)
        if entry & _PAGE_PSE:
            if mem.is_huge_zero_pfn(pfn):
                continue
            nr, pages = HPAGE_PMD_NR, range(pfn, pfn + HPAGE_PMD_NR)
            mss.anonymous_thp += nr * PAGE_SIZE
        else:
            nr, pages = 1, range(pfn, pfn + 1)
        head = mm_map.compound_head(pfn)
        flags = int(mm_map.flags[head])
        anon = bool(int(mm_map.mapping[head]) & PAGE_MAPPING_ANON)
        dirty = pte_dirty(entry) or bool(flags >> PG.dirty & 1)
        size = nr * PAGE_SIZE
        if anon:
            mss.anonymous += size
            if not flags >> PG.swapbacked & 1 and not dirty:
                mss.lazyfree += size
        mss.resident += size
        if entry & _PAGE_ACCESSED or flags >> PG.referenced & 1:
            mss.referenced += size
        for page in pages:
            mapcount = int(mm_map._mapcount[page]) + 1
            private = mapcount < 2
            pss = (PAGE_SIZE << PSS_SHIFT) // max(mapcount, 1)
            mss.pss += pss
            if anon:
                mss.pss_anon += pss
            elif flags >> PG.swapbacked & 1:
                mss.pss_shmem += pss
            else:
                mss.pss_file += pss
            if locked:
                mss.pss_locked += pss
            if dirty:
                mss.pss_dirty += pss
                if private:
                    mss.private_dirty += PAGE_SIZE
                else:
                    mss.shared_dirty += PAGE_SIZE
            elif private:
                mss.private_clean += PAGE_SIZE
            else:
                mss.shared_clean += PAGE_SIZE


def _shmem_swap_usage(vma: VmArea, entries: set[int]) -> int:
    """The pages of the VMA's shmem object on swap in the range it maps; for a private writable
    mapping only those at addresses with no entry (`entries`: the addresses that have one)."""
    assert vma.vm_file is not None
    first = vma.vm_pgoff
    last = first + ((vma.vm_end - vma.vm_start) >> PAGE_SHIFT)
    hole = bool(vma.vm_flags & VM_WRITE) and not vma.vm_flags & VM_SHARED
    return sum(1 for index in vma.vm_file.inode.swapped if first <= index < last
               and not (hole and vma.vm_start + ((index - first) << PAGE_SHIFT) in entries))


def _show_smap_stats(mss: MemSizeStats, rollup: bool) -> str:
    """__show_smap(): the fields from Rss to Locked."""
    kb = _kb_line
    out = kb("Rss", mss.resident >> 10) + kb("Pss", mss.pss >> (10 + PSS_SHIFT))
    out += kb("Pss_Dirty", mss.pss_dirty >> (10 + PSS_SHIFT))
    if rollup:
        out += (kb("Pss_Anon", mss.pss_anon >> (10 + PSS_SHIFT))
                + kb("Pss_File", mss.pss_file >> (10 + PSS_SHIFT))
                + kb("Pss_Shmem", mss.pss_shmem >> (10 + PSS_SHIFT)))
    out += (kb("Shared_Clean", mss.shared_clean >> 10) + kb("Shared_Dirty", mss.shared_dirty >> 10)
            + kb("Private_Clean", mss.private_clean >> 10) + kb("Private_Dirty", mss.private_dirty >> 10)
            + kb("Referenced", mss.referenced >> 10) + kb("Anonymous", mss.anonymous >> 10) + kb("KSM", 0)
            + kb("LazyFree", mss.lazyfree >> 10) + kb("AnonHugePages", mss.anonymous_thp >> 10)
            + kb("ShmemPmdMapped", 0) + kb("FilePmdMapped", 0) + kb("Shared_Hugetlb", 0)
            + kb("Private_Hugetlb", 0) + kb("Swap", mss.swap >> 10)
            + kb("SwapPss", mss.swap_pss >> (10 + PSS_SHIFT))
            + kb("Locked", mss.pss_locked >> (10 + PSS_SHIFT)))
    return out


def thp_eligible(vma: VmArea) -> bool:
    """THPeligible (enabled=madvise): an anonymous VM_HUGEPAGE VMA with room for an aligned 2 MiB page."""
    if not vma.vm_flags & VM_HUGEPAGE or vma.vm_flags & VM_NOHUGEPAGE or not vma.is_anonymous():
        return False
    first = (vma.vm_start + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
    return first + PMD_SIZE <= vma.vm_end


def show_smap(mm: MmStruct, vma: VmArea, mem: PhysMem | None = None) -> str:
    """show_smap(): the header, sizes, page statistics (with physical memory), THPeligible, VmFlags."""
    size_kb = (vma.vm_end - vma.vm_start) >> 10
    out = (show_map_vma(mm, vma) + _kb_line("Size", size_kb) + _kb_line("KernelPageSize", 4)
           + _kb_line("MMUPageSize", 4))
    if mem is not None:
        mss = MemSizeStats()
        smap_gather_stats(mm, mem, vma, mss)
        out += _show_smap_stats(mss, False) + f"{'THPeligible:':<16}{int(thp_eligible(vma)):>8}\n"
    return out + f"VmFlags: {vm_flags_mnemonics(vma.vm_flags)}\n"


def show_smaps(mm: MmStruct, mem: PhysMem | None = None) -> str:
    """The whole /proc/PID/smaps, the gate area last (its VmFlags are just `ex`)."""
    gate = (VSYSCALL_LINE + _kb_line("Size", 4) + _kb_line("KernelPageSize", 4)
            + _kb_line("MMUPageSize", 4))
    if mem is not None:
        gate += _show_smap_stats(MemSizeStats(), False) + f"{'THPeligible:':<16}{0:>8}\n"
    return "".join(show_smap(mm, vma, mem) for vma in mm) + gate + "VmFlags: ex \n"


def show_smaps_rollup(mm: MmStruct, mem: PhysMem) -> str:
    """/proc/PID/smaps_rollup: one `[rollup]` header spanning all VMAs and the summed statistics."""
    mss = MemSizeStats()
    vmas = list(mm)
    for vma in vmas:
        smap_gather_stats(mm, mem, vma, mss)
    lo, hi = (vmas[0].vm_start, vmas[-1].vm_end) if vmas else (0, 0)
    header = f"{lo:08x}-{hi:08x} ---p 00000000 00:00 0 ".ljust(_NAME_COLUMN) + " [rollup]\n"
    return header + _show_smap_stats(mss, True)


def task_statm(mm: MmStruct) -> str:
    """/proc/PID/statm (task_statm()): size resident shared text lib data dt, in pages."""
    shared = mm.rss[MM_FILEPAGES] + mm.rss[MM_SHMEMPAGES]
    resident = shared + mm.rss[MM_ANONPAGES]
    text = (page_align(mm.end_code) - (mm.start_code & ~(PAGE_SIZE - 1))) >> PAGE_SHIFT
    return f"{mm.total_vm} {resident} {shared} {text} 0 {mm.data_vm + mm.stack_vm} 0\n"


def task_mem(mm: MmStruct) -> str:
    """task_mem(): the memory lines of /proc/PID/status."""
    def line(name: str, kb: int) -> str:
        return f"{name}:\t{kb:>8} kB\n"

    anon, file, shmem, swap = (mm.rss[i] * 4 for i in (MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES,
                                                        MM_SWAPENTS))
    pte = (mm.pt.pgtables_bytes if mm.pt is not None else 0) >> 10
    text = min(page_align(mm.end_code) - (mm.start_code & ~(PAGE_SIZE - 1)), mm.exec_vm << PAGE_SHIFT)
    return (line("VmPeak", max(mm.hiwater_vm, mm.total_vm) * 4) + line("VmSize", mm.total_vm * 4)
            + line("VmLck", mm.locked_vm * 4) + line("VmPin", 0)
            + line("VmHWM", max(mm.hiwater_rss * 4, anon + file + shmem)) + line("VmRSS", anon + file + shmem)
            + line("RssAnon", anon) + line("RssFile", file) + line("RssShmem", shmem)
            + line("VmData", mm.data_vm * 4) + line("VmStk", mm.stack_vm * 4)
            + line("VmExe", text >> 10) + line("VmLib", ((mm.exec_vm << PAGE_SHIFT) - text) >> 10)
            + line("VmPTE", pte) + line("VmSwap", swap))


# --- pagemap -------------------------------------------------------------------------------------------

PM_PFRAME_MASK = (1 << 55) - 1
PM_MMAP_EXCLUSIVE = 1 << 56
PM_GUARD_REGION = 1 << 58
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63
MAX_SWAPFILES_SHIFT = 5


def pagemap_read(mm: MmStruct, mem: PhysMem, start: int, end: int) -> list[int]:
    """pagemap_read(): one 64-bit entry per page of [start, end) (F3), PFNs shown (we are root)."""
    out = [0] * ((end - start) >> PAGE_SHIFT)
    if mm.pt is None:
        return out
    addrs, entries = mm.pt.entries(start & ~(PMD_SIZE - 1), end)
    mm_map = mem.mem_map
    for addr, entry in zip(addrs.tolist(), entries.tolist(), strict=True):
        if entry & _PAGE_PSE and pte_present(entry):
            base = pte_pfn(entry)
            huge_zero = mem.is_huge_zero_pfn(base)
            anon = bool(int(mm_map.mapping[base]) & PAGE_MAPPING_ANON)
            flags = PM_PRESENT | (0 if anon else PM_FILE)
            # pagemap_pmd_range_thp() asks __folio_page_mapped_exclusively() of the PMD's page, the
            # head, for every entry: a THP whose head alone is mapped once (its other pages mapped
            # by a fork child's PTEs too) reads exclusive throughout (measured: test_diff_thp_random).
            if not huge_zero and int(mm_map._mapcount[base]) == 0:
                flags |= PM_MMAP_EXCLUSIVE
            for i in range(HPAGE_PMD_NR):
                va = addr + (i << PAGE_SHIFT)
                if start <= va < end:
                    out[(va - start) >> PAGE_SHIFT] = flags | (base + i)
            continue
        if not start <= addr < end:
            continue
        slot = (addr - start) >> PAGE_SHIFT
        if pte_present(entry):
            pfn = pte_pfn(entry)
            flags = PM_PRESENT
            if not pte_special(entry):
                if not int(mm_map.mapping[mm_map.compound_head(pfn)]) & PAGE_MAPPING_ANON:
                    flags |= PM_FILE
                if int(mm_map._mapcount[pfn]) == 0:
                    flags |= PM_MMAP_EXCLUSIVE
            out[slot] = flags | pfn
        elif entry:
            swp = __pte_to_swp_entry(entry)
            frame = __swp_type(swp) | (__swp_offset(swp) << MAX_SWAPFILES_SHIFT)
            out[slot] = PM_SWAP | (PM_GUARD_REGION if entry == GUARD_MARKER else 0) | frame
    return out
