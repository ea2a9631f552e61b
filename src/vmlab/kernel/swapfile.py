"""Swap areas, after mm/swapfile.c and include/linux/swapops.h (6.18): `swap_info[]`, the per-slot
`swap_map` counts, swapon/swapoff, slot allocation and freeing, swap entries in PTEs, /proc/swaps.

A swap entry (`swp_entry_t`) is the generic value `type << SWP_TYPE_SHIFT | offset`; in a PTE it is
stored in the x86 layout of pgtable.py (__swp_entry), with _PAGE_SWP_EXCLUSIVE beside it.

`swap_map[offset]` holds the number of PTEs that refer to the slot, plus SWAP_HAS_CACHE while the
swap cache holds a folio for it; a slot is in use while the byte is non-zero. Slot 0 holds the swap
header (SWAP_MAP_BAD).

Deliberate simplifications: one allocation cursor per area, moving up and wrapping (the kernel's
per-CPU cluster allocator also hands out ascending offsets inside 512-slot clusters, so a single
reclaimer sees the same order until clusters fragment); no discard, no swap count continuation
(counts above SWAP_MAP_MAX raise), no THP swap (large folios are split or kept by the caller), no
zswap (disabled on this machine: /sys/module/zswap/parameters/enabled = N).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from vmlab.kernel.blk_mq import BlockDevice
from vmlab.kernel.pgtable import (
    _PAGE_SWP_EXCLUSIVE,
    __swp_entry,
    __swp_offset,
    __swp_type,
    is_swap_pte,
)
from vmlab.kernel.uapi import EBUSY, EINVAL, EISDIR, ENOENT, ENOMEM, PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from vmlab.kernel.mm_types import Inode, MmStruct

# include/linux/swap.h: MAX_SWAPFILES with CONFIG_MIGRATION (3 types), a PTE-marker type, no
# DEVICE_PRIVATE and no MEMORY_FAILURE (this machine's config): 32 - 3 - 1.
MAX_SWAPFILES_SHIFT = 5
MAX_SWAPFILES = (1 << MAX_SWAPFILES_SHIFT) - 3 - 1
SWP_TYPE_SHIFT = 63 - MAX_SWAPFILES_SHIFT  # BITS_PER_XA_VALUE - MAX_SWAPFILES_SHIFT
SWP_OFFSET_MASK = (1 << SWP_TYPE_SHIFT) - 1

SWAP_HAS_CACHE = 0x40  # the swap cache holds a folio for the slot
SWAP_MAP_MAX = 0x3E  # the largest count without continuation pages
SWAP_MAP_BAD = 0x3F  # a bad slot, or the header

SWAP_FLAG_PREFER = 0x8000
SWAP_FLAG_PRIO_MASK = 0x7FFF
SWAP_FLAG_DISCARD = 0x10000
SWAP_FLAGS_VALID = SWAP_FLAG_PRIO_MASK | SWAP_FLAG_PREFER | SWAP_FLAG_DISCARD | 0x20000 | 0x40000

SWP_USED = 1 << 0
SWP_WRITEOK = 1 << 1

#: vm.page-cluster default: swap readahead reads up to 2**3 pages.
PAGE_CLUSTER = 3


# --- swp_entry_t (include/linux/swapops.h) --------------------------------------------------------------

def swp_entry(swp_type: int, offset: int) -> int:
    """swp_entry(): the generic entry value of slot `offset` of area `swp_type`."""
    return (swp_type << SWP_TYPE_SHIFT) | (offset & SWP_OFFSET_MASK)


def swp_type(entry: int) -> int:
    """swp_type()."""
    return entry >> SWP_TYPE_SHIFT


def swp_offset(entry: int) -> int:
    """swp_offset()."""
    return entry & SWP_OFFSET_MASK


def pte_to_swp_entry(pte: int) -> int:
    """pte_to_swp_entry(): the entry a swap PTE holds (its flag bits dropped)."""
    return swp_entry(__swp_type(pte), __swp_offset(pte))


def swp_entry_to_pte(entry: int) -> int:
    """swp_entry_to_pte(): a non-present PTE holding `entry`."""
    return __swp_entry(swp_type(entry), swp_offset(entry))


def non_swap_entry(entry: int) -> bool:
    """non_swap_entry(): a migration, device or PTE-marker entry, not a slot of a swap area."""
    return swp_type(entry) >= MAX_SWAPFILES


def is_swap_slot_pte(pte: int) -> bool:
    """A PTE that refers to a swap slot (a swap PTE whose entry is not a marker)."""
    return is_swap_pte(pte) and __swp_type(pte) < MAX_SWAPFILES


def pte_swp_exclusive(pte: int) -> bool:
    """pte_swp_exclusive(): the swapped page was exclusive to this mapping (PageAnonExclusive)."""
    return bool(pte & _PAGE_SWP_EXCLUSIVE)


def pte_swp_mkexclusive(pte: int) -> int:
    """pte_swp_mkexclusive()."""
    return pte | _PAGE_SWP_EXCLUSIVE


def pte_swp_clear_exclusive(pte: int) -> int:
    """pte_swp_clear_exclusive()."""
    return pte & ~_PAGE_SWP_EXCLUSIVE


# --- the areas --------------------------------------------------------------------------------------------

@dataclass(eq=False)
class SwapInfo:
    """`struct swap_info_struct` of one active area: its slots' counts and how many are in use."""

    type: int
    path: str
    prio: int
    max: int  # slots, the header's included (maxpages)
    swap_map: np.ndarray
    #: Slots whose data was written since they were allocated (the invariant checker's record that no
    #: dirty page was dropped without write-back).
    written: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    inuse_pages: int = 0
    flags: int = SWP_USED | SWP_WRITEOK
    cluster_next: int = 1
    #: SWP_SOLIDSTATE: the area's block device is not rotational (bdev_nonrot).
    solidstate: bool = True
    #: The area's block device (si->bdev): its request queue, which its writes merge in and wait for.
    bdev: BlockDevice = field(default_factory=BlockDevice)

    @property
    def pages(self) -> int:
        """si->pages: usable slots (the header excluded)."""
        return self.max - 1

    def free_slots(self) -> int:
        """Slots not in use."""
        return self.pages - self.inuse_pages


@dataclass(eq=False)
class SwapState:
    """The machine's swap: `swap_info[]`, nr_swap_pages/total_swap_pages, the swap cache (entry ->
    folio head, with the shadows of evicted folios), and the readahead and page-cluster state.

    `mms` is set by the machine: the live address spaces, which swapoff walks (init_mm.mmlist)."""

    swap_info: list[SwapInfo | None] = field(default_factory=lambda: [None] * MAX_SWAPFILES)
    total_swap_pages: int = 0
    nr_swap_pages: int = 0
    least_priority: int = -1
    #: swap_address_space(): the folio cached for each entry.
    cache: dict[int, int] = field(default_factory=dict)
    #: Shadow entries left by folios evicted from the swap cache (workingset_eviction's value).
    shadows: dict[int, int] = field(default_factory=dict)
    #: shmem_swaplist: the shmem objects with pages on swap (Inode.swapped), by inode handle, which
    #: swapoff visits (shmem_unuse) before the mms.
    shmem_swaplist: dict[int, Inode] = field(default_factory=dict)
    page_cluster: int = PAGE_CLUSTER
    mms: Callable[[], Iterable[MmStruct]] = field(default=lambda: ())
    #: swap_cluster_readahead()'s global state: swapin_readahead_hits (ATOMIC_INIT(4)), the offset of
    #: the last fault without hits, and the last window (swapin_nr_pages' statics).
    swapin_readahead_hits: int = 4
    prev_offset: int = 0
    last_readahead_pages: int = 0
    #: mem_cgroup_uncharge_swap(entry) of a slot being freed (set by the machine with memcgs).
    uncharge_swap: Callable[[int], None] | None = None

    def active(self) -> list[SwapInfo]:
        """The active areas by falling priority (swap_active_head), then by type."""
        areas = [si for si in self.swap_info if si is not None]
        return sorted(areas, key=lambda si: (-si.prio, si.type))

    def vma_readahead(self) -> bool:
        """swap_use_vma_readahead(): vma_ra_enabled (true) and no active area on a rotational device
        (nr_rotate_swap: one such area makes swap-in read by slot clusters machine-wide)."""
        return all(si.solidstate for si in self.swap_info if si is not None)

    def info(self, entry: int) -> SwapInfo:
        """swp_swap_info(): the area of `entry` (AssertionError for a stale entry: a model bug)."""
        t = swp_type(entry)
        si = self.swap_info[t] if t < MAX_SWAPFILES else None
        if si is None or not 0 < swp_offset(entry) < si.max:
            raise AssertionError(f"bad swap entry {entry:#x} (type {t}, offset {swp_offset(entry)})")
        return si


def vm_swap_full(swap: SwapState) -> bool:
    """vm_swap_full(): more than half of the swap space is in use."""
    return swap.nr_swap_pages * 2 < swap.total_swap_pages


# --- swapon / swapoff --------------------------------------------------------------------------------------

def sys_swapon(swap: SwapState, path: str, swap_flags: int, size_bytes: int | None = None) -> int:
    """swapon(2) of a swap file: its size (taken from the host file when `size_bytes` is None) minus the
    header page gives the slots; priority from SWAP_FLAG_PREFER, else one below the last one given
    (the first area gets -2). Returns 0 or -errno (ENOENT, EISDIR: a directory (the O_RDWR open
    fails), EINVAL: bad flags, not a regular file (claim_swapfile) or no usable slot, EBUSY: the file
    is an active area already, under whatever name (the inode's S_SWAPFILE); EPERM is not modelled:
    the model is root). The area is named by the file's canonical path, as /proc/swaps prints it."""
    if swap_flags & ~SWAP_FLAGS_VALID:
        return -EINVAL
    if not path:
        return -ENOENT  # getname(""): no AT_EMPTY_PATH here
    path = os.path.realpath(path)
    rotational, bdev = False, BlockDevice()
    if size_bytes is None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return -ENOENT
        except OSError as err:
            return -(err.errno or ENOENT)
        if stat.S_ISDIR(st.st_mode):
            return -EISDIR
        if not stat.S_ISREG(st.st_mode):
            return -EINVAL  # a block device would do in the kernel; the model swaps to files only
        size_bytes = st.st_size
        rotational, bdev = _host_queue(st.st_dev)
    if find_area(swap, path) is not None:
        return -EBUSY
    maxpages = size_bytes >> PAGE_SHIFT
    if maxpages < 2:
        return -EINVAL  # "Empty swap-file"
    free_types = [t for t, si in enumerate(swap.swap_info) if si is None]
    if not free_types:
        return -ENOMEM  # -EPERM in the kernel ("too many swapfiles")
    if swap_flags & SWAP_FLAG_PREFER:
        prio = swap_flags & SWAP_FLAG_PRIO_MASK
    else:
        swap.least_priority -= 1
        prio = swap.least_priority
    swap_map = np.zeros(maxpages, dtype=np.uint8)
    swap_map[0] = SWAP_MAP_BAD
    si = SwapInfo(free_types[0], path, prio, maxpages, swap_map, np.zeros(maxpages, dtype=bool),
                  solidstate=not rotational, bdev=bdev)
    swap.swap_info[si.type] = si
    swap.total_swap_pages += si.pages
    swap.nr_swap_pages += si.pages
    return 0


def _host_queue(dev: int) -> tuple[bool, BlockDevice]:
    """What the host block device `dev` (a file's st_dev) is: whether it is rotational, and a model
    device with its max_segments (its queue's, or its disk's for a partition); not rotational and the
    default device when it cannot be told (a device without a queue)."""
    node = os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    for queue in (f"{node}/queue", f"{node}/../queue"):
        try:
            with open(f"{queue}/rotational") as f:
                rotational = f.read().strip() == "1"
            with open(f"{queue}/max_segments") as f:
                return rotational, BlockDevice(max_segments=int(f.read()))
        except (OSError, ValueError):
            continue
    return False, BlockDevice()


def find_area(swap: SwapState, path: str) -> SwapInfo | None:
    """The active area of the file `path` names (any name of it: swapoff resolves the path), if any."""
    path = os.path.realpath(path)
    return next((si for si in swap.active() if si.path == path), None)


def disable_area(swap: SwapState, si: SwapInfo) -> None:
    """The start of swapoff(), before try_to_unuse(): the area takes no new slots (SWP_WRITEOK cleared)
    and its pages leave nr_swap_pages and total_swap_pages, so that reclaim while the pages come back
    sees only the other areas' space (with no other area, anon is not scanned at all: otherwise it
    would swap the pages just read straight back out to the dying area). A slot freed meanwhile adds
    one to nr_swap_pages again, so that it is the other areas' free slots once the area is empty."""
    si.flags &= ~SWP_WRITEOK
    swap.total_swap_pages -= si.pages
    swap.nr_swap_pages -= si.pages


def reinsert_swap_info(swap: SwapState, si: SwapInfo) -> None:
    """reinsert_swap_info(): swapoff failed; the area is usable again with the slots it still holds."""
    si.flags |= SWP_WRITEOK
    swap.total_swap_pages += si.pages
    swap.nr_swap_pages += si.pages


def remove_area(swap: SwapState, si: SwapInfo) -> None:
    """The end of swapoff() (after disable_area and try_to_unuse): the area, now unused, leaves
    swap_info[]; a default priority returns."""
    if si.inuse_pages:
        raise AssertionError(f"swapoff of {si.path} with {si.inuse_pages} slots still in use")
    if si.prio < 0:
        for other in swap.active():
            if other.prio < si.prio:
                other.prio += 1
        swap.least_priority += 1
    swap.swap_info[si.type] = None


# --- slots -------------------------------------------------------------------------------------------------

def get_swap_page(swap: SwapState) -> int:
    """folio_alloc_swap() for one page: a free slot of the highest-priority area with room, marked
    SWAP_HAS_CACHE (the caller adds the folio to the swap cache); 0 when swap is full or absent."""
    for si in swap.active():
        if not si.flags & SWP_WRITEOK or not si.free_slots():
            continue
        free = np.flatnonzero(si.swap_map[si.cluster_next:] == 0)
        offset = si.cluster_next + int(free[0]) if free.size else int(np.flatnonzero(si.swap_map == 0)[0])
        si.swap_map[offset] = SWAP_HAS_CACHE
        si.cluster_next = offset + 1 if offset + 1 < si.max else 1
        si.inuse_pages += 1
        swap.nr_swap_pages -= 1
        return swp_entry(si.type, offset)
    return 0


def _slot_freed(swap: SwapState, si: SwapInfo, offset: int) -> None:
    """swap_entries_free(): the slot's byte reached zero; its shadow and its memcg charge go with it."""
    si.inuse_pages -= 1
    si.written[offset] = False
    swap.nr_swap_pages += 1
    entry = swp_entry(si.type, offset)
    swap.shadows.pop(entry, None)
    if swap.uncharge_swap is not None:
        swap.uncharge_swap(entry)


def swap_duplicate(swap: SwapState, entry: int) -> None:
    """swap_duplicate(): one more PTE refers to the slot (fork copying a swap PTE)."""
    si = swap.info(entry)
    offset = swp_offset(entry)
    count = int(si.swap_map[offset]) & ~SWAP_HAS_CACHE
    if not si.swap_map[offset] or count >= SWAP_MAP_MAX:
        raise AssertionError(f"swap_duplicate of slot {entry:#x} with map {int(si.swap_map[offset]):#x}")
    si.swap_map[offset] += 1


def swap_free(swap: SwapState, entry: int) -> int:
    """swap_free(): one PTE reference fewer; the slot's remaining map byte (0: the slot is free)."""
    si = swap.info(entry)
    offset = swp_offset(entry)
    value = int(si.swap_map[offset])
    if not value & ~SWAP_HAS_CACHE:
        raise AssertionError(f"swap_free of slot {entry:#x} that no PTE refers to ({value:#x})")
    value -= 1
    si.swap_map[offset] = value
    if not value:
        _slot_freed(swap, si, offset)
    return value


def put_swap_folio(swap: SwapState, entry: int) -> None:
    """put_swap_folio(): the swap cache let go of the slot (SWAP_HAS_CACHE cleared); free at zero."""
    si = swap.info(entry)
    offset = swp_offset(entry)
    value = int(si.swap_map[offset])
    if not value & SWAP_HAS_CACHE:
        raise AssertionError(f"put_swap_folio of slot {entry:#x} without SWAP_HAS_CACHE ({value:#x})")
    si.swap_map[offset] = value & ~SWAP_HAS_CACHE
    if value == SWAP_HAS_CACHE:
        _slot_freed(swap, si, offset)


def swp_swapcount(swap: SwapState, entry: int) -> int:
    """swp_swapcount()/__swap_count(): how many PTEs refer to the slot."""
    si = swap.info(entry)
    return int(si.swap_map[swp_offset(entry)]) & ~SWAP_HAS_CACHE


def swap_slot_in_use(swap: SwapState, entry: int) -> bool:
    """The slot's map byte is non-zero (a PTE or the swap cache holds it)."""
    t, offset = swp_type(entry), swp_offset(entry)
    si = swap.swap_info[t] if t < MAX_SWAPFILES else None
    return si is not None and 0 < offset < si.max and bool(si.swap_map[offset])


# --- views -------------------------------------------------------------------------------------------------

def swaps_show(swap: SwapState) -> str:
    """/proc/swaps (swap_show()): one line per area, sizes and use in KiB (the type column is
    "file\\t" for a file, measured: `cat -A /proc/swaps` shows `file^I^I16380^I^I0^I^I-2`)."""
    out = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    for si in sorted((s for s in swap.swap_info if s is not None), key=lambda s: s.type):
        size = si.pages * (PAGE_SIZE >> 10)
        used = si.inuse_pages * (PAGE_SIZE >> 10)
        pad = " " * (40 - len(si.path) if len(si.path) < 40 else 1)
        out += (f"{si.path}{pad}file\t\t{size}\t{chr(9) if size < 10000000 else ''}"
                f"{used}\t{chr(9) if used < 10000000 else ''}{si.prio}\n")
    return out


def si_swapinfo(swap: SwapState) -> tuple[int, int]:
    """si_swapinfo(): (freeswap, totalswap) in pages, as SwapFree/SwapTotal show them."""
    return swap.nr_swap_pages, swap.total_swap_pages
