"""Page-cache replay (issue 4): a file-read trace through the page cache and the LRU, in page references
per second, against an `OrderedDict` LRU replay of the same page sequence in the same run.
Target: >= 1,000,000 refs/s.

The measured path is the page cache's trace replay (filemap.replay_reads through Lab.replay_reads: per
reference an i_pages lookup, folio_mark_accessed when it changes something, the copy's clock charge;
misses go through filemap_read's readahead, allocation and reclaim; tests/test_replay.py proves it
leaves the state one-page filemap_read() calls leave). Shown beside it: read() of one page per
reference through the syscall layer (`pread64`: the same plus the user-buffer copy's page walk), and
loads from a MAP_SHARED mapping of the file (`access_trace`: hits through the TLB snapshot).
The trace: 80 % of references to a hot 10 % of the file, the rest uniform (seeded), over a file that
fits in memory (the first pass reads it in).
Run: python bench/bench_pagecache.py [REFS]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from buildinfo import vmlab_build
from lru_reference import ordered_dict_rate
from vmlab.lab.experiments.workload import Lab

FILE_PAGES = 8_192  # 32 MiB
RAM = 256 << 20
TARGET = 1_000_000


def make_trace(refs: int) -> np.ndarray:
    """Page indexes: 80 % in the hot tenth of the file, 20 % anywhere (seed 7)."""
    rng = np.random.default_rng(7)
    hot = rng.random(refs) < 0.8
    return np.where(hot, rng.integers(0, FILE_PAGES // 10, refs), rng.integers(0, FILE_PAGES, refs))


def model_rates(trace: np.ndarray) -> dict[str, float]:
    """refs/s of the model replaying `trace` by each path, the file cached beforehand (by a first
    sequential pass through the replay path, not timed)."""
    lab = Lab(RAM)
    rates: dict[str, float] = {}
    try:
        fd = lab.open(lab.file("data", FILE_PAGES))
        lab.replay_reads(fd, range(FILE_PAGES))
        pages = trace.tolist()
        start = time.perf_counter()
        lab.replay_reads(fd, pages)
        rates["page-cache replay"] = len(pages) / (time.perf_counter() - start)
        n = min(len(trace), 100_000)  # the syscall path is slow; a slice is enough to time it
        start = time.perf_counter()
        lab.pread_pages(fd, trace[:n])
        rates["pread64() per page (syscall)"] = n / (time.perf_counter() - start)
        addr = lab.map_file(fd, FILE_PAGES)
        lab.load_pages(addr, np.arange(FILE_PAGES))
        start = time.perf_counter()
        lab.load_pages(addr, trace)
        rates["loads, shared mapping"] = len(trace) / (time.perf_counter() - start)
    finally:
        lab.close()
    return rates


def main() -> None:
    refs = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    trace = make_trace(refs)
    rates = model_rates(trace)
    ref = ordered_dict_rate(trace)
    print(vmlab_build())
    print(f"file-read trace, {refs} refs over a {FILE_PAGES * 4 >> 10} MiB file (cached)")
    print(f"  {'OrderedDict LRU replay':<34} {ref:14,.0f} refs/s")
    for name, rate in rates.items():
        verdict = "meets" if rate >= TARGET else "BELOW"
        print(f"  {'model ' + name:<34} {rate:14,.0f} refs/s  {rate / ref:6.2f}x OrderedDict  "
              f"({verdict} the {TARGET:,} target)")


if __name__ == "__main__":
    main()
