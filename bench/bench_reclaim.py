"""Reclaim-heavy replay (issue 4): uniformly random page references over a file twice the size of the
machine's memory, so more than half of them miss and every miss needs a page reclaimed; page
references per second, against an `OrderedDict` LRU of the memory's capacity replaying the same page
sequence in the same run. Target: >= 200,000 refs/s. Needs reclaim (vmlab.kernel.vmscan) in the model.

Two model paths: one-page read()s through the page cache's replay path (filemap.replay_reads: a miss
runs the real sync readahead, allocation, kswapd and the shrinkers) and loads from a MAP_SHARED
mapping of the file (each miss a major fault with fault-around, eviction through the rmap walk).
A third row, labelled, reads with POSIX_FADV_RANDOM set on the file, as a random reader would: no
readahead, so only the referenced pages are read and reclaimed (about half the references miss,
against about 80% when readahead reads ahead after cached neighbours). The default row stays the
measure of the target.
It measures the installed vmlab (compiled by default) and says which; where the row stands, compiled
and pure: docs/performance.md.
Run: python bench/bench_reclaim.py [REFS]
"""

from __future__ import annotations

import importlib.util
import sys
import time

import numpy as np

from buildinfo import vmlab_build
from lru_reference import ordered_dict_rate
from vmlab.kernel.fadvise import POSIX_FADV_RANDOM, generic_fadvise
from vmlab.lab.experiments.workload import Lab

RAM = 96 << 20
TARGET = 200_000


def prepared_lab(refs: int, mapped: bool, fadv_random: bool = False) -> tuple[Lab, int, int, np.ndarray]:
    """(the lab, the file's descriptor, its mapping's address or 0, the trace of `refs` page indexes):
    a file of 2 x MemTotal read once sequentially, then mapped when `mapped`, with POSIX_FADV_RANDOM
    set when `fadv_random`. The caller closes the lab."""
    lab = Lab(RAM)
    wss = 2 * lab.mem.totalram_pages
    trace = np.random.default_rng(3).integers(0, wss, refs)
    fd = lab.open(lab.file("wss", wss))
    lab.replay_reads(fd, range(wss))
    addr = lab.map_file(fd, wss) if mapped else 0
    if fadv_random:
        generic_fadvise(lab.mem, lab.model.tasks[lab.pid].files[fd], 0, 0, POSIX_FADV_RANDOM)
    return lab, fd, addr, trace


def replay(lab: Lab, fd: int, addr: int, trace: np.ndarray) -> None:
    """The timed part: the trace as one-page reads of the file, or as loads from its mapping."""
    if addr:
        for chunk in np.array_split(trace, max(1, len(trace) // 8192)):
            lab.load_pages(addr, chunk)
    else:
        lab.replay_reads(fd, trace)


def model_rate(refs: int, mapped: bool, fadv_random: bool = False) -> tuple[float, np.ndarray, int, int]:
    """(refs/s, the trace, MemTotal pages, page reads) of the model over prepared_lab()'s file, by
    one-page reads or loads from a mapping."""
    lab, fd, addr, trace = prepared_lab(refs, mapped, fadv_random)
    try:
        io0 = lab.mem.events["ra_io"]
        start = time.perf_counter()
        replay(lab, fd, addr, trace)
        rate = refs / (time.perf_counter() - start)
        ios = lab.mem.events["ra_io"] - io0
        capacity = lab.mem.totalram_pages
    finally:
        lab.close()
    return rate, trace, capacity, ios


def main() -> None:
    if importlib.util.find_spec("vmlab.kernel.vmscan") is None:
        print("bench_reclaim: the model has no reclaim yet (vmlab.kernel.vmscan); nothing to measure")
        raise SystemExit(3)
    refs = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rows = [(name, *model_rate(refs, mapped, fadv)) for name, mapped, fadv in (
        ("one-page reads (replay)", False, False), ("loads, shared mapping", True, False),
        ("reads, FADV_RANDOM (replay)", False, True))]
    _, _, trace, capacity, _ = rows[0]
    ref = ordered_dict_rate(trace, capacity)
    print(vmlab_build())
    print(f"uniform random references over 2 x MemTotal ({2 * capacity * 4 >> 10} MiB), {refs} refs")
    print(f"  {'OrderedDict LRU (' + str(capacity) + ' pages)':<32} {ref:14,.0f} refs/s")
    for name, rate, _, _, ios in rows:
        verdict = "meets" if rate >= TARGET else "BELOW"
        note = "with the hint, not the target's row" if "FADV" in name else f"{verdict} the {TARGET:,} target"
        print(f"  {'model ' + name:<32} {rate:14,.0f} refs/s  {rate / ref:6.3f}x OrderedDict  "
              f"({note}; {ios} read I/Os)")


if __name__ == "__main__":
    main()
