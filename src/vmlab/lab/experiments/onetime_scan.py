"""The lecture's one-time-scan case: a hot file working set, read twice, then one large sequential read
of another file that is never used again. Under a plain LRU (one list, move to head on use) the scan
pushes the hot set out; under the kernel's two lists the hot set sits on the active list, the scan's
pages pass through the inactive list only, and the hot set survives.

Series: the hot set's residency (percent of its pages in the page cache) against MiB scanned, per
policy; the summary gives the residency at the end and what re-reading the hot set then costs.
"""

from __future__ import annotations

from vmlab.kernel.vmscan import set_lru_policy
from vmlab.lab.experiments import Panel, Param, Result, Series
from vmlab.lab.experiments.workload import Lab

NAME = "one-time-scan"
TITLE = "One-time scan: hot-set residency, plain LRU vs active/inactive lists"
PARAMS: dict[str, Param] = {
    "ram_mib": Param(128, "RAM of the model machine in MiB", 4096, integer=True),
    "hot_pct": Param(25, "hot file working set, percent of MemTotal", 100),
    "scan_x": Param(2.0, "size of the one-time scan, times MemTotal", 100),
    "samples": Param(40, "residency samples during the scan", 1000, integer=True),
}
POLICIES = (("plain", "plain LRU"), ("two-list", "active/inactive (kernel)"))


def run_policy(params: dict[str, float], policy: str) -> tuple[Series, str]:
    """One machine under `policy`: the residency series and its summary line."""
    lab = Lab(int(params["ram_mib"]) << 20)
    try:
        set_lru_policy(lab.mem, policy)
        managed = lab.mem.totalram_pages
        hot_pages = int(managed * params["hot_pct"] / 100)
        scan_pages = int(managed * params["scan_x"])
        hot, scan = lab.file("hot", hot_pages), lab.file("scan", scan_pages)
        hot_fd, scan_fd = lab.open(hot), lab.open(scan)
        for _ in range(2):
            lab.pread_pages(hot_fd, range(hot_pages))
        xs, ys = [0.0], [100.0 * lab.resident(hot) / hot_pages]
        step = max(1, scan_pages // int(params["samples"]))
        for start in range(0, scan_pages, step):
            lab.pread_pages(scan_fd, range(start, min(start + step, scan_pages)))
            xs.append(min(start + step, scan_pages) * 4096 / (1 << 20))
            ys.append(100.0 * lab.resident(hot) / hot_pages)
        t0, misses = lab.mem.clock.now_ns, hot_pages - lab.resident(hot)
        lab.pread_pages(hot_fd, range(hot_pages))
        took_ms = (lab.mem.clock.now_ns - t0) / 1e6
    finally:
        lab.close()
    label = dict(POLICIES)[policy]
    line = (f"{label:>25}: hot set {hot_pages * 4 >> 10} MiB, after a {scan_pages * 4 >> 10} MiB scan "
            f"{ys[-1]:5.1f} % resident; re-reading it: {misses} page reads, {took_ms:.1f} ms")
    return Series(label, xs, ys), line


def run(params: dict[str, float]) -> Result:
    """Both policies on identical machines."""
    results = [run_policy(params, policy) for policy, _ in POLICIES]
    panel = Panel("MiB read by the one-time scan", "hot set resident (%)", [s for s, _ in results])
    return Result(NAME, TITLE, [panel], [line for _, line in results], params)
