"""Checking an earlyoom command line before anything runs (the scenario language's `earlyoom` step)."""

from __future__ import annotations

from vmlab.daemons.earlyoom.flavor import V1_9, Flavor
from vmlab.daemons.earlyoom.main import UsageError, parse_args
from vmlab.daemons.earlyoom.meminfo import MemInfo


def check_argv(argv: list[str], ram: int, flavor: Flavor = V1_9) -> tuple[str, int] | None:
    """None if earlyoom accepts `argv` on a machine with `ram` bytes and no swap, else its message on
    one line (with "earlyoom: " in front where it has none) and the index of the word at fault."""
    kib = ram >> 10
    m = MemInfo(kib, 0, 0, 0, kib, kib, 100.0, 0.0)
    try:
        parse_args(argv, m, flavor)
    except UsageError as err:
        text = err.message.splitlines()[0]
        return (text if text.startswith("earlyoom: ") else f"earlyoom: {text}"), err.arg
    return None
