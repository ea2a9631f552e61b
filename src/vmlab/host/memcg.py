"""A live memory cgroup as an OOM domain: its size as `mem_cgroup_get_max()` sees it, and its tasks in the
order `mem_cgroup_scan_tasks()` visits them (mm/memcontrol.c).

Works for cgroup v1 (a `cgroup` mount with the `memory` option) and cgroup v2 (a `cgroup2` mount whose
cgroup has the memory controller enabled). Only reads; never writes a cgroup file.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from vmlab.errors import InputError
from vmlab.kernel.uapi import PAGE_SIZE

#: PAGE_COUNTER_MAX on 64-bit: LONG_MAX / PAGE_SIZE pages, "unlimited".
PAGE_COUNTER_MAX = ((1 << 63) - 1) // PAGE_SIZE

#: Where to report the problem in a bad `--cgroup` argument.
OPTION = "--cgroup"


@dataclass(frozen=True)
class Mount:
    """One cgroup mount from /proc/self/mountinfo."""

    point: str  # mount point, e.g. /sys/fs/cgroup/memory
    version: int  # 1 or 2
    options: frozenset[str]  # super options (v1 controllers: "memory", "cpu", ...)


@dataclass(frozen=True)
class MemcgDomain:
    """A memcg OOM domain: `oc->totalpages` and the cgroups `for_each_mem_cgroup_tree` walks, pre-order."""

    path: str  # the cgroup directory given
    name: str  # its path relative to the hierarchy root, as the kernel prints it (oom_memcg=...)
    version: int
    limit_pages: int  # memory.max / memory.limit_in_bytes, in pages
    swap_pages: int  # swap headroom mem_cgroup_get_max() adds (0 if swappiness is 0)
    totalpages: int  # mem_cgroup_get_max(memcg) ?: 1
    cgroups: tuple[str, ...]  # the cgroup and all descendants, pre-order, children in creation order


def parse_mountinfo(text: str) -> tuple[Mount, ...]:
    """The cgroup and cgroup2 mounts listed in a /proc/self/mountinfo text."""
    mounts = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fstype, _source, sopts = [*post.split(" "), "", ""][:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        point = pre.split(" ")[4].replace("\\040", " ")
        mounts.append(Mount(point, 2 if fstype == "cgroup2" else 1, frozenset(sopts.split(","))))
    return tuple(mounts)


def _read_text(path: str) -> str:
    """A cgroup file's text; a missing or unreadable file is bad user input (the cgroup path given)."""
    try:
        with open(path) as f:
            return f.read()
    except PermissionError:
        raise InputError(f"permission denied reading {path}", OPTION) from None
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENODEV):
            raise InputError(f"cgroup vanished while being read: {path}", OPTION) from None
        raise InputError(f"cannot read {path}: {err.strerror}", OPTION) from None


def _pages(text: str) -> int:
    """A cgroup limit (bytes or "max") in pages, as the page counter holds it."""
    text = text.strip()
    return PAGE_COUNTER_MAX if text == "max" else min(int(text) // PAGE_SIZE, PAGE_COUNTER_MAX)


def _find_mount(path: str, mounts: tuple[Mount, ...]) -> Mount:
    """The cgroup mount `path` lies in (longest matching mount point)."""
    best: Mount | None = None
    for m in mounts:
        if (path == m.point or path.startswith(m.point.rstrip("/") + "/")) and (
            best is None or len(m.point) > len(best.point)
        ):
            best = m
    if best is None:
        raise InputError(f"not inside a cgroup file system: {path}", OPTION)
    return best


def descendants(path: str) -> tuple[str, ...]:
    """`path` and every cgroup below it, pre-order; siblings in creation order (kernfs inode numbers grow)."""
    out = [path]
    try:
        children = sorted(
            (e for e in os.scandir(path) if e.is_dir(follow_symlinks=False)), key=lambda e: e.inode()
        )
    except FileNotFoundError:
        return ()
    for child in children:
        out.extend(descendants(child.path))
    return tuple(out)


def get_max(limit_pages: int, swappiness: int, memsw_pages: int | None, swap_max_pages: int,
            total_swap_pages: int) -> tuple[int, int]:
    """mem_cgroup_get_max(): (swap headroom added, totalpages) for a memcg limit of `limit_pages`.

    v1 with memsw accounting adds min(memsw.max - max, total swap); otherwise min(swap.max, total swap);
    nothing when swappiness is 0. The caller's `?: 1` (constrained_alloc) is applied too.
    """
    swap = 0
    if swappiness:
        headroom = memsw_pages - limit_pages if memsw_pages is not None else swap_max_pages
        swap = min(max(headroom, 0), total_swap_pages)
    return swap, (limit_pages + swap) or 1


def domain(path: str, total_swap_pages: int, mountinfo: str | None = None) -> MemcgDomain:
    """Resolve a cgroup directory into its OOM domain; bad paths raise InputError naming `--cgroup`."""
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise InputError(f"no such cgroup directory: {path}", OPTION)
    if mountinfo is None:
        mountinfo = _read_text("/proc/self/mountinfo")
    mount = _find_mount(real, parse_mountinfo(mountinfo))
    name = "/" + os.path.relpath(real, mount.point).removeprefix(".").lstrip("/")
    if mount.version == 1:
        if "memory" not in mount.options:
            raise InputError(f"cgroup has no memory controller (v1 hierarchy {mount.point}): {path}", OPTION)
        limit = _pages(_read_text(os.path.join(real, "memory.limit_in_bytes")))
        swappiness = int(_read_text(os.path.join(real, "memory.swappiness")))
        memsw_file = os.path.join(real, "memory.memsw.limit_in_bytes")
        memsw = _pages(_read_text(memsw_file)) if os.path.exists(memsw_file) else None
        swap_max = PAGE_COUNTER_MAX
    else:
        max_file = os.path.join(real, "memory.max")
        if os.path.exists(max_file):
            limit = _pages(_read_text(max_file))
        elif real == mount.point.rstrip("/") and "memory" in _read_text(
            os.path.join(real, "cgroup.controllers")
        ).split():
            limit = PAGE_COUNTER_MAX  # the v2 root has no memory.max: unlimited
        else:
            raise InputError(f"cgroup has no memory controller enabled (cgroup v2): {path}", OPTION)
        swappiness = int(_read_text("/proc/sys/vm/swappiness"))  # v2 has no per-cgroup swappiness
        memsw = None
        swap_file = os.path.join(real, "memory.swap.max")
        swap_max = _pages(_read_text(swap_file)) if os.path.exists(swap_file) else PAGE_COUNTER_MAX
    swap, total = get_max(limit, swappiness, memsw, swap_max, total_swap_pages)
    return MemcgDomain(real, name, mount.version, limit, swap, total, descendants(real))


def procs(cgroup: str) -> tuple[int, ...]:
    """The process ids in one cgroup's cgroup.procs (v1 sorts them; v2 lists them in iteration order).

    A cgroup removed meanwhile has none.
    """
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), "rb") as f:
            return tuple(int(x) for x in f.read().split())
    except FileNotFoundError:
        return ()
    except PermissionError:
        raise InputError(f"permission denied reading {cgroup}/cgroup.procs", OPTION) from None
