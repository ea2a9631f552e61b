"""`vmlab experiment NAME [--out DIR] [--set KEY=VALUE ...]`: run an experiment on the model, print its
summary and write its plots (PNG and SVG); `vmlab experiment --list` names them and their parameters."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vmlab.errors import InputError
from vmlab.lab.experiments import EXPERIMENTS, Param, defaults, load


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `experiment` subcommand."""
    p = subparsers.add_parser("experiment", help="run an experiment and plot it",
                              description="Run an experiment on the model: print a summary, write "
                                          "OUT/NAME.png and OUT/NAME.svg. Experiments: "
                                          + ", ".join(EXPERIMENTS))
    p.add_argument("name", nargs="?", help="experiment to run")
    p.add_argument("--list", action="store_true", help="list the experiments and their parameters")
    p.add_argument("--out", default=".", help="directory for the plots (default: the current one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a parameter (repeatable)")
    p.add_argument("--no-plot", action="store_true", help="print the summary only")
    p.set_defaults(func=run)


def parse_params(name: str, spec: dict[str, Param], items: list[str]) -> dict[str, float]:
    """The defaults with each `KEY=VALUE` applied; InputError names a bad one."""
    params = defaults(spec)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in params:
            known = ", ".join(params)
            raise InputError(f"--set: '{item}': {name} has parameters {known} (KEY=VALUE)")
        try:
            params[key] = float(value)
        except ValueError:
            raise InputError(f"--set: '{item}': '{value}' is not a number") from None
        problem = spec[key].problem(params[key])
        if problem:
            raise InputError(f"--set: '{item}': {problem}")
    return params


def _out_dir(out: str) -> Path:
    """The plots' directory, made now (before the run) so that a bad one is an InputError."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"--out: cannot make directory {out}: {err.strerror}") from None
    if not os.access(path, os.W_OK):
        raise InputError(f"--out: cannot write into {out}")
    return path


def run(args: argparse.Namespace) -> int:
    """0 when the experiment ran, 3 when the model lacks a part it needs; bad input exits 2."""
    if args.list:
        for name in EXPERIMENTS:
            mod = load(name)
            print(f"{name}: {mod.TITLE}")
            for key, param in mod.PARAMS.items():
                print(f"    {key}={param.default:g}  {param.help} (at most {param.high:g})")
        return 0
    if args.name is None:
        raise InputError("vmlab experiment: name an experiment (" + ", ".join(EXPERIMENTS) + ") or --list")
    if args.name not in EXPERIMENTS:
        raise InputError(f"vmlab experiment: unknown experiment '{args.name}' (known: "
                         + ", ".join(EXPERIMENTS) + ")")
    mod = load(args.name)
    params = parse_params(args.name, mod.PARAMS, args.set)
    problem = mod.check(params) if hasattr(mod, "check") else None
    if problem:
        raise InputError(f"--set: {problem}")
    out = None if args.no_plot else _out_dir(args.out)
    result = mod.run(params)
    print(result.title)
    for line in result.summary:
        print(f"  {line}")
    if out is not None:
        from vmlab.lab.experiments import plot

        for path in plot.save(result, out):
            print(f"wrote {path}")
    return 0
