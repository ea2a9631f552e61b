"""`vmlab run [SCENARIO]`: run a scenario on the model (or the host) and print its transcript."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
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
    p.add_argument("--check", action="store_true",
                   help="check every invariant of the model machine after each step, as CONFIG_DEBUG_VM "
                        "would (frames, page tables, LRU lists, swap, memcg counters); exit 3 on the first "
                        "broken one")
    p.set_defaults(func=run)


def load_demo() -> scenario_mod.Scenario:
    """The demo scenario shipped as package data."""
    text = resources.files("vmlab").joinpath("examples", DEMO).read_text(encoding="utf-8")
    from vmlab.lab import scenario as scenario_mod

    return scenario_mod.parse(text, f"<demo {DEMO}>")


def run(args: argparse.Namespace) -> int:
    """Parse the whole scenario, then run it; 0 when every expect held, 1 otherwise, 3 when --check
    found a broken invariant."""
    from vmlab.lab import scenario as scenario_mod  # the model loads only for the command that runs it
    from vmlab.lab.run import InvariantBroken
    from vmlab.lab.run import run as run_scenario

    for flag in ("trace", "check"):
        if getattr(args, flag) and args.backend != "model":
            sys.stderr.write(f"vmlab run: error: --{flag} needs the model backend\n")
            return 2
    scn = scenario_mod.load(args.scenario) if args.scenario else load_demo()
    backend = make_backend(args.backend)
    if args.trace:
        backend.traces = []  # type: ignore[attr-defined]
    check: Callable[[], None] | None = None
    if args.check:
        from vmlab.kernel.debug_vm import check_machine

        check = functools.partial(check_machine, backend)  # type: ignore[arg-type]
    try:
        transcript = run_scenario(scn, backend, out=lambda text: sys.stdout.write(text + "\n"), check=check)
    except InvariantBroken as err:
        sys.stdout.flush()
        sys.stderr.write(f"{err}\n")
        return 3
    return 1 if transcript.failures else 0
