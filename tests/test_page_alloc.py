"""The buddy allocator, zones and watermarks of vmlab.kernel.page_alloc, against the kernel's rules and
this machine's /proc/zoneinfo (tests/fixtures/host/README.md says how they were captured)."""

from __future__ import annotations

import re
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vmlab.kernel.page_alloc import (
    MAX_PAGE_ORDER,
    PAGE_OFFSET,
    WMARK_HIGH,
    WMARK_LOW,
    WMARK_MIN,
    ZERO_PAGE_PFN,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_NORMAL,
    MemMap,
    PhysMem,
    page_address,
    virt_to_phys,
)
from vmlab.kernel.page_flags import KPF, PG, PGTY_buddy

HOST = Path(__file__).parent / "fixtures" / "host"


def small() -> PhysMem:
    return PhysMem(64 << 20)


def parse_zoneinfo(text: str) -> dict[str, dict[str, object]]:
    """zone name -> {min, low, high, managed, present, protection} from /proc/zoneinfo text."""
    zones: dict[str, dict[str, object]] = {}
    cur: dict[str, object] = {}
    for line in text.splitlines():
        m = re.match(r"Node \d+, zone\s+(\S+)", line)
        if m:
            cur = zones.setdefault(m.group(1), {})
            continue
        m = re.match(r"\s+(min|low|high|managed|present|spanned)\s+(\d+)$", line)
        if m and m.group(1) not in cur:
            cur[m.group(1)] = int(m.group(2))
        m = re.match(r"\s+protection: \((.*)\)", line)
        if m:
            cur["protection"] = [int(x) for x in m.group(1).split(",")]
    return zones


def test_mem_map_scalar_twins_share_the_numpy_arrays_memory() -> None:
    """Each MemMap field's array.array and numpy array are one buffer: a store through either is seen
    by the other, values round-trip exactly (flags' top bit, negative links), 48 bytes a frame."""
    mm = MemMap(64)
    for name, _, dtype, init in MemMap.FIELDS:
        arr, store = getattr(mm, name), getattr(mm, name + "_a")
        assert arr.dtype == dtype and len(arr) == len(store) == 64 and arr.item(7) == store[7] == init
        big = 2**64 - 3 if dtype == np.uint64 else -5
        store[9] = big
        assert arr.item(9) == big
        arr[10] = 12345
        assert store[10] == 12345 and type(store[10]) is int
    mm.flags_a[3] = 1 << 63 | 1 << PG.lru
    assert mm.test(3, PG.lru) and mm.flags.item(3) >> 63 == 1
    assert mm.nbytes() == 48 * 64


def test_host_watermarks_reproduced_from_host_managed_pages() -> None:
    """With the host's managed pages per zone, the boot sequence (sqrt rule, then THP's recommended
    min_free_kbytes) gives the host's min_free_kbytes and every zone's min/low/high and protection."""
    host = parse_zoneinfo((HOST / "zoneinfo.txt").read_text())
    mem = small()
    for zone in mem.zones:
        zone.managed_pages = int(host[zone.name]["managed"])  # type: ignore[call-overload]
        zone.present_pages = int(host[zone.name]["present"])  # type: ignore[call-overload]
    mem.init_per_zone_wmark_min(thp_enabled=True)
    assert mem.min_free_kbytes == int((HOST / "min_free_kbytes.txt").read_text())
    for zone in mem.zones:
        h = host[zone.name]
        assert zone.watermark[:3] == [h["min"], h["low"], h["high"]], zone.name
        assert zone.lowmem_reserve == h["protection"], zone.name


def test_host_dma_zone_layout() -> None:
    """The PC layout (page 0 and 640K-1M not RAM, the first 1 MiB reserved) gives the host's DMA zone."""
    host = parse_zoneinfo((HOST / "zoneinfo.txt").read_text())["DMA"]
    dma = PhysMem(1 << 30).zones[ZONE_DMA]
    assert (dma.spanned_pages, dma.present_pages, dma.managed_pages) == (
        host["spanned"], host["present"], host["managed"])


def test_min_free_kbytes_sqrt_rule_without_thp() -> None:
    """calculate_min_free_kbytes(): int_sqrt(lowmem_kbytes * 16) -- 4 GiB of lowmem gives 8192 kB."""
    mem = small()
    for zone in mem.zones:
        zone.managed_pages = 0
    mem.zones[ZONE_NORMAL].managed_pages = (4 << 30) >> 12
    mem.init_per_zone_wmark_min(thp_enabled=False)
    assert mem.min_free_kbytes == 8192


@pytest.mark.parametrize("ram_mib", [64, 1024, 4096, 16384])
def test_watermarks_sane(ram_mib: int) -> None:
    mem = PhysMem(ram_mib << 20)
    for zone in mem.zones:
        if zone.managed_pages:
            assert 0 < zone.watermark[WMARK_MIN] < zone.watermark[WMARK_LOW] < zone.watermark[WMARK_HIGH]
            assert zone.watermark[WMARK_HIGH] < zone.managed_pages
    assert sum(z.watermark[WMARK_MIN] for z in mem.zones[:3]) <= mem.min_free_kbytes // 4


def test_boot_state_and_reserved_frames() -> None:
    mem = small()
    mem.check_buddy()
    assert mem.nr_free_pages == mem.totalram_pages
    assert mem.mem_map[ZERO_PAGE_PFN].test(PG.reserved)
    assert mem.mem_map[0].test(PG.reserved)
    assert mem.stable_page_flags(ZERO_PAGE_PFN) == 1 << KPF.ZERO_PAGE | 1 << KPF.RESERVED


def test_zero_page_kpageflags_as_on_host() -> None:
    """The shared zero page's kpageflags word equals the one the host kernel shows for its zero page."""
    line = next(x for x in (HOST / "kpageflags.txt").read_text().splitlines() if x.startswith("zero"))
    host = dict(kv.split("=") for kv in line.split()[1:])
    assert int(host["pfn"], 16) == ZERO_PAGE_PFN
    assert small().stable_page_flags(ZERO_PAGE_PFN) == int(host["kpageflags"], 16)


def test_split_and_coalesce_exact() -> None:
    """An order-0 allocation from a pristine order-10 block splits it into one block of each order 0..9
    (expand), and freeing it merges everything back (__free_one_page)."""
    mem = PhysMem(1 << 30)
    zone = mem.zones[ZONE_DMA32]
    before = list(zone.nr_free)
    # Exhaust the small orders first so the next order-0 request must split an order-10 block.
    taken = []
    for order in range(MAX_PAGE_ORDER):
        while zone.nr_free[order]:
            pfn = mem.alloc_pages(order, ZONE_DMA32)
            assert pfn is not None
            taken.append((pfn, order))
    big = zone.nr_free[MAX_PAGE_ORDER]
    pfn = mem.alloc_pages(0, ZONE_DMA32)
    assert pfn is not None and pfn % (1 << MAX_PAGE_ORDER) == 0
    assert zone.nr_free == [1] * MAX_PAGE_ORDER + [big - 1]
    for order in range(MAX_PAGE_ORDER):
        buddy = pfn ^ (1 << order)
        assert mem.mem_map.page_type(buddy) == PGTY_buddy and mem.mem_map[buddy].private == order
    mem.free_pages(pfn, 0)
    assert zone.nr_free[:MAX_PAGE_ORDER] == [0] * MAX_PAGE_ORDER
    for p, o in taken:
        mem.free_pages(p, o)
    assert zone.nr_free == before
    mem.check_buddy()


def test_zone_fallback_and_zone_limit() -> None:
    mem = PhysMem(8 << 30)
    pfn = mem.alloc_pages(0, ZONE_NORMAL)
    assert pfn is not None and mem.mem_map.page_zonenum(pfn) == ZONE_NORMAL
    pfn = mem.alloc_pages(0, ZONE_DMA)
    assert pfn is not None and pfn < 4096
    # Drain Normal down to its min watermark: further GFP_KERNEL allocations fall back to DMA32.
    normal = mem.zones[ZONE_NORMAL]
    mem.alloc_pages_bulk(normal.free_pages - normal.watermark[WMARK_MIN] - 1)
    pfn = mem.alloc_pages(0, ZONE_NORMAL)
    assert pfn is not None and mem.mem_map.page_zonenum(pfn) == ZONE_DMA32


def test_failure_below_min_watermark_calls_the_oom_hook() -> None:
    mem = small()
    calls: list[tuple[int, int]] = []

    def hook(m: PhysMem, order: int, zone_limit: int) -> bool:
        calls.append((order, zone_limit))
        return False

    mem.oom_hook = hook
    got = mem.alloc_pages_bulk(mem.nr_free_pages)
    assert 0 < len(got) < mem.totalram_pages
    for zone in mem.zones:
        if zone.managed_pages:
            assert zone.free_pages <= zone.watermark[WMARK_MIN] + zone.lowmem_reserve[ZONE_NORMAL] + 1
    assert mem.alloc_pages(0) is None
    assert calls == [(0, ZONE_NORMAL)] and mem.alloc_failures == 1
    mem.free_pages_bulk(got)
    assert mem.alloc_pages(0) is not None
    mem.check_buddy()


def test_compound_page_and_huge_zero_folio() -> None:
    mem = small()
    free0 = mem.nr_free_pages
    assert mem.mm_get_huge_zero_folio(1) == mem.mm_get_huge_zero_folio(2)
    head = mem.mm_get_huge_zero_folio(1)
    assert head is not None and head % 512 == 0
    assert mem.mem_map.compound_head(head + 77) == head and mem.mem_map.folio_order(head) == 9
    assert mem.stable_page_flags(head + 1) & (1 << KPF.COMPOUND_TAIL | 1 << KPF.ZERO_PAGE | 1 << KPF.THP) \
        == 1 << KPF.COMPOUND_TAIL | 1 << KPF.ZERO_PAGE | 1 << KPF.THP
    assert mem.shrink_huge_zero_folio() == 0  # two mms still hold it
    mem.mm_put_huge_zero_folio(1)
    mem.mm_put_huge_zero_folio(2)
    assert mem.shrink_huge_zero_folio() == 512
    assert mem.nr_free_pages == free0
    mem.check_buddy()


def test_direct_map() -> None:
    assert page_address(0x1234) == PAGE_OFFSET + 0x1234000
    assert virt_to_phys(page_address(0x1234) + 5) == 0x1234005
    assert virt_to_phys(0xFFFFFFFF81000000) == 0x1000000


def test_renderers() -> None:
    mem = small()
    info = mem.buddyinfo()
    assert info.startswith("Node 0, zone      DMA ")
    counts = [int(x) for x in info.splitlines()[1].split()[4:]]
    assert sum(c << o for o, c in enumerate(counts)) == mem.zones[ZONE_DMA32].free_pages
    z = mem.zoneinfo()
    assert f"        min      {mem.zones[ZONE_DMA32].watermark[WMARK_MIN]}" in z
    assert "protection: (0, " in z


def test_bad_free_is_a_model_bug() -> None:
    mem = small()
    pfn = mem.alloc_pages(0)
    assert pfn is not None
    mem.free_pages(pfn)
    with pytest.raises(AssertionError, match="bad free"):
        mem.free_pages(pfn)


class BuddyMachine(RuleBasedStateMachine):
    """Random allocations and frees: the free lists stay consistent and coalesced, and
    free + allocated == managed pages."""

    def __init__(self) -> None:
        super().__init__()
        self.mem = PhysMem(48 << 20)
        self.live: list[tuple[int, int]] = []

    @rule(order=st.integers(0, MAX_PAGE_ORDER), zone=st.sampled_from([ZONE_DMA, ZONE_DMA32, ZONE_NORMAL]))
    def alloc(self, order: int, zone: int) -> None:
        pfn = self.mem.alloc_pages(order, zone)
        if pfn is not None:
            assert pfn % (1 << order) == 0
            assert self.mem.mem_map.page_zonenum(pfn) <= zone
            self.live.append((pfn, order))

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 10**6))
    def free(self, i: int) -> None:
        pfn, order = self.live.pop(i % len(self.live))
        self.mem.free_pages(pfn, order)

    @invariant()
    def conserved(self) -> None:
        self.mem.check_buddy()
        allocated = sum(1 << o for _, o in self.live)
        assert self.mem.nr_free_pages + allocated == self.mem.totalram_pages

    def teardown(self) -> None:
        for pfn, order in self.live:
            self.mem.free_pages(pfn, order)
        # Freeing everything returns to the boot state: all blocks coalesced back.
        fresh = PhysMem(48 << 20)
        assert [z.nr_free for z in self.mem.zones] == [z.nr_free for z in fresh.zones]


TestBuddyMachine = BuddyMachine.TestCase
TestBuddyMachine.settings = settings(max_examples=30, stateful_step_count=40, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])


@given(st.lists(st.integers(0, 3), min_size=1, max_size=60))
@settings(max_examples=30, deadline=None)
def test_any_free_order_restores_boot_state(orders: list[int]) -> None:
    mem = PhysMem(48 << 20)
    boot = [list(z.nr_free) for z in mem.zones]
    blocks = [(mem.alloc_pages(o), o) for o in orders]
    for pfn, o in reversed(blocks[::2]):
        assert pfn is not None
        mem.free_pages(pfn, o)
    for pfn, o in blocks[1::2]:
        assert pfn is not None
        mem.free_pages(pfn, o)
    assert [z.nr_free for z in mem.zones] == boot


def _mem_map_state(mem: PhysMem) -> tuple[object, ...]:
    """Everything the allocator writes: each zone's free lists and counts, and the frames' fields."""
    mm = mem.mem_map
    zones = tuple((z.free_pages, tuple(z.nr_free), tuple(z.free_head), tuple(z.free_tail)) for z in mem.zones)
    return zones, tuple(bytes(getattr(mm, f)) for f in ("_mapcount_a", "_refcount_a", "private_a",
                                                         "lru_next_a", "lru_prev_a"))


@given(st.lists(st.integers(0, MAX_PAGE_ORDER), min_size=1, max_size=40), st.integers(1, 300),
       st.sampled_from([ZONE_DMA, ZONE_DMA32, ZONE_NORMAL]))
@settings(max_examples=25, deadline=None)
def test_alloc_page_fast_equals_get_page_from_freelist(orders: list[int], nr: int, zone_limit: int) -> None:
    """alloc_page_fast() (its in-line __rmqueue_smallest(0), a split of a larger block included) takes
    the same pages and leaves the same free lists and frames as get_page_from_freelist(0, WMARK_LOW)
    plus prep_new_page()'s refcount, from the same fragmented state, until the low watermark."""
    mems = [PhysMem(48 << 20) for _ in range(2)]
    for mem in mems:  # the same fragmentation in both: blocks of mixed orders, every other one freed
        blocks = [(mem.alloc_pages(o), o) for o in orders]
        for pfn, o in blocks[::2]:
            if pfn is not None:
                mem.free_pages(pfn, o)
    fast, slow = mems
    for _ in range(nr):
        got = fast.alloc_page_fast(zone_limit)
        want = slow.get_page_from_freelist(0, zone_limit, WMARK_LOW)
        if want != -1:
            slow.mem_map._refcount_a[want] = 1
        assert got == want
        if got == -1:
            break
    assert _mem_map_state(fast) == _mem_map_state(slow)
    fast.check_buddy()
