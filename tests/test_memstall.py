"""Which time is a memory stall (PSI), by the kernel's rules: a read I/O that brings back a folio of the
workingset (read_pages() under ractl->_workingset, filemap_read_folio() and folio_wait_bit_common() on a
PG_workingset folio), and all of direct reclaim (__perform_reclaim); a read of a page that was never in
the workingset, a first read, and kswapd are not. File major faults count pgmajfault (filemap_fault).
"""

from __future__ import annotations

import numpy as np

from vmlab.kernel.clock import Clock
from vmlab.kernel.filemap import read_page
from vmlab.kernel.page_flags import PG
from vmlab.kernel.workingset import pack_shadow
from vmlab.lab.experiments.workload import Lab


def _stalls(clock: Clock) -> list[tuple[int, bool]]:
    seen: list[tuple[int, bool]] = []
    clock.observe(lambda start, ns, memstall: seen.append((ns, memstall)))
    return seen


def _stall_ns(seen: list[tuple[int, bool]]) -> int:
    return sum(ns for ns, memstall in seen if memstall)


def test_memstall_section_makes_every_charge_inside_it_a_stall() -> None:
    clock = Clock()
    seen = _stalls(clock)
    clock.advance(5)
    with clock.memstall():
        clock.advance(7)
        with clock.memstall():
            clock.advance(11)
        clock.advance(13)
    with clock.memstall(False):
        clock.advance(17)
    clock.advance(19)
    assert seen == [(5, False), (7, True), (11, True), (13, True), (17, False), (19, False)]


def _refault_read(workingset: bool) -> tuple[int, int, bool]:
    """read_page() of a page evicted just now with (or without) PG_workingset: (stall ns, I/O ns, the
    new page's PG_workingset)."""
    lab = Lab(64 << 20)
    try:
        mem = lab.mem
        inode = lab.model._inode(lab.file("f", 64))
        inode.shadows[3] = pack_shadow(mem.lruvec.nonresident_age, workingset)
        seen = _stalls(mem.clock)
        pfn, io = read_page(mem, inode, 3)
        assert pfn is not None and io
        return _stall_ns(seen), sum(ns for ns, _ in seen), mem.mem_map.test(pfn, PG.workingset)
    finally:
        lab.close()


def test_read_of_a_workingset_refault_is_a_memstall() -> None:
    stall, total, workingset = _refault_read(True)
    assert workingset and stall == total > 0


def test_read_of_a_page_outside_the_workingset_is_not_a_memstall() -> None:
    stall, total, workingset = _refault_read(False)
    assert not workingset and stall == 0 and total > 0


def test_mmap_fault_readahead_of_a_workingset_refault_is_a_memstall() -> None:
    lab = Lab(64 << 20)
    try:
        mem = lab.mem
        path = lab.file("f", 256)
        addr = lab.map_file(lab.open(path), 256)
        inode = lab.model._inode(path)
        seen = _stalls(mem.clock)
        lab.load_pages(addr, np.array([10]))  # a first read: a major fault, no stall
        assert mem.events["pgmajfault"] == 1 and _stall_ns(seen) == 0
        inode.shadows[200] = pack_shadow(mem.lruvec.nonresident_age, True)
        lab.load_pages(addr, np.array([200]))  # its read-around batch holds a workingset refault
        assert mem.events["pgmajfault"] == 2
        assert _stall_ns(seen) == mem.clock.costs.major_fault_ns
        assert mem.events["workingset_restore_file"] == 1
    finally:
        lab.close()


def test_direct_reclaim_through_the_allocator_is_a_memstall_kswapd_is_not() -> None:
    lab = Lab(64 << 20)
    try:
        mem = lab.mem
        seen = _stalls(mem.clock)
        pages = mem.totalram_pages * 2
        fd = lab.open(lab.file("big", pages))
        lab.pread_pages(fd, range(pages))  # kswapd keeps up: no stall at all
        assert mem.events["pgsteal_kswapd"] > 0 and mem.events["pgsteal_direct"] == 0
        assert _stall_ns(seen) == 0
        assert mem.vmscan is not None
        mem.vmscan.kswapd_failures = 1 << 30  # kswapd gives up: allocations reclaim directly
        before = mem.clock.now_ns
        lab.pread_pages(fd, range(pages // 2))
        assert mem.events["pgsteal_direct"] > 0 and mem.events["allocstall_normal"] > 0
        assert 0 < _stall_ns(seen) < mem.clock.now_ns - before
    finally:
        lab.close()
