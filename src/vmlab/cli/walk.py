"""`vmlab walk SCENARIO ADDR`: run a scenario on the model, then walk one process's page tables for ADDR
level by level, as a course's page-table exercise would (PGD, PUD, PMD, PTE: index, entry, flags, next
table, and the physical address)."""

from __future__ import annotations

import argparse
import sys

from vmlab.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `walk` subcommand."""
    p = subparsers.add_parser("walk", help="walk the page tables of a simulated process",
                              description="Run SCENARIO on the model, then print the page-table walk of "
                                          "ADDR in one of its processes.")
    p.add_argument("scenario", help="scenario file (.vml)")
    p.add_argument("addr", help="virtual address (hex with 0x, or decimal)")
    p.add_argument("--process", default="main", help="the scenario's process name (default: main)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the scenario silently, then print the walk; exit 2 for a bad address or process."""
    try:
        addr = int(args.addr, 0)
    except ValueError:
        raise InputError(f"address {args.addr!r} does not parse", "ADDR") from None
    if not 0 <= addr < 1 << 64:
        raise InputError(f"address {args.addr} is outside 64 bits", "ADDR")
    from vmlab.kernel.machine import ModelBackend  # the model loads only for the command that runs it
    from vmlab.kernel.pgtable import format_walk
    from vmlab.lab import scenario as scenario_mod
    from vmlab.lab.run import Runner

    backend = ModelBackend()
    try:
        runner = Runner(scenario_mod.load(args.scenario), backend)
        runner.run()
        pid = runner.pids.get(args.process)
        if pid is None or pid not in backend.tasks:
            raise InputError(f"no live process {args.process!r} at the end of the scenario", "--process")
        pt = backend.tasks[pid].mm.pt
        assert pt is not None
        sys.stdout.write(format_walk(pt.walk(addr)))
    finally:
        backend.close()
    return 0
