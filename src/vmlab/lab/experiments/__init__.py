"""Experiments: named runs of the model that produce series, a terminal summary and plots (PNG and SVG).

Each experiment module defines `NAME`, `TITLE`, `PARAMS` (name -> (default, help)) and
`run(params) -> Result`; `plot.save(result, out_dir)` draws it. `EXPERIMENTS` lists them in the order
`vmlab experiment --list` shows.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

#: Experiment name -> module under vmlab.lab.experiments.
EXPERIMENTS = {"one-time-scan": "onetime_scan", "thrashing": "thrashing", "writeback": "writeback"}


@dataclass
class Series:
    """One line of a plot: y against x, with its label."""

    label: str
    x: list[float]
    y: list[float]


@dataclass
class Panel:
    """One plot panel: axis labels, its lines, and horizontal reference lines (label, y)."""

    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    hlines: list[tuple[str, float]] = field(default_factory=list)
    logy: bool = False


@dataclass
class Result:
    """What an experiment found: its panels and the lines of its terminal summary."""

    name: str
    title: str
    panels: list[Panel]
    summary: list[str]
    params: dict[str, float] = field(default_factory=dict)


def load(name: str) -> ModuleType:
    """The module of experiment `name` (KeyError when there is none)."""
    return importlib.import_module(f"vmlab.lab.experiments.{EXPERIMENTS[name]}")
