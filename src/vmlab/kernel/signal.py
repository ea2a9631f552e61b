"""Signals sent from user space, after kernel/signal.c (kill(2): kill_pid_info -> send_signal ->
complete_signal) and mm/oom_kill.c's process_mrelease(2): what a user-space OOM killer does to its
victim.

The model knows one disposition besides the default: SIG_IGN (`sigaction(sig, SIG_IGN)`); a handler
is not modelled. A signal whose default action terminates the process makes the whole group exit at
once, as complete_signal() does: SIGNAL_GROUP_EXIT is set and SIGKILL queued to every thread, so
fatal_signal_pending() holds from then on (the OOM killer's `sigkill`). The task exits when it next
runs: at once if it is the one running, else VICTIM_EXIT_NS later (vmlab.kernel.oom_kill).

kill(2)'s pid argument is read as kill_something_info() reads it: > 0 one process, 0 the sender's
process group, -1 every process but init and the sender, < -1 the process group -pid. Permission is
kill_ok_by_cred() with one uid per process (real = effective = saved): a sender may signal a process of
its own uid, root (CAP_KILL) any.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from vmlab.kernel.oom_kill import MMF_OOM_SKIP, OomKiller
from vmlab.kernel.uapi import EINVAL, EPERM, ESRCH

if TYPE_CHECKING:
    from vmlab.kernel.mm_types import MmStruct

#: Signals by number (x86) and the default action of each the model knows: "term", "core" or "ign".
SIGNALS: dict[str, tuple[int, str]] = {
    "SIGHUP": (1, "term"), "SIGINT": (2, "term"), "SIGQUIT": (3, "core"), "SIGABRT": (6, "core"),
    "SIGKILL": (9, "term"), "SIGUSR1": (10, "term"), "SIGSEGV": (11, "core"), "SIGUSR2": (12, "term"),
    "SIGPIPE": (13, "term"), "SIGALRM": (14, "term"), "SIGTERM": (15, "term"), "SIGCHLD": (17, "ign"),
    "SIGWINCH": (28, "ign"),
}
BY_NUMBER = {num: name for name, (num, _action) in SIGNALS.items()}
UNBLOCKABLE = frozenset({"SIGKILL", "SIGSTOP"})


class SignalTask(Protocol):
    """What signal delivery reads and sets of a process (vmlab.kernel.machine.Task)."""

    pid: int
    mm: MmStruct
    sigkill: bool
    exit_signal: str
    sig_ignored: set[str]
    uid: int
    pgid: int


def sig_fatal(task: SignalTask, sig: str) -> bool:
    """sig_fatal(): the signal's action is the default one and that default ends the process."""
    return sig == "SIGKILL" or (sig not in task.sig_ignored and SIGNALS[sig][1] != "ign")


def send_signal(task: SignalTask, sig: str, oom: OomKiller) -> int:
    """kill(task, sig) by a privileged sender: an ignored (or default-ignored) signal is dropped; a
    fatal one starts the group exit (the death is reported as `sig`). Signal 0 only checks. Returns 0."""
    if sig == "0" or not sig_fatal(task, sig) or task.sigkill:
        return 0
    task.exit_signal = sig
    oom.send_sigkill(task)  # complete_signal(): SIGNAL_GROUP_EXIT, SIGKILL to every thread, wake up
    return 0


def kill_ok_by_cred(sender: SignalTask | None, task: SignalTask) -> bool:
    """kill_ok_by_cred(): the sender's uid is the target's, or the sender has CAP_KILL (root; None is
    root outside the model, the harness)."""
    return sender is None or sender.uid == 0 or sender.uid == task.uid


def group_send_sig_info(task: SignalTask, sig: str, sender: SignalTask | None, oom: OomKiller) -> int:
    """group_send_sig_info(): check_kill_permission() (-EPERM), then send_signal() (signal 0 only
    checks)."""
    if not kill_ok_by_cred(sender, task):
        return -EPERM
    return send_signal(task, sig, oom)


def kill_pgrp_info(tasks: Mapping[int, SignalTask], pgid: int, sig: str, sender: SignalTask | None,
                   oom: OomKiller) -> int:
    """__kill_pgrp_info(): signal every member of group `pgid` (ascending pid); 0 once any send
    succeeded, else the last error, -ESRCH for an empty (or unknown) group."""
    ret = -ESRCH
    for pid in sorted(tasks):
        task = tasks.get(pid)
        if task is not None and task.pgid == pgid:
            err = group_send_sig_info(task, sig, sender, oom)
            if ret:
                ret = err
    return ret


def kill_something_info(tasks: Mapping[int, SignalTask], pid: int, sig: str, sender: SignalTask | None,
                        oom: OomKiller) -> int:
    """kill(2)'s target: pid > 0 that process (-ESRCH if none), 0 the sender's own group, -1 every
    process with pid > 1 except the sender (-ESRCH if there is none; an -EPERM is not reported),
    else the group -pid."""
    if pid > 0:
        task = tasks.get(pid)
        return -ESRCH if task is None else group_send_sig_info(task, sig, sender, oom)
    if pid != -1:
        group = -pid if pid else (sender.pgid if sender is not None else 0)
        return kill_pgrp_info(tasks, group, sig, sender, oom) if group else -ESRCH
    retval, count = 0, 0
    for other in [tasks[p] for p in sorted(tasks)]:
        if other.pid > 1 and other is not sender:
            err = group_send_sig_info(other, sig, sender, oom)
            count += 1
            if err != -EPERM:
                retval = err
    return retval if count else -ESRCH


def set_ignored(task: SignalTask, sig: str) -> int:
    """sigaction(sig, {SIG_IGN}): -EINVAL for SIGKILL and SIGSTOP."""
    if sig in UNBLOCKABLE or sig not in SIGNALS:
        return -EINVAL
    task.sig_ignored.add(sig)
    return 0


def process_mrelease(task: SignalTask, oom: OomKiller, running: bool) -> int:
    """process_mrelease(pidfd): reap a dying process's memory now (task_will_free_mem()); -EINVAL if it
    is not dying and its mm was not already reaped. The mm of the task that is running at this moment
    is left to its own exit, which comes before it runs user code again."""
    if not oom.task_will_free_mem(task):  # type: ignore[arg-type]
        return 0 if task.mm.mmf & MMF_OOM_SKIP else -EINVAL
    if not running:
        oom.reap_task_mm(task.mm)
        task.mm.mmf |= MMF_OOM_SKIP
    return 0
