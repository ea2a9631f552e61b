"""A snapshot of live processes and memory cgroups as the OOM killer weighs them, for importing into the
model (`vmlab oom --what-if`): each process's counters as dump_tasks() prints them, and each memcg's
limit and usage. Only reads.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from vmlab.errors import InputError
from vmlab.host import memcg
from vmlab.kernel.oom_score import MmCounters
from vmlab.kernel.uapi import PAGE_SIZE


@dataclass(frozen=True)
class ProcSnap:
    """One process: the dump_tasks() columns (its counters as the model's MmCounters) and its memcg
    path (or "/")."""

    pid: int
    comm: str
    uid: int
    oom_score_adj: int
    counters: MmCounters
    memcg: str


@dataclass(frozen=True)
class MemcgSnap:
    """One memory cgroup: its path from the hierarchy root, limit and usage in pages."""

    path: str
    limit_pages: int
    usage_pages: int
    swappiness: int


@dataclass(frozen=True)
class Snapshot:
    """What --what-if imports: the processes (in scan order), the memcgs (pre-order), the machine."""

    procs: tuple[ProcSnap, ...]
    memcgs: tuple[MemcgSnap, ...]
    version: int
    memtotal_pages: int
    memavailable_pages: int


def _kb(status: dict[str, str], key: str) -> int:
    """A `Key:  N kB` line of /proc/PID/status in pages (0 if absent)."""
    return int(status.get(key, "0 kB").split()[0]) * 1024 // PAGE_SIZE


def _v1_memory_path(pid: int) -> str:
    """The process's cgroup in the v1 memory hierarchy (or the v2 one), from /proc/PID/cgroup."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    return next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), "/")


def read_proc(pid: int) -> ProcSnap:
    """One process's counters; a missing process is bad input naming the pid."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        status = {k: v.strip() for k, v in status.items()}
        with open(f"/proc/{pid}/oom_score_adj") as f:
            adj = int(f.read())
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().rstrip("\n")
        path = _v1_memory_path(pid)
    except (FileNotFoundError, ProcessLookupError):
        raise InputError(f"no such process: {pid}", "--grow") from None
    if "VmSize" not in status:
        raise InputError(f"process {pid} ({comm}) has no address space (a kernel thread?)", "--grow")
    counters = MmCounters(_kb(status, "VmSize"), _kb(status, "RssAnon"), _kb(status, "RssFile"),
                          _kb(status, "RssShmem"), _kb(status, "VmSwap"),
                          int(status.get("VmPTE", "0 kB").split()[0]) * 1024)
    return ProcSnap(pid, comm, int(status["Uid"].split()[0]), adj, counters, path)


def _meminfo() -> tuple[int, int]:
    """(MemTotal, MemAvailable) in pages."""
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f.read().splitlines())
    return (int(info["MemTotal"].split()[0]) * 1024 // PAGE_SIZE,
            int(info["MemAvailable"].split()[0]) * 1024 // PAGE_SIZE)


def snapshot_memcg(cgroup: str) -> Snapshot:
    """The memcg at directory `cgroup`, its descendants and their processes (scan order: pre-order,
    then pid order as cgroup.procs lists them in v1)."""
    dom = memcg.domain(cgroup, 0)
    procs: list[ProcSnap] = []
    cgs: list[MemcgSnap] = []
    for cg in dom.cgroups:
        rel = "/" + os.path.relpath(cg, dom.path).removeprefix(".").lstrip("/")
        path = dom.name.rstrip("/") + rel if rel != "/" else dom.name
        usage_file = "memory.usage_in_bytes" if dom.version == 1 else "memory.current"
        limit_file = "memory.limit_in_bytes" if dom.version == 1 else "memory.max"
        with open(os.path.join(cg, usage_file)) as f:
            usage = int(f.read()) // PAGE_SIZE
        with open(os.path.join(cg, limit_file)) as f:
            text = f.read().strip()
        limit = memcg.PAGE_COUNTER_MAX if text == "max" else int(text) // PAGE_SIZE
        limit = min(limit, memcg.PAGE_COUNTER_MAX)
        cgs.append(MemcgSnap(path, limit, usage, 60))
        for pid in memcg.procs(cg):
            try:
                procs.append(read_proc(pid))
            except InputError:
                continue  # exited while read
    total, free = _meminfo()
    return Snapshot(tuple(procs), tuple(cgs), dom.version, total, free)


def snapshot_all() -> Snapshot:
    """Every process with an address space, in pid order (for_each_process is fork order), for a
    global what-if; their memcgs are not imported (no limits)."""
    procs = []
    for name in sorted((n for n in os.listdir("/proc") if n.isdigit()), key=int):
        try:
            procs.append(read_proc(int(name)))
        except (InputError, PermissionError, OSError):
            continue  # kernel threads, processes that exited meanwhile
    total, avail = _meminfo()
    return Snapshot(tuple(dataclasses.replace(p, memcg="/") for p in procs), (), 1, total, avail)
