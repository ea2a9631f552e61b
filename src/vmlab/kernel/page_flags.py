"""Page flags: include/linux/page-flags.h (`enum pageflags`, page types) and the /proc/kpageflags bits
(include/uapi/linux/kernel-page-flags.h, include/linux/kernel-page-flags.h, fs/proc/page.c).

Bit numbers are those of 6.18 built as this machine's kernel is: CONFIG_MMU=y, CONFIG_MEMORY_FAILURE unset
(no PG_hwpoison), CONFIG_PAGE_IDLE_FLAG=y on 64-bit (PG_young, PG_idle), CONFIG_ARCH_USES_PG_ARCH_2=y.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class PG(IntEnum):
    """`enum pageflags`: bit numbers in page->flags."""

    locked = 0
    writeback = 1
    referenced = 2
    uptodate = 3
    dirty = 4
    lru = 5
    head = 6  # "Must be in bit 6"
    waiters = 7
    active = 8
    workingset = 9
    owner_priv_1 = 10
    owner_2 = 11
    arch_1 = 12
    reserved = 13
    private = 14
    private_2 = 15
    reclaim = 16
    swapbacked = 17
    unevictable = 18
    dropbehind = 19
    mlocked = 20
    young = 21
    idle = 22
    arch_2 = 23


NR_PAGEFLAGS: Final = len(PG)

# Aliases the kernel defines on top of the enum.
PG_readahead = PG.reclaim
PG_swapcache = PG.owner_priv_1
PG_checked = PG.owner_priv_1
PG_anon_exclusive = PG.owner_2
PG_mappedtodisk = PG.owner_2
PG_reported = PG.uptodate  # only on buddy pages
PG_has_hwpoisoned = PG.active  # folio's second page
PG_large_rmappable = PG.workingset  # folio's second page
PG_partially_mapped = PG.reclaim  # folio's second page


# Masks of single flags (1 << PG.x), for hot paths that read a flags word once and test it.
F_LOCKED: Final = 1 << PG.locked
F_WRITEBACK: Final = 1 << PG.writeback
F_REFERENCED: Final = 1 << PG.referenced
F_UPTODATE: Final = 1 << PG.uptodate
F_DIRTY: Final = 1 << PG.dirty
#: A folio with I/O to do or under way: reclaim, invalidation and splitting pass it by.
F_DIRTY_OR_WRITEBACK: Final = F_DIRTY | F_WRITEBACK
F_LRU: Final = 1 << PG.lru
F_HEAD: Final = 1 << PG.head
F_ACTIVE: Final = 1 << PG.active
F_WORKINGSET: Final = 1 << PG.workingset
F_RESERVED: Final = 1 << PG.reserved
F_RECLAIM: Final = 1 << PG.reclaim
F_SWAPBACKED: Final = 1 << PG.swapbacked
F_UNEVICTABLE: Final = 1 << PG.unevictable
F_MLOCKED: Final = 1 << PG.mlocked
F_SWAPCACHE: Final = 1 << PG_swapcache

# page->flags layout on x86_64 with SPARSEMEM_VMEMMAP (no section bits): | NODE | ZONE | ... | FLAGS |.
NODES_SHIFT: Final = 10
ZONES_SHIFT: Final = 3  # DMA, DMA32, Normal, Movable, Device
ZONES_PGSHIFT: Final = 64 - NODES_SHIFT - ZONES_SHIFT
ZONES_MASK: Final = (1 << ZONES_SHIFT) - 1

# Page types (page->page_type overlays _mapcount; the type lives in the top byte; mm_types.h/page-flags.h).
PGTY_buddy = 0xF0
PGTY_offline = 0xF1
PGTY_table = 0xF2
PGTY_guard = 0xF3
PGTY_hugetlb = 0xF4
PGTY_slab = 0xF5
PGTY_zsmalloc = 0xF6
PGTY_unaccepted = 0xF7
PGTY_large_kmalloc = 0xF8
#: _mapcount of a page that is not mapped and has no type (page_type == UINT_MAX).
MAPCOUNT_NONE: Final = -1


def page_type_value(pgty: int) -> int:
    """The _mapcount word (as signed 32-bit) that marks a page of type `pgty` (__SetPageBuddy etc.)."""
    return ((pgty << 24) | 0x00FFFFFF) - (1 << 32)


def page_type_of(mapcount_word: int) -> int | None:
    """The PGTY_* of a page from its _mapcount word, or None if it holds a mapcount (page_has_type())."""
    word = mapcount_word & 0xFFFFFFFF
    top = word >> 24
    return top if PGTY_buddy <= top < 0xFF else None


class KPF(IntEnum):
    """/proc/kpageflags bits: the uapi ones (0..26) and the kernel-hacking ones (32..)."""

    LOCKED = 0
    ERROR = 1
    REFERENCED = 2
    UPTODATE = 3
    DIRTY = 4
    LRU = 5
    ACTIVE = 6
    SLAB = 7
    WRITEBACK = 8
    RECLAIM = 9
    BUDDY = 10
    MMAP = 11
    ANON = 12
    SWAPCACHE = 13
    SWAPBACKED = 14
    COMPOUND_HEAD = 15
    COMPOUND_TAIL = 16
    HUGE = 17
    UNEVICTABLE = 18
    HWPOISON = 19
    NOPAGE = 20
    KSM = 21
    THP = 22
    OFFLINE = 23
    ZERO_PAGE = 24
    IDLE = 25
    PGTABLE = 26
    RESERVED = 32
    MLOCKED = 33
    OWNER_2 = 34
    PRIVATE = 35
    PRIVATE_2 = 36
    OWNER_PRIVATE = 37
    ARCH = 38
    UNCACHED = 39
    SOFTDIRTY = 40
    ARCH_2 = 41
    ARCH_3 = 42


#: stable_page_flags(): the page flags copied one-to-one into a kpageflags bit (kpf_copy_bit).
KPF_COPIED: tuple[tuple[KPF, PG], ...] = (
    (KPF.IDLE, PG.idle),
    (KPF.LOCKED, PG.locked),
    (KPF.DIRTY, PG.dirty),
    (KPF.UPTODATE, PG.uptodate),
    (KPF.WRITEBACK, PG.writeback),
    (KPF.LRU, PG.lru),
    (KPF.REFERENCED, PG.referenced),
    (KPF.ACTIVE, PG.active),
    (KPF.RECLAIM, PG.reclaim),
    (KPF.SWAPBACKED, PG.swapbacked),
    (KPF.UNEVICTABLE, PG.unevictable),
    (KPF.MLOCKED, PG.mlocked),
    (KPF.RESERVED, PG.reserved),
    (KPF.OWNER_2, PG.owner_2),
    (KPF.PRIVATE, PG.private),
    (KPF.PRIVATE_2, PG.private_2),
    (KPF.OWNER_PRIVATE, PG.owner_priv_1),
    (KPF.ARCH, PG.arch_1),
)

#: page->mapping low bits (PAGE_MAPPING_ANON, PAGE_MAPPING_KSM = ANON | MOVABLE).
PAGE_MAPPING_ANON: Final = 0x1
PAGE_MAPPING_MOVABLE: Final = 0x2
PAGE_MAPPING_KSM: Final = PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE
PAGE_MAPPING_FLAGS: Final = PAGE_MAPPING_KSM
