"""/proc/meminfo, after fs/proc/meminfo.c (meminfo_proc_show), mm/show_mem.c (si_mem_available),
mm/util.c (vm_commit_limit), mm/hugetlb.c (hugetlb_report_meminfo) and arch/x86/mm/pat/set_memory.c
(arch_report_meminfo).

Every line this machine's kernel prints, in its order and format (`Label:` padded to 16 columns, the
value right-aligned in 8, then ` kB`; HugePages_* without a unit). Values the model does not model print
what a machine without that thing prints, 0: Buffers (no block-device buffer heads), Zswap/Zswapped,
slab (KReclaimable, Slab, SReclaimable, SUnreclaim), KernelStack, SecPageTables, NFS_Unstable, Bounce,
WritebackTmp, VmallocUsed, Percpu, the file/shmem THP lines, Balloon and hugetlb (no pool).
VmallocTotal is the x86_64 4-level constant. DirectMap* split the RAM ranges by alignment into 4k, 2M and
1G mappings; the live kernel's later splits (kernel text, set_memory_*) are not modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmlab.kernel.page_alloc import WMARK_LOW, PhysMem
from vmlab.kernel.page_writeback import totalreserve_pages
from vmlab.kernel.swapfile import si_swapinfo
from vmlab.kernel.uapi import PAGE_SHIFT
from vmlab.kernel.util import vm_commit_limit, vm_memory_committed
from vmlab.kernel.vmstat import node_page_state

if TYPE_CHECKING:
    from vmlab.kernel.mmap import VmSysctl

#: (VMALLOC_END - VMALLOC_START) >> 10 with 4-level paging (32 TiB less a byte, as the kernel prints it).
VMALLOC_TOTAL_KB = 34359738367
HPAGE_PMD_SIZE_KB = 2048

MEMINFO_FIELDS = (
    "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active", "Inactive",
    "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)", "Unevictable", "Mlocked",
    "SwapTotal", "SwapFree", "Zswap", "Zswapped", "Dirty", "Writeback", "AnonPages", "Mapped", "Shmem",
    "KReclaimable", "Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "SecPageTables",
    "NFS_Unstable", "Bounce", "WritebackTmp", "CommitLimit", "Committed_AS", "VmallocTotal", "VmallocUsed",
    "VmallocChunk", "Percpu", "AnonHugePages", "ShmemHugePages", "ShmemPmdMapped", "FileHugePages",
    "FilePmdMapped", "Balloon", "HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp",
    "Hugepagesize", "Hugetlb", "DirectMap4k", "DirectMap2M", "DirectMap1G"
)
#: Lines hugetlb_report_meminfo prints as bare counts.
COUNT_FIELDS = frozenset({"HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp"})


def si_mem_available(mem: PhysMem, state: dict[str, int]) -> int:
    """si_mem_available(): free pages above the reserves plus the page cache that could be reclaimed
    without thrashing (all but max(half, the low watermarks))."""
    wmark_low = sum(z.watermark[WMARK_LOW] for z in mem.zones)
    available = state["nr_free_pages"] - totalreserve_pages(mem)
    pagecache = state["nr_active_file"] + state["nr_inactive_file"]
    pagecache -= min(pagecache // 2, wmark_low)
    return max(available + pagecache, 0)


def direct_map_kb(mem: PhysMem) -> tuple[int, int, int]:
    """(4k, 2M, 1G) kB of the direct map: each RAM range split by alignment (split_mem_range)."""
    sizes = [0, 0, 0]
    shifts = (0, 9, 18)
    for start, end in mem.e820:
        pfn = start
        while pfn < end:
            level = 2
            while level and (pfn & ((1 << shifts[level]) - 1) or pfn + (1 << shifts[level]) > end):
                level -= 1
            sizes[level] += 1 << shifts[level]
            pfn += 1 << shifts[level]
    return sizes[0] * 4, sizes[1] * 4, sizes[2] * 4


def show_meminfo(mem: PhysMem, sysctl: VmSysctl) -> str:
    """/proc/meminfo of the model machine (CommitLimit follows the overcommit sysctls)."""
    state = node_page_state(mem)
    swap_free, swap_total = si_swapinfo(mem.swap)
    pages_to_kb = 1 << (PAGE_SHIFT - 10)
    cached = max(state["nr_file_pages"] - state["nr_swapcached"], 0)
    direct_4k, direct_2m, direct_1g = direct_map_kb(mem)
    pages = {
        "MemTotal": mem.totalram_pages, "MemFree": state["nr_free_pages"],
        "MemAvailable": si_mem_available(mem, state), "Cached": cached,
        "SwapCached": state["nr_swapcached"],
        "Active": state["nr_active_anon"] + state["nr_active_file"],
        "Inactive": state["nr_inactive_anon"] + state["nr_inactive_file"],
        "Active(anon)": state["nr_active_anon"], "Inactive(anon)": state["nr_inactive_anon"],
        "Active(file)": state["nr_active_file"], "Inactive(file)": state["nr_inactive_file"],
        "Unevictable": state["nr_unevictable"], "Mlocked": state["nr_mlock"],
        "SwapTotal": swap_total, "SwapFree": swap_free,
        "Dirty": state["nr_dirty"], "Writeback": state["nr_writeback"],
        "AnonPages": state["nr_anon_pages"], "Mapped": state["nr_mapped"], "Shmem": state["nr_shmem"],
        "PageTables": state["nr_page_table_pages"],
        "CommitLimit": vm_commit_limit(mem, sysctl),
        "Committed_AS": vm_memory_committed(mem),
        "AnonHugePages": state["nr_anon_transparent_hugepages"] << 9,
    }
    kb = {name: value * pages_to_kb for name, value in pages.items()}
    kb.update({"VmallocTotal": VMALLOC_TOTAL_KB, "Hugepagesize": HPAGE_PMD_SIZE_KB,
               "DirectMap4k": direct_4k, "DirectMap2M": direct_2m, "DirectMap1G": direct_1g})
    return format_meminfo(kb)


def format_meminfo(kb: dict[str, int]) -> str:
    """The text of /proc/meminfo for values by field name (kB, or counts for HugePages_*; a field not
    given prints 0): show_val_kb()'s 16-column label and 8-column value."""
    lines = []
    for name in MEMINFO_FIELDS:
        label, value = f"{name}:", kb.get(name, 0)
        lines.append(f"{label:<16}{value:>8}" if name in COUNT_FIELDS else f"{label:<16}{value:>8} kB")
    return "\n".join(lines) + "\n"
