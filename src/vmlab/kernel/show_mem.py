"""The `Mem-Info:` block of a global OOM report, after mm/show_mem.c (__show_mem, show_free_areas) and
mm/swap_state.c (show_swap_cache_info), 6.18, as this machine's kernel is configured (CONFIG_NUMA: the
`Node 0` prefixes; CONFIG_TRANSPARENT_HUGEPAGE: the THP fields; no CMA, memory failure or allocation
profiling lines).

The node's counters are the ones /proc/meminfo and /proc/vmstat print (vmstat.node_page_state); the
zones' are counted over their PFN spans. What the model does not keep prints what a machine without it
prints, as in meminfo: slab, kernel stacks, isolated pages (nothing is ever off the LRU between steps),
per-CPU free lists (free_pcp, local_pcp: the model frees to the buddy lists at once), CMA, bounce and
secondary page tables. The model's buddy allocator has no migrate types, so the free-list lines print
each order's count without the kernel's `(UME...)` type letters.
"""

from __future__ import annotations

import numpy as np

from vmlab.kernel.page_alloc import (
    NR_PAGE_ORDERS,
    WMARK_HIGH,
    WMARK_LOW,
    WMARK_MIN,
    PhysMem,
    Zone,
)
from vmlab.kernel.page_flags import PG
from vmlab.kernel.swap import (
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    LRU_UNEVICTABLE,
)
from vmlab.kernel.swapfile import si_swapinfo
from vmlab.kernel.vmscan import MAX_RECLAIM_RETRIES
from vmlab.kernel.vmstat import folio_pages, node_page_state, page_kinds

#: The hugetlb page sizes this kernel registers, in for_each_hstate() order (1 GiB first: x86_64 with
#: pdpe1gb), none of them with a pool (nr_hugepages 0, as this host).
HSTATE_SIZES_KB = (1048576, 2048)
#: The LRU lists in show_free_areas' zone order: (field, list).
ZONE_LRU_FIELDS = (("active_anon", LRU_ACTIVE_ANON), ("inactive_anon", LRU_INACTIVE_ANON),
                   ("active_file", LRU_ACTIVE_FILE), ("inactive_file", LRU_INACTIVE_FILE),
                   ("unevictable", LRU_UNEVICTABLE))


def _kb(pages: int) -> int:
    """K(): pages to kB."""
    return pages << 2


def zone_lru_pages(mem: PhysMem, zone: Zone) -> list[int]:
    """NR_ZONE_{INACTIVE_ANON, ACTIVE_ANON, INACTIVE_FILE, ACTIVE_FILE, UNEVICTABLE} of `zone`: the
    pages of the folios on each LRU list whose frames lie in it."""
    out = []
    for lst in mem.lruvec.lists:
        heads = np.fromiter(lst, dtype=np.int64, count=len(lst))
        out.append(folio_pages(mem, heads[(heads >= zone.zone_start_pfn) & (heads < zone.zone_end_pfn)]))
    return out


def _zone_has(mem: PhysMem, zone: Zone, pg: int) -> np.ndarray:
    """Per frame of `zone`, whether its page has flag `pg`."""
    flags = mem.mem_map.flags[zone.zone_start_pfn:zone.zone_end_pfn]
    return (flags >> np.uint64(pg)) & np.uint64(1) == 1


def zone_write_pending(mem: PhysMem, zone: Zone, cache: np.ndarray) -> int:
    """NR_ZONE_WRITE_PENDING of `zone`: its dirty page-cache pages (`cache`: vmstat.page_kinds' mask
    of the node) and those under write-back, counted as node_page_state counts them."""
    in_cache = cache[zone.zone_start_pfn:zone.zone_end_pfn]
    dirty = in_cache & _zone_has(mem, zone, PG.dirty) & ~_zone_has(mem, zone, PG.swapbacked)
    return int(dirty.sum()) + int(_zone_has(mem, zone, PG.writeback).sum())


def zone_mlocked(mem: PhysMem, zone: Zone) -> int:
    """NR_MLOCK of `zone`: the pages of its mlocked folios."""
    return folio_pages(mem, np.flatnonzero(_zone_has(mem, zone, PG.mlocked)) + zone.zone_start_pfn)


def _kb_fields(pairs: list[tuple[str, int]]) -> str:
    """`name:NkB` for each (name, pages), blank-separated, as the node and zone lines print them."""
    return " ".join(f"{name}:{_kb(pages)}kB" for name, pages in pairs)


def show_free_areas(mem: PhysMem, max_zone_idx: int) -> list[str]:
    """show_free_areas(): the node's page counts, the node line, each populated zone up to
    `max_zone_idx` with its lowmem reserves, each zone's free lists, the hugetlb pools, the page
    cache and the swap cache."""
    st = node_page_state(mem)
    cache = page_kinds(mem)[1]
    zones = [z for z in mem.zones if z.populated() and z.idx <= max_zone_idx]
    lines = [f"active_anon:{st['nr_active_anon']} inactive_anon:{st['nr_inactive_anon']} isolated_anon:0",
             f" active_file:{st['nr_active_file']} inactive_file:{st['nr_inactive_file']} isolated_file:0",
             f" unevictable:{st['nr_unevictable']} dirty:{st['nr_dirty']} writeback:{st['nr_writeback']}",
             " slab_reclaimable:0 slab_unreclaimable:0",
             f" mapped:{st['nr_mapped']} shmem:{st['nr_shmem']} pagetables:{st['nr_page_table_pages']}",
             " sec_pagetables:0 bounce:0",
             " kernel_misc_reclaimable:0",
             f" free:{st['nr_free_pages']} free_pcp:0 free_cma:0"]
    node = [("active_anon", st["nr_active_anon"]), ("inactive_anon", st["nr_inactive_anon"]),
            ("active_file", st["nr_active_file"]), ("inactive_file", st["nr_inactive_file"]),
            ("unevictable", st["nr_unevictable"]), ("isolated(anon)", 0), ("isolated(file)", 0),
            ("mapped", st["nr_mapped"]), ("dirty", st["nr_dirty"]), ("writeback", st["nr_writeback"]),
            ("shmem", st["nr_shmem"]), ("shmem_thp", 0), ("shmem_pmdmapped", 0),
            ("anon_thp", st["nr_anon_transparent_hugepages"] << 9), ("writeback_tmp", 0), ("kernel_stack", 0),
            ("pagetables", st["nr_page_table_pages"]), ("sec_pagetables", 0)]
    failures = mem.vmscan.kswapd_failures if mem.vmscan is not None else 0
    lines.append(f"Node 0 {_kb_fields(node)} all_unreclaimable? "
                 f"{'yes' if failures >= MAX_RECLAIM_RETRIES else 'no'}")
    for z in zones:
        lru = zone_lru_pages(mem, z)
        head = [("free", z.free_pages), ("boost", 0), ("min", z.watermark[WMARK_MIN]),
                ("low", z.watermark[WMARK_LOW]), ("high", z.watermark[WMARK_HIGH])]
        tail = [*((name, lru[i]) for name, i in ZONE_LRU_FIELDS),
                ("writepending", zone_write_pending(mem, z, cache)), ("present", z.present_pages),
                ("managed", z.managed_pages),
                ("mlocked", zone_mlocked(mem, z)), ("bounce", 0),
                ("free_pcp", 0), ("local_pcp", 0), ("free_cma", 0)]
        lines.append(f"Node 0 {z.name} {_kb_fields(head)} reserved_highatomic:0KB {_kb_fields(tail)}")
        lines.append("lowmem_reserve[]: " + " ".join(str(r) for r in z.lowmem_reserve))
    for z in zones:
        orders = " ".join(f"{z.nr_free[o]}*{_kb(1 << o)}kB" for o in range(NR_PAGE_ORDERS))
        total = sum(z.nr_free[o] << o for o in range(NR_PAGE_ORDERS))
        lines.append(f"Node 0 {z.name}: {orders} = {_kb(total)}kB")
    lines += [f"Node 0 hugepages_total=0 hugepages_free=0 hugepages_surp=0 hugepages_size={size}kB"
              for size in HSTATE_SIZES_KB]
    free_swap, total_swap = si_swapinfo(mem.swap)
    return [*lines, f"{st['nr_file_pages']} total pagecache pages",
            f"{st['nr_swapcached']} pages in swap cache",
            f"Free swap  = {_kb(free_swap)}kB",
            f"Total swap = {_kb(total_swap)}kB"]


def show_mem(mem: PhysMem, max_zone_idx: int) -> list[str]:
    """__show_mem(): `Mem-Info:`, show_free_areas() for the zones an allocation may use up to
    `max_zone_idx` (gfp_zone of its mask), then the RAM totals over every populated zone."""
    populated = [z for z in mem.zones if z.populated()]
    total = sum(z.present_pages for z in populated)
    reserved = sum(z.present_pages - z.managed_pages for z in populated)
    return ["Mem-Info:", *show_free_areas(mem, max_zone_idx),
            f"{total} pages RAM",
            "0 pages HighMem/MovableOnly",
            f"{reserved} pages reserved"]
