"""When the kernel flushed its memcg statistics, seen through the memcg_flush_stats tracepoint.

A memcg's counts are kept per CPU and folded into the totals that lruvec_page_state() reads only by an
rstat flush: flush_memcg_stats_dwork flushes the whole tree every 2 s (memcg 1, the root, forced),
and a reader that needs exact numbers (memory.stat) flushes its own memcg when enough has changed.
Reclaim and the refault test read the totals as last flushed (memcontrol.py in the model), so a host
test whose outcome depends on them records the flushes in a tracefs instance of its own (its own
buffer and clock, leaving the global trace alone) and knows which of its steps each fell in.

Each __mem_cgroup_flush_stats() call is traced, with `force` and `needs_flush`; it flushed only when
one of them is set. The instance's clock is `mono`, the clock of time.monotonic_ns().
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
EVENT = "events/memcg/memcg_flush_stats"
#: The root memcg's cgroup id: the periodic worker's flushes are the root's, of the whole tree.
ROOT_ID = 1

_LINE = re.compile(r"\s(\d+)\.(\d{6}): memcg_flush_stats: memcg_id=(\d+) stats_updates=(-?\d+) "
                   r"force=(\d) needs_flush=(\d)")


@dataclass(frozen=True)
class Flush:
    """One traced __mem_cgroup_flush_stats() call."""

    time_ns: int  # CLOCK_MONOTONIC, to the microsecond
    memcg_id: int  # the cgroup id of the memcg flushed (its directory's inode number; 1 is the root)
    force: bool
    needs_flush: bool

    @property
    def flushed(self) -> bool:
        """Whether the call flushed (forced, or enough updates were pending)."""
        return self.force or self.needs_flush


def available() -> str | None:
    """None when the memcg_flush_stats tracepoint can be used here (mounting tracefs if it is not), or
    why not."""
    if not (TRACEFS / EVENT).exists():
        if os.geteuid() == 0 and not (TRACEFS / "instances").exists():
            mount = ["mount", "-t", "tracefs", "nodev", str(TRACEFS)]
            subprocess.run(mount, capture_output=True, check=False)
        if not (TRACEFS / EVENT).exists():
            return f"no {TRACEFS / EVENT} (tracefs not mounted, not root, or a kernel without it)"
    return None


def parse_trace(text: str) -> list[Flush]:
    """The memcg_flush_stats events of a trace buffer's text, in order."""
    return [Flush(int(sec) * 1_000_000_000 + int(usec) * 1_000, int(memcg), force == "1", needs == "1")
            for sec, usec, memcg, _updates, force, needs in _LINE.findall(text)]


class FlushTrace:
    """A tracefs instance recording memcg_flush_stats from its creation until close(). `name` should
    be the caller's own (a pid in it): an instance of that name left by a run that died is replaced."""

    def __init__(self, name: str) -> None:
        self.path = TRACEFS / "instances" / name
        if self.path.exists():
            self.path.rmdir()
        self.path.mkdir()
        try:
            (self.path / "trace_clock").write_text("mono")
            (self.path / EVENT / "enable").write_text("1")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> FlushTrace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flushes(self) -> list[Flush]:
        """The flushes traced so far."""
        return parse_trace((self.path / "trace").read_text())

    def wait_for_root_flush(self, timeout: float = 5.0) -> None:
        """Return once the kernel has flushed the whole tree (a flush of the root: the periodic worker,
        every 2 s) after this call began, so that every memcg's statistics are exact until they next
        change; TimeoutError after `timeout` seconds."""
        since = time.monotonic_ns()
        deadline = time.monotonic() + timeout
        while not any(f.memcg_id == ROOT_ID and f.flushed and f.time_ns >= since for f in self.flushes()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no flush of the root memcg's statistics in {timeout} s")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop tracing and remove the instance."""
        if self.path.exists():
            enable = self.path / EVENT / "enable"
            if enable.exists():
                enable.write_text("0")
            self.path.rmdir()


def cgroup_id(path: Path) -> int:
    """The cgroup id of a cgroup directory (what memcg_flush_stats reports as memcg_id)."""
    return path.stat().st_ino
