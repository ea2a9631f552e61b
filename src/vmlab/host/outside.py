"""What acts on the host kernel's memory from outside a scenario, named in the host transcript's notes
(HostBackend.notes): a running DAMON scheme (vmlab.host.damon) and a running user-space OOM killer,
which may kill a scenario's process before the kernel's OOM killer would (see docs/oom.md)."""

from __future__ import annotations

from pathlib import Path

from vmlab.host import damon

PROC = Path("/proc")

#: The comm of each user-space OOM killer looked for, and what it is.
OOM_DAEMONS = {
    "earlyoom": "earlyoom",
    "systemd-oomd": "systemd-oomd",
    "oomd": "oomd",
    "nohang": "nohang",
    "low-memory-mo": "low-memory-monitor",  # comm is cut at 15 characters
}


def oom_daemons(proc: Path = PROC) -> list[tuple[int, str]]:
    """(pid, what it is) of each running user-space OOM killer, found by its comm; ascending pid."""
    found = []
    for entry in sorted((p for p in proc.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm in OOM_DAEMONS:
            found.append((int(entry.name), OOM_DAEMONS[comm]))
    return found


def notes(proc: Path = PROC, kdamonds: Path = damon.KDAMONDS) -> list[str]:
    """One line per outside actor running now: each DAMON scheme, each user-space OOM killer."""
    lines = [f"{line}: DAMON acts on pages from outside the scenario"
             for line in damon.running_schemes(kdamonds)]
    lines += [f"{what} runs (pid {pid}): it may kill a process before the kernel's OOM killer would"
              for pid, what in oom_daemons(proc)]
    return lines
