"""Where the reclaim-heavy row's time goes, in Python lines: the lines executed per page reference by
each function of the model, over the target row of bench_reclaim.py (one-page reads, uniformly random
over a file twice MemTotal), counted with sys.settrace after a warm-up. A line costs about the same
anywhere (around 50 ns on this machine), so this is the profile that does not inflate call-heavy
code as cProfile does. Not a benchmark: it prints no rate. docs/performance.md quotes it. It counts
the Python sources' lines: a compiled module runs none, so run it on the sources.
Run: PYTHONPATH=src python bench/reclaim_lines.py [REFS] [TOP]
"""

from __future__ import annotations

import sys
from collections import Counter
from types import FrameType
from typing import Any

from bench_reclaim import prepared_lab, replay
from buildinfo import vmlab_build
from vmlab.build import compiled_modules

WARMUP = 5_000


def main() -> None:
    if compiled_modules():
        sys.exit(f"reclaim_lines: {vmlab_build()}: compiled code runs no Python lines; "
                 "run it on the sources (PYTHONPATH=src)")
    refs = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    lab, fd, addr, trace = prepared_lab(WARMUP + refs, mapped=False)
    counts: Counter[tuple[str, str]] = Counter()

    def on_line(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            counts[(frame.f_code.co_filename.rsplit("/", 1)[-1], frame.f_code.co_name)] += 1
        return on_line

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        return on_line

    try:
        replay(lab, fd, addr, trace[:WARMUP])
        sys.settrace(on_call)
        try:
            replay(lab, fd, addr, trace[WARMUP:])
        finally:
            sys.settrace(None)
    finally:
        lab.close()
    print(f"Python lines per reference, {refs} one-page reads over 2 x MemTotal: "
          f"{sum(counts.values()) / refs:.1f}")
    for (module, function), n in counts.most_common(top):
        print(f"  {n / refs:7.1f}  {module}:{function}")


if __name__ == "__main__":
    main()
