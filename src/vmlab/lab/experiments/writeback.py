"""Write-back: a writer dirties a file page by page, flat out, then stops. Dirty pages climb to the
background threshold (the flusher starts writing), to the throttle threshold (balance_dirty_pages makes
the writer sleep), and after the writer stops the flusher drains them; pages older than
dirty_expire_centisecs go on the flusher's periodic wakeups.

Series against simulated time: Dirty and Writeback (MiB), with the background and throttle thresholds.
"""

from __future__ import annotations

from vmlab.kernel.vmstat import node_page_state
from vmlab.lab.experiments import Panel, Param, Result, Series
from vmlab.lab.experiments.workload import O_CREAT, O_RDWR, Lab

NAME = "writeback"
TITLE = "Write-back: dirty pages over time under a writer, with the thresholds"
PARAMS: dict[str, Param] = {
    "ram_mib": Param(256, "RAM of the model machine in MiB", 4096, integer=True),
    "write_x": Param(0.6, "data written, times MemTotal", 100),
    "idle_s": Param(40, "seconds watched after the writer stops", 3600),
    "samples": Param(60, "samples while writing", 1000, integer=True),
}


def run(params: dict[str, float]) -> Result:
    """One writer on one machine."""
    lab = Lab(int(params["ram_mib"]) << 20)
    series: dict[str, list[float]] = {"t": [], "dirty": [], "writeback": [], "thresh": [], "bg": []}

    def sample() -> None:
        vm = node_page_state(lab.mem)
        series["t"].append(lab.mem.clock.now_ns / 1e9)
        for key, name in (("dirty", "nr_dirty"), ("writeback", "nr_writeback"),
                          ("thresh", "nr_dirty_threshold"), ("bg", "nr_dirty_background_threshold")):
            series[key].append(vm[name] * 4096 / (1 << 20))

    try:
        pages = int(lab.mem.totalram_pages * params["write_x"])
        fd = lab.open(lab.file("out", 0), O_RDWR | O_CREAT)
        step = max(1, pages // int(params["samples"]))
        sample()
        for done in range(0, pages, step):
            lab.write_pages(fd, min(step, pages - done))
            sample()
        stop = lab.mem.clock.now_ns / 1e9
        for _ in range(int(params["idle_s"] * 4)):
            lab.mem.clock.advance(250_000_000)
            sample()
    finally:
        lab.close()
    t = series["t"]
    panel = Panel("simulated time (s)", "MiB", [Series("Dirty", t, series["dirty"]),
                                                Series("Writeback", t, series["writeback"]),
                                                Series("dirty threshold (throttle)", t, series["thresh"]),
                                                Series("background threshold", t, series["bg"])])
    rate = pages * 4 / 1024 / max(stop, 1e-9)
    summary = [f"wrote {pages * 4 >> 10} MiB in {stop:.2f} s simulated ({rate:.0f} MiB/s)",
               f"peak Dirty {max(series['dirty']):.1f} MiB; thresholds at the start: background "
               f"{series['bg'][0]:.1f} MiB, throttle {series['thresh'][0]:.1f} MiB",
               f"Dirty {params['idle_s']:.0f} s after the writer stopped: "
               f"{series['dirty'][-1]:.1f} MiB"]
    return Result(NAME, TITLE, [panel], summary, params)
