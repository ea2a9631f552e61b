"""The memory cgroups a scenario makes on the running kernel (cgroup v1), kept apart from every other
cgroup of the machine and removed after the run.

A scenario's `memcg /lecture 64M` becomes V1_MEMORY/vmlab-PID-ID/lecture here (PID the vmlab process,
ID the tree object's), so two runs, or a run and the machine's own services, never share a cgroup;
`join` writes the process into it, `show memcg` reads its files as the model prints them
(MemCgroup.v1_files). close() moves every task left to the root cgroup and removes the tree deepest
first, also after a failed run.

A memory hog may run on the host only inside one of these cgroups with a limit (`confining_limit`):
the kernel's memcg OOM killer then ends it, as it does in the model, and the machine keeps its memory.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from vmlab.host.memcg_v1 import V1_MEMORY, available, remove_cgroup

#: The files of `show memcg`, in the model's order (MemCgroup.v1_files): counters, then oom_control
#: and memory.stat line by line.
COUNTER_FILES = tuple(f"{prefix}.{name}" for prefix in ("memory", "memory.memsw", "memory.kmem")
                      for name in ("usage_in_bytes", "max_usage_in_bytes", "limit_in_bytes", "failcnt")
                      if (prefix, name) != ("memory.kmem", "limit_in_bytes"))
#: A scenario's memcg file name -> the v1 control file it writes (the value as written).
WRITABLE = {"limit_in_bytes": "memory.limit_in_bytes", "memsw.limit_in_bytes": "memory.memsw.limit_in_bytes",
            "swappiness": "memory.swappiness", "oom_kill_disable": "memory.oom_control"}
#: No limit: what memory.limit_in_bytes reads then (PAGE_COUNTER_MAX pages, in bytes, page-aligned).
UNLIMITED = 0x7FFFFFFFFFFFF000


class MemcgTree:
    """The cgroups of one run, made on demand under a directory of their own (see the module text)."""

    def __init__(self) -> None:
        self.base = V1_MEMORY / f"vmlab-{os.getpid()}-{id(self):x}"
        #: The cgroups made, by scenario path, parents first.
        self.made: list[str] = []

    def create(self, path: str, limit: int | None) -> int:
        """mkdir the cgroup at scenario `path` (and its parents) and write memory.limit_in_bytes
        (bytes; None: leave it unlimited); 0 or -errno (EPERM and the like when the host has no v1
        memory controller we may use)."""
        reason = available()
        if reason:
            return -errno.EPERM
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            return -errno.EINVAL
        try:
            self.base.mkdir(exist_ok=True)
            for i in range(1, len(parts) + 1):
                sub = "/" + "/".join(parts[:i])
                if sub not in self.made:
                    (self.base / sub[1:]).mkdir()
                    self.made.append(sub)
        except OSError as err:
            return -(err.errno or errno.EIO)
        return 0 if limit is None else self.set(path, "limit_in_bytes", limit)

    def set(self, path: str, name: str, value: int) -> int:
        """Write one of the WRITABLE files of the cgroup at `path`; 0 or -errno (-EINVAL for a file
        the host backend does not write)."""
        directory = self._dir(path)
        if directory is None:
            return -errno.ENOENT
        if name not in WRITABLE:
            return -errno.EINVAL
        try:
            (directory / WRITABLE[name]).write_text(str(value))
        except OSError as err:
            return -(err.errno or errno.EIO)
        return 0

    def attach(self, pid: int, path: str) -> int:
        """echo PID > cgroup.procs of the cgroup at `path` (/: the machine's root cgroup); 0 or -errno."""
        directory = self._dir(path, root=True)
        if directory is None:
            return -errno.ENOENT
        try:
            (directory / "cgroup.procs").write_text(str(pid))
        except OSError as err:
            return -(err.errno or errno.EIO)
        return 0

    def files(self, path: str) -> str:
        """`grep . FILE...` of the cgroup's counters, memory.oom_control and memory.stat, in the model's
        order (MemCgroup.v1_files), of the cgroup at `path` (/: the machine's root cgroup); KeyError
        for a cgroup this tree did not make."""
        directory = self._dir(path, root=True)
        if directory is None:
            raise KeyError(f"memcg {path}")
        out = [f"{name}:{(directory / name).read_text().strip()}" for name in COUNTER_FILES]
        for name in ("memory.oom_control", "memory.stat"):
            out += [f"{name}:{line}" for line in (directory / name).read_text().splitlines()]
        return "\n".join(out) + "\n"

    def confining_limit(self, pid: int) -> int | None:
        """The lowest memory.limit_in_bytes on the way from process `pid`'s memory cgroup up to this
        tree's base, when that cgroup is one of this tree's and some limit is set; else None."""
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return None
        rel = next((line.split(":", 2)[2] for line in lines if line.split(":", 2)[1:2] == ["memory"]), None)
        prefix = "/" + self.base.name
        if rel is None or not (rel + "/").startswith(prefix + "/"):
            return None
        path = rel[len(prefix):]
        limits = []
        while path not in ("", "/"):
            directory = self._dir(path)
            if directory is not None:
                limits.append(int((directory / "memory.limit_in_bytes").read_text()))
            path = path.rsplit("/", 1)[0]
        lowest = min(limits, default=UNLIMITED)
        return lowest if lowest < UNLIMITED else None

    def close(self) -> None:
        """Move every task left in the tree to the root cgroup and remove the tree, deepest first
        (retried while tasks are still leaving). Idempotent."""
        if not self.base.exists():
            return
        for path in sorted(self.made, key=lambda p: p.count("/"), reverse=True):
            remove_cgroup(self.base / path[1:])
        remove_cgroup(self.base)
        self.made.clear()

    def _dir(self, path: str, root: bool = False) -> Path | None:
        """The directory of the cgroup at scenario `path`, when this tree made it; with `root`, / is
        the machine's root cgroup."""
        norm = "/" + "/".join(p for p in path.split("/") if p)
        if root and norm == "/":
            return V1_MEMORY
        return self.base / norm[1:] if norm in self.made else None

