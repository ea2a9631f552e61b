"""Reclaim's batch and fused paths leave exactly the state of the general ones.

- LruVec.delete_oldest (isolate_lru_folios' pop from the tail) == collecting the oldest folios and
  delete_folios of them (plus folio_try_get); LruVec.add_folios == add of each folio in turn.
- shrink_active_list's fused prefix (_deactivate_unmapped_tail: unmapped folios moved straight from
  the active tail to the inactive head) == isolate + deactivate + move_folios_to_lru: the same
  random workload (page-cache reads plus some mapped file pages) is run with the prefix allowed and
  with it forced off, and every page descriptor, list, counter, the clock, PSI and the cache match.
- shrink_folio_list's from_tail (plain folios reclaimed straight off the inactive tail, the rest
  isolated after them) == isolating the whole scan first: the same workload with from_tail allowed
  and forced off leaves the same state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_replay import _state
from vmlab.kernel import vmscan
from vmlab.kernel.swap import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE
from vmlab.lab.experiments.workload import Lab

RAM = 12 << 20  # about 11 MiB managed: reclaim starts early


def _run(seed: int, refs: int, mapped: int, allow_fused: bool,
         allow_tail: bool = True) -> tuple[dict[str, Any], int, int]:
    """A reclaim-heavy run; its final state, how many pages the fused prefix deactivated and how many
    shrink_folio_list calls ran from the tail."""
    with pytest.MonkeyPatch.context() as m:
        fused = [0]
        tails = [0]
        original = vmscan._deactivate_unmapped_tail
        original_sfl = vmscan.shrink_folio_list

        def counting(mem: Any, lru: int, nr_to_scan: int) -> int:
            got = original(mem, lru, nr_to_scan)
            fused[0] += got
            return got

        def shrink_folio_list(vm: Any, sc: Any, lru: int, nr_to_scan: int, stat: Any,
                              from_tail: bool = False) -> Any:
            from_tail = from_tail and allow_tail
            tails[0] += from_tail
            return original_sfl(vm, sc, lru, nr_to_scan, stat, from_tail)

        m.setattr(vmscan, "_deactivate_unmapped_tail", counting)
        m.setattr(vmscan, "shrink_folio_list", shrink_folio_list)
        if not allow_fused:
            m.setattr(vmscan, "_no_timer_in_scan", lambda mem, nr_to_scan: False)
        lab = Lab(RAM)
        pages = 2 * lab.mem.totalram_pages
        path = lab.file("f", pages)
        fd = lab.open(path)
        rng = np.random.default_rng(seed)
        lab.replay_reads(fd, range(pages))
        # A hot part read twice fills the active list beyond the inactive one, and the memcg statistics
        # flush (every 2 s) shows reclaim that, so it deactivates (inactive_is_low reads the flushed
        # sizes) all through the rest of the run.
        hot = range(lab.mem.totalram_pages * 6 // 10)
        lab.replay_reads(fd, hot)
        lab.replay_reads(fd, hot)
        lab.sleep(2.0)
        lab.replay_reads(fd, rng.integers(0, pages, refs))
        if mapped:
            addr = lab.map_file(fd, pages)
            lab.load_pages(addr, rng.integers(0, pages, mapped))
        lab.replay_reads(fd, rng.integers(0, pages, refs))
        state = _state(lab, path, fd)
        lab.close()
        return state, fused[0], tails[0]


@pytest.mark.pure
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), refs=st.integers(500, 4000), mapped=st.sampled_from([0, 300]))
def test_fused_deactivation_equals_general(seed: int, refs: int, mapped: int) -> None:
    fused_state, nr_fused, _ = _run(seed, refs, mapped, True)
    general_state, nr_general, nr_tails = _run(seed, refs, mapped, False)
    assert nr_general == nr_tails == 0
    assert nr_fused > 0  # the prefix did run, so the comparison means something
    assert fused_state == general_state


@pytest.mark.pure
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), refs=st.integers(500, 4000), mapped=st.sampled_from([0, 300]))
def test_reclaim_from_tail_equals_isolating_first(seed: int, refs: int, mapped: int) -> None:
    tail_state, _, nr_tails = _run(seed, refs, mapped, True)
    isolated_state, _, nr_isolated = _run(seed, refs, mapped, True, allow_tail=False)
    assert nr_isolated == 0
    assert nr_tails > 0
    assert tail_state == isolated_state


def _reclaimed_lab(seed: int) -> Lab:
    lab = Lab(RAM)
    pages = 2 * lab.mem.totalram_pages
    fd = lab.open(lab.file("f", pages))
    lab.replay_reads(fd, range(pages))
    lab.replay_reads(fd, np.random.default_rng(seed).integers(0, pages, 3000))
    return lab


def _lru_state(lab: Lab) -> tuple[Any, ...]:
    mm = lab.mem.mem_map
    lru = lab.mem.lruvec
    return (mm.flags.tobytes(), mm._refcount.tobytes(), [list(lst) for lst in lru.lists], list(lru.nr_pages))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lru=st.sampled_from([LRU_INACTIVE_FILE, LRU_ACTIVE_FILE]),
       nr=st.integers(0, 200))
def test_delete_oldest_and_add_folios_equal_one_by_one(seed: int, lru: int, nr: int) -> None:
    a, b = _reclaimed_lab(seed), _reclaimed_lab(seed)
    assert _lru_state(a) == _lru_state(b)
    taken, total = a.mem.lruvec.delete_oldest(a.mem.mem_map, lru, nr, get=True)
    mm_b = b.mem.mem_map
    expected: list[int] = []
    pages = 0
    for head in b.mem.lruvec.lists[lru]:
        if pages >= nr:
            break
        expected.append(head)
        pages += 1
    for head in expected:
        mm_b._refcount_a[head] += 1
    assert b.mem.lruvec.delete_folios(mm_b, expected, lru) == total == pages
    assert taken == expected
    assert _lru_state(a) == _lru_state(b)
    back = taken[::2]
    assert a.mem.lruvec.add_folios(a.mem.mem_map, back) == len(back)
    for head in back:
        b.mem.lruvec.add(mm_b, head)
    assert _lru_state(a) == _lru_state(b)
    a.close()
    b.close()
