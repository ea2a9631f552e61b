"""Physical memory: mm/page_alloc.c (zones, watermarks, the buddy allocator), `mem_map` and the x86_64
direct map, the shared zero page and the huge zero folio.

`mem_map` is one set of numpy arrays indexed by PFN, one array per `struct page` field (48 bytes a frame
against the kernel's 64). A `Page` view gives readable access; hot paths use the arrays.

Deliberate simplifications, each marked where it matters:
- one node, FLATMEM numbering (pfn 0 .. max_pfn); no per-CPU page lists, no migratetypes (one free list
  per order per zone), no compaction or watermark boosting;
- the slow path wakes kswapd and reclaims directly through `PhysMem.vmscan` (vmscan.install), then
  calls `PhysMem.oom_hook` (the OOM killer) before it fails;
- the boot-time reservations are modelled as: the first 1 MiB (x86 always reserves it), the kernel image
  at 16 MiB and the memmap itself, placed top-down.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

import numpy as np

from vmlab.kernel import psi
from vmlab.kernel.blk_mq import BlockLayer
from vmlab.kernel.clock import Clock
from vmlab.kernel.memcontrol import FLUSH_TIME_NS, flush_memcg_stats_dwork
from vmlab.kernel.page_flags import (
    F_HEAD,
    F_LRU,
    F_RESERVED,
    KPF,
    KPF_COPIED,
    MAPCOUNT_NONE,
    PAGE_MAPPING_ANON,
    PAGE_MAPPING_FLAGS,
    PAGE_MAPPING_KSM,
    PG,
    ZONES_MASK,
    ZONES_PGSHIFT,
    PG_swapcache,
    PGTY_buddy,
    PGTY_offline,
    PGTY_slab,
    PGTY_table,
    page_type_of,
    page_type_value,
)
from vmlab.kernel.page_writeback import Writeback
from vmlab.kernel.swap import CpuFbatches, LruVec
from vmlab.kernel.swapfile import SwapState
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE
from vmlab.kernel.workingset import ShadowNodes

if TYPE_CHECKING:
    from vmlab.kernel.memcontrol import MemCgroup, MemCgroupTree
    from vmlab.kernel.mm_types import Inode
    from vmlab.kernel.vmscan import Vmscan

MAX_PAGE_ORDER: Final = 10
NR_PAGE_ORDERS: Final = MAX_PAGE_ORDER + 1
MAX_ORDER_NR_PAGES: Final = 1 << MAX_PAGE_ORDER
pageblock_order = 9  # = HPAGE_PMD_ORDER with THP
pageblock_nr_pages = 1 << pageblock_order
HPAGE_PMD_ORDER: Final = 9
MIGRATE_PCPTYPES: Final = 3
SWAP_CLUSTER_MAX: Final = 32
STRUCT_PAGE_SIZE: Final = 64  # sizeof(struct page) on x86_64

# enum zone_type, as configured here (CONFIG_ZONE_DMA, CONFIG_ZONE_DMA32, ZONE_MOVABLE, CONFIG_ZONE_DEVICE).
ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE, ZONE_DEVICE = range(5)
MAX_NR_ZONES: Final = 5
ZONE_NAMES: Final = ("DMA", "DMA32", "Normal", "Movable", "Device")
#: sysctl_lowmem_reserve_ratio defaults (vm.lowmem_reserve_ratio).
LOWMEM_RESERVE_RATIO: Final = (256, 256, 32, 0, 0)
MAX_DMA_PFN: Final = (16 << 20) >> PAGE_SHIFT
MAX_DMA32_PFN: Final = (4 << 30) >> PAGE_SHIFT

# Watermark indices (enum zone_watermarks).
WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO = range(4)

# GFP zone modifiers (include/linux/gfp_types.h) and the usual combinations' zone bits.
__GFP_DMA = 0x01
__GFP_HIGHMEM = 0x02
__GFP_DMA32 = 0x04
__GFP_MOVABLE = 0x08
GFP_KERNEL: Final = 0
GFP_USER: Final = 0
GFP_HIGHUSER_MOVABLE: Final = __GFP_HIGHMEM | __GFP_MOVABLE

# The x86_64 direct map (4-level paging, no KASLR of the memory regions) and the kernel text mapping.
PAGE_OFFSET: Final = 0xFFFF888000000000
__START_KERNEL_map = 0xFFFFFFFF80000000
#: Where this machine's kernel image starts (/proc/iomem "Kernel code" at 0x1000000) and its size up to
#: the end of bss (0x3c58000), and the zero page inside bss (pagemap of an untouched read page: 0x3b34).
KERNEL_IMAGE_START_PFN: Final = 0x1000
KERNEL_IMAGE_END_PFN: Final = 0x3C58
ZERO_PAGE_PFN: Final = 0x3B34

NO_PFN: Final = -1


def gfp_zone(gfp: int) -> int:
    """gfp_zone(): the highest zone an allocation with these GFP bits may use."""
    if gfp & __GFP_DMA:
        return ZONE_DMA
    if gfp & __GFP_DMA32:
        return ZONE_DMA32
    if gfp & __GFP_HIGHMEM and gfp & __GFP_MOVABLE:
        return ZONE_MOVABLE
    return ZONE_NORMAL


def int_sqrt(x: int) -> int:
    """int_sqrt(): floor of the square root."""
    return math.isqrt(x)


def pc_e820(ram_bytes: int) -> list[tuple[int, int]]:
    """Usable RAM as PFN ranges [start, end) for a PC-like VM with `ram_bytes` of memory, laid out as this
    machine's firmware does: page 0 and the 640 KiB-1 MiB hole are not RAM, RAM above 3 GiB is moved above
    the 32-bit PCI hole to 4 GiB."""
    total = ram_bytes >> PAGE_SHIFT
    if total < 0x200:
        raise ValueError(f"RAM size {ram_bytes} is below 2 MiB")
    low_end = min(total, (3 << 30) >> PAGE_SHIFT)
    ranges = [(1, 0x9F), (0x100, low_end)]
    if total > low_end:
        ranges.append((MAX_DMA32_PFN, MAX_DMA32_PFN + total - low_end))
    return ranges


# --- mem_map ----------------------------------------------------------------------------------------


#: The _mapcount word of a free block's head page (PageBuddy).
_BUDDY_WORD: Final = page_type_value(PGTY_buddy)
#: The flag bits a freed page keeps: the zone/node bits above the page flags.
_KEEP_ON_FREE: Final = ~((1 << (PG.arch_2 + 1)) - 1) & (2**64 - 1)
#: A page's zone number in its flags (page_zonenum() is these bits >> ZONES_PGSHIFT).
_ZONE_BITS: Final = ZONES_MASK << ZONES_PGSHIFT


class MemMap:
    """`mem_map`: the page descriptors of every PFN of the machine, one numpy array per field.

    Fields as in struct page: flags (with the zone number in the upper bits), _refcount, _mapcount (its
    word doubles as page_type), mapping (an integer handle; low bits PAGE_MAPPING_*), index, the two lru
    links (free-list links here; -1 = none; a tail page of a compound page holds -2 - head_pfn in
    lru_next, the kernel's compound_head with bit 0 set) and private (the order of a free buddy block).

    Each field's memory is an `array.array` (`flags_a`, `_refcount_a`, ...) and its numpy array a view
    of the same buffer (no copy): vectorised code uses the numpy arrays, hot paths read and write one
    element through the array.array, which costs about half as much as numpy's `.item()` / scalar store
    and gives the same Python int.
    """

    __slots__ = ("_mapcount", "_mapcount_a", "_refcount", "_refcount_a", "flags", "flags_a", "index",
                 "index_a", "lru_next", "lru_next_a", "lru_prev", "lru_prev_a", "mapping", "mapping_a",
                 "nr", "private", "private_a")

    flags: np.ndarray
    flags_a: array[int]
    _refcount: np.ndarray
    _refcount_a: array[int]
    _mapcount: np.ndarray
    _mapcount_a: array[int]
    mapping: np.ndarray
    mapping_a: array[int]
    index: np.ndarray
    index_a: array[int]
    lru_next: np.ndarray
    lru_next_a: array[int]
    lru_prev: np.ndarray
    lru_prev_a: array[int]
    private: np.ndarray
    private_a: array[int]
    nr: int

    #: Each field: its array.array typecode, numpy dtype and initial value.
    FIELDS: ClassVar[tuple[tuple[str, str, Any, int], ...]] = (
        ("flags", "Q", np.uint64, 0), ("_refcount", "i", np.int32, 0),
        ("_mapcount", "i", np.int32, MAPCOUNT_NONE), ("mapping", "q", np.int64, 0),
        ("index", "Q", np.uint64, 0), ("lru_next", "i", np.int32, NO_PFN),
        ("lru_prev", "i", np.int32, NO_PFN), ("private", "Q", np.uint64, 0))

    def __init__(self, nr_pfns: int) -> None:
        self.nr = nr_pfns
        for name, typecode, dtype, init in self.FIELDS:
            store = array(typecode, [init]) * nr_pfns
            if store.itemsize != np.dtype(dtype).itemsize:  # the two views must agree on the layout
                raise RuntimeError(f"array('{typecode}') is {store.itemsize} bytes here, not "
                                   f"{np.dtype(dtype).itemsize}")
            setattr(self, name + "_a", store)
            setattr(self, name, np.frombuffer(store, dtype=dtype))

    def __len__(self) -> int:
        return self.nr

    def __getitem__(self, pfn: int) -> Page:
        """pfn_to_page(): a view of one descriptor."""
        if not 0 <= pfn < self.nr:
            raise IndexError(f"pfn {pfn:#x} outside mem_map (max_pfn {self.nr:#x})")
        return Page(self, pfn)

    def nbytes(self) -> int:
        """Host bytes held by the descriptor arrays."""
        return sum(getattr(self, name).nbytes for name, *_ in self.FIELDS)

    def test(self, pfn: int, pg: PG) -> bool:
        """PageXxx(): whether flag `pg` is set on `pfn`."""
        return bool(self.flags_a[pfn] >> pg & 1)

    def set(self, pfn: int, pg: PG) -> None:
        """SetPageXxx()."""
        self.flags_a[pfn] = self.flags_a[pfn] | (1 << pg)

    def clear(self, pfn: int, pg: PG) -> None:
        """ClearPageXxx()."""
        self.flags_a[pfn] = self.flags_a[pfn] & ~(1 << pg)

    def page_type(self, pfn: int) -> int | None:
        """The PGTY_* of a typed page (buddy, page table, ...), or None."""
        return page_type_of(self._mapcount_a[pfn])

    def page_zonenum(self, pfn: int) -> int:
        """page_zonenum(): the zone number kept in the upper bits of page->flags."""
        return self.flags_a[pfn] >> ZONES_PGSHIFT & ZONES_MASK

    def compound_head(self, pfn: int) -> int:
        """compound_head(): the head PFN of the folio `pfn` belongs to."""
        link = self.lru_next_a[pfn]
        return -2 - link if link < NO_PFN else pfn

    def folio_order(self, pfn: int) -> int:
        """folio_order() of a head page: the low byte of the second page's flags (0 for a small folio)."""
        if not self.flags_a[pfn] & F_HEAD:
            return 0
        return self.flags_a[pfn + 1] & 0xFF


class Page:
    """A readable view of one `struct page`; for inspection and tests, not for hot paths."""

    __slots__ = ("mem", "pfn")

    def __init__(self, mem: MemMap, pfn: int) -> None:
        self.mem = mem
        self.pfn = pfn

    @property
    def flags(self) -> int:
        return int(self.mem.flags[self.pfn])

    @property
    def refcount(self) -> int:
        """page_ref_count()."""
        return int(self.mem._refcount[self.pfn])

    @property
    def mapcount(self) -> int:
        """page_mapcount(): _mapcount + 1 (0 for an unmapped or typed page)."""
        word = int(self.mem._mapcount[self.pfn])
        return 0 if page_type_of(word) is not None else word + 1

    @property
    def mapping(self) -> int:
        return int(self.mem.mapping[self.pfn])

    @property
    def index(self) -> int:
        return int(self.mem.index[self.pfn])

    @property
    def private(self) -> int:
        return int(self.mem.private[self.pfn])

    @property
    def lru(self) -> tuple[int, int]:
        """(prev, next) PFNs of the list the page is on (-1: none)."""
        return int(self.mem.lru_prev[self.pfn]), int(self.mem.lru_next[self.pfn])

    @property
    def zone(self) -> int:
        return self.mem.page_zonenum(self.pfn)

    def test(self, pg: PG) -> bool:
        return self.mem.test(self.pfn, pg)

    def __repr__(self) -> str:
        names = "|".join(pg.name for pg in PG if self.flags >> pg & 1) or "0"
        return (f"Page(pfn={self.pfn:#x} zone={ZONE_NAMES[self.zone]} flags={names} "
                f"refcount={self.refcount} mapcount={self.mapcount} type={self.mem.page_type(self.pfn)})")


# --- zones --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Zone:
    """`struct zone`: a PFN span, its page counts, watermarks and buddy free lists (one list per order)."""

    idx: int
    zone_start_pfn: int = 0
    spanned_pages: int = 0
    present_pages: int = 0
    managed_pages: int = 0
    watermark: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    lowmem_reserve: list[int] = field(default_factory=lambda: [0] * MAX_NR_ZONES)
    free_head: list[int] = field(default_factory=lambda: [NO_PFN] * NR_PAGE_ORDERS)
    free_tail: list[int] = field(default_factory=lambda: [NO_PFN] * NR_PAGE_ORDERS)
    nr_free: list[int] = field(default_factory=lambda: [0] * NR_PAGE_ORDERS)
    free_pages: int = 0  # NR_FREE_PAGES
    nr_pagetable: int = 0  # NR_PAGETABLE

    @property
    def name(self) -> str:
        return ZONE_NAMES[self.idx]

    @property
    def zone_end_pfn(self) -> int:
        return self.zone_start_pfn + self.spanned_pages

    def populated(self) -> bool:
        """populated_zone(): has present pages."""
        return self.present_pages > 0

    def spans(self, pfn: int) -> bool:
        """zone_spans_pfn()."""
        return self.zone_start_pfn <= pfn < self.zone_end_pfn

    def is_highmem(self) -> bool:
        """is_highmem(): never on x86_64."""
        return False


@dataclass(frozen=True)
class BootReservations:
    """What memblock keeps from the buddy allocator at boot, by PFN range [start, end)."""

    ranges: tuple[tuple[int, int], ...]


def default_reservations(e820: list[tuple[int, int]], max_pfn: int) -> BootReservations:
    """The first 1 MiB, the kernel image (as placed on this machine) and the memmap, allocated top-down."""
    memmap_pages = -(-max_pfn * STRUCT_PAGE_SIZE // PAGE_SIZE)
    top_start, top_end = e820[-1]
    memmap = (max(top_start, top_end - memmap_pages), top_end)
    image_end = min(KERNEL_IMAGE_END_PFN, e820[-1][1])
    return BootReservations(((0, 0x100), (KERNEL_IMAGE_START_PFN, image_end), memmap))


OomHook = Callable[["PhysMem", int, int], bool]


class PhysMem:
    """The machine's physical memory: one node (`pglist_data`) with its zones and `mem_map`.

    `oom_hook(mem, order, highest_zoneidx) -> bool` is called when an allocation still fails the min
    watermark in every allowed zone after reclaim; True (a victim was killed) retries, False fails.
    """

    def __init__(self, ram_bytes: int, *, thp_enabled: bool = True,
                 e820: list[tuple[int, int]] | None = None,
                 reservations: BootReservations | None = None,
                 watermark_scale_factor: int = 10) -> None:
        self.e820 = e820 if e820 is not None else pc_e820(ram_bytes)
        self.max_pfn = max(end for _, end in self.e820)
        self.mem_map = MemMap(self.max_pfn)
        self.watermark_scale_factor = watermark_scale_factor
        self.min_free_kbytes = 0
        self.user_min_free_kbytes = -1
        #: __alloc_pages_may_oom(): called when reclaim did not help; True: retry (a victim was killed).
        self.oom_hook: OomHook | None = None
        #: mem_cgroup_uncharge(pfn, order) of a frame being freed (page->memcg_data), when memcgs exist.
        self.uncharge_hook: Callable[[int, int], None] | None = None
        #: The memory cgroups page-cache and swap-in charges go to (memcontrol), when the machine has them.
        self.memcgs: MemCgroupTree | None = None
        #: The machine's simulated time (timers, costs, printk stamps) and its vm event counters
        #: (/proc/vmstat's pgfault, pgscan_kswapd, ..., by the kernel's names).
        self.clock = Clock()
        #: Pressure stall information of the machine, fed by the clock's memstall intervals.
        self.psi = psi.attach(self.clock)
        self.events: Counter[str] = Counter()
        self.lruvec = LruVec()
        #: The page cache's nodes that hold only shadow entries (workingset's shadow_nodes list_lru).
        self.shadow_nodes = ShadowNodes()
        #: The anon THPs partially mapped (deferred_split_folio), oldest first, for the deferred split
        #: shrinker (huge_memory), and the work each memcg's shrinker deferred (None: the node's).
        self.deferred_split: dict[int, None] = {}
        self.deferred_split_nr_deferred: dict[MemCgroup | None, int] = {}
        #: The model's one CPU's folio batches (swap.CpuFbatches: lru_add, lru_activate, ...).
        self.fbatches = CpuFbatches()
        #: mlock_fbatch of the model's one CPU: (folio head, what it waits for: mlock_folio.MUNLOCK,
        #: LRU_FOLIO or NEW_FOLIO), one reference each; swap.lru_add_drain() moves it too.
        self.mlock_fbatch: list[tuple[int, int]] = []
        #: folio->mlock_count of the folios on the unevictable list (how many locked VMAs mlocked them).
        self.mlock_count: dict[int, int] = {}
        #: Dirty and write-back accounting, the dirty limits' sysctls and the flusher (page_writeback).
        self.wb = Writeback()
        #: Swap areas and the swap cache (swapon, swap-out, swap-in).
        self.swap = SwapState()
        #: The block layer: the plug of the task submitting I/O now, the requests it gathers.
        self.block = BlockLayer(self.clock)
        #: The reclaimer (vmscan.Vmscan: kswapd and direct reclaim), once the machine installs one.
        self.vmscan: Vmscan | None = None
        #: The inodes whose pages are in the page cache, by the handle page->mapping holds (what the
        #: kernel reaches through folio->mapping); reclaim finds a folio's i_pages through it.
        self.address_spaces: dict[int, Inode] = {}
        #: Bumped whenever reclaim clears a present PTE: a batched replay's TLB snapshot is then stale.
        self.unmap_generation = 0
        #: Set by a batched replay while it holds accessed bits not yet written to the PTEs; reclaim
        #: calls it before it looks at young bits.
        self.pending_accesses: Callable[[], None] | None = None
        self.alloc_failures = 0
        #: vm_committed_as (pages): what mappings and shmem objects have committed (util.py), and the
        #: part of it the kernel charges but never gives back (util.py: leaks the host shows too).
        self.vm_committed_as = 0
        self.vm_committed_leak = 0
        #: Frames of the kernel's special mappings (the vDSO image), allocated on first use, by name.
        self.special_pages: dict[str, list[int]] = {}
        self._huge_zero_pfn = NO_PFN
        self._huge_zero_refcount = 0
        self._huge_zero_mms: set[int] = set()
        self.zones = [Zone(i) for i in range(MAX_NR_ZONES)]
        self._free_area_init()
        res = reservations if reservations is not None else default_reservations(self.e820, self.max_pfn)
        self._memblock_free_all(res)
        #: The node's zonelist for each highest zone index (managed zones from it down), fixed at boot.
        self._zonelists = [tuple(reversed([z for z in self.zones[:i + 1] if z.managed_pages]))
                           for i in range(MAX_NR_ZONES)]
        self.init_per_zone_wmark_min(thp_enabled)
        self.clock.at(FLUSH_TIME_NS, lambda: flush_memcg_stats_dwork(self))  # mem_cgroup_init()

    # --- boot -----------------------------------------------------------------------------------------

    def _free_area_init(self) -> None:
        """free_area_init(): zone spans from the zone limits and the RAM map; every page starts reserved
        with a refcount of 1 (memmap_init_range) and its zone number in page->flags."""
        limits = [(ZONE_DMA, 0, MAX_DMA_PFN), (ZONE_DMA32, MAX_DMA_PFN, MAX_DMA32_PFN),
                  (ZONE_NORMAL, MAX_DMA32_PFN, 1 << 52)]
        present = np.zeros(self.max_pfn, dtype=bool)
        for start, end in self.e820:
            present[start:end] = True
        for zid, lo, hi in limits:
            pfns = np.flatnonzero(present[lo:min(hi, self.max_pfn)])
            if pfns.size == 0:
                continue
            zone = self.zones[zid]
            zone.zone_start_pfn = lo + int(pfns[0])
            zone.spanned_pages = int(pfns[-1]) + 1 + lo - zone.zone_start_pfn
            zone.present_pages = int(pfns.size)
            zone_bits = np.uint64(zid << ZONES_PGSHIFT)
            self.mem_map.flags[zone.zone_start_pfn:zone.zone_end_pfn] |= zone_bits
        mm = self.mem_map
        mm.flags |= np.uint64(1 << PG.reserved)
        mm._refcount[:] = 1

    def _memblock_free_all(self, res: BootReservations) -> None:
        """memblock_free_all(): hand every RAM page that is not reserved to the buddy allocator, in
        naturally aligned blocks of up to MAX_PAGE_ORDER (__free_pages_memory)."""
        free = np.zeros(self.max_pfn, dtype=bool)
        for start, end in self.e820:
            free[start:end] = True
        for start, end in res.ranges:
            free[start:min(end, self.max_pfn)] = False
        edges = np.flatnonzero(np.diff(np.concatenate(([0], free.view(np.int8), [0]))))
        for start, end in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
            self._free_range(start, end)
        for zone in self.zones:
            if zone.populated():
                zone.managed_pages = zone.free_pages

    def _free_range(self, start: int, end: int) -> None:
        """__free_pages_memory(): free [start, end) as the largest aligned blocks that fit."""
        mm = self.mem_map
        while start < end:
            order = min(MAX_PAGE_ORDER, (start & -start).bit_length() - 1 if start else MAX_PAGE_ORDER)
            while start + (1 << order) > end:
                order -= 1
            n = 1 << order
            mm.flags[start:start + n] &= np.uint64(~(1 << PG.reserved) & (2**64 - 1))
            mm._refcount[start:start + n] = 0
            zone = self.zones[mm.page_zonenum(start)]
            self._free_one_page(start, order, zone)
            start += n

    # --- watermarks (mm/page_alloc.c, mm/khugepaged.c) ----------------------------------------------

    def init_per_zone_wmark_min(self, thp_enabled: bool) -> None:
        """The boot sequence of the watermarks from the zones' managed pages: init_per_zone_wmark_min()
        (core_initcall), then khugepaged's start raising min_free_kbytes when THP is enabled
        (always or madvise)."""
        for zone in self.zones:
            zone.watermark = [0, 0, 0, 0]
        self.calculate_min_free_kbytes()
        self.setup_per_zone_wmarks()
        self.setup_per_zone_lowmem_reserve()
        if thp_enabled:
            self.set_recommended_min_free_kbytes()

    def nr_free_buffer_pages(self) -> int:
        """nr_free_buffer_pages(): managed pages above the high watermark in the zones GFP_USER may use."""
        return sum(max(0, z.managed_pages - z.watermark[WMARK_HIGH])
                   for z in self.zones[:gfp_zone(GFP_USER) + 1])

    def calculate_min_free_kbytes(self) -> None:
        """calculate_min_free_kbytes(): sqrt(lowmem_kbytes * 16), clamped to [128, 262144]."""
        lowmem_kbytes = self.nr_free_buffer_pages() * (PAGE_SIZE >> 10)
        new = int_sqrt(lowmem_kbytes * 16)
        if new > self.user_min_free_kbytes:
            self.min_free_kbytes = min(max(new, 128), 262144)

    def set_recommended_min_free_kbytes(self) -> None:
        """khugepaged's set_recommended_min_free_kbytes(): keep 2 + 9 pageblocks per zone free for THP,
        at most 5% of lowmem; raise min_free_kbytes to that and recompute the watermarks."""
        nr_zones = sum(1 for z in self.zones if z.populated() and z.idx <= gfp_zone(GFP_USER))
        recommended = pageblock_nr_pages * nr_zones * 2
        recommended += pageblock_nr_pages * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
        recommended = min(recommended, self.nr_free_buffer_pages() // 20)
        recommended <<= PAGE_SHIFT - 10
        if recommended > self.min_free_kbytes:
            self.min_free_kbytes = recommended
        self.setup_per_zone_wmarks()

    def setup_per_zone_wmarks(self) -> None:
        """__setup_per_zone_wmarks(): split min_free_kbytes over the lowmem zones by managed pages;
        low/high/promo are min plus 1, 2, 3 times max(min/4, managed * watermark_scale_factor / 10000)."""
        pages_min = self.min_free_kbytes >> (PAGE_SHIFT - 10)
        lowmem_pages = sum(z.managed_pages for z in self.zones
                           if not z.is_highmem() and z.idx != ZONE_MOVABLE)
        for zone in self.zones:
            tmp = pages_min * zone.managed_pages // lowmem_pages
            if zone.is_highmem() or zone.idx == ZONE_MOVABLE:
                wmark_min = min(max(zone.managed_pages // 1024, SWAP_CLUSTER_MAX), 128)
            else:
                wmark_min = tmp
            tmp = max(tmp >> 2, zone.managed_pages * self.watermark_scale_factor // 10000)
            zone.watermark = [wmark_min, wmark_min + tmp, wmark_min + 2 * tmp, wmark_min + 3 * tmp]

    def setup_per_zone_lowmem_reserve(self) -> None:
        """setup_per_zone_lowmem_reserve(): pages a lower zone keeps from allocations that could have used
        a higher one: the managed pages of the zones above, divided by lowmem_reserve_ratio."""
        for i, zone in enumerate(self.zones[:-1]):
            ratio = LOWMEM_RESERVE_RATIO[i]
            clear = not ratio or not zone.managed_pages
            managed = 0
            for j in range(i + 1, MAX_NR_ZONES):
                managed += self.zones[j].managed_pages
                zone.lowmem_reserve[j] = 0 if clear else managed // ratio

    def zone_watermark_ok(self, zone: Zone, order: int, mark: int, highest_zoneidx: int) -> bool:
        """__zone_watermark_ok(): enough free pages above `mark` plus the lowmem reserve, and a free
        block of at least `order`."""
        free_pages = zone.free_pages - ((1 << order) - 1)
        if free_pages <= mark + zone.lowmem_reserve[highest_zoneidx]:
            return False
        if order == 0:
            return True
        return any(zone.nr_free[o] for o in range(order, NR_PAGE_ORDERS))

    # --- the buddy allocator --------------------------------------------------------------------------

    def _add_to_free_list(self, pfn: int, zone: Zone, order: int, tail: bool) -> None:
        """__add_to_free_list() and set_buddy_order(): mark the block's head PageBuddy of `order`."""
        mm = self.mem_map
        mm._mapcount_a[pfn] = _BUDDY_WORD
        mm.private_a[pfn] = order
        head = zone.free_head[order]
        if head == NO_PFN:
            mm.lru_prev_a[pfn] = mm.lru_next_a[pfn] = NO_PFN
            zone.free_head[order] = zone.free_tail[order] = pfn
        elif tail:
            last = zone.free_tail[order]
            mm.lru_prev_a[pfn], mm.lru_next_a[pfn] = last, NO_PFN
            mm.lru_next_a[last] = pfn
            zone.free_tail[order] = pfn
        else:
            mm.lru_prev_a[pfn], mm.lru_next_a[pfn] = NO_PFN, head
            mm.lru_prev_a[head] = pfn
            zone.free_head[order] = pfn
        zone.nr_free[order] += 1
        zone.free_pages += 1 << order

    def _del_from_free_list(self, pfn: int, zone: Zone, order: int) -> None:
        """del_page_from_free_list(): unlink and clear PageBuddy."""
        mm = self.mem_map
        prev, nxt = mm.lru_prev_a[pfn], mm.lru_next_a[pfn]
        if prev == NO_PFN:
            zone.free_head[order] = nxt
        else:
            mm.lru_next_a[prev] = nxt
        if nxt == NO_PFN:
            zone.free_tail[order] = prev
        else:
            mm.lru_prev_a[nxt] = prev
        mm.lru_prev_a[pfn] = mm.lru_next_a[pfn] = NO_PFN
        mm._mapcount_a[pfn] = MAPCOUNT_NONE
        mm.private_a[pfn] = 0
        zone.nr_free[order] -= 1
        zone.free_pages -= 1 << order

    def _page_is_buddy(self, buddy: int, order: int, zone: Zone) -> bool:
        """page_is_buddy(): `buddy` heads a free block of exactly `order` in the same zone."""
        if not zone.spans(buddy) or buddy >= self.max_pfn:
            return False
        mm = self.mem_map
        return mm._mapcount_a[buddy] >> 24 & 0xFF == PGTY_buddy and mm.private_a[buddy] == order

    def _free_one_page(self, pfn: int, order: int, zone: Zone) -> None:
        """_free_one_page(): merge with the buddy (pfn ^ (1 << order)) while it is free at the same
        order, then queue the block; at the tail if its buddy one order up is free too (buddy_merge_likely),
        so that it stays unallocated and can merge soon. (_page_is_buddy inlined: the hot free path.)"""
        mm = self.mem_map
        mapcount, private = mm._mapcount_a, mm.private_a
        lo = zone.zone_start_pfn
        hi = min(lo + zone.spanned_pages, self.max_pfn)
        while order < MAX_PAGE_ORDER:
            buddy = pfn ^ (1 << order)
            if not (lo <= buddy < hi and mapcount[buddy] >> 24 & 0xFF == PGTY_buddy
                    and private[buddy] == order):
                break
            self._del_from_free_list(buddy, zone, order)
            pfn &= buddy
            order += 1
        to_tail = False
        if order < MAX_PAGE_ORDER - 1:
            higher = (pfn & ~(1 << order)) ^ (1 << (order + 1))
            to_tail = (lo <= higher < hi and mapcount[higher] >> 24 & 0xFF == PGTY_buddy
                       and private[higher] == order + 1)
        self._add_to_free_list(pfn, zone, order, to_tail)

    def _expand(self, pfn: int, zone: Zone, low: int, high: int) -> None:
        """expand(): return the upper halves of a block taken at order `high` down to order `low`.
        Its callers took the smallest block there was, so the free lists of orders low..high-1 are
        empty and each half becomes the only block of its list (__add_to_free_list() into an empty
        list and set_buddy_order(), inlined)."""
        mm = self.mem_map
        mapcount, private, lru_prev, lru_next = mm._mapcount_a, mm.private_a, mm.lru_prev_a, mm.lru_next_a
        free_head, free_tail, nr_free = zone.free_head, zone.free_tail, zone.nr_free
        zone.free_pages += (1 << high) - (1 << low)
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            half = pfn + size
            mapcount[half] = _BUDDY_WORD
            private[half] = high
            lru_prev[half] = lru_next[half] = NO_PFN
            free_head[high] = free_tail[high] = half
            nr_free[high] += 1

    def _rmqueue_smallest(self, zone: Zone, order: int) -> int:
        """__rmqueue_smallest(): the first block of the smallest order >= `order`, split down; or -1."""
        free_head = zone.free_head
        for current in range(order, NR_PAGE_ORDERS):
            pfn = free_head[current]
            if pfn != NO_PFN:
                self._del_from_free_list(pfn, zone, current)
                if current > order:
                    self._expand(pfn, zone, order, current)
                return pfn
        return NO_PFN

    def _prep_compound_page(self, pfn: int, order: int) -> None:
        """prep_compound_page(): PG_head, the order in the second page's flags and compound_head links
        in the tails."""
        mm = self.mem_map
        mm.set(pfn, PG.head)
        mm.flags_a[pfn + 1] = (mm.flags_a[pfn + 1] & ~0xFF) | order
        mm.lru_next[pfn + 1:pfn + (1 << order)] = -2 - pfn

    def get_page_from_freelist(self, order: int, highest_zoneidx: int, wmark: int) -> int:
        """get_page_from_freelist(): the first zone in the zonelist that passes watermark `wmark`
        (zone_watermark_ok inlined: every allocation passes here)."""
        for zone in self._zonelists[highest_zoneidx]:
            mark = zone.watermark[wmark] + zone.lowmem_reserve[highest_zoneidx]
            if zone.free_pages - ((1 << order) - 1) <= mark:
                continue
            if order and not any(zone.nr_free[o] for o in range(order, NR_PAGE_ORDERS)):
                continue
            pfn = self._rmqueue_smallest(zone, order)
            if pfn != NO_PFN:
                return pfn
        return NO_PFN

    def alloc_page_fast(self, zone_limit: int = ZONE_NORMAL) -> int:
        """The fast path of alloc_pages(0): an order-0 page (refcount 1) from the first zone of the
        zonelist above its low watermark, as get_page_from_freelist(0, zone_limit, WMARK_LOW) and
        prep_new_page() give it; NO_PFN when no zone passes, and then alloc_pages(0) takes its slow
        path (waking kswapd). Every page-cache and anon page passes here, so the zone check is inlined,
        and so is __rmqueue_smallest(0): the first block of the smallest order with one, unlinked from
        the head of its list (del_page_from_free_list() of a block with no predecessor), then split
        down by expand()."""
        mm = self.mem_map
        for zone in self._zonelists[zone_limit]:
            if zone.free_pages <= zone.watermark[WMARK_LOW] + zone.lowmem_reserve[zone_limit]:
                continue
            free_head = zone.free_head
            pfn = free_head[0]
            order = 0
            while pfn == NO_PFN:
                order += 1
                if order == NR_PAGE_ORDERS:
                    break
                pfn = free_head[order]
            else:
                lru_next = mm.lru_next_a
                nxt = lru_next[pfn]
                free_head[order] = nxt
                if nxt == NO_PFN:
                    zone.free_tail[order] = NO_PFN
                else:
                    mm.lru_prev_a[nxt] = NO_PFN
                lru_next[pfn] = NO_PFN
                mm._mapcount_a[pfn] = MAPCOUNT_NONE
                mm.private_a[pfn] = 0
                zone.nr_free[order] -= 1
                zone.free_pages -= 1 << order
                if order:
                    self._expand(pfn, zone, 0, order)
                mm._refcount_a[pfn] = 1
                return pfn
        return NO_PFN

    def alloc_pages(self, order: int, zone_limit: int = ZONE_NORMAL, *, compound: bool = False) -> int | None:
        """__alloc_pages(): a block of 2**order frames from the highest allowed zone down, or None.

        Fast path at the low watermark; the slow path wakes kswapd and retries at the min watermark,
        then reclaims directly (while that makes progress), then asks `oom_hook` while it kills;
        None when that fails too.
        """
        if not order:
            pfn = self.alloc_page_fast(zone_limit)
            if pfn != NO_PFN:
                return pfn
        elif not 0 < order <= MAX_PAGE_ORDER:
            raise ValueError(f"order {order} outside 0..{MAX_PAGE_ORDER}")
        else:
            pfn = self.get_page_from_freelist(order, zone_limit, WMARK_LOW)
        if pfn == NO_PFN:
            vmscan = self.vmscan
            if vmscan is not None:
                vmscan.wakeup_kswapd(order, zone_limit)
            pfn = self.get_page_from_freelist(order, zone_limit, WMARK_MIN)
            if vmscan is not None:
                retries = vmscan.direct_reclaim_retries(order)
                while pfn == NO_PFN and retries and self._perform_reclaim(vmscan, order, zone_limit):
                    retries -= 1
                    pfn = self.get_page_from_freelist(order, zone_limit, WMARK_MIN)
        while pfn == NO_PFN and self.oom_hook is not None and self.oom_hook(self, order, zone_limit):
            pfn = self.get_page_from_freelist(order, zone_limit, WMARK_MIN)
        if pfn == NO_PFN:
            self.alloc_failures += 1
            return None
        self.mem_map._refcount_a[pfn] = 1  # prep_new_page(): set_page_refcounted()
        if compound and order:
            self._prep_compound_page(pfn, order)
        return pfn

    def _perform_reclaim(self, vmscan: Vmscan, order: int, zone_limit: int) -> int:
        """__perform_reclaim(): direct reclaim inside psi_memstall_enter/leave (all of its time, scanning
        and any write-out, is the allocating task's memory stall); the pages it freed."""
        with self.clock.memstall():
            return vmscan.try_to_free_pages(order, zone_limit)

    def alloc_pages_bulk(self, nr: int, zone_limit: int = ZONE_NORMAL) -> np.ndarray:
        """alloc_pages_bulk(): up to `nr` order-0 pages, as an array of PFNs (shorter if memory runs out).

        Differs from the kernel (which refills per-CPU lists): takes the largest free blocks and splits
        them whole, so that filling gigabytes costs one Python step per 4 MiB.
        """
        mm = self.mem_map
        out: list[np.ndarray] = []
        got = 0
        while got < nr:
            want = nr - got
            order = min(MAX_PAGE_ORDER, want.bit_length() - 1)
            pfn = NO_PFN
            while pfn == NO_PFN and order >= 0:
                pfn = self.get_page_from_freelist(order, zone_limit, WMARK_MIN)
                if pfn == NO_PFN:
                    order -= 1
            if pfn == NO_PFN:
                break
            n = 1 << order
            mm._refcount[pfn:pfn + n] = 1
            out.append(np.arange(pfn, pfn + n, dtype=np.int64))
            got += n
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def free_pages_bulk(self, pfns: np.ndarray) -> None:
        """Drop one reference on each order-0 page in `pfns` and free those that reach zero."""
        mm = self.mem_map
        mm._refcount[pfns] -= 1
        for pfn in pfns[mm._refcount[pfns] == 0].tolist():
            self._free_pages_ok(pfn, 0)

    def free_unref_folios(self, pfns: Iterable[int]) -> None:
        """free_unref_folios(): return order-0 pages whose last reference is already gone to the buddy
        lists, in order. Applies to pages with refcount 0, off the LRU, not compound and with no page
        type (what put_page leaves); the same as `_free_pages_ok(pfn, 0)` for each (memcg uncharge,
        flags cut to the zone bits, mapping cleared, then _free_one_page's merge and queueing), with the
        arrays and each zone's bounds and lists bound once per batch. A page whose buddy is free goes
        through _free_one_page; the others (most) are queued here: __add_to_free_list at order 0 inlined,
        at the tail when buddy_merge_likely() as in _free_one_page, the zone's counters summed per run
        of one zone. (A free block's head holds exactly _BUDDY_WORD, so PageBuddy() is one compare.)"""
        mm = self.mem_map
        flags_a, mapping_a, mapcount, private = mm.flags_a, mm.mapping_a, mm._mapcount_a, mm.private_a
        lru_prev, lru_next = mm.lru_prev_a, mm.lru_next_a
        uncharge = self.uncharge_hook if self.lruvec.memcg_pages else None  # no charges: nothing to give
        zones = self.zones
        max_pfn = self.max_pfn
        buddy_word = _BUDDY_WORD
        zone_bits = -1  # the zone bits of the pages queued in `zone`
        zone, lo, hi = zones[0], 0, 0
        free_head, free_tail = zone.free_head, zone.free_tail
        queued = 0  # order-0 pages queued in `zone` since its counters were last updated
        for pfn in pfns:
            flags = flags_a[pfn]
            if uncharge is not None:
                uncharge(pfn, 0)
            flags_a[pfn] = flags & _KEEP_ON_FREE
            mapping_a[pfn] = 0
            if flags & _ZONE_BITS != zone_bits:
                zone.nr_free[0] += queued
                zone.free_pages += queued
                queued = 0
                zone_bits = flags & _ZONE_BITS
                zone = zones[zone_bits >> ZONES_PGSHIFT]
                lo = zone.zone_start_pfn
                hi = min(lo + zone.spanned_pages, max_pfn)
                free_head, free_tail = zone.free_head, zone.free_tail
            buddy = pfn ^ 1
            if lo <= buddy < hi and mapcount[buddy] == buddy_word and private[buddy] == 0:
                self._free_one_page(pfn, 0, zone)  # it merges: the general loop
                continue
            mapcount[pfn] = buddy_word
            private[pfn] = 0
            queued += 1
            first = free_head[0]
            if first == NO_PFN:
                lru_prev[pfn] = lru_next[pfn] = NO_PFN
                free_head[0] = free_tail[0] = pfn
                continue
            higher = (pfn & ~1) ^ 2
            if lo <= higher < hi and mapcount[higher] == buddy_word and private[higher] == 1:
                last = free_tail[0]
                lru_prev[pfn], lru_next[pfn] = last, NO_PFN
                lru_next[last] = pfn
                free_tail[0] = pfn
            else:
                lru_prev[pfn], lru_next[pfn] = NO_PFN, first
                lru_prev[first] = pfn
                free_head[0] = pfn
        zone.nr_free[0] += queued
        zone.free_pages += queued

    def free_pages(self, pfn: int, order: int = 0) -> None:
        """__free_pages(): drop a reference; when it was the last, return the block to the buddy lists."""
        mm = self.mem_map
        ref = mm._refcount_a[pfn]
        if ref <= 0 or mm.flags_a[pfn] & F_RESERVED or mm._mapcount_a[pfn] >> 24 & 0xFF == PGTY_buddy:
            raise AssertionError(f"bad free of pfn {pfn:#x} order {order}: {mm[pfn]!r}")
        mm._refcount_a[pfn] = ref - 1
        if ref == 1:
            self._free_pages_ok(pfn, order)

    def _free_pages_ok(self, pfn: int, order: int) -> None:
        """free_pages_prepare() + free_one_page(): undo the compound state, then merge and queue."""
        mm = self.mem_map
        if pfn & ((1 << order) - 1):
            raise AssertionError(f"free of pfn {pfn:#x} not aligned to order {order}")
        flags = mm.flags_a[pfn]
        if flags & F_LRU:
            raise AssertionError(f"free of pfn {pfn:#x} still on an LRU list: {mm[pfn]!r}")
        if order and self.uncharge_hook is not None:  # order 0: free_unref_folios uncharges
            self.uncharge_hook(pfn, order)
        if flags & F_HEAD:
            n = 1 << order
            self.deferred_split.pop(pfn, None)  # folio_unqueue_deferred_split() as the folio is freed
            mm.clear(pfn, PG.head)
            mm.flags_a[pfn + 1] = mm.flags_a[pfn + 1] & ~0xFF
            mm.lru_next[pfn + 1:pfn + n] = NO_PFN
        if page_type_of(mm._mapcount_a[pfn]) is not None:
            mm._mapcount_a[pfn] = MAPCOUNT_NONE
        if not order:
            self.free_unref_folios((pfn,))
            return
        mm.flags[pfn:pfn + (1 << order)] &= np.uint64(_KEEP_ON_FREE)
        mm.mapping[pfn:pfn + (1 << order)] = 0
        self._free_one_page(pfn, order, self.zones[flags >> ZONES_PGSHIFT & ZONES_MASK])

    # --- page tables' frames ----------------------------------------------------------------------------

    def alloc_pagetable_page(self) -> int | None:
        """pagetable_alloc() + pagetable_*_ctor(): a zeroed frame typed PGTY_table, counted in
        NR_PAGETABLE of its zone; None on failure."""
        pfn = self.alloc_pages(0, ZONE_NORMAL)
        if pfn is not None:
            self.mem_map._mapcount[pfn] = page_type_value(PGTY_table)
            self.zones[self.mem_map.page_zonenum(pfn)].nr_pagetable += 1
        return pfn

    def alloc_pagetable_pages_bulk(self, nr: int) -> np.ndarray:
        """`nr` page-table frames at once (see alloc_pages_bulk); shorter if memory runs out."""
        pfns = self.alloc_pages_bulk(nr, ZONE_NORMAL)
        self.mem_map._mapcount[pfns] = page_type_value(PGTY_table)
        for zid, count in zip(*np.unique(self._zone_of(pfns), return_counts=True), strict=True):
            self.zones[int(zid)].nr_pagetable += int(count)
        return pfns

    def free_pagetable_page(self, pfn: int) -> None:
        """pagetable_dtor() + pagetable_free(); a table charged to a memcg is uncharged on the way
        (free_pages_prepare -> __memcg_kmem_uncharge_page)."""
        if self.mem_map.page_type(pfn) != PGTY_table:
            raise AssertionError(f"pfn {pfn:#x} is not a page table: {self.mem_map[pfn]!r}")
        tree = self.memcgs
        if tree is not None and tree.kmem_memcg:
            tree.uncharge_kmem(pfn)
        self.mem_map._mapcount[pfn] = MAPCOUNT_NONE
        self.zones[self.mem_map.page_zonenum(pfn)].nr_pagetable -= 1
        self.free_pages(pfn, 0)

    def _zone_of(self, pfns: np.ndarray) -> np.ndarray:
        return (self.mem_map.flags[pfns] >> np.uint64(ZONES_PGSHIFT)) & np.uint64(ZONES_MASK)

    # --- zero pages (mm/memory.c, mm/huge_memory.c) -------------------------------------------------------

    def my_zero_pfn(self, addr: int = 0) -> int:
        """my_zero_pfn(): the one shared zero page (empty_zero_page in the kernel's bss, PG_reserved)."""
        return ZERO_PAGE_PFN

    def is_zero_pfn(self, pfn: int) -> bool:
        """is_zero_pfn()."""
        return pfn == ZERO_PAGE_PFN

    def mm_get_huge_zero_folio(self, mm_id: int) -> int | None:
        """mm_get_huge_zero_folio(): the huge zero folio's head PFN, allocated (order 9, zeroed) on first
        use; each mm holds one reference (MMF_HUGE_ZERO_FOLIO) and the shrinker holds one more."""
        if mm_id in self._huge_zero_mms:
            return self._huge_zero_pfn
        if self._huge_zero_refcount == 0:
            pfn = self.alloc_pages(HPAGE_PMD_ORDER, ZONE_NORMAL, compound=True)
            if pfn is None:
                return None
            self._huge_zero_pfn = pfn
            self._huge_zero_refcount = 1  # the reference shrink_huge_zero_folio() may drop
        self._huge_zero_refcount += 1
        self._huge_zero_mms.add(mm_id)
        return self._huge_zero_pfn

    def mm_put_huge_zero_folio(self, mm_id: int) -> None:
        """mm_put_huge_zero_folio(): drop the mm's reference (at exit); never frees by itself."""
        if mm_id in self._huge_zero_mms:
            self._huge_zero_mms.discard(mm_id)
            self._huge_zero_refcount -= 1

    def shrink_huge_zero_folio(self) -> int:
        """The huge zero folio shrinker: free it when only its own reference is left; pages freed."""
        if self._huge_zero_refcount != 1:
            return 0
        self._huge_zero_refcount = 0
        pfn, self._huge_zero_pfn = self._huge_zero_pfn, NO_PFN
        self.free_pages(pfn, HPAGE_PMD_ORDER)
        return 1 << HPAGE_PMD_ORDER

    def is_huge_zero_pfn(self, pfn: int) -> bool:
        """is_huge_zero_pfn(): `pfn` lies in the huge zero folio."""
        head = self._huge_zero_pfn
        return head != NO_PFN and head <= pfn < head + (1 << HPAGE_PMD_ORDER)

    # --- views ---------------------------------------------------------------------------------------

    def stable_page_flags(self, pfn: int) -> int:
        """fs/proc/page.c:stable_page_flags(): the /proc/kpageflags word of one PFN."""
        if not 0 <= pfn < self.max_pfn:
            return 1 << KPF.NOPAGE
        mm = self.mem_map
        head = mm.compound_head(pfn)
        k = int(mm.flags[head])
        mapping = int(mm.mapping[head])
        word = int(mm._mapcount[pfn])
        pgty = page_type_of(word)
        u = 0
        if pgty is None and word >= 0:
            u |= 1 << KPF.MMAP
        if mapping & PAGE_MAPPING_ANON:
            u |= 1 << KPF.ANON
            if mapping & PAGE_MAPPING_FLAGS == PAGE_MAPPING_KSM:
                u |= 1 << KPF.KSM
        if head == pfn:
            u |= (k >> PG.head & 1) << KPF.COMPOUND_HEAD
        else:
            u |= 1 << KPF.COMPOUND_TAIL
        order = mm.folio_order(head)
        second_flags = int(mm.flags[head + 1]) if order else 0
        if order and second_flags >> PG.workingset & 1:  # folio_test_large_rmappable
            u |= 1 << KPF.THP
        elif self.is_huge_zero_pfn(pfn):
            u |= 1 << KPF.ZERO_PAGE | 1 << KPF.THP
        elif self.is_zero_pfn(pfn):
            u |= 1 << KPF.ZERO_PAGE
        if pgty == PGTY_buddy or (int(mm._refcount[pfn]) == 0 and self._in_free_block(pfn)):
            u |= 1 << KPF.BUDDY
        if pgty == PGTY_offline:
            u |= 1 << KPF.OFFLINE
        if pgty == PGTY_table:
            u |= 1 << KPF.PGTABLE
        if page_type_of(int(mm._mapcount[head])) == PGTY_slab:
            u |= 1 << KPF.SLAB
        for kpf, pg in KPF_COPIED:
            u |= (k >> pg & 1) << kpf
        swapcache = (1 << PG.swapbacked) | (1 << PG_swapcache)
        if k & swapcache == swapcache:
            u |= 1 << KPF.SWAPCACHE
        return u

    def _in_free_block(self, pfn: int) -> bool:
        """is_free_buddy_page(): `pfn` lies inside some free buddy block."""
        mm = self.mem_map
        for order in range(NR_PAGE_ORDERS):
            head = pfn & ~((1 << order) - 1)
            if page_type_of(int(mm._mapcount[head])) == PGTY_buddy and int(mm.private[head]) >= order:
                return True
        return False

    def zoneinfo(self) -> str:
        """/proc/zoneinfo, the per-zone part (zoneinfo_show_print), without per-node and per-CPU stats."""
        out = []
        for z in self.zones:
            out.append(f"Node 0, zone {z.name:>8}")
            out.append(f"  pages free     {z.free_pages}")
            if z.populated():
                out.append("        boost    0")
            for name, value in (("min", z.watermark[WMARK_MIN]), ("low", z.watermark[WMARK_LOW]),
                                ("high", z.watermark[WMARK_HIGH])):
                out.append(f"        {name:<8} {value}")
            if z.populated():
                out.append(f"        promo    {z.watermark[WMARK_PROMO]}")
            for name, value in (("spanned", z.spanned_pages), ("present", z.present_pages),
                                ("managed", z.managed_pages), ("cma", 0)):
                out.append(f"        {name:<8} {value}")
            out.append("        protection: (" + ", ".join(str(r) for r in z.lowmem_reserve) + ")")
            if z.populated():
                out.append(f"      nr_free_pages {z.free_pages}")
                out.append(f"      nr_page_table_pages {z.nr_pagetable}")
                out.append(f"  start_pfn:           {z.zone_start_pfn}")
        return "\n".join(out) + "\n"

    def buddyinfo(self) -> str:
        """/proc/buddyinfo: free blocks per order in each populated zone (frag_show_print)."""
        return "".join(f"Node 0, zone {z.name:>8} " + "".join(f"{n:6d} " for n in z.nr_free) + "\n"
                       for z in self.zones if z.populated())

    # --- bookkeeping ---------------------------------------------------------------------------------

    @property
    def totalram_pages(self) -> int:
        """totalram_pages(): managed pages of all zones (MemTotal)."""
        return sum(z.managed_pages for z in self.zones)

    @property
    def nr_free_pages(self) -> int:
        """NR_FREE_PAGES summed over zones (MemFree)."""
        return sum(z.free_pages for z in self.zones)

    def free_blocks(self, zone: Zone) -> Iterator[tuple[int, int]]:
        """(pfn, order) of every block on the zone's free lists, walking the links."""
        mm = self.mem_map
        for order in range(NR_PAGE_ORDERS):
            pfn = zone.free_head[order]
            while pfn != NO_PFN:
                yield pfn, order
                pfn = int(mm.lru_next[pfn])

    def check_buddy(self) -> None:
        """Invariant checker: free lists consistent with counters and page state, blocks aligned, inside
        their zone, disjoint, coalesced (no free buddy pair below MAX_PAGE_ORDER), and
        free + allocated + reserved pages == present pages."""
        mm = self.mem_map
        seen = np.zeros(self.max_pfn, dtype=bool)
        for zone in self.zones:
            counts = [0] * NR_PAGE_ORDERS
            total = 0
            for pfn, order in self.free_blocks(zone):
                n = 1 << order
                where = f"zone {zone.name} block {pfn:#x} order {order}"
                if pfn & (n - 1) or not (zone.spans(pfn) and zone.spans(pfn + n - 1)):
                    raise AssertionError(f"{where}: misaligned or outside the zone")
                if mm.page_type(pfn) != PGTY_buddy or int(mm.private[pfn]) != order:
                    raise AssertionError(f"{where}: head not PageBuddy of its order: {mm[pfn]!r}")
                if seen[pfn:pfn + n].any():
                    raise AssertionError(f"{where}: overlaps another free block")
                if mm._refcount[pfn:pfn + n].any() or (mm.flags[pfn:pfn + n] >> np.uint64(PG.reserved)
                                                         & np.uint64(1)).any():
                    raise AssertionError(f"{where}: a free page has a reference or is reserved")
                seen[pfn:pfn + n] = True
                if order < MAX_PAGE_ORDER and self._page_is_buddy(pfn ^ n, order, zone):
                    raise AssertionError(f"{where}: its buddy {pfn ^ n:#x} is free too (not coalesced)")
                counts[order] += 1
                total += n
            if counts != zone.nr_free or total != zone.free_pages:
                raise AssertionError(f"zone {zone.name}: counters {zone.nr_free}/{zone.free_pages} "
                                     f"disagree with the lists {counts}/{total}")
        stray = np.flatnonzero((mm._mapcount == page_type_value(PGTY_buddy)) & ~seen)
        if stray.size:
            raise AssertionError(f"PageBuddy pages not on any free list: {stray[:8].tolist()}")


# --- the direct map -------------------------------------------------------------------------------------


def pfn_to_page(mem: MemMap, pfn: int) -> Page:
    """pfn_to_page() (FLATMEM: mem_map + pfn)."""
    return mem[pfn]


def page_to_pfn(page: Page) -> int:
    """page_to_pfn() (FLATMEM: page - mem_map)."""
    return page.pfn


def phys_to_virt(paddr: int) -> int:
    """phys_to_virt()/__va(): the direct-map address of a physical address."""
    return paddr + PAGE_OFFSET


def virt_to_phys(vaddr: int, phys_base: int = 0) -> int:
    """virt_to_phys()/__pa() (__phys_addr): direct-map and kernel-text addresses to physical."""
    if vaddr >= __START_KERNEL_map:
        return vaddr - __START_KERNEL_map + phys_base
    if vaddr < PAGE_OFFSET:
        raise ValueError(f"{vaddr:#x} is not a kernel direct-map address")
    return vaddr - PAGE_OFFSET


def page_address(pfn: int) -> int:
    """page_address(): every page of x86_64 is in the direct map (no highmem)."""
    return phys_to_virt(pfn << PAGE_SHIFT)
