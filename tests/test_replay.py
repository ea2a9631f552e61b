"""filemap.replay_reads, the lean trace-replay path, leaves exactly the state that the same one-page
reads through filemap_read() leave, one by one: every page descriptor, the LRU lists in order, the
workingset clock and costs, the vm events, the simulated time and PSI, the page cache and shadow
entries, the file's readahead state. Property-tested over random reference strings on machines small
enough to reclaim, under both LRU policies, with and without large folios, with and without
POSIX_FADV_RANDOM. The replay's miss path (it runs page_cache_sync_ra itself, then continues as a hit
or hands the rest to filemap_read) is checked here against filemap_read doing it all."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vmlab.kernel import vmscan
from vmlab.kernel.fadvise import POSIX_FADV_RANDOM, generic_fadvise
from vmlab.kernel.filemap import filemap_read, replay_reads
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE
from vmlab.lab.experiments.workload import Lab

RAM = 12 << 20  # about 11 MiB managed: reclaim starts early


def _state(lab: Lab, path: str, fd: int) -> dict[str, Any]:
    mem = lab.mem
    mm = mem.mem_map
    inode = lab.model._inode(path)
    ra = lab.model.tasks[lab.pid].files[fd].f_ra
    lru = mem.lruvec
    # page->mapping handles are numbered machine-wide: compare them by order of first appearance
    _, first, inverse = np.unique(mm.mapping, return_index=True, return_inverse=True)
    mapping = np.argsort(np.argsort(first))[inverse]
    return {
        "arrays": [getattr(mm, name).tobytes() for name in ("flags", "_refcount", "_mapcount", "index",
                                                            "private")] + [mapping.tobytes()],
        "lists": [list(lst) for lst in lru.lists],
        "lru": (list(lru.nr_pages), lru.nonresident_age, lru.anon_cost, lru.file_cost, list(lru.refaults)),
        "events": +mem.events,
        "now": mem.clock.now_ns,
        "psi": repr(mem.psi.group.total),
        "free": mem.nr_free_pages,
        "cache": (dict(inode.i_pages), dict(inode.shadows), dict(inode.folio_orders)),
        "ra": repr(ra),
    }


def _machine(policy: str, file_pages: int, tail: int, large: bool,
             random_hint: bool = False) -> tuple[Lab, str, int]:
    lab = Lab(RAM)
    vmscan.set_lru_policy(lab.mem, policy)
    path = lab.file("f", file_pages)
    inode = lab.model._inode(path)
    inode.size = file_pages * PAGE_SIZE - tail  # a partial last page when tail > 0
    inode.large_folios = large
    fd = lab.open(path)
    if random_hint:
        generic_fadvise(lab.mem, lab.model.tasks[lab.pid].files[fd], 0, 0, POSIX_FADV_RANDOM)
    return lab, path, fd


@settings(max_examples=60, deadline=None)
@given(policy=st.sampled_from(["two-list", "plain"]), large=st.booleans(),
       file_pages=st.integers(64, 5000), tail=st.sampled_from([0, 1, 2048, 4095]),
       seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4000), seq_share=st.floats(0, 1),
       chunks=st.integers(1, 5), random_hint=st.booleans())
def test_replay_reads_is_read_one_page_at_a_time(policy: str, large: bool, file_pages: int, tail: int,
                                                 seed: int, n: int, seq_share: float, chunks: int,
                                                 random_hint: bool) -> None:
    rng = np.random.default_rng(seed)
    hot = rng.integers(0, max(1, file_pages // 8), n)
    anywhere = rng.integers(0, file_pages + 4, n)  # a few past EOF
    sequential = (rng.integers(0, file_pages) + np.arange(n)) % (file_pages + 2)
    pick = rng.random(n)
    trace = np.where(pick < seq_share, sequential, np.where(pick < (1 + seq_share) / 2, hot, anywhere))
    one, path, fd1 = _machine(policy, file_pages, tail, large, random_hint)
    two, _, fd2 = _machine(policy, file_pages, tail, large, random_hint)
    try:
        file1 = one.model.tasks[one.pid].files[fd1]
        for index in trace.tolist():
            filemap_read(one.mem, file1, index << PAGE_SHIFT, PAGE_SIZE)
        file2 = two.model.tasks[two.pid].files[fd2]
        copied = sum(replay_reads(two.mem, file2, part.tolist()) for part in np.array_split(trace, chunks))
        in_file = (file_pages * PAGE_SIZE - tail + PAGE_SIZE - 1) >> PAGE_SHIFT
        assert copied == int(np.count_nonzero(trace < in_file))
        assert _state(one, path, fd1) == _state(two, path, fd2)
    finally:
        one.close()
        two.close()


def test_replay_under_reclaim_evicts_and_refaults() -> None:
    """The property above is not vacuous: a trace over twice the memory reclaims and refaults."""
    lab, _, fd = _machine("two-list", 4000, 0, False)
    try:
        file = lab.model.tasks[lab.pid].files[fd]
        trace = np.random.default_rng(1).integers(0, 4000, 20000).tolist()
        assert lab.mem.totalram_pages < 4000
        replay_reads(lab.mem, file, trace)
        ev = lab.mem.events
        assert ev["pgsteal_kswapd"] > 1000 and ev["workingset_refault_file"] > 1000 and ev["pgactivate"] > 0
    finally:
        lab.close()


def test_replay_miss_path_is_taken_and_matches() -> None:
    """The replay's own miss path runs (misses with readahead, with reclaim and refaults) and leaves
    what filemap_read leaves: a fixed trace over twice the memory, both ways."""
    trace = np.random.default_rng(7).integers(0, 4000, 6000)
    one, path, fd1 = _machine("two-list", 4000, 0, False)
    two, _, fd2 = _machine("two-list", 4000, 0, False)
    try:
        file1 = one.model.tasks[one.pid].files[fd1]
        for index in trace.tolist():
            filemap_read(one.mem, file1, index << PAGE_SHIFT, PAGE_SIZE)
        replay_reads(two.mem, two.model.tasks[two.pid].files[fd2], trace.tolist())
        ev = two.mem.events
        assert ev["ra_io"] > 2000 and ev["pgsteal_kswapd"] > 1000 and ev["workingset_refault_file"] > 1000
        assert _state(one, path, fd1) == _state(two, path, fd2)
    finally:
        one.close()
        two.close()
