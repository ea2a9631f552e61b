"""`vmlab strace-replay LOG`: replay a strace log on the model and print the maps the kernel would show."""

from __future__ import annotations

import argparse
import sys

from vmlab.lab.backends import make_backend


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `strace-replay` subcommand."""
    p = subparsers.add_parser(
        "strace-replay", help="replay an strace log on the model and print /proc/PID/maps",
        description="Replay LOG (from `strace -f -v -s 65536 -o LOG CMD`, optionally with -y -tt -T) on "
                    "the model: execve, the memory syscalls, fork/clone and descriptors. Print the "
                    "/proc/PID/maps of the traced program at its end (or just before it first reads PATH). "
                    "Divergences from the log go to stderr.")
    p.add_argument("log", help="strace log file")
    p.add_argument("--at-read", metavar="PATH",
                   help="print the maps just before the first read() of a descriptor opened on PATH "
                        "(e.g. /proc/self/maps)")
    p.add_argument("--strict", action="store_true", help="exit 1 when the replay diverges from the log")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the replayed maps; 1 with --strict when anything diverged or was not modelled."""
    from vmlab.lab.strace import Replay, read_log  # the model loads only for the command that runs it

    events = read_log(args.log)
    backend = make_backend("model")
    try:
        replay = Replay(events, backend, args.at_read,
                        report=lambda d: sys.stderr.write(f"{d.text(args.log)}\n"))
        text = replay.run()
    finally:
        backend.close()
    sys.stdout.write(text)
    return 1 if args.strict and replay.divergences else 0
