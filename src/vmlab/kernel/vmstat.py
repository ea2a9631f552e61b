"""The vm counters and /proc/vmstat, after mm/vmstat.c (vmstat_text, vmstat_show) and the node/zone
page-state counters of include/linux/mmzone.h.

The kernel keeps NR_* counters updated at every change; the model derives the same numbers from
`mem_map` and the lruvec when a view asks (`node_page_state`), and keeps its events (pgfault,
pgscan_kswapd, ...) in `PhysMem.events` by the kernel's names.

/proc/vmstat prints every line this machine's 6.18 kernel prints, in its order (VMSTAT_FIELDS, checked
against the host in tests). A counter the model does not model prints what a machine without that thing
prints, 0: NUMA balancing and the numa_* allocation counters, slab, kernel stacks, CMA, zsmalloc,
compaction, migration, balloon, hugetlb, zswap, KSM, IOMMU pages, per-CPU lists, memory tiering
(pgpromote_*, pgdemote_*), khugepaged and proactive reclaim, pgalloc_*/pgfree (the buddy allocator does
not count them) and the direct-map split counters.
"""

from __future__ import annotations

import numpy as np

from vmlab.kernel.page_alloc import STRUCT_PAGE_SIZE, PhysMem, pageblock_order
from vmlab.kernel.page_flags import PAGE_MAPPING_ANON, PG, PG_swapcache
from vmlab.kernel.page_writeback import global_dirty_limits
from vmlab.kernel.pgtable import pmd_leaf_pfns
from vmlab.kernel.swap import (
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    LRU_UNEVICTABLE,
)
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE

PFN_SECTION_SHIFT = 27 - PAGE_SHIFT  # SECTION_SIZE_BITS 27 on x86_64
#: vm_dirty_ratio and dirty_background_ratio defaults (the writeback model owns the live sysctls).

#: Every /proc/vmstat line of this machine's kernel, in order (tests/fixtures/host/vmstat.txt).
VMSTAT_FIELDS = (
    "nr_free_pages", "nr_free_pages_blocks", "nr_zone_inactive_anon", "nr_zone_active_anon",
    "nr_zone_inactive_file", "nr_zone_active_file", "nr_zone_unevictable", "nr_zone_write_pending",
    "nr_mlock", "nr_zspages", "nr_free_cma", "numa_hit", "numa_miss", "numa_foreign", "numa_interleave",
    "numa_local", "numa_other", "nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file",
    "nr_unevictable", "nr_slab_reclaimable", "nr_slab_unreclaimable", "nr_isolated_anon",
    "nr_isolated_file", "workingset_nodes", "workingset_refault_anon", "workingset_refault_file",
    "workingset_activate_anon", "workingset_activate_file", "workingset_restore_anon",
    "workingset_restore_file", "workingset_nodereclaim", "nr_anon_pages", "nr_mapped", "nr_file_pages",
    "nr_dirty", "nr_writeback", "nr_shmem", "nr_shmem_hugepages", "nr_shmem_pmdmapped", "nr_file_hugepages",
    "nr_file_pmdmapped", "nr_anon_transparent_hugepages", "nr_vmscan_write", "nr_vmscan_immediate_reclaim",
    "nr_dirtied", "nr_written", "nr_throttled_written", "nr_kernel_misc_reclaimable",
    "nr_foll_pin_acquired", "nr_foll_pin_released", "nr_kernel_stack", "nr_page_table_pages",
    "nr_sec_page_table_pages", "nr_iommu_pages", "nr_swapcached", "pgpromote_success",
    "pgpromote_candidate", "pgpromote_candidate_nrl", "pgdemote_kswapd", "pgdemote_direct",
    "pgdemote_khugepaged", "pgdemote_proactive", "nr_hugetlb", "nr_balloon_pages", "nr_kernel_file_pages",
    "nr_dirty_threshold", "nr_dirty_background_threshold", "nr_memmap_pages", "nr_memmap_boot_pages",
    "pgpgin", "pgpgout", "pswpin", "pswpout", "pgalloc_dma", "pgalloc_dma32", "pgalloc_normal",
    "pgalloc_movable", "pgalloc_device", "allocstall_dma", "allocstall_dma32", "allocstall_normal",
    "allocstall_movable", "allocstall_device", "pgskip_dma", "pgskip_dma32", "pgskip_normal",
    "pgskip_movable", "pgskip_device", "pgfree", "pgactivate", "pgdeactivate", "pglazyfree", "pgfault",
    "pgmajfault", "pglazyfreed", "pgrefill", "pgreuse", "pgsteal_kswapd", "pgsteal_direct",
    "pgsteal_khugepaged", "pgsteal_proactive", "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged",
    "pgscan_proactive", "pgscan_direct_throttle", "pgscan_anon", "pgscan_file", "pgsteal_anon",
    "pgsteal_file", "zone_reclaim_success", "zone_reclaim_failed", "pginodesteal", "slabs_scanned",
    "kswapd_inodesteal", "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly", "pageoutrun",
    "pgrotated", "drop_pagecache", "drop_slab", "oom_kill", "numa_pte_updates", "numa_huge_pte_updates",
    "numa_hint_faults", "numa_hint_faults_local", "numa_pages_migrated", "pgmigrate_success",
    "pgmigrate_fail", "thp_migration_success", "thp_migration_fail", "thp_migration_split",
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "compact_stall", "compact_fail",
    "compact_success", "compact_daemon_wake", "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned", "htlb_buddy_alloc_success", "htlb_buddy_alloc_fail",
    "unevictable_pgs_culled", "unevictable_pgs_scanned", "unevictable_pgs_rescued",
    "unevictable_pgs_mlocked", "unevictable_pgs_munlocked", "unevictable_pgs_cleared",
    "unevictable_pgs_stranded", "thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge",
    "thp_collapse_alloc", "thp_collapse_alloc_failed", "thp_file_alloc", "thp_file_fallback",
    "thp_file_fallback_charge", "thp_file_mapped", "thp_split_page", "thp_split_page_failed",
    "thp_deferred_split_page", "thp_underused_split_page", "thp_split_pmd", "thp_scan_exceed_none_pte",
    "thp_scan_exceed_swap_pte", "thp_scan_exceed_share_pte", "thp_split_pud", "thp_zero_page_alloc",
    "thp_zero_page_alloc_failed", "thp_swpout", "thp_swpout_fallback", "balloon_inflate", "balloon_deflate",
    "balloon_migrate", "swap_ra", "swap_ra_hit", "swpin_zero", "swpout_zero", "ksm_swpin_copy", "cow_ksm",
    "zswpin", "zswpout", "zswpwb", "direct_map_level2_splits", "direct_map_level3_splits",
    "direct_map_level2_collapses", "direct_map_level3_collapses", "nr_unstable"
)


def folio_pages(mem: PhysMem, pfns: np.ndarray) -> int:
    """Pages in the folios headed by `pfns` (a THP head counts 1 << order)."""
    if not pfns.size:
        return 0
    mm = mem.mem_map
    head = (mm.flags[pfns] >> np.uint64(PG.head)) & np.uint64(1)
    order = np.where(head == 1, mm.flags[np.minimum(pfns + 1, mm.nr - 1)] & np.uint64(0xFF), 0)
    return int((np.uint64(1) << order.astype(np.uint64)).sum())


def page_kinds(mem: PhysMem) -> tuple[np.ndarray, np.ndarray]:
    """(anon, cache): per frame, whether it holds an anonymous page, and whether a page-cache page
    (shmem's included); reserved frames are neither."""
    mm = mem.mem_map
    reserved = (mm.flags >> np.uint64(PG.reserved)) & np.uint64(1) == 1
    anon = ((mm.mapping & PAGE_MAPPING_ANON) != 0) & ~reserved
    return anon, (mm.mapping != 0) & ~anon & ~reserved


def pmd_mapped_thps(mem: PhysMem, heads: np.ndarray) -> int:
    """NR_ANON_THPS: how many of the anon THPs `heads` some process maps by a PMD leaf (the kernel
    counts a THP from its first PMD mapping to its last, __folio_add_rmap / __folio_remove_rmap: one
    mapped only by PTEs, after a partial munmap or a COW, is not counted)."""
    if not heads.size:
        return 0
    return len(pmd_leaf_pfns(mm.pt for mm in mem.swap.mms()).intersection(heads.tolist()))


def node_page_state(mem: PhysMem) -> dict[str, int]:
    """The node's page-state counters (NR_*, by their /proc/vmstat names), from mem_map and the LRU."""
    mm = mem.mem_map
    flags = mm.flags
    anon, cache = page_kinds(mem)

    def has(pg: int) -> np.ndarray:
        return (flags >> np.uint64(pg)) & np.uint64(1) == 1

    swapbacked, mapped = has(PG.swapbacked), mm._mapcount >= 0
    swapcache = has(PG_swapcache) & swapbacked  # anon folios, and shmem ones on their way to swap
    heads_anon_thp = np.flatnonzero(anon & has(PG.head))
    lru = mem.lruvec.nr_pages
    dirty = int((cache & has(PG.dirty) & ~swapbacked).sum())
    writeback = int(has(PG.writeback).sum())
    state = {
        "nr_free_pages": mem.nr_free_pages,
        "nr_free_pages_blocks": sum(z.nr_free[o] << o for z in mem.zones
                                    for o in range(pageblock_order, len(z.nr_free))),
        "nr_inactive_anon": lru[LRU_INACTIVE_ANON], "nr_active_anon": lru[LRU_ACTIVE_ANON],
        "nr_inactive_file": lru[LRU_INACTIVE_FILE], "nr_active_file": lru[LRU_ACTIVE_FILE],
        "nr_unevictable": lru[LRU_UNEVICTABLE],
        "nr_mlock": folio_pages(mem, np.flatnonzero(has(PG.mlocked))),
        "nr_anon_pages": int((anon & ~(has(PG_swapcache) & ~mapped)).sum()),
        "nr_mapped": int((cache & mapped).sum()),
        "nr_file_pages": int(cache.sum()) + int(swapcache.sum()),
        "nr_dirty": dirty,
        "nr_writeback": writeback,
        "nr_shmem": int((cache & swapbacked).sum()),
        "nr_anon_transparent_hugepages": pmd_mapped_thps(mem, heads_anon_thp),
        "nr_page_table_pages": sum(z.nr_pagetable for z in mem.zones),
        "nr_swapcached": int(swapcache.sum()),
        "nr_memmap_boot_pages": memmap_boot_pages(mem),
        "workingset_nodes": mem.shadow_nodes.nr_listed(),
    }
    for name in ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable"):
        state[f"nr_zone_{name}"] = state[f"nr_{name}"]
    state["nr_zone_write_pending"] = dirty + writeback
    bg_thresh, thresh = global_dirty_limits(mem)
    state["nr_dirty_threshold"], state["nr_dirty_background_threshold"] = thresh, bg_thresh
    return state


def memmap_boot_pages(mem: PhysMem) -> int:
    """Pages of struct page allocated at boot: SPARSEMEM_VMEMMAP maps a section's 32768 descriptors
    (64 bytes each, 512 pages) for every 128 MiB section that holds RAM."""
    sections = {pfn >> PFN_SECTION_SHIFT for start, end in mem.e820
                for pfn in range(start, end, 1 << PFN_SECTION_SHIFT)}
    sections |= {(end - 1) >> PFN_SECTION_SHIFT for _, end in mem.e820}
    return len(sections) * (STRUCT_PAGE_SIZE << PFN_SECTION_SHIFT) // PAGE_SIZE


def show_vmstat(mem: PhysMem) -> str:
    """/proc/vmstat: `name value` per line, every field of this kernel in its order."""
    state = node_page_state(mem)
    return format_vmstat({name: state.get(name, mem.events.get(name, 0)) for name in VMSTAT_FIELDS})


def format_vmstat(values: dict[str, int]) -> str:
    """The text of /proc/vmstat for values by field name (a field not given prints 0)."""
    return "".join(f"{name} {values.get(name, 0)}\n" for name in VMSTAT_FIELDS)
