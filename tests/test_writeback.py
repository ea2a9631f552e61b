"""Write-back in the model (mm/page-writeback.c, fs/fs-writeback.c, mm/truncate.c): the dirty limits'
arithmetic, the flusher's expiry timing on the simulated clock, balance_dirty_pages throttling, fsync
waiting for the device, drop_caches, and the invariant checker's write-back accounting."""

from __future__ import annotations

import pytest

from vmlab.kernel import vmscan
from vmlab.kernel.clock import NSEC_PER_SEC
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.page_flags import PG
from vmlab.kernel.page_writeback import (
    BackingDev,
    DirtySysctl,
    domain_dirty_limits,
    folio_wait_writeback,
    global_dirty_limits,
    write_cache_pages,
    writeback_folio,
)
from vmlab.kernel.swap import LRU_INACTIVE_FILE, lru_add_drain
from vmlab.kernel.uapi import SYNC_FILE_RANGE_WRITE

from wbkit import PAGE, ModelFile


def test_ratios_are_parts_per_page_size_and_bytes_win() -> None:
    """20% is 819/4096 and 10% is 409/4096 of the dirtyable memory (the kernel converts ratios to
    parts per PAGE_SIZE); *_bytes round up to pages; a background threshold at or above the hard one
    becomes half of it."""
    assert domain_dirty_limits(100_000, DirtySysctl()) == (409 * 100_000 // 4096, 819 * 100_000 // 4096)
    assert domain_dirty_limits(100_000, DirtySysctl(dirty_bytes=4097, dirty_background_bytes=1)) == (1, 2)
    assert domain_dirty_limits(100_000, DirtySysctl(dirty_background_ratio=30)) == (9997, 19995)


def test_write_dirties_and_fsync_cleans_after_the_device_time() -> None:
    f = ModelFile()
    f.pwrite(0, 8 * PAGE)
    assert f.cachestat() == (8, 8, 0) and f.mem.wb.nr_dirty == 8
    t0 = f.mem.clock.now_ns
    assert f.call("fsync", f.fd) == 0
    assert f.cachestat() == (8, 0, 0) and f.mem.wb.nr_writeback == 0
    assert f.mem.clock.now_ns - t0 >= 8 * f.mem.clock.costs.writeback_ns  # it waited for 8 writes
    assert f.mem.events["nr_dirtied"] == 8 and f.mem.events["nr_written"] == 8
    check_machine(f.backend)


def test_waiting_for_a_write_of_no_latency_completes_it() -> None:
    """On a device whose writes take no time the write completes at the moment it is submitted:
    fsync's wait (filemap_fdatawait_range) and a sync's wait for a page still under write-back
    (folio_wait_writeback) run that completion before going on. They used to wait only for a later
    one: fsync returned with the pages under write-back, and the next sync started a second write of
    a page still under the first (found by the pressure test, HYPOTHESIS_PROFILE=explore seed 7)."""
    f = ModelFile()
    f.inode.bdi = BackingDev(write_ns=0)
    for _ in range(2):
        f.pwrite(0, 4 * PAGE)
        assert f.call("fsync", f.fd) == 0
        assert f.cachestat() == (4, 0, 0) and not f.inode.under_writeback and f.mem.wb.nr_writeback == 0
    check_machine(f.backend)


def test_a_sync_waits_out_a_write_the_flusher_starts_meanwhile() -> None:
    """fsync of a page redirtied under write-back waits for that write; if the flusher writes the page
    again the moment it completes (the model has no folio lock to keep it out), fsync waits for that
    write too and does not write the page a third time: it is clean by then. It used to start a second
    write of the page still under the flusher's, whose completion then found no write pending (a
    KeyError in folio_end_writeback; found by the pressure test, explore profile, seed 7)."""
    f = ModelFile()
    f.pwrite(0, PAGE)
    assert f.call("sync_file_range", f.fd, 0, PAGE, SYNC_FILE_RANGE_WRITE) == 0
    f.pwrite(0, PAGE)  # dirty again, still under the first write
    assert f.cachestat() == (1, 1, 1)
    f.mem.clock.at(f.inode.under_writeback[0], lambda: write_cache_pages(f.mem, f.inode, sync_all=False))
    assert f.call("fsync", f.fd) == 0
    assert f.cachestat() == (1, 0, 0) and not f.inode.under_writeback
    assert f.mem.events["nr_written"] == 2  # the first write and the flusher's
    check_machine(f.backend)


def test_flusher_writes_an_inode_once_it_is_older_than_dirty_expire() -> None:
    """kupdate write-back runs every dirty_writeback_centisecs (5 s) and writes inodes dirtied more than
    dirty_expire_centisecs (30 s) ago; the first dirtying arms it: pages dirtied at t are dirty until
    t + 30 s and written at that pass (the 6th)."""
    f = ModelFile()
    f.pwrite(0, 4 * PAGE)
    clock = f.mem.clock
    t = f.inode.dirtied_when
    clock.advance(t + 30 * NSEC_PER_SEC - 1 - clock.now_ns)
    assert f.cachestat() == (4, 4, 0)
    clock.advance(1)
    assert f.cachestat()[1] == 0
    clock.advance(NSEC_PER_SEC)
    assert f.cachestat() == (4, 0, 0) and not f.mem.wb.b_dirty
    check_machine(f.backend)


def test_kupdate_writes_the_whole_expired_inode_in_one_pass() -> None:
    """wb_writeback() writes an expired inode MAX_WRITEBACK_PAGES (4 MiB) at a time but requeues it
    until it is clean: 12 MiB dirtied at once are all under write-back after the first pass past the
    expiry (below the background threshold of a 512 MiB machine, so only kupdate writes them)."""
    f = ModelFile(ram=512 << 20)
    for chunk in range(12):
        f.pwrite(chunk * 256 * PAGE, 256 * PAGE)
    assert f.cachestat()[1] == 3072
    clock = f.mem.clock
    clock.advance(f.inode.dirtied_when + 30 * NSEC_PER_SEC - clock.now_ns)
    assert f.cachestat()[1] == 0
    check_machine(f.backend)


def test_store_through_shared_mapping_redirties_after_writeback() -> None:
    f = ModelFile()
    f.pwrite(0, 4 * PAGE)
    addr = f.map_shared(4 * PAGE)
    assert f.store(addr) is None
    assert f.call("fsync", f.fd) == 0 and f.cachestat() == (4, 0, 0)
    assert f.store(addr) is None  # folio_mkclean write-protected it: the store faults and dirties
    assert f.cachestat() == (4, 1, 0)
    check_machine(f.backend)


def test_balance_dirty_pages_holds_a_writer_near_the_limit() -> None:
    """A writer of more than the dirty limit on a small machine: above the background threshold the
    flusher writes, and the writer sleeps so that dirty + writeback never passes the limit by more
    than one ratelimit batch; the sleeps make the write take about as long as the device needs."""
    f = ModelFile(ram=64 << 20)
    bg, thresh = global_dirty_limits(f.mem)
    total = 3 * thresh
    worst = 0
    for off in range(0, total * PAGE, 64 * PAGE):
        f.pwrite(off, 64 * PAGE)
        worst = max(worst, f.mem.wb.nr_dirty + f.mem.wb.nr_writeback)
        assert f.mem.wb.nr_writeback <= 1024 + 64  # one flusher chunk in flight (plus fault noise)
    _, thresh_now = global_dirty_limits(f.mem)
    assert bg < worst <= max(thresh, thresh_now) + 64
    written = f.mem.events["nr_written"]
    assert written >= total - thresh_now - 64
    assert f.mem.clock.now_ns >= (written - 1024) * f.mem.clock.costs.writeback_ns
    check_machine(f.backend)


def test_drop_caches_keeps_dirty_and_mapped_pages() -> None:
    f = ModelFile()
    f.pwrite(0, 8 * PAGE)
    assert f.call("fsync", f.fd) == 0
    f.pwrite(0, 2 * PAGE)  # pages 0, 1 dirty again
    addr = f.map_shared(8 * PAGE)
    assert f.load(addr + 7 * PAGE) is None  # fault-around maps every cached page of the window
    f.call("munmap", addr, 8 * PAGE)
    addr = f.call("mmap", 0, PAGE, 1, 1, f.fd, 6 * PAGE)  # page 6 stays mapped
    assert f.load(addr) is None
    f.backend.drop_caches(1)
    assert f.cachestat() == (3, 2, 0) and set(f.inode.i_pages) == {0, 1, 6}
    check_machine(f.backend)


def test_reclaim_writeback_rotates_the_folio_to_the_inactive_tail() -> None:
    """pageout(): a dirty file folio reclaim finds is written (PG_reclaim); when the write completes it
    is queued for the tail of the inactive file list (the CPU's lru_move_tail batch), the next to be
    reclaimed once the batch moves."""
    f = ModelFile()
    f.pwrite(0, 3 * PAGE)
    pfn = f.inode.i_pages[0]
    lru_add_drain(f.mem)
    # The file's pages are the newest, in order (the program's image page is older).
    assert list(f.mem.lruvec.lists[LRU_INACTIVE_FILE])[-3:] == [f.inode.i_pages[i] for i in range(3)]
    f.mem.lruvec.delete(f.mem.mem_map, pfn)
    f.mem.lruvec.add(f.mem.mem_map, pfn)  # move it to the head
    written = f.mem.events["nr_vmscan_write"]
    assert not writeback_folio(f.mem, pfn)
    assert f.cachestat() == (3, 2, 1)
    folio_wait_writeback(f.mem, f.inode, 0)
    assert f.cachestat() == (3, 2, 0)
    assert f.mem.fbatches.lru_move_tail == [pfn]  # queued for the tail (lru_move_tail) until a drain
    assert list(f.mem.lruvec.lists[LRU_INACTIVE_FILE])[-1] == pfn
    lru_add_drain(f.mem)
    assert next(iter(f.mem.lruvec.lists[LRU_INACTIVE_FILE])) == pfn
    assert f.mem.events["nr_vmscan_write"] == written  # counted by shrink_folio_list's pageout, once
    check_machine(f.backend)


def test_kswapd_pageout_counts_each_page_it_writes_once() -> None:
    """pageout() of a dirty file folio kswapd has seen before (PG_reclaim): one write started, counted
    once in nr_vmscan_write and in the pass's nr_pageout (it was counted twice)."""
    f = ModelFile()
    f.pwrite(0, PAGE)
    pfn = f.inode.i_pages[0]
    f.mem.mem_map.set(pfn, PG.reclaim)
    stat = vmscan.FolioStats()
    sc = vmscan.ScanControl(nr_to_reclaim=32, kswapd=True)
    assert vmscan._pageout(f.mem.vmscan, sc, pfn, vmscan.FOLIOREF_RECLAIM, stat) == "keep"  # under write
    assert (f.mem.events["nr_vmscan_write"], stat.nr_pageout, f.cachestat()) == (1, 1, (1, 0, 1))


@pytest.mark.parametrize("size", [0, 5 * PAGE + 100])
def test_truncate_unmaps_and_drops_dirty_pages(size: int) -> None:
    f = ModelFile()
    f.pwrite(0, 8 * PAGE)
    addr = f.map_shared(8 * PAGE)
    for i in range(8):
        assert f.store(addr + i * PAGE) is None
    assert f.call("ftruncate", f.fd, size) == 0
    kept = -(-size // PAGE)
    assert f.cachestat() == (kept, kept, 0) and f.mem.wb.nr_dirty == kept
    assert f.store(addr + kept * PAGE) == "SIGBUS"
    check_machine(f.backend)
