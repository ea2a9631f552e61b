"""Thrashing: one fixed workload — uniformly random loads over a file working set mapped shared — on
machines whose memory goes from well above the working set to well below it. While it fits, every
reference is a hit; once it does not, a growing share of references are major faults whose I/O
dominates, throughput collapses (the knee) and the task spends its time stalled on memory.

The stall follows the kernel's rule: a major fault's I/O is a memory stall only when it reads back a
page of the workingset (PG_workingset: a page reclaim had deactivated from the active list, or one
restored by an earlier refault). Reclaim deactivates while the memcg statistics, as last flushed (every
2 s), show the inactive list low or new refault activations since its previous pass, and a refault is
activated when its distance fits in the active list as last flushed (memcontrol.py). A major fault
reads around the missing page (the ra_pages window centred on it: read-around goes on while
fault-around finds the neighbours cached), and the whole read is a stall when any page of it is a
workingset refault (read_pages' psi_memstall). With the defaults the stall peaks just below the
working set and falls as memory shrinks further, where fewer refaults are close enough to be
activated (71 % of the time at MemAvailable/WSS 0.88, 24 % at 0.5). Before read-around went on under
random faults (the model stopped it after MMAP_LOTSAMISS misses: each I/O read one page) it was 7 %
and 11 %. The stall's shape has not been measured on the host (this kernel's PSI is machine-wide
here: no cgroup v2); the major faults and the pages read have, with the same workload in memcgs of
shrinking limits (tests/test_thrashing_host.py: within 8 % and 12 % of the kernel's).

Each machine is sized by what the workload can use — MemAvailable with the program running — not by
RAM (a small machine's boot reservations take a large, uneven share of it). Series against
MemAvailable / working set: throughput (references per simulated second), major faults per
1000 references, and memory pressure (PSI `some` stall time over the run's time, percent).
"""

from __future__ import annotations

import numpy as np

from vmlab.kernel.memcontrol import FLUSH_TIME_NS
from vmlab.lab.experiments import Panel, Param, Result, Series
from vmlab.lab.experiments.workload import lab_with_available

NAME = "thrashing"
TITLE = "Thrashing: throughput and memory stall as memory shrinks below the working set"
PARAMS: dict[str, Param] = {
    "wss_mib": Param(24, "working set (a file, mapped shared) in MiB", 1024),
    "refs_x": Param(8, "references per run, times the working-set pages", 1000),
    "min_ratio": Param(0.5, "smallest MemAvailable / working set", 100),
    "max_ratio": Param(1.5, "largest MemAvailable / working set", 100),
    "points": Param(9, "memory sizes between them", 100, integer=True),
    "seed": Param(1, "random seed of the reference string", 4294967295, integer=True),
}


def check(params: dict[str, float]) -> str | None:
    """The memory sizes must run from smaller to larger."""
    if params["min_ratio"] >= params["max_ratio"]:
        return "min_ratio must be below max_ratio"
    return None


def one_size(avail: int, wss: int, refs: np.ndarray) -> tuple[float, float, float, float, float]:
    """(MemAvailable/wss, MemTotal/wss, references per second, majfaults per 1000 refs, PSI some %) of
    the machine whose MemAvailable is about `avail` pages."""
    lab = lab_with_available(avail)
    try:
        ratio = lab.available_pages() / wss
        total_ratio = lab.mem.totalram_pages / wss
        fd = lab.open(lab.file("wss", wss))
        addr = lab.map_file(fd, wss)
        mem = lab.mem
        # Outside the measurement: the first touch, a warm-up of wss references, and a pause of 2 s in
        # which the memcg statistics are flushed (the refault test weighs a distance against the lists
        # as last flushed: a run measured straight after boot would see them empty).
        lab.load_pages(addr, np.arange(wss))
        lab.load_pages(addr, refs[:wss])
        lab.sleep(FLUSH_TIME_NS / 1e9)
        t0, maj0 = mem.clock.now_ns, mem.events["pgmajfault"]
        psi0 = mem.psi.group.total[0][2]
        for chunk in np.array_split(refs, max(1, len(refs) // 4096)):
            lab.load_pages(addr, chunk)
        mem.psi.show("memory")  # brings the totals up to date
        elapsed = mem.clock.now_ns - t0
        stall = mem.psi.group.total[0][2] - psi0
        majflt = mem.events["pgmajfault"] - maj0
    finally:
        lab.close()
    return ratio, total_ratio, len(refs) / (elapsed / 1e9), 1000 * majflt / len(refs), 100 * stall / elapsed


def run(params: dict[str, float]) -> Result:
    """The same reference string on every machine size."""
    wss = int(params["wss_mib"] * 256)
    rng = np.random.default_rng(int(params["seed"]))
    refs = rng.integers(0, wss, size=int(wss * params["refs_x"]))
    ratios = np.linspace(params["min_ratio"], params["max_ratio"], int(params["points"]))
    rows = [one_size(int(r * wss), wss, refs) for r in ratios]
    xs = [r[0] for r in rows]
    best = max(r[2] for r in rows)
    knee = next((r[0] for r in sorted(rows, reverse=True) if r[2] < best / 2), None)
    header = f"{'MemAvail/WSS':>12} {'MemTotal/WSS':>12} {'refs/s':>12} {'majflt/1k':>10} {'PSI some %':>10}"
    summary = [f"working set {params['wss_mib']:g} MiB, {len(refs)} random references per run", header]
    summary += [f"{r[0]:12.2f} {r[1]:12.2f} {r[2]:12.0f} {r[3]:10.1f} {r[4]:10.1f}" for r in rows]
    summary.append(f"knee: throughput falls below half its best at MemAvailable/WSS = {knee:.2f}"
                   if knee is not None else "knee: throughput never fell below half its best")
    xlabel = "MemAvailable / working set"
    stall = Series("PSI memory some (stall % of run time)", xs, [r[4] for r in rows])
    majflt = Series("major faults per 1000 refs / 10", xs, [r[3] / 10 for r in rows])
    throughput = Series("throughput", xs, [r[2] for r in rows])
    panels = [Panel(xlabel, "references per second", [throughput], logy=True),
              Panel(xlabel, "percent", [stall, majflt])]
    return Result(NAME, TITLE, panels, summary, params)
