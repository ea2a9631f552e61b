"""`vmlab experiment NAME [--out DIR] [--set KEY=VALUE ...]`: run an experiment on the model, print its
summary and write its plots (PNG and SVG); `vmlab experiment --list` names them and their parameters."""

from __future__ import annotations

import argparse
from pathlib import Path

from vmlab.errors import InputError
from vmlab.lab.experiments import EXPERIMENTS, load


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


def parse_params(name: str, defaults: dict[str, tuple[float, str]], items: list[str]) -> dict[str, float]:
    """The defaults with each `KEY=VALUE` applied; InputError names a bad one."""
    params = {key: float(value) for key, (value, _) in defaults.items()}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in params:
            known = ", ".join(params)
            raise InputError(f"--set: '{item}': {name} has parameters {known} (KEY=VALUE)")
        try:
            params[key] = float(value)
        except ValueError:
            raise InputError(f"--set: '{item}': '{value}' is not a number") from None
        if params[key] <= 0:
            raise InputError(f"--set: '{item}': must be positive")
    return params


def run(args: argparse.Namespace) -> int:
    """0 when the experiment ran, 3 when the model lacks a part it needs; bad input exits 2."""
    if args.list:
        for name in EXPERIMENTS:
            mod = load(name)
            print(f"{name}: {mod.TITLE}")
            for key, (value, text) in mod.PARAMS.items():
                print(f"    {key}={value:g}  {text}")
        return 0
    if args.name is None:
        raise InputError("vmlab experiment: name an experiment (" + ", ".join(EXPERIMENTS) + ") or --list")
    if args.name not in EXPERIMENTS:
        raise InputError(f"vmlab experiment: unknown experiment '{args.name}' (known: "
                         + ", ".join(EXPERIMENTS) + ")")
    mod = load(args.name)
    params = parse_params(args.name, mod.PARAMS, args.set)
    result = mod.run(params)
    print(result.title)
    for line in result.summary:
        print(f"  {line}")
    if not args.no_plot:
        from vmlab.lab.experiments import plot

        for path in plot.save(result, Path(args.out)):
            print(f"wrote {path}")
    return 0
