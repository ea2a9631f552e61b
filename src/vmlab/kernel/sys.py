"""kernel/sys.c: process groups (setpgid(2), getpgid(2)) and niceness (setpriority(2) of one process),
over the model's process table.

Sessions are modelled only as far as setpgid() reads them: each process has a session id `sid`
(inherited on fork; a daemon the model starts is the leader of its own session, as systemd's setsid()
makes it). Every process counts as having exec'd (PF_FORKNOEXEC clear) only if it did so in the model,
which tracks no such flag: a child is always movable by its parent (no -EACCES).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from vmlab.kernel.uapi import EACCES, EINVAL, EPERM, ESRCH

MIN_NICE, MAX_NICE = -20, 19


class SysTask(Protocol):
    """What these calls read and set of a process (vmlab.kernel.machine.Task)."""

    pid: int
    ppid: int
    uid: int
    pgid: int
    sid: int
    nice: int


def setpgid(tasks: Mapping[int, SysTask], current: SysTask, pid: int, pgid: int) -> int:
    """setpgid(pid, pgid) called by `current`: pid 0 is the caller, pgid 0 the target's own pid.
    -EINVAL for a negative pgid; -ESRCH if the target is neither the caller nor its child; -EPERM if
    the child is in another session, the target leads a session, or pgid names no group of the
    caller's session. Returns 0."""
    pid = pid or current.pid
    pgid = pgid or pid
    if pgid < 0:
        return -EINVAL
    p = tasks.get(pid)
    if p is None:
        return -ESRCH
    if p.ppid == current.pid:
        if p.sid != current.sid:
            return -EPERM
    elif p is not current:
        return -ESRCH
    if p.sid == p.pid:  # p->signal->leader
        return -EPERM
    if pgid != pid and not any(t.pgid == pgid and t.sid == current.sid for t in tasks.values()):
        return -EPERM
    p.pgid = pgid
    return 0


def getpgid(tasks: Mapping[int, SysTask], current: SysTask, pid: int) -> int:
    """getpgid(pid): the process group of `pid` (0: the caller), or -ESRCH."""
    p = tasks.get(pid) if pid else current
    return -ESRCH if p is None else p.pgid


def setpriority(current: SysTask, target: SysTask, niceval: int) -> int:
    """setpriority(PRIO_PROCESS, pid, niceval) -> set_one_prio(): the value is clamped to -20..19;
    -EPERM when a non-root caller sets another user's process, -EACCES when it lowers the niceness
    (can_nice() needs CAP_SYS_NICE or RLIMIT_NICE, 0 by default). Returns 0."""
    niceval = min(max(niceval, MIN_NICE), MAX_NICE)
    if current.uid != 0 and target.uid != current.uid:
        return -EPERM
    if niceval < target.nice and current.uid != 0:
        return -EACCES
    target.nice = niceval
    return 0
