"""`vmlab diff SCENARIO`: run a scenario on the model and on the running kernel; print where they differ."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `diff` subcommand."""
    p = subparsers.add_parser("diff", help="compare the model with the running kernel on a scenario",
                              description="Run SCENARIO on the model and on the host kernel; print every "
                                          "differing result or view as a unified diff (model/kernel). "
                                          "Exit 0 only when they agree.")
    p.add_argument("scenario", help="scenario file (.vml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """0 when model and kernel agree on every step, 1 otherwise."""
    from vmlab.lab import scenario as scenario_mod  # the model loads only for the command that runs it
    from vmlab.lab.backends import make_backend
    from vmlab.lab.diff import diff_scenario

    scn = scenario_mod.load(args.scenario)
    model, host = make_backend("model"), make_backend("host")
    diffs = diff_scenario(scn, model, host, out=lambda text: sys.stdout.write(text + "\n"))
    if not diffs:
        sys.stdout.write(f"{scn.path}: model and kernel agree on {len(scn.steps)} steps\n")
    return 1 if diffs else 0
