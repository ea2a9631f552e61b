"""Thrashing: one fixed workload — uniformly random loads over a file working set mapped shared — on
machines whose memory goes from well above the working set to well below it. While it fits, every
reference is a hit; once it does not, a growing share of references are major faults whose I/O
dominates, throughput collapses (the knee) and the task spends its time stalled on memory.

Series against MemTotal / working set: throughput (references per simulated second), major faults per
1000 references, and memory pressure (PSI `some` stall time over the run's time, percent).
"""

from __future__ import annotations

import numpy as np

from vmlab.kernel.page_alloc import PhysMem
from vmlab.lab.experiments import Panel, Result, Series
from vmlab.lab.experiments.workload import Lab, seam

NAME = "thrashing"
TITLE = "Thrashing: throughput and memory stall as memory shrinks below the working set"
PARAMS: dict[str, tuple[float, str]] = {
    "wss_mib": (24, "working set (a file, mapped shared) in MiB"),
    "refs_x": (8, "references per run, times the working-set pages"),
    "min_ratio": (0.5, "smallest MemTotal / working set"),
    "max_ratio": (1.5, "largest MemTotal / working set"),
    "points": (9, "memory sizes between them"),
    "seed": (1, "random seed of the reference string"),
}


def ram_for(managed_pages: int) -> int:
    """The RAM size (whole MiB) whose machine manages about `managed_pages` pages (boot reservations
    and the kernel image come off the top)."""
    probe = 256 << 20
    overhead = probe - PhysMem(probe).totalram_pages * 4096
    return ((managed_pages * 4096 + overhead) + (1 << 20) - 1) & ~((1 << 20) - 1)


def one_size(ram: int, wss: int, refs: np.ndarray) -> tuple[float, float, float, float]:
    """(MemTotal/wss, references per second, majfaults per 1000 refs, PSI some %) of one machine."""
    lab = Lab(ram)
    try:
        fd = lab.open(lab.host_file("wss", wss))
        addr = lab.map_file(fd, wss)
        mem = lab.mem
        lab.load_pages(addr, np.arange(wss))  # first touch, outside the measurement
        t0, maj0 = mem.clock.now_ns, mem.events["pgmajfault"]
        psi0 = mem.psi.group.total[0][2]
        for chunk in np.array_split(refs, max(1, len(refs) // 4096)):
            lab.load_pages(addr, chunk)
        mem.psi.show("memory")  # brings the totals up to date
        elapsed = mem.clock.now_ns - t0
        stall = mem.psi.group.total[0][2] - psi0
        majflt = mem.events["pgmajfault"] - maj0
        ratio = mem.totalram_pages / wss
    finally:
        lab.close()
    return ratio, len(refs) / (elapsed / 1e9), 1000 * majflt / len(refs), 100 * stall / elapsed


def run(params: dict[str, float]) -> Result:
    """The same reference string on every machine size."""
    seam("vmscan", "install", "reclaim")
    wss = int(params["wss_mib"]) << 8
    rng = np.random.default_rng(int(params["seed"]))
    refs = rng.integers(0, wss, size=int(wss * params["refs_x"]))
    ratios = np.linspace(params["min_ratio"], params["max_ratio"], int(params["points"]))
    rows = [one_size(ram_for(int(r * wss)), wss, refs) for r in ratios]
    xs = [r[0] for r in rows]
    best = max(r[1] for r in rows)
    knee = next((r[0] for r in sorted(rows, reverse=True) if r[1] < best / 2), None)
    summary = [f"working set {params['wss_mib']:.0f} MiB, {len(refs)} random references per run",
               f"{'MemTotal/WSS':>12} {'refs/s':>12} {'majflt/1k':>10} {'PSI some %':>10}"]
    summary += [f"{r[0]:12.2f} {r[1]:12.0f} {r[2]:10.1f} {r[3]:10.1f}" for r in rows]
    summary.append(f"knee: throughput falls below half its best at MemTotal/WSS = {knee:.2f}"
                   if knee is not None else "knee: throughput never fell below half its best")
    panels = [Panel("MemTotal / working set", "references per second", [Series("throughput", xs,
                                                                                [r[1] for r in rows])],
                    logy=True),
              Panel("MemTotal / working set", "percent", [Series("PSI memory some (stall %)", xs,
                                                                 [r[3] for r in rows]),
                                                          Series("major faults per 1000 refs / 10", xs,
                                                                 [r[2] / 10 for r in rows])])]
    return Result(NAME, TITLE, panels, summary, params)
