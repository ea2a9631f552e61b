"""The i386 model: 2-level translation, the 3:1 layout, kmap's pkmap pool and kmap_local's stack."""

from __future__ import annotations

import itertools

import pytest

from vmlab.kernel.highmem import Highmem, PageHighMem, WouldSleep
from vmlab.kernel.pgtable_32 import (
    FIXADDR_TOP,
    LAST_PKMAP,
    MAXMEM,
    PAGE_OFFSET,
    PKMAP_BASE,
    Layout32,
    PageTables32,
    __pa,
    __va,
)

HIGH = (MAXMEM >> 12) + 100  # a highmem frame


def test_translation_10_10_12() -> None:
    pt = PageTables32()
    va = 0x08048123  # PGD index 32, PTE index 0x48, offset 0x123
    pt.set_pte(va & ~0xFFF, 0x1234)
    assert pt.translate(va) == 0x1234123
    assert pt.translate(va + 0x1000) is None
    assert int(pt.tables[pt.pgd][va >> 22]) & 1 and (va >> 22) == 32
    pt.clear_pte(va)
    assert pt.translate(va) is None


def test_lowmem_direct_map_and_layout() -> None:
    assert MAXMEM == 896 << 20
    assert __va(0x1000) == 0xC0001000 and __pa(0xC0001000) == 0x1000
    with pytest.raises(ValueError):
        __va(MAXMEM)
    small, big = Layout32(512 << 20), Layout32(4 << 30)
    assert small.lowmem_bytes == 512 << 20 and big.lowmem_bytes == MAXMEM
    assert small.high_memory == PAGE_OFFSET + (512 << 20)
    regions = big.regions()
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(regions))
    assert regions[-1][1] == FIXADDR_TOP
    text = big.render()
    assert "896 MiB" in text and "3200 MiB of highmem" in text and "0xc0000000" in text


def test_kmap_lowmem_is_the_direct_map() -> None:
    hm = Highmem()
    assert hm.kmap(5) == 0xC0005000 and hm.page_address(5) == 0xC0005000
    assert not PageHighMem(5) and PageHighMem(HIGH)


def test_kmap_reuses_the_slot_and_counts_users() -> None:
    hm = Highmem()
    a = hm.kmap(HIGH)
    assert PKMAP_BASE <= a < PKMAP_BASE + LAST_PKMAP * 4096
    assert hm.kmap(HIGH) == a and hm.page_address(HIGH) == a
    assert hm.kernel_pt.translate(a + 7) == (HIGH << 12) + 7
    nr = (a - PKMAP_BASE) >> 12
    assert hm.pkmap_count[nr] == 3  # 1 (mapped) + 2 users
    hm.kunmap(HIGH)
    hm.kunmap(HIGH)
    assert hm.pkmap_count[nr] == 1 and hm.page_address(HIGH) == a  # mapped until the next flush


def test_pool_exhaustion_and_reuse_after_flush() -> None:
    hm = Highmem()
    # Slot 0 is never handed out before the first wrap: the scan starts at last_pkmap_nr + 1.
    pfns = [HIGH + i for i in range(LAST_PKMAP - 1)]
    addrs = [hm.kmap(p) for p in pfns]
    assert len(set(addrs)) == LAST_PKMAP - 1
    # The wrap flushes nothing (every slot has users) and slot 0 is still free: one more fits.
    extra = hm.kmap(HIGH + 5000)
    assert extra == PKMAP_BASE
    with pytest.raises(WouldSleep, match="pkmap slots in use"):
        hm.kmap(HIGH + 5001)
    # kunmap leaves the slot mapped (count 1); the next scan wraps, flushes it, and reuses it.
    hm.kunmap(pfns[10])
    flushes = hm.tlb_flushes
    got = hm.kmap(HIGH + 5001)
    assert got == addrs[10] and hm.tlb_flushes == flushes + 1
    assert hm.page_address(pfns[10]) is None


def test_kmap_local_is_a_stack() -> None:
    hm = Highmem()
    a = hm.kmap_local_page(HIGH)
    b = hm.kmap_local_page(HIGH + 1)
    assert a != b and hm.kernel_pt.translate(b) == (HIGH + 1) << 12
    with pytest.raises(AssertionError, match="out of order"):
        hm.kunmap_local(a)
    hm.kunmap_local(b)
    hm.kunmap_local(a)
    assert hm.kernel_pt.translate(a) is None
    c = hm.kmap_atomic(HIGH + 2, cpu=1)
    assert c != a and hm.atomic_depth[1] == 1
    hm.kunmap_atomic(c, cpu=1)
    assert hm.atomic_depth[1] == 0
    for i in range(16):
        hm.kmap_local_page(HIGH + i)
    with pytest.raises(AssertionError, match="KM_MAX_IDX"):
        hm.kmap_local_page(HIGH + 99)
