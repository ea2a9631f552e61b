"""Write-back, after mm/page-writeback.c and fs/fs-writeback.c: dirty page accounting, the dirty limits
(dirty_background_ratio / dirty_ratio or their *_bytes, of the dirtyable memory), balance_dirty_pages()
throttling, the flusher (periodic "kupdate" write-back of inodes dirtied dirty_expire_centisecs ago,
every dirty_writeback_centisecs, and background write-back above the background threshold), and the
data-integrity paths (fsync, fdatasync, msync, sync, syncfs).

A page's life: folio_mark_dirty() sets PG_dirty, counts it in NR_FILE_DIRTY and tags it in its inode
(`Inode.dirty`, the xarray's PAGECACHE_TAG_DIRTY); the inode joins the flusher's b_dirty list with its
dirtied_when. Write-back (folio_clear_dirty_for_io + folio_start_writeback) moves it from Dirty to
Writeback and write-protects its shared mappings (folio_mkclean), so the next store faults and dirties
it again; the I/O completes on the clock (one queue per backing device, `BackingDev.write_ns` a page),
and folio_end_writeback() clears PG_writeback.

Write-back goes by folio, as the kernel's does: a large page-cache folio (readahead's, or a large
write()'s) is cleaned and written whole, one I/O, even when only one of its pages was asked for.

Deliberate simplifications: one backing device queue per device, its bandwidth 1 page / write_ns (a
folio's I/O takes write_ns per page); balance_dirty_pages() uses the kernel's global position control
(pos_ratio_polynom around the setpoint between the freerun ceiling and the limit) with the device's
write bandwidth as the balanced rate, for one writer (no per-wb or memcg domains, no ratelimit
bookkeeping per task); shmem pages are dirtied without accounting, as the kernel's noop_dirty_folio.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmlab.kernel.clock import NSEC_PER_MSEC
from vmlab.kernel.page_flags import F_DIRTY, F_DIRTY_OR_WRITEBACK, F_RECLAIM, F_WRITEBACK, PG
from vmlab.kernel.swap import (
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_FILE,
    folio_batch_move_large,
    folio_rotate_reclaimable,
    lru_add_drain,
    lru_move_tail,
)
from vmlab.kernel.uapi import (
    PAGE_SHIFT,
    PAGE_SIZE,
    SYNC_FILE_RANGE_WAIT_AFTER,
    SYNC_FILE_RANGE_WAIT_BEFORE,
    SYNC_FILE_RANGE_WRITE,
    SYNC_FILE_RANGE_WRITE_AND_WAIT,
)
from vmlab.kernel.workingset import workingset_test_recent
from vmlab.linux import CacheStat

if TYPE_CHECKING:
    from vmlab.kernel.mm_types import Inode, MmStruct, VmArea
    from vmlab.kernel.page_alloc import PhysMem

#: Pages one write-back pass writes of an inode before moving on (fs/fs-writeback.c).
MAX_WRITEBACK_PAGES = 1024
#: balance_dirty_pages() sleeps at most this long per pause (MAX_PAUSE = HZ/5).
MAX_PAUSE_NS = 200 * NSEC_PER_MSEC
UINT_MAX = (1 << 32) - 1
NSEC_PER_CENTISEC = 10 * NSEC_PER_MSEC



@dataclass
class DirtySysctl:
    """/proc/sys/vm/dirty_*: the defaults of this kernel (measured on the host: 10, 0, 20, 0, 500, 3000)."""

    dirty_background_ratio: int = 10
    dirty_background_bytes: int = 0
    dirty_ratio: int = 20
    dirty_bytes: int = 0
    dirty_writeback_centisecs: int = 500
    dirty_expire_centisecs: int = 3000


@dataclass
class BackingDev:
    """A backing device (`backing_dev_info` with its request queue): writes are served one page at a
    time in submission order, each taking `write_ns`; `busy_until` is when the queue drains."""

    name: str = "default"
    write_ns: int | None = None  # None: the machine's Costs.writeback_ns
    read_ns: int | None = None  # None: the machine's Costs.major_fault_ns (the read paths use it)
    busy_until: int = 0


@dataclass
class Writeback:
    """The node's write-back state: NR_FILE_DIRTY and NR_WRITEBACK (pages), the flusher's b_dirty list
    (inodes with dirty pages, oldest dirtied first), its timer, and the device the model's files use
    unless they name their own."""

    sysctl: DirtySysctl = field(default_factory=DirtySysctl)
    nr_dirty: int = 0
    nr_writeback: int = 0
    b_dirty: dict[Inode, None] = field(default_factory=dict)
    default_bdi: BackingDev = field(default_factory=BackingDev)
    flusher_armed_for: int | None = None  # when the delayed flusher work is due, if queued
    background_queued: bool = False
    last_old_flush: int = 0
    #: balance_dirty_pages() sleeps so far (not a /proc/vmstat field; for the experiments).
    pauses: int = 0


# --- dirty limits ----------------------------------------------------------------------------------


def calculate_totalreserve_pages(zones: Iterable[tuple[int, int, Iterable[int]]]) -> int:
    """calculate_totalreserve_pages(): per zone, its high watermark plus its largest lowmem_reserve
    (capped at its managed pages), summed. `zones` gives (managed, high watermark, lowmem_reserve[])."""
    total = 0
    for managed, high, reserves in zones:
        total += min(max([0, *reserves]) + high, managed)
    return total


def global_dirtyable_memory(nr_free: int, totalreserve: int, inactive_file: int, active_file: int) -> int:
    """global_dirtyable_memory(): free pages less the kernel's reserves, plus the file LRU pages (+1 so it
    is never 0). No highmem on x86_64."""
    x = nr_free - min(nr_free, totalreserve)
    return x + inactive_file + active_file + 1


def _div_round_up(n: int, d: int) -> int:
    """DIV_ROUND_UP()."""
    return -(-n // d)


def domain_dirty_limits(available: int, sysctl: DirtySysctl) -> tuple[int, int]:
    """domain_dirty_limits() of the global domain: (bg_thresh, thresh) in pages. Ratios are turned into
    parts per PAGE_SIZE first (so 20% is 819/4096 of the dirtyable memory); *_bytes win over ratios; a
    background threshold not below the hard one is halved from it."""
    ratio = sysctl.dirty_ratio * PAGE_SIZE // 100
    bg_ratio = sysctl.dirty_background_ratio * PAGE_SIZE // 100
    thresh = (_div_round_up(sysctl.dirty_bytes, PAGE_SIZE) if sysctl.dirty_bytes
              else ratio * available // PAGE_SIZE)
    bg_thresh = (_div_round_up(sysctl.dirty_background_bytes, PAGE_SIZE) if sysctl.dirty_background_bytes
                 else bg_ratio * available // PAGE_SIZE)
    thresh = min(thresh, UINT_MAX)
    if bg_thresh >= thresh:
        bg_thresh = thresh // 2
    return bg_thresh, thresh


def totalreserve_pages(mem: PhysMem) -> int:
    """totalreserve_pages of the model's machine, from its zones' watermarks and lowmem reserves."""
    from vmlab.kernel.page_alloc import WMARK_HIGH

    return calculate_totalreserve_pages(
        (z.managed_pages, z.watermark[WMARK_HIGH], z.lowmem_reserve[z.idx:]) for z in mem.zones
        if z.populated())


def global_dirty_limits(mem: PhysMem) -> tuple[int, int]:
    """global_dirty_limits(): (background, dirty) thresholds in pages, as /proc/vmstat prints them in
    nr_dirty_background_threshold and nr_dirty_threshold."""
    lru = mem.lruvec
    avail = global_dirtyable_memory(mem.nr_free_pages, totalreserve_pages(mem),
                                    lru.lru_size(LRU_INACTIVE_FILE), lru.lru_size(LRU_ACTIVE_FILE))
    return domain_dirty_limits(avail, mem.wb.sysctl)


def dirty_freerun_ceiling(thresh: int, bg_thresh: int) -> int:
    """dirty_freerun_ceiling(): below (thresh + bg_thresh) / 2 a writer is not throttled at all."""
    return (thresh + bg_thresh) // 2


def pos_ratio_polynom(setpoint: int, dirty: int, limit: int) -> float:
    """pos_ratio_polynom(): 1 + ((setpoint - dirty) / (limit - setpoint + 1))^3, clamped to [0, 2]: the
    writer runs at the balanced rate at the setpoint, faster below, and stops at the limit."""
    x = (setpoint - dirty) / (limit - setpoint + 1)
    return min(max(1.0 + x * x * x, 0.0), 2.0)


# --- dirtying --------------------------------------------------------------------------------------


def _bdi(mem: PhysMem, inode: Inode) -> BackingDev:
    return inode.bdi if inode.bdi is not None else mem.wb.default_bdi


def folio_frames(mem: PhysMem, inode: Inode, pfn: int) -> list[int]:
    """The frames of the page-cache folio holding page `pfn`, head first: the page alone, or every
    cached page of a large folio (its frames separate in the model, its order in inode.folio_orders),
    as the kernel's one struct folio stands for them all."""
    from vmlab.kernel.filemap import folio_head  # filemap -> page_alloc -> this module

    mm = mem.mem_map
    head = mm.compound_head(pfn)
    if inode.folio_orders and head == pfn:
        first, order = folio_head(inode, int(mm.index[pfn]))
        if order:
            return [p for p in map(inode.i_pages.get, range(first, first + (1 << order))) if p is not None]
    return [head]


def folio_mark_dirty(mem: PhysMem, inode: Inode, pfn: int, blocks: Iterable[int] | None = None) -> int:
    """folio_mark_dirty() -> filemap_dirty_folio() of the folio holding page `pfn`: set PG_dirty; the
    first time, account it (NR_FILE_DIRTY and nr_dirtied by folio_nr_pages), tag it dirty in the inode
    and mark the inode dirty (__mark_inode_dirty: dirtied_when, the b_dirty list, the flusher's
    delayed wake-up). shmem folios are only flagged (noop_dirty_folio). A large page-cache folio is
    dirtied whole, as the kernel's one PG_dirty makes it: a one-byte write to a 16-page folio dirties
    16 pages. Its blocks: those of the pages `blocks` names (a write's mark_buffer_dirty), or every
    one (block_dirty_folio: None). Returns the pages that were clean and are now dirty (0: the folio
    was dirty already)."""
    mm = mem.mem_map
    dirtied = 0
    frames = folio_frames(mem, inode, pfn)
    if not inode.shmem:
        inode.dirty_buffers.update(blocks if blocks is not None else (int(mm.index[p]) for p in frames))
    for page in frames:
        flags = int(mm.flags[page])
        if flags & F_DIRTY:
            continue
        mm.flags[page] = flags | F_DIRTY
        dirtied += 1
        if inode.shmem:
            continue
        wb = mem.wb
        wb.nr_dirty += 1
        mem.events["nr_dirtied"] += 1
        if not inode.dirty:
            inode.dirtied_when = mem.clock.now_ns
            wb.b_dirty[inode] = None
            wb_wakeup_delayed(mem)
        index = int(mm.index[page])
        inode.dirty.add(index)
        inode.stale_dirty.discard(index)
    return dirtied


def folio_account_cleaned(mem: PhysMem, inode: Inode, index: int) -> None:
    """folio_account_cleaned() + the tag's removal: a dirty page stops counting as dirty."""
    inode.dirty.discard(index)
    mem.wb.nr_dirty -= 1
    if not inode.dirty:
        mem.wb.b_dirty.pop(inode, None)


def folio_cancel_dirty(mem: PhysMem, inode: Inode, pfn: int) -> None:
    """folio_cancel_dirty(): truncation throws a dirty page's data away (the one legitimate drop of a
    dirty page without write-back)."""
    mm = mem.mem_map
    if int(mm.flags[pfn]) & F_DIRTY:
        mm.clear(pfn, PG.dirty)
        if not inode.shmem:
            folio_account_cleaned(mem, inode, int(mm.index[pfn]))


# --- the reverse map of a file (i_mmap) ------------------------------------------------------------


def mapping_vmas(inode: Inode, first: int, last: int) -> Iterator[tuple[MmStruct, VmArea, int, int]]:
    """vma_interval_tree_foreach(): every live (mm, vma) that maps file pages [first, last] of `inode`,
    with the first and last such index it maps. VMAs of exited mms are pruned on the way."""
    for vma, mm in list(inode.i_mmap.items()):
        if mm.pt is None:
            del inode.i_mmap[vma]
            continue
        lo = max(first, vma.vm_pgoff)
        hi = min(last, vma.vm_pgoff + vma.pages - 1)
        if lo <= hi:
            yield mm, vma, lo, hi


def vma_address(vma: VmArea, index: int) -> int:
    """vma_address(): the virtual address at which `vma` maps file page `index`."""
    return vma.vm_start + ((index - vma.vm_pgoff) << PAGE_SHIFT)


def folio_mkclean(mem: PhysMem, inode: Inode, pfn: int) -> None:
    """folio_mkclean(): write-protect and clean every shared PTE that maps the page, so the next store
    faults (page_mkwrite) and dirties it again."""
    from vmlab.kernel.pgtable import (  # pgtable needs PhysMem
        _PAGE_RW,
        pte_dirty,
        pte_mkclean,
        pte_pfn,
        pte_present,
        pte_wrprotect,
    )

    index = int(mem.mem_map.index[pfn])
    for mm, vma, _, _ in mapping_vmas(inode, index, index):
        pt = mm.pt
        assert pt is not None
        addr = vma_address(vma, index)
        pte = pt.get_pte(addr)
        if pte_present(pte) and pte_pfn(pte) == pfn and (pte & _PAGE_RW or pte_dirty(pte)):
            pt.set_pte(addr, pte_mkclean(pte_wrprotect(pte)))


# --- write-back ------------------------------------------------------------------------------------


def folio_start_writeback(mem: PhysMem, inode: Inode, pfn: int, *, reclaim: bool = False) -> int:
    """folio_clear_dirty_for_io() + folio_start_writeback() + submitting the write, of the whole folio
    holding page `pfn` (a large folio is written as one, as ext4's writepages submits folios: a sync of
    one page of a 16-page folio cleans 16): each page Dirty -> Writeback (PG_reclaim too for reclaim's
    pageout); the I/O joins the device's queue, takes `write_ns` per page and completes later on the
    clock, ending write-back of the folio. Returns the pages written."""
    mm = mem.mem_map
    frames = folio_frames(mem, inode, pfn)
    written: list[tuple[int, int]] = []
    for page in frames:
        index = int(mm.index[page])
        inode.dirty_buffers.discard(index)  # the blocks go to the device: clean
        folio_mkclean(mem, inode, page)
        flags = int(mm.flags[page])
        mm.flags[page] = (flags & ~F_DIRTY) | F_WRITEBACK | (F_RECLAIM if reclaim else 0)
        if flags & F_DIRTY:
            folio_account_cleaned(mem, inode, index)
        written.append((index, page))
    mem.wb.nr_writeback += len(written)
    bdi = _bdi(mem, inode)
    cost = bdi.write_ns if bdi.write_ns is not None else mem.clock.costs.writeback_ns
    done = max(mem.clock.now_ns, bdi.busy_until) + cost * len(written)
    bdi.busy_until = done
    for index, _ in written:
        inode.under_writeback[index] = done
    mem.clock.at(done, lambda: folio_end_writeback(mem, inode, written))
    return len(written)


def folio_end_writeback(mem: PhysMem, inode: Inode, written: list[tuple[int, int]]) -> None:
    """folio_end_writeback(): the write of a folio's pages (index, pfn) completed: clear PG_writeback
    (nr_written); a folio reclaim wanted (PG_reclaim) is queued for the tail of its inactive list, to
    be freed next (folio_rotate_reclaimable)."""
    mm = mem.mem_map
    for index, pfn in written:
        del inode.under_writeback[index]
        flags = int(mm.flags[pfn])
        mm.flags[pfn] = flags & ~(F_WRITEBACK | F_RECLAIM)
        mem.wb.nr_writeback -= 1
        mem.events["nr_written"] += 1
        if flags & F_RECLAIM:
            folio_rotate_reclaimable(mem, pfn)
    if len(written) > 1:
        folio_batch_move_large(mem, mem.fbatches.lru_move_tail, lru_move_tail)


def write_cache_pages(mem: PhysMem, inode: Inode, first: int = 0, last: int | None = None,
                      nr_to_write: int | None = None, *, sync_all: bool = True) -> int:
    """write_cache_pages() / writeback_iter(): start write-back of the dirty folios that hold a page of
    [first, last], in index order, whole (a large folio that begins before `first` too), until
    `nr_to_write` pages are submitted (the last folio may take it past). A folio still under an earlier
    write-back (it was redirtied) is waited for first with `sync_all` (WB_SYNC_ALL: the data-integrity
    paths; written only if still dirty then), passed by otherwise (WB_SYNC_NONE: the flusher,
    sync_file_range's plain write). Returns the pages submitted."""
    todo = sorted(i for i in inode.dirty if i >= first and (last is None or i <= last))
    submitted = 0
    for index in todo:
        if nr_to_write is not None and submitted >= nr_to_write:
            break
        if index not in inode.dirty:  # written with an earlier page of its folio
            continue
        if index in inode.under_writeback:
            if not sync_all:
                continue
            folio_wait_writeback(mem, inode, index)
            if index not in inode.dirty:  # the flusher wrote it while we waited
                continue
        submitted += folio_start_writeback(mem, inode, inode.i_pages[index])
    return submitted


def folio_wait_writeback(mem: PhysMem, inode: Inode, index: int) -> None:
    """folio_wait_writeback(): sleep (not a memory stall) until the page is not under write-back: its
    completion runs even when it falls due now (a write of no latency), and a write the flusher
    started meanwhile is waited for too (the kernel's waiter holds the folio lock, so none starts;
    the model has no folio lock)."""
    while (done := inode.under_writeback.get(index)) is not None:
        mem.clock.advance(max(0, done - mem.clock.now_ns))


def filemap_fdatawait_range(mem: PhysMem, inode: Inode, first: int = 0, last: int | None = None) -> None:
    """filemap_fdatawait_range(): sleep (not a memory stall) until every write of a page of [first,
    last] under way now has completed."""
    pending = [t for i, t in inode.under_writeback.items() if i >= first and (last is None or i <= last)]
    if pending:
        mem.clock.advance(max(0, max(pending) - mem.clock.now_ns))
        lru_add_drain(mem)  # folio_batch_release() of the folios it waited on


def filemap_write_and_wait_range(mem: PhysMem, inode: Inode, first: int = 0, last: int | None = None) -> int:
    """filemap_write_and_wait_range(): write the dirty folios of the range and wait for every write of
    it (also those started earlier) — the data part of fsync/fdatasync/msync(MS_SYNC). Returns 0."""
    if inode.shmem:
        return 0
    write_cache_pages(mem, inode, first, last)
    filemap_fdatawait_range(mem, inode, first, last)
    return 0


def sync_file_range(mem: PhysMem, inode: Inode, offset: int, nbytes: int, flags: int) -> int:
    """ksys_sync_file_range() on a regular file, after its argument checks: of the bytes [offset,
    offset+nbytes) (nbytes 0: to the end), wait for write-back under way (WAIT_BEFORE), start
    write-back of the dirty folios (WRITE: WB_SYNC_NONE, so a folio under write-back already is passed
    by; all three flags: WB_SYNC_ALL, as fdatasync of the range), wait again (WAIT_AFTER). Returns 0."""
    first = offset >> PAGE_SHIFT
    last = None if nbytes == 0 else (offset + nbytes - 1) >> PAGE_SHIFT
    if inode.shmem:
        return 0
    if flags & SYNC_FILE_RANGE_WRITE_AND_WAIT == SYNC_FILE_RANGE_WRITE_AND_WAIT:
        return filemap_write_and_wait_range(mem, inode, first, last)
    if flags & SYNC_FILE_RANGE_WAIT_BEFORE:
        filemap_fdatawait_range(mem, inode, first, last)
    if flags & SYNC_FILE_RANGE_WRITE:
        write_cache_pages(mem, inode, first, last, sync_all=False)
    if flags & SYNC_FILE_RANGE_WAIT_AFTER:
        filemap_fdatawait_range(mem, inode, first, last)
    return 0


def writeback_folio(mem: PhysMem, head: int) -> bool:
    """pageout() for reclaim: start write-back of a dirty page-cache folio and mark it PG_reclaim, so it
    rotates to the inactive tail when the write completes. True when the folio is now clean and not
    under write-back (a write that completed at once: it may be freed)."""
    mm = mem.mem_map
    inode = mem.address_spaces.get(int(mm.mapping[head]))
    if int(mm.flags[head]) & F_DIRTY and inode is not None:
        folio_start_writeback(mem, inode, head, reclaim=True)
    return not int(mm.flags[head]) & F_DIRTY_OR_WRITEBACK


# --- the flusher -----------------------------------------------------------------------------------


def wb_wakeup_delayed(mem: PhysMem) -> None:
    """wb_wakeup_delayed(): queue the flusher dirty_writeback_centisecs from now, unless it is queued."""
    wb = mem.wb
    interval = wb.sysctl.dirty_writeback_centisecs * NSEC_PER_CENTISEC
    if wb.flusher_armed_for is not None or not interval:
        return
    when = mem.clock.now_ns + interval
    wb.flusher_armed_for = when
    mem.clock.at(when, lambda: wb_workfn(mem, when))


def wb_start_background_writeback(mem: PhysMem) -> None:
    """wb_start_background_writeback(): run the flusher now (over the background threshold)."""
    wb = mem.wb
    if not wb.background_queued:
        wb.background_queued = True
        mem.clock.at(mem.clock.now_ns, lambda: wb_workfn(mem, None))


def _write_inodes(mem: PhysMem, inodes: list[Inode], budget: int) -> int:
    """writeback_sb_inodes(): up to MAX_WRITEBACK_PAGES of each inode in turn, `budget` in all."""
    written = 0
    for inode in inodes:
        if written >= budget:
            break
        written += write_cache_pages(mem, inode, nr_to_write=min(MAX_WRITEBACK_PAGES, budget - written),
                                     sync_all=False)
    return written


def wb_workfn(mem: PhysMem, when: int | None) -> None:
    """wb_workfn() -> wb_do_writeback(): the periodic kupdate write-back of every page of the inodes
    dirtied more than dirty_expire_centisecs ago, MAX_WRITEBACK_PAGES per inode per round until none
    is left (at most once per dirty_writeback_centisecs), then background write-back
    while NR_FILE_DIRTY is over the background threshold — one chunk per device queue drain, so the
    flusher keeps the device busy without putting every dirty page under write-back at once. It comes
    back while dirty inodes remain."""
    wb = mem.wb
    now = mem.clock.now_ns
    if when is not None:
        if wb.flusher_armed_for != when:
            return
        wb.flusher_armed_for = None
    else:
        wb.background_queued = False
    interval = wb.sysctl.dirty_writeback_centisecs * NSEC_PER_CENTISEC
    if interval and now >= wb.last_old_flush + interval:
        wb.last_old_flush = now
        expire = wb.sysctl.dirty_expire_centisecs * NSEC_PER_CENTISEC
        while True:  # wb_writeback() requeues a partly written inode (b_more_io) and goes on
            old = [i for i in wb.b_dirty if i.dirtied_when <= now - expire]
            if not old or not _write_inodes(mem, old, wb.nr_dirty):
                break
    bg_thresh, _ = global_dirty_limits(mem)
    if wb.nr_dirty > bg_thresh and wb.b_dirty:
        _write_inodes(mem, list(wb.b_dirty), MAX_WRITEBACK_PAGES)
        busy = max([wb.default_bdi.busy_until, *(_bdi(mem, i).busy_until for i in wb.b_dirty)])
        wb.background_queued = True
        mem.clock.at(max(busy, now + 1), lambda: wb_workfn(mem, None))
    if wb.b_dirty:
        wb_wakeup_delayed(mem)


def balance_dirty_pages(mem: PhysMem, pages_dirtied: int) -> int:
    """balance_dirty_pages_ratelimited() after a writer dirtied `pages_dirtied` pages: above the
    background threshold the flusher starts; above the freerun ceiling the writer sleeps
    pages_dirtied / (write bandwidth x pos_ratio), at most MAX_PAUSE at a time, and at the limit it
    sleeps until write-back brings dirty + writeback under it. The sleeps are charged to the clock (I/O
    wait, not a memory stall). Returns the nanoseconds slept."""
    wb = mem.wb
    slept = 0
    while True:
        bg_thresh, thresh = global_dirty_limits(mem)
        dirty = wb.nr_dirty + wb.nr_writeback
        if wb.nr_dirty > bg_thresh:
            wb_start_background_writeback(mem)
        freerun = dirty_freerun_ceiling(thresh, bg_thresh)
        if dirty <= freerun or pages_dirtied <= 0:
            return slept
        setpoint = (freerun + thresh) // 2
        pos_ratio = pos_ratio_polynom(setpoint, dirty, thresh)
        write_ns = wb.default_bdi.write_ns or mem.clock.costs.writeback_ns
        if dirty < thresh and pos_ratio > 0:
            pause = min(int(pages_dirtied * write_ns / pos_ratio), MAX_PAUSE_NS)
            pages_dirtied = 0
        else:
            pause = MAX_PAUSE_NS
        mem.clock.advance(pause)
        wb.pauses += 1
        slept += pause


# --- whole-system and per-file sync ----------------------------------------------------------------


def sync_inodes(mem: PhysMem, inodes: Iterable[Inode]) -> int:
    """sync_inodes_sb() + wait: write and wait for every dirty page of the inodes. Returns 0."""
    for inode in list(inodes):
        filemap_write_and_wait_range(mem, inode)
    return 0


def ksys_sync(mem: PhysMem) -> int:
    """sync(): every dirty inode of the machine is written and waited for."""
    writing = [i for i in mem.address_spaces.values() if i.under_writeback]
    return sync_inodes(mem, list(mem.wb.b_dirty) + writing)


# --- views -----------------------------------------------------------------------------------------


def filemap_cachestat(mem: PhysMem, inode: Inode, off: int, length: int) -> CacheStat:
    """filemap_cachestat(): cached pages of [off, off+len) (len 0: to the end of the file), those
    tagged dirty (a stale tag too: Inode.stale_dirty) and under write-back (a shmem page is never
    tagged: noop_dirty_folio), and the evicted ones: those whose shadow entries remain, and a shmem
    object's pages on swap (recently: their refault would still count as part of the working set; a
    swapped page's shadow is the swap cache's, none while its folio is still there)."""
    first = off >> PAGE_SHIFT
    last = (1 << 62) if length == 0 else (off + length - 1) >> PAGE_SHIFT
    cache = sum(1 for index in inode.i_pages if first <= index <= last)
    dirty = sum(first <= index <= last for tagged in (inode.dirty, inode.stale_dirty) for index in tagged)
    wb = sum(1 for index in inode.under_writeback if first <= index <= last)
    shadows = [s for i, s in inode.shadows.items() if first <= i <= last]
    swapped = [mem.swap.shadows.get(e) for i, e in inode.swapped.items() if first <= i <= last]
    recent = sum(workingset_test_recent(mem, s, True)[0] for s in [*shadows, *swapped] if s is not None)
    return CacheStat(cache, dirty, wb, len(shadows) + len(swapped), recent)
