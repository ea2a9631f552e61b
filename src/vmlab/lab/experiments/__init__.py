"""Experiments: named runs of the model that produce series, a terminal summary and plots (PNG and SVG).

Each experiment module defines `NAME`, `TITLE`, `PARAMS` (name -> Param), optionally
`check(params) -> str | None` (what is wrong with a combination of values), and
`run(params) -> Result`; `plot.save(result, out_dir)` draws it. `EXPERIMENTS` lists them in the order
`vmlab experiment --list` shows.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from types import ModuleType

#: Experiment name -> module under vmlab.lab.experiments.
EXPERIMENTS = {"one-time-scan": "onetime_scan", "thrashing": "thrashing", "writeback": "writeback"}


@dataclass(frozen=True)
class Param:
    """One parameter of an experiment: its default and meaning, and the values it takes: above 0,
    at most `high`, whole numbers only when `integer`."""

    default: float
    help: str
    high: float
    integer: bool = False

    def problem(self, value: float) -> str | None:
        """What is wrong with `value` for this parameter, or None."""
        if not math.isfinite(value) or value <= 0:
            return "must be a positive number"
        if self.integer and value != int(value):
            return "must be a whole number"
        if value > self.high:
            return f"must be at most {self.high:g}"
        return None


def defaults(params: dict[str, Param]) -> dict[str, float]:
    """The default value of every parameter."""
    return {key: p.default for key, p in params.items()}


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
