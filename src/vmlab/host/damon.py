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


@contextlib.contextmanager
def paused(root: Path = KDAMONDS) -> Iterator[list[str]]:
    """Every kdamond that is on is turned off for the duration and on again after, even on failure
    (a restart keeps its configuration, the sysfs tree, and begins monitoring afresh); yields their
    names. Where there is no DAMON or the state files cannot be written (not root), nothing is
    paused. Two users at once: the first to finish restarts the kdamond."""
    stopped: list[Path] = []
    try:
        for state in sorted(root.glob("*/state")):
            try:
                if _read(state) == "on":
                    state.write_text("off")
                    stopped.append(state)
            except OSError:
                continue
        yield [state.parent.name for state in stopped]
    finally:
        for state in stopped:
            with contextlib.suppress(OSError):
                state.write_text("on")
