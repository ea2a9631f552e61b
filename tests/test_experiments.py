"""Experiments: the CLI (listing, bad input), the plots (PNG and SVG written with the Agg backend), and
each experiment's finding: the lecture's result, produced by the model's reclaim and write-back."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmlab.cli import main
from vmlab.lab.experiments import EXPERIMENTS, Panel, Result, Series, defaults, load, plot


def test_list_names_every_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "--list"]) == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert out.count(f"{name}: ") == 1
        for key in load(name).PARAMS:
            assert f"    {key}=" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["experiment", "nope"], "unknown experiment 'nope'"),
    (["experiment"], "name an experiment"),
    (["experiment", "thrashing", "--set", "wss=3"], "thrashing has parameters wss_mib"),
    (["experiment", "thrashing", "--set", "wss_mib=lots"], "'lots' is not a number"),
    (["experiment", "writeback", "--set", "ram_mib=-4"], "must be a positive number"),
    (["experiment", "writeback", "--set", "idle_s=nan"], "must be a positive number"),
    (["experiment", "one-time-scan", "--set", "scan_x=1e308"], "must be at most 100"),
    (["experiment", "one-time-scan", "--set", "hot_pct=500"], "must be at most 100"),
    (["experiment", "thrashing", "--set", "seed=1.5"], "must be a whole number"),
    (["experiment", "thrashing", "--set", "min_ratio=2", "--set", "max_ratio=1"],
     "min_ratio must be below max_ratio"),
    (["experiment", "one-time-scan", "--out", "/proc/vmlab-nope", "--set", "samples=3"],
     "--out: cannot make directory /proc/vmlab-nope"),
])
def test_bad_input_is_one_line_and_status_2(argv: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_plots_are_written_as_png_and_svg(tmp_path: Path) -> None:
    result = Result("demo", "Demo", [Panel("x", "y", [Series("line", [0, 1, 2], [3, 1, 2])],
                                           hlines=[("limit", 2.5)])], ["a summary"])
    paths = plot.save(result, tmp_path / "out")
    assert [p.name for p in paths] == ["demo.png", "demo.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = paths[1].read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_one_time_scan_hot_set_survives_only_under_two_lists() -> None:
    mod = load("one-time-scan")
    params = defaults(mod.PARAMS) | {"ram_mib": 96, "samples": 8}
    result = mod.run(params)
    plain, two = (s.y[-1] for s in result.panels[0].series)
    assert two > 90 > 10 > plain, result.summary


def test_thrashing_throughput_collapses_below_the_working_set() -> None:
    mod = load("thrashing")
    params = defaults(mod.PARAMS) | {"wss_mib": 8, "refs_x": 4, "points": 5,
                                                           "min_ratio": 0.5, "max_ratio": 1.5}
    result = mod.run(params)
    ratios = result.panels[0].series[0].x
    throughput = result.panels[0].series[0].y
    stall, majflt = (s.y for s in result.panels[1].series)
    # the machines are sized by MemAvailable, not RAM: the points land where they were asked for
    assert all(abs(got - want) < 0.05 for got, want in zip(ratios, [0.5, 0.75, 1.0, 1.25, 1.5], strict=True))
    assert throughput[-1] > 100 * throughput[0], result.summary  # the knee: faults' I/O dominates below
    assert throughput[1] < throughput[2] / 100, result.summary
    assert majflt[2:] == [0, 0, 0] and min(majflt[:2]) > 10, result.summary  # > 100 per 1000 refs below
    # refaults of the workingset are memory stalls (PSI); where it fits there is none
    assert stall[2:] == [0, 0, 0] and min(stall[:2]) > 1, result.summary
    assert any(line.startswith("knee:") and "0.75" in line for line in result.summary), result.summary


def test_writeback_dirty_pages_stay_under_the_throttle_and_drain(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "writeback", "--out", str(tmp_path), "--set", "ram_mib=128",
                 "--set", "samples=20"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "writeback.png").exists() and (tmp_path / "writeback.svg").exists()
    assert "peak Dirty" in out
    mod = load("writeback")
    result = mod.run(defaults(mod.PARAMS) | {"ram_mib": 128, "samples": 20})
    dirty, _, thresh, bg = (s.y for s in result.panels[0].series)
    assert max(dirty) > bg[0]  # the writer outran the background flusher
    assert max(dirty) <= max(thresh) * 1.1  # throttled near the dirty threshold
    assert dirty[-1] < 0.05 * max(dirty)  # drained after dirty_expire
