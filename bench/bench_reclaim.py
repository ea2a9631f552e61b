"""Reclaim-heavy replay (issue 4): uniformly random loads over a shared file mapping twice the size of
the machine's memory, so most references miss and every miss needs a page reclaimed; page references
per second, against an `OrderedDict` LRU of the memory's capacity replaying the same page sequence in
the same run. Target: >= 200,000 refs/s. Needs reclaim (vmlab.kernel.vmscan) in the model.
Run: python bench/bench_reclaim.py [REFS]
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections import OrderedDict

import numpy as np

from vmlab.lab.experiments.workload import Lab

RAM = 96 << 20
TARGET = 200_000


def model_rate(refs: int) -> tuple[float, np.ndarray, int, int]:
    """(refs/s, the trace, MemTotal pages, major faults) of the model over a working set of 2 x MemTotal."""
    lab = Lab(RAM)
    try:
        capacity = lab.mem.totalram_pages
        wss = 2 * capacity
        trace = np.random.default_rng(3).integers(0, wss, refs)
        fd = lab.open(lab.file("wss", wss))
        addr = lab.map_file(fd, wss)
        maj0 = lab.mem.events["pgmajfault"]
        start = time.perf_counter()
        for chunk in np.array_split(trace, max(1, refs // 8192)):
            lab.load_pages(addr, chunk)
        rate = refs / (time.perf_counter() - start)
        majflt = lab.mem.events["pgmajfault"] - maj0
    finally:
        lab.close()
    return rate, trace, capacity, majflt


def ordered_dict_rate(trace: np.ndarray, capacity: int) -> float:
    """refs/s of an OrderedDict LRU holding `capacity` pages, evicting the oldest on a miss."""
    lru: OrderedDict[int, bool] = OrderedDict()
    pages = trace.tolist()
    start = time.perf_counter()
    for page in pages:
        if page in lru:
            lru.move_to_end(page)
        else:
            lru[page] = True
            if len(lru) > capacity:
                lru.popitem(last=False)
    return len(pages) / (time.perf_counter() - start)


def main() -> None:
    if importlib.util.find_spec("vmlab.kernel.vmscan") is None:
        print("bench_reclaim: the model has no reclaim yet (vmlab.kernel.vmscan); nothing to measure")
        raise SystemExit(3)
    refs = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    rate, trace, capacity, majflt = model_rate(refs)
    ref = ordered_dict_rate(trace, capacity)
    verdict = "meets" if rate >= TARGET else "BELOW"
    print(f"random loads over 2 x MemTotal ({2 * capacity * 4 >> 10} MiB), {refs} refs, "
          f"{majflt} major faults")
    print(f"  OrderedDict LRU ({capacity} pages) {ref:14,.0f} refs/s")
    print(f"  model                            {rate:14,.0f} refs/s  {rate / ref:6.2f}x OrderedDict  "
          f"({verdict} the {TARGET:,} target)")


if __name__ == "__main__":
    main()
