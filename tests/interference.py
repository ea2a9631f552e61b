"""Evidence that something outside a host test disturbed the pages it measures, and a bounded retry of
a host observation that only discards observations so disturbed.

A test that confines its workload to a memcg of its own is out of reach of other cgroups' limit reclaim,
but not of three machine-wide events, each counted in /proc/vmstat:
- drop_caches (`drop_pagecache`): another process's `echo 1 > /proc/sys/vm/drop_caches` drops every
  clean unmapped page-cache folio (invalidate_mapping_pages), whatever its memcg;
- global reclaim (`pgscan_kswapd`, `pgscan_direct`, `pgscan_khugepaged`, `pgscan_proactive`): kswapd or a
  direct reclaimer short of free memory scans every memcg's LRUs, isolating folios (PG_lru clear for a
  moment), clearing PG_referenced (folio_check_references) and evicting. Reclaim for a memcg's own
  limit is not counted there (shrink_inactive_list counts PGSCAN_* globally only when
  !cgroup_reclaim(sc)), so a test's own memcg reclaim does not look like interference;
- compaction (`compact_isolated`): migrating a folio gives it a new frame, put back through a per-CPU
  LRU batch of the migrating CPU (not on a list until that CPU drains).

A fourth is not counted anywhere in /proc/vmstat: DAMON. This machine's environment runs a kdamond
(/sys/kernel/mm/damon/admin/kdamonds/0, since boot) with one DAMOS scheme on the physical address
range 4 GiB-7.5 GiB: `pageout` of every unmapped file folio in a region not seen accessed (at most 1
access per 5 s aggregation) for 12 aggregations, up to 128 MiB/s; every 5 s it pages out a few MiB of
an idle machine's cache (5.7 GB in its first 3 hours). Its pageout isolates the folios
(folio_isolate_lru: PG_lru clear, '-' in a census) and reclaims them regardless of references
(reclaim_pages), so a test's file loses pages from the middle (seen: holes of 4-64 pages in a hot file,
4 pages of a file off the LRU after the drains); its sampling clears the accessed bits of mapped pages
(damon_ptep_mkold), which munmap would have turned into folio_mark_accessed. Measured: a 256 MiB file
read once, with the kdamond just restarted, kept all its pages for 60 s and then lost 2.5 MB/s. The
test session therefore pauses every running kdamond (vmlab.host.damon.paused, a session fixture of
hostkit) and starts it again at its end; sessions side by side share the pause, the last to end
restarting it (one that ended first had restarted it under the other: seen as a failure of
test_the_tests_run_with_no_kdamond_on).

drop_caches counts its event when it has finished walking every inode (drop_caches_sysctl_handler),
so a drop still under way when a run ends shows only later: the counters are read again GRACE
seconds after the run (measured: a drop of ~2 GiB of clean cache takes 0.04-0.2 s here).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from vmlab.host.writeback import read_vmstat

#: The /proc/vmstat events that mark an outside disturbance (see the module text).
OUTSIDE_EVENTS = ("drop_pagecache", "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged", "pgscan_proactive",
                  "compact_isolated")

#: Seconds after a run before its closing reading of the counters (see the module text).
GRACE = 0.5

T = TypeVar("T")


def outside_events() -> dict[str, int]:
    """The OUTSIDE_EVENTS counters now (a counter this kernel lacks reads 0)."""
    table = read_vmstat()
    return {name: table.get(name, 0) for name in OUTSIDE_EVENTS}


def events_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The counters that moved from `before` to `after`, by how much."""
    return {name: after[name] - before[name] for name in before if after[name] != before[name]}


def undisturbed(observe: Callable[[], T], attempts: int = 5, accept: Callable[[T], bool] | None = None,
                evidence: Callable[[], dict[str, int]] = outside_events) -> T:
    """`observe()` (one complete host run: set-up, workload and reading of the result) repeated until a
    run had no outside event (`evidence()` unchanged) from its start to GRACE seconds after its end;
    that run's result. With `accept`, a run whose result it accepts is returned at once (no check, no
    wait): only the others need the evidence, and one without outside events is returned as it is, for
    the caller to fail on. Each disturbed run is reported (printed, and in the failure) with the events
    seen and its result; after `attempts` disturbed runs the test fails: the host is too busy."""
    seen: list[str] = []
    for attempt in range(1, attempts + 1):
        before = evidence()
        result = observe()
        if accept is not None and accept(result):
            return result
        time.sleep(GRACE)
        moved = events_between(before, evidence())
        if not moved:
            return result
        line = f"attempt {attempt}: discarded, outside events {moved} during the run; it saw {result!r:.300}"
        print(line)
        seen.append(line)
    pytest.fail(f"every host run was disturbed from outside ({attempts} tries):\n" + "\n".join(seen))


def until_settled(observe: Callable[[], T], settled: Callable[[T], bool], describe: Callable[[T], str],
                  tries: int = 5, pause: float = 2.0) -> T:
    """`observe()` until `settled` accepts its result, up to `tries` runs `pause` seconds apart; each
    discarded run is printed with `describe` of what it saw. The last run's result when none settled,
    for the caller to fail on. For a kernel-side disturbance /proc/vmstat does not show (pages left
    off the LRU after the drains, pages missing from a file no LRU order would evict): see the tests
    that use it for what was seen."""
    for attempt in range(1, tries):
        result = observe()
        if settled(result):
            return result
        print(f"attempt {attempt}: discarded, not settled: {describe(result)}")
        time.sleep(pause)
    return observe()

