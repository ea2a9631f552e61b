"""The live process table as a user-space OOM killer reads it from /proc: each process's ppid and rss
(stat), owner, comm, cmdline, oom_score and oom_score_adj, as vmlab.daemons.earlyoom's ProcInfo.
Only reads; processes that vanish or refuse (ESRCH, EACCES) are left out."""

from __future__ import annotations

import os

from vmlab.daemons.earlyoom.kill import ProcInfo

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def read_procinfo(pid: int) -> ProcInfo | None:
    """One process, or None if it is gone or unreadable."""
    base = f"/proc/{pid}"
    try:
        with open(f"{base}/stat") as f:
            stat_text = f.read()
        with open(f"{base}/comm", "rb") as f:
            comm = f.read().decode(errors="replace").rstrip("\n")
        with open(f"{base}/cmdline", "rb") as f:
            cmdline = f.read(255).replace(b"\0", b" ").decode(errors="replace").rstrip(" ")
        with open(f"{base}/oom_score") as f:
            score = int(f.read())
        with open(f"{base}/oom_score_adj") as f:
            adj = int(f.read())
        uid = os.stat(base).st_uid
    except (OSError, ValueError):
        return None
    fields = stat_text[stat_text.rindex(")") + 2:].split()
    ppid, rss_pages = int(fields[1]), int(fields[21])
    return ProcInfo(pid, ppid, uid, comm, cmdline, score, adj, rss_pages * PAGE_KIB)


def read_proctable() -> list[ProcInfo]:
    """Every readable process, ascending pid (readdir order of /proc)."""
    pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    return [p for p in map(read_procinfo, pids) if p is not None]
