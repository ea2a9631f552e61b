"""Access replay (issue 3): references per second to already-mapped pages (the hot path), through
`ModelBackend.access_trace`, against an `OrderedDict`-based LRU replay of the same page sequence in the
same run (the loop a teaching simulator runs per reference). Target: >= 5,000,000 refs/s.
Run: python bench/bench_access.py [REFS]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from lru_reference import ordered_dict_rate
from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.machine import ModelBackend

PAGES = 16_384  # a 64 MiB working set, all mapped before the replay


def model_rate(trace: np.ndarray) -> float:
    """refs/s of the model replaying `trace` (addresses) as loads and stores to mapped pages."""
    model = ModelBackend()
    try:
        pid = model.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings())
        base = model.syscall(pid, "mmap", (0, PAGES * 4096, 3, 0x22, -1, 0))
        assert model.access(pid, base, PAGES * 4096, True) is None
        before = model.counters(pid).minflt
        addrs = np.uint64(base) + trace
        writes = (trace & np.uint64(1)).astype(bool)
        start = time.perf_counter()
        assert model.access_trace(pid, addrs, writes) is None
        seconds = time.perf_counter() - start
        assert model.counters(pid).minflt == before, "the hot path took a fault"
    finally:
        model.close()
    return len(trace) / seconds


def main() -> None:
    refs = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    rng = np.random.default_rng(42)
    trace = (rng.integers(0, PAGES, refs, dtype=np.uint64) << np.uint64(12)) | rng.integers(
        0, 2, refs, dtype=np.uint64)
    model = model_rate(trace)
    ref = ordered_dict_rate(trace >> np.uint64(12))
    verdict = "met" if model >= 5_000_000 else "MISSED"
    print(f"access replay, {refs:,} refs over {PAGES:,} mapped pages: model {model:,.0f} refs/s, "
          f"OrderedDict LRU {ref:,.0f} refs/s, ratio {model / ref:.1f} (target >= 5,000,000: {verdict})")


if __name__ == "__main__":
    main()
