"""Reclaim (mm/vmscan.c, mm/workingset.c, the rmap walk of mm/rmap.c): workloads bigger than RAM run,
the two lists protect a hot set from a one-time scan (plain LRU does not), refaults of recently
evicted pages activate them, swappiness balances the scan, mlocked pages are culled to the
unevictable list; and random workloads under memory pressure keep every invariant.

The expected behaviours are the kernel's rules (vmscan.c, workingset.c of 6.18), not host
measurements: reclaim order on the host depends on everything else the host runs. The host
comparison (which of two working sets survives a scan in a small cgroup) is the pagecache part's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from vmlab.backend import Program, Settings
from vmlab.kernel import vmscan
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.filemap import read_page
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.memcontrol import FLUSH_TIME_NS
from vmlab.kernel.mm_types import Inode
from vmlab.kernel.page_alloc import WMARK_MIN, ZONE_NORMAL, PhysMem
from vmlab.kernel.page_flags import PG
from vmlab.kernel.swap import (
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    LRU_UNEVICTABLE,
    folio_mark_accessed,
    lru_add_drain,
)
from vmlab.kernel.uapi import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, O_RDONLY, PAGE_SIZE

MiB = 1 << 20
PROGRAM = Program(BUILTIN_PROGRAM, ("minimal",))
RAM = 96 * MiB  # ~34 MiB of it free for user pages after the boot reservations (kernel image at 16 MiB)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 64 MiB sparse file: nearly twice the machine's free memory, never in the host's cache."""
    path = tmp_path_factory.mktemp("reclaim") / "big.dat"
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
    try:
        yield path
    finally:
        path.unlink()


def machine(ram: int = RAM) -> tuple[ModelBackend, int]:
    backend = ModelBackend(ram)
    return backend, backend.start(PROGRAM, Settings(ram=ram))


def total_free_above_min(mem: PhysMem) -> bool:
    return all(z.free_pages >= z.watermark[WMARK_MIN] for z in mem.zones if z.managed_pages)


def bare_mem(ram: int = RAM) -> PhysMem:
    """Physical memory with a reclaimer and no processes (page-cache-only workloads)."""
    mem = PhysMem(ram)
    vmscan.install(mem, list)
    return mem


def read_file(mem: PhysMem, inode: Inode, pages: range, accessed: bool = True) -> None:
    """read() of those pages as filemap_read does it: each page read in if needed, then marked
    accessed (folio_mark_accessed)."""
    for index in pages:
        pfn, _ = read_page(mem, inode, index)
        assert pfn is not None, f"read of page {index} failed: reclaim freed nothing"
        if accessed:
            folio_mark_accessed(mem, pfn)


def cold_inode(path: str, pages: int) -> Inode:
    """A file none of whose pages is cached yet."""
    return Inode(path, ino=hash(path) & 0xFFFF, size=pages * PAGE_SIZE, host_cached=frozenset())


# --- a workload bigger than RAM ------------------------------------------------------------------------

def test_reading_a_file_twice_the_free_memory_runs_and_reclaims(big_file: Path) -> None:
    backend, pid = machine()
    mem = backend.mem
    fd = backend.syscall(pid, "open", (str(big_file), O_RDONLY))
    buf = backend.syscall(pid, "mmap", (0, 64 << 10, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
    for off in range(0, 64 * MiB, 64 << 10):
        assert backend.syscall(pid, "pread64", (fd, buf, 64 << 10, off)) == 64 << 10
    check_machine(backend)
    ev = mem.events
    assert ev["pgsteal_kswapd"] > 0 and ev["pgscan_kswapd"] >= ev["pgsteal_kswapd"]
    assert ev["pgsteal_file"] == ev["pgsteal_kswapd"] + ev["pgsteal_direct"]
    assert ev["pgscan_anon"] == 0  # no swap: anon is never scanned (get_scan_count SCAN_FILE)
    assert ev["pageoutrun"] > 0
    assert total_free_above_min(mem)
    # The last pages read are still cached, the first ones are not: eviction from the inactive tail.
    inode = backend.tasks[pid].files[fd].inode
    last = (64 * MiB) // PAGE_SIZE - 1
    assert last in inode.i_pages and 0 not in inode.i_pages and 0 in inode.shadows


def test_mapped_file_pages_are_unmapped_and_reclaimed(big_file: Path) -> None:
    backend, pid = machine()
    fd = backend.syscall(pid, "open", (str(big_file), O_RDONLY))
    addr = backend.syscall(pid, "mmap", (0, 64 * MiB, 1, MAP_SHARED, fd, 0))
    pages = np.arange(addr, addr + 64 * MiB, PAGE_SIZE, dtype=np.uint64)
    assert backend.access_trace(pid, pages) is None
    check_machine(backend)  # RSS equals the present PTEs after the rmap walk cleared some
    counters = backend.counters(pid)
    assert 0 < counters.rss_file_kb < 64 * 1024
    assert counters.majflt > 0
    # A second pass over the mapping refaults what was evicted; still consistent.
    assert backend.access_trace(pid, pages) is None
    check_machine(backend)
    assert backend.mem.events["workingset_refault_file"] > 0


def test_private_file_mapping_and_fork_under_pressure(big_file: Path) -> None:
    backend, pid = machine()
    fd = backend.syscall(pid, "open", (str(big_file), O_RDONLY))
    addr = backend.syscall(pid, "mmap", (0, 16 * MiB, 3, MAP_PRIVATE, fd, 0))
    assert backend.access(pid, addr, 4 * MiB, True) is None  # COW copies: anon pages
    child = backend.fork(pid)
    other = backend.syscall(pid, "mmap", (0, 48 * MiB, 1, MAP_SHARED, fd, 16 * MiB))
    assert backend.access_trace(child, np.arange(addr, addr + 16 * MiB, PAGE_SIZE, dtype=np.uint64)) is None
    assert backend.access_trace(pid, np.arange(other, other + 48 * MiB, PAGE_SIZE, dtype=np.uint64)) is None
    check_machine(backend)
    backend.exit(child)
    check_machine(backend)


# --- the two lists against plain LRU --------------------------------------------------------------------

def hot_set_survival(policy: str) -> float:
    """The lecture's case: a hot file set used twice, then one sequential read of a file three times
    the free memory; the fraction of the hot set still cached afterwards."""
    mem = bare_mem()
    vmscan.set_lru_policy(mem, policy)
    free = mem.nr_free_pages
    hot = cold_inode("/hot", free // 4)
    scan = cold_inode("/scan", 3 * free)
    read_file(mem, hot, range(free // 4))
    read_file(mem, hot, range(free // 4))
    read_file(mem, scan, range(3 * free))
    return len(hot.i_pages) / (free // 4)


def test_one_time_scan_keeps_the_hot_set_only_with_two_lists() -> None:
    assert hot_set_survival("two-list") == 1.0
    assert hot_set_survival("plain") == 0.0


def test_plain_lru_moves_an_accessed_page_to_the_head() -> None:
    mem = bare_mem()
    vmscan.set_lru_policy(mem, "plain")
    inode = cold_inode("/f", 3)
    read_file(mem, inode, range(3))
    lru_add_drain(mem)  # the pages on the list (they wait in the CPU's lru_add batch first)
    first = inode.i_pages[0]
    folio_mark_accessed(mem, first)
    assert list(mem.lruvec.lists[LRU_INACTIVE_FILE])[-1] == first  # the head (newest end)
    assert not mem.lruvec.lists[LRU_ACTIVE_FILE] and mem.events["pgactivate"] == 0
    with pytest.raises(ValueError, match="unknown LRU policy"):
        vmscan.set_lru_policy(mem, "clock")


# --- active/inactive balance and workingset refaults ------------------------------------------------------

def test_inactive_is_low_follows_the_ratio() -> None:
    mem = bare_mem()
    sizes = mem.lruvec.nr_pages
    sizes[LRU_INACTIVE_FILE], sizes[LRU_ACTIVE_FILE] = 100, 101
    assert vmscan.inactive_is_low(sizes, LRU_INACTIVE_FILE)  # below 1 GiB the ratio is 1
    sizes[LRU_INACTIVE_FILE] = 101
    assert not vmscan.inactive_is_low(sizes, LRU_INACTIVE_FILE)
    # 4 GiB in all: ratio int_sqrt(40) = 6.
    sizes[LRU_INACTIVE_FILE], sizes[LRU_ACTIVE_FILE] = 149_000, 899_576
    assert sizes[LRU_INACTIVE_FILE] + sizes[LRU_ACTIVE_FILE] == 4 << 18
    assert vmscan.inactive_is_low(sizes, LRU_INACTIVE_FILE)  # 6 x 149000 < 899576
    sizes[LRU_INACTIVE_FILE], sizes[LRU_ACTIVE_FILE] = 151_000, 897_576  # 6 x 151000 > 897576
    assert not vmscan.inactive_is_low(sizes, LRU_INACTIVE_FILE)
    sizes[LRU_INACTIVE_FILE] = sizes[LRU_ACTIVE_FILE] = 0


def test_active_list_is_deactivated_when_the_inactive_list_runs_low() -> None:
    """A working set bigger than half the memory, all active: scanning deactivates from the active
    tail (PG_workingset set, pgdeactivate counted) so that the inactive list can be reclaimed."""
    mem = bare_mem()
    free = mem.nr_free_pages
    ws = cold_inode("/ws", free * 3 // 4)
    read_file(mem, ws, range(free * 3 // 4))
    read_file(mem, ws, range(free * 3 // 4))  # all active now
    lru_add_drain(mem)  # (the last pages read, marked active in the lru_add batch, join the list)
    assert mem.lruvec.nr_pages[LRU_ACTIVE_FILE] == free * 3 // 4
    mem.clock.advance(FLUSH_TIME_NS)  # the statistics flush: reclaim sees the active list (inactive_is_low)
    read_file(mem, cold_inode("/other", free), range(free), accessed=False)
    assert mem.events["pgdeactivate"] > 0 and mem.events["pgrefill"] >= mem.events["pgdeactivate"]
    # Deactivated folios carry PG_workingset; those then evicted leave shadows that say so.
    demoted = [p for p in mem.lruvec.lists[LRU_INACTIVE_FILE] if mem.mem_map.test(p, PG.workingset)]
    assert ws.shadows and all(shadow & 1 for shadow in ws.shadows.values())
    assert len(demoted) + len(ws.shadows) <= mem.events["pgdeactivate"]


def test_refault_within_the_workingset_size_is_activated() -> None:
    """workingset_refault(): a page evicted less than `active file` evictions ago comes back active
    (a restore when it had been active), one evicted longer ago comes back inactive; `active file` as
    the memcg statistics were last flushed."""
    mem = bare_mem()
    free = mem.nr_free_pages
    hot = cold_inode("/hot", free // 4)
    read_file(mem, hot, range(free // 4))
    read_file(mem, hot, range(free // 4))
    stream = cold_inode("/stream", 2 * free)
    read_file(mem, stream, range(2 * free), accessed=False)
    mem.clock.advance(FLUSH_TIME_NS)  # the statistics flush: the refault test reads the sizes it left
    active = mem.lruvec.lruvec_stats[LRU_ACTIVE_FILE]
    assert active == mem.lruvec.nr_pages[LRU_ACTIVE_FILE] > 0
    evicted = sorted(stream.shadows)
    assert evicted and evicted[0] == 0
    age = mem.lruvec.nonresident_age
    recent = max(i for i in evicted if age - (stream.shadows[i] >> 1) <= active)
    old = evicted[0]
    assert age - (stream.shadows[old] >> 1) > active
    before = dict(mem.events)
    read_file(mem, stream, [recent], accessed=False)
    assert mem.mem_map.test(stream.i_pages[recent], PG.active)
    assert mem.events["workingset_activate_file"] == before.get("workingset_activate_file", 0) + 1
    read_file(mem, stream, [old], accessed=False)
    assert not mem.mem_map.test(stream.i_pages[old], PG.active)
    assert mem.events["workingset_refault_file"] == before.get("workingset_refault_file", 0) + 2


# --- get_scan_count and swappiness ------------------------------------------------------------------------

@pytest.mark.pure
@pytest.mark.parametrize(("swappiness", "anon_share"), [(0, 0.0), (60, 60 / 200), (100, 0.5), (200, 1.0)])
def test_swappiness_sets_the_anon_file_scan_ratio(monkeypatch: pytest.MonkeyPatch, swappiness: int,
                                                  anon_share: float) -> None:
    """With swap and equal recent costs, SCAN_FRACT scans anon:file as swappiness:(200 - swappiness)."""
    mem = bare_mem()
    monkeypatch.setattr(vmscan, "can_reclaim_anon_pages", lambda mem: True)
    sizes = mem.lruvec.nr_pages
    sizes[LRU_INACTIVE_ANON] = sizes[LRU_INACTIVE_FILE] = 1 << 20
    sc = vmscan.ScanControl(nr_to_reclaim=32, kswapd=True, priority=4)
    nr = vmscan.get_scan_count(vmscan.Vmscan(mem, list, swappiness), sc)
    total = nr[LRU_INACTIVE_ANON] + nr[LRU_INACTIVE_FILE]
    assert total == pytest.approx(1 << 16, rel=1e-3)
    assert nr[LRU_INACTIVE_ANON] / total == pytest.approx(anon_share, abs=1e-3)
    sizes[LRU_INACTIVE_ANON] = sizes[LRU_INACTIVE_FILE] = 0


def test_without_swap_only_file_lists_are_scanned() -> None:
    mem = bare_mem()
    sizes = mem.lruvec.nr_pages
    sizes[LRU_INACTIVE_ANON] = sizes[LRU_ACTIVE_ANON] = sizes[LRU_INACTIVE_FILE] = 4096
    nr = vmscan.get_scan_count(mem.vmscan, vmscan.ScanControl(nr_to_reclaim=32, kswapd=False, priority=0))
    assert nr[LRU_INACTIVE_ANON] == nr[LRU_ACTIVE_ANON] == 0 and nr[LRU_INACTIVE_FILE] == 4096
    sizes[LRU_INACTIVE_ANON] = sizes[LRU_ACTIVE_ANON] = sizes[LRU_INACTIVE_FILE] = 0


def test_direct_reclaim_is_a_memstall_and_counts_allocstall() -> None:
    mem = bare_mem()
    read_file(mem, cold_inode("/f", mem.nr_free_pages // 2), range(mem.nr_free_pages // 2), accessed=False)
    stalls: list[tuple[int, bool]] = []
    mem.clock.observe(lambda start, ns, memstall: stalls.append((ns, memstall)))
    assert mem.vmscan is not None
    assert mem.vmscan.try_to_free_pages(0, ZONE_NORMAL) >= vmscan.SWAP_CLUSTER_MAX
    assert mem.events["allocstall_normal"] == 1 and mem.events["pgsteal_direct"] >= 32
    assert stalls and all(memstall for _, memstall in stalls)


# --- mlock -> unevictable ------------------------------------------------------------------------------

def test_mlocked_file_pages_are_culled_to_the_unevictable_list(big_file: Path) -> None:
    backend, pid = machine()
    fd = backend.syscall(pid, "open", (str(big_file), O_RDONLY))
    locked = backend.syscall(pid, "mmap", (0, 4 * MiB, 1, MAP_SHARED, fd, 0))
    assert backend.syscall(pid, "mlock", (locked, 4 * MiB)) == 0
    rss_before = backend.counters(pid).rss_file_kb
    other = backend.syscall(pid, "mmap", (0, 60 * MiB, 1, MAP_SHARED, fd, 4 * MiB))
    assert backend.access_trace(pid, np.arange(other, other + 60 * MiB, PAGE_SIZE, dtype=np.uint64)) is None
    check_machine(backend)
    mem = backend.mem
    assert mem.lruvec.nr_pages[LRU_UNEVICTABLE] > 0 and mem.events["unevictable_pgs_culled"] > 0
    inode = backend.tasks[pid].files[fd].inode
    assert all(i in inode.i_pages for i in range(1024)), "no locked page was evicted"
    assert backend.counters(pid).rss_file_kb >= rss_before
    # munlock puts them back on the inactive file list at once (__munlock_folio); the munmap then
    # finds their PTEs young after the population's touch (PG_referenced set): a second
    # folio_mark_accessed, which activates them. Evictable again, aged like any other page.
    assert backend.syscall(pid, "munlock", (locked, 4 * MiB)) == 0
    assert mem.events["unevictable_pgs_rescued"] == 1024 and mem.lruvec.nr_pages[LRU_UNEVICTABLE] == 0
    heads = [inode.i_pages[i] for i in range(1024)]
    assert all(h in mem.lruvec.lists[LRU_INACTIVE_FILE] for h in heads)
    assert backend.syscall(pid, "munmap", (locked, 4 * MiB)) == 0
    lru_add_drain(mem)  # the last activations wait in the CPU's lru_activate batch
    assert all(h in mem.lruvec.lists[LRU_ACTIVE_FILE] and not mem.mem_map.test(h, PG.mlocked) for h in heads)
    check_machine(backend)


# --- random workloads under pressure ---------------------------------------------------------------------

class PressureMachine(RuleBasedStateMachine):
    """Random file reads, file and anon mappings, touches, forks and exits on a machine whose free
    memory is smaller than the files: reclaim runs constantly; every invariant holds after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.backend, self.pid = machine()
        self.pids = [self.pid]
        self.maps: list[tuple[int, int, int]] = []  # (pid, addr, length)
        self.fd = -1
        self.buf = 0

    @initialize()
    def open_files(self) -> None:
        path = os.environ["VMLAB_RECLAIM_FILE"]
        self.fd = self.backend.syscall(self.pid, "open", (path, O_RDONLY))
        self.buf = self.backend.syscall(self.pid, "mmap", (0, 1 * MiB, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        assert self.fd >= 0 and self.buf > 0

    @rule(off=st.integers(0, 63), mib=st.integers(1, 16))
    def read(self, off: int, mib: int) -> None:
        for chunk in range(mib):
            pos = ((off + chunk) % 64) * MiB
            assert self.backend.syscall(self.pid, "pread64", (self.fd, self.buf, 1 * MiB, pos)) == MiB

    @rule(off=st.integers(0, 60), mib=st.integers(1, 24), shared=st.booleans(), write=st.booleans())
    def map_file(self, off: int, mib: int, shared: bool, write: bool) -> None:
        mib = min(mib, 64 - off)
        flags = MAP_SHARED if shared else MAP_PRIVATE
        addr = self.backend.syscall(self.pid, "mmap", (0, mib * MiB, 3 if write and not shared else 1,
                                                       flags, self.fd, off * MiB))
        assert addr > 0
        self.maps.append((self.pid, addr, mib * MiB))

    @rule(mib=st.integers(1, 4))
    def map_anon(self, mib: int) -> None:
        addr = self.backend.syscall(self.pid, "mmap", (0, mib * MiB, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        self.backend.access(self.pid, addr, mib * MiB, True)
        self.maps.append((self.pid, addr, mib * MiB))

    @rule(data=st.data(), write=st.booleans(), stride=st.sampled_from([1, 3, 16]))
    def touch(self, data: st.DataObject, write: bool, stride: int) -> None:
        if not self.maps:
            return
        pid, addr, length = data.draw(st.sampled_from(self.maps))
        if pid not in self.backend.tasks:
            return
        pages = np.arange(addr, addr + length, stride * PAGE_SIZE, dtype=np.uint64)
        vma = self.backend.tasks[pid].mm.vma_lookup(addr)
        can_write = vma is not None and bool(vma.vm_flags & 0x2)
        assert self.backend.access_trace(pid, pages, write and can_write) is None

    @rule(data=st.data())
    def unmap(self, data: st.DataObject) -> None:
        if self.maps:
            pid, addr, length = self.maps.pop(data.draw(st.integers(0, len(self.maps) - 1)))
            if pid in self.backend.tasks:
                assert self.backend.syscall(pid, "munmap", (addr, length)) == 0

    @rule()
    def fork_and_maybe_exit(self) -> None:
        if len(self.pids) < 3:
            child = self.backend.fork(self.pid)
            self.pids.append(child)
            self.maps += [(child, a, n) for p, a, n in self.maps if p == self.pid]
        else:
            self.backend.exit(self.pids.pop())

    @rule(mib=st.integers(1, 4))
    def mlock_some(self, mib: int) -> None:
        for pid, addr, length in self.maps[-1:]:
            if pid in self.backend.tasks:
                self.backend.syscall(pid, "mlock", (addr, min(length, mib * MiB)))

    @invariant()
    def machine_is_consistent(self) -> None:
        check_machine(self.backend)

    def teardown(self) -> None:
        self.backend.close()
        check_machine(self.backend)


def test_random_workloads_under_pressure_keep_the_invariants(big_file: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMLAB_RECLAIM_FILE", str(big_file))
    run_state_machine_as_test(PressureMachine, settings=settings(max_examples=12, stateful_step_count=12,
                                                                 deadline=None))
