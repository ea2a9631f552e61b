"""`vmlab run [SCENARIO]`: run a scenario on the model (or the host) and print its transcript."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from typing import TYPE_CHECKING

from vmlab.lab.backends import BACKENDS, make_backend

if TYPE_CHECKING:
    from vmlab.lab import scenario as scenario_mod

DEMO = "address-space.vml"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `run` subcommand."""
    p = subparsers.add_parser("run", help="run a scenario and print its transcript",
                              description="Run a scenario (default: the address-space demo) and print "
                                          "each step strace-style; exit 1 when an expect fails.")
    p.add_argument("scenario", nargs="?", help="scenario file (.vml); omitted: the built-in demo")
    p.add_argument("--backend", choices=sorted(BACKENDS), default="model",
                   help="where to run (default: model)")
    p.add_argument("--trace", action="store_true",
                   help="print each page fault's call path in the model (do_user_addr_fault -> ...)")
    p.set_defaults(func=run)


def load_demo() -> scenario_mod.Scenario:
    """The demo scenario shipped as package data."""
    text = resources.files("vmlab").joinpath("examples", DEMO).read_text(encoding="utf-8")
    from vmlab.lab import scenario as scenario_mod

    return scenario_mod.parse(text, f"<demo {DEMO}>")


def run(args: argparse.Namespace) -> int:
    """Parse the whole scenario, then run it; 0 when every expect held, 1 otherwise."""
    from vmlab.lab import scenario as scenario_mod  # the model loads only for the command that runs it
    from vmlab.lab.run import run as run_scenario

    scn = scenario_mod.load(args.scenario) if args.scenario else load_demo()
    backend = make_backend(args.backend)
    if args.trace:
        if args.backend != "model":
            sys.stderr.write("vmlab run: error: --trace needs the model backend\n")
            return 2
        backend.traces = []  # type: ignore[attr-defined]
    transcript = run_scenario(scn, backend, out=lambda text: sys.stdout.write(text + "\n"))
    return 1 if transcript.failures else 0
