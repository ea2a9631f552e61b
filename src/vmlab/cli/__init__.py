"""`vmlab`: a thin command line; each subcommand lives in its own module here and calls the lab or host."""

from __future__ import annotations

import argparse
import importlib
import sys

from vmlab.errors import InputError

#: Subcommand modules, in the order `vmlab --help` lists them. Each defines
#: `register(subparsers) -> None` (adds its parser, sets `func`) and a `run(args) -> int`.
COMMANDS: tuple[str, ...] = ("run", "diff", "strace_replay", "walk", "oom", "experiment")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line and exit status 2, as for every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full `vmlab` parser with every registered subcommand."""
    parser = _Parser(prog="vmlab", description="The Linux memory manager as an executable model.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"vmlab.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vmlab` console command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as err:
        sys.stderr.write(f"{err}\n")
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
