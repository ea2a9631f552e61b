"""DAMON on the host: the kdamonds of its sysfs interface (mm/damon/sysfs.c), which act on pages from
outside anything a scenario or a test controls, and a way to pause them.

A kdamond monitors an address space (`vaddr`, `fvaddr`) or physical memory (`paddr`) and applies
DAMOS schemes to the regions that match an access pattern: `pageout` reclaims their pages whatever
their memcg and whatever the LRU says (reclaim_pages), `lru_prio`/`lru_deprio` move them between the
lists, `migrate_*` moves them to another node. None of it is counted in /proc/vmstat's reclaim
counters. Its sampling also clears the accessed bits of mapped pages (damon_ptep_mkold), which the
kernel would otherwise turn into folio_mark_accessed at munmap. Some hosts run one from boot to
shrink a guest's page cache; a scenario's page-cache residency or LRU state there can drift from the
model's for reasons in neither.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

#: The sysfs interface's kdamonds directory.
KDAMONDS = Path("/sys/kernel/mm/damon/admin/kdamonds")


def _read(path: Path) -> str:
    """A sysfs attribute's value, stripped; '' when it cannot be read."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def running_schemes(root: Path = KDAMONDS) -> list[str]:
    """One line per DAMOS scheme of a kdamond that is on: the kdamond, its operations set and target
    ranges, and the scheme's action, e.g. `kdamond 0 (paddr 0x100000000-0x1e0000000): pageout`.
    Empty where there is no DAMON or nothing runs."""
    lines = []
    for state in sorted(root.glob("*/state")):
        if _read(state) != "on":
            continue
        for context in sorted(state.parent.glob("contexts/[0-9]*")):
            ranges = ", ".join(f"{int(_read(r / 'start')):#x}-{int(_read(r / 'end')):#x}"
                               for r in sorted(context.glob("targets/*/regions/[0-9]*")))
            where = " ".join(filter(None, (_read(context / "operations"), ranges)))
            for scheme in sorted(context.glob("schemes/[0-9]*")):
                lines.append(f"kdamond {state.parent.name} ({where}): {_read(scheme / 'action')}")
    return lines


#: Where the users of paused() register (one file per process, named by its pid) and record which
#: kdamonds the first of them stopped, so that the last one to leave restarts them.
HOLDERS = Path("/run/vmlab-damon-paused")


@contextlib.contextmanager
def paused(root: Path = KDAMONDS, holders: Path = HOLDERS) -> Iterator[list[str]]:
    """Every kdamond that is on is turned off for the duration and on again after, even on failure
    (a restart keeps its configuration, the sysfs tree, and begins monitoring afresh); yields the
    names of the kdamonds off. Several processes may hold the pause at once (test sessions side by
    side): the first stops the kdamonds, the last to leave restarts them; a holder that died without
    leaving is forgotten, and the kdamonds it left off are restarted by the next last one. Not for
    nesting in one process. Where there is no DAMON or nothing can be written (not root), nothing is
    paused."""
    try:
        holders.mkdir(parents=True, exist_ok=True)
        lock = os.open(holders / "lock", os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        yield []
        return
    me = holders / str(os.getpid())
    try:
        with _locked(lock):
            if not _live_holders(holders):  # the first: stop them (adding any a dead holder left off)
                stopped = {state.parent.name for state in root.glob("*/state") if _stop(state)}
                stopped |= set(_read(holders / "stopped").split())
                (holders / "stopped").write_text("".join(f"{name}\n" for name in sorted(stopped)))
            me.touch()
        yield _read(holders / "stopped").split()
    finally:
        with _locked(lock):
            me.unlink(missing_ok=True)
            if not _live_holders(holders):
                for name in _read(holders / "stopped").split():
                    with contextlib.suppress(OSError):
                        (root / name / "state").write_text("on")
                (holders / "stopped").unlink(missing_ok=True)
        os.close(lock)


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    """flock() of `fd`, exclusive, for the duration."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _stop(state: Path) -> bool:
    """Turn off the kdamond of `state` if it is on; whether it was stopped."""
    try:
        if _read(state) != "on":
            return False
        state.write_text("off")
    except OSError:
        return False
    return True


def _live_holders(holders: Path) -> list[int]:
    """The pids registered in `holders` whose process still runs; the files of dead ones go."""
    live = []
    for entry in holders.iterdir():
        if not entry.name.isdigit():
            continue
        if Path(f"/proc/{entry.name}").exists():
            live.append(int(entry.name))
        else:
            entry.unlink(missing_ok=True)
    return live
