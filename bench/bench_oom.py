"""Time the OOM explainer's scan of every process against `cat` of the same /proc files and psutil.

    PYTHONPATH=src /work/venv/bin/python bench/bench_oom.py [--runs N]

All three run interleaved in one run (the machine is shared and noisy: compare the ratios, not the times).
- scan: vmlab.host.oom.scan() in this process (stat, status, oom_score_adj, oom_score per pid; kernel
  threads: stat and oom_score only).
- cat: one `cat` process reading stat, status, oom_score_adj and oom_score of every pid (a superset of
  what the scan reads), output to /dev/null; the time includes starting cat, as a shell user would pay.
- cat0: `cat /dev/null`, cat's start-up alone; cat - cat0 is what cat spends reading.
- psutil: process_iter over name, uids, memory_info (it has no oom_score), in this process.
- cli: `python -m vmlab oom` as a fresh process (interpreter start-up included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import psutil

from vmlab.host.oom import scan

FILES = ("stat", "status", "oom_score_adj", "oom_score")


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cat_all() -> None:
    """cat every file the scan may read, for every pid now in /proc."""
    paths = [f"/proc/{p}/{f}" for p in os.listdir("/proc") if p.isdigit() for f in FILES]
    subprocess.run(["cat", *paths], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def cat_nothing() -> None:
    """`cat /dev/null`: cat's start-up cost alone, to see the reading part of `cat`'s time."""
    subprocess.run(["cat", "/dev/null"], check=False)


def psutil_all() -> None:
    """psutil's view of every process: name, uids, memory_info."""
    for _ in psutil.process_iter(["name", "uids", "memory_info"]):
        pass


def cli() -> None:
    """`vmlab oom` as a new process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-m", "vmlab", "oom"], stdout=subprocess.DEVNULL, env=env, check=True)


def main() -> int:
    """Run the interleaved rounds and print medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    fns = {"scan": scan, "cat": cat_all, "cat0": cat_nothing, "psutil": psutil_all, "cli": cli}
    for fn in fns.values():
        fn()  # warm caches and imports
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.runs):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    npids = sum(1 for p in os.listdir("/proc") if p.isdigit())
    print(f"{npids} processes, {args.runs} interleaved runs, medians:")
    for k, v in med.items():
        print(f"  {k:7s} {v * 1000:8.2f} ms   ({v / med['cat']:.2f}x cat)")
    reading = med["cat"] - med["cat0"]
    print(f"scan/cat = {med['scan'] / med['cat']:.2f} (target <= 1.5); scan/(cat - cat start-up) = "
          f"{med['scan'] / reading:.2f}; scan/psutil = {med['scan'] / med['psutil']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
