"""earlyoom's kill.c: the victim scan (is_larger(), find_largest_process()) over a process table, and
the lines kill_process() and kill_wait() print."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vmlab.daemons.earlyoom.flavor import Flavor
from vmlab.daemons.earlyoom.main import SIGNAMES, Options

OOM_SCORE_PREFER, OOM_SCORE_AVOID = 300, -300
VMRSS_PREFER, VMRSS_AVOID = 3145728, -3145728
OOM_SCORE_ADJ_MIN = -1000
PROCINFO_FIELD_NOT_SET = -9999
CMDLINE_MAX = 255  # char cmdline[256]


@dataclass(frozen=True)
class ProcInfo:
    """What earlyoom reads of one process: /proc/PID/stat (ppid, rss), status or the directory's owner
    (uid), comm, cmdline (NULs as spaces), oom_score and oom_score_adj. `rss_kib` is stat's rss times
    the page size (v1.7 reads status's VmRSS: the same sum)."""

    pid: int
    ppid: int
    uid: int
    comm: str
    cmdline: str
    oom_score: int
    oom_score_adj: int
    rss_kib: int


@dataclass(frozen=True)
class Victim:
    """procinfo_t of the chosen process: its oom_score (with --prefer/--avoid added) and VmRSS as
    compared; `proc` as read."""

    proc: ProcInfo
    oom_score: int
    rss_kib: int


def _adjusted(args: Options, p: ProcInfo) -> tuple[int, int] | None:
    """The oom_score and VmRSS is_larger() compares (prefer/avoid added), or None if --ignore matches."""
    score, rss = p.oom_score, p.rss_kib
    for regex, d_score, d_rss in ((args.prefer, OOM_SCORE_PREFER, VMRSS_PREFER),
                                  (args.avoid, OOM_SCORE_AVOID, VMRSS_AVOID)):
        if regex is not None and regex.search(p.comm):
            if args.sort_by_rss:
                rss += d_rss
            else:
                score += d_score
    if args.ignore is not None and args.ignore.search(p.comm):
        return None
    return score, rss


def _beats(args: Options, victim: Victim | None, score: int, rss: int, empty: tuple[int, int]) -> bool:
    """The comparison at the end of is_larger(): the larger oom_score, ties to the larger VmRSS (with
    --sort-by-rss the other way round; a zombie main thread, rss 0, falls back to oom_score)."""
    v_score, v_rss = (victim.oom_score, victim.rss_kib) if victim is not None else empty
    if args.sort_by_rss and rss > 0 and v_rss > 0:
        return rss > v_rss or (rss == v_rss and score > v_score)
    return score > v_score or (score == v_score and rss > v_rss)


def is_larger(args: Options, victim: Victim | None, p: ProcInfo, flavor: Flavor) -> Victim | None:
    """is_larger(): `p` as the new victim if it beats `victim`, else None. v1.8+: pid <= 2, kthreads
    (ppid 2), root's processes under --ignore-root-user and --ignore matches are skipped; v1.7: pid <= 1
    and processes with no VmRSS. Last of all (a lazy read), oom_score_adj -1000 is skipped."""
    if flavor.skips_kthreadd:
        if p.pid <= 2 or (args.ignore_root_user and p.uid == 0) or p.ppid == 2:
            return None
    elif p.pid <= 1:
        return None
    adjusted = _adjusted(args, p)
    if adjusted is None:
        return None
    score, rss = adjusted
    if not flavor.skips_kthreadd and p.rss_kib == 0:
        return None
    empty = (PROCINFO_FIELD_NOT_SET,) * 2 if flavor.skips_kthreadd else (0, 0)  # v1.7: a zeroed struct
    if not _beats(args, victim, score, rss, empty) or p.oom_score_adj == OOM_SCORE_ADJ_MIN:
        return None
    return Victim(p, score, rss)


def find_largest_process(args: Options, procs: Iterable[ProcInfo], self_pid: int, flavor: Flavor,
                         warn: Callable[[str], None]) -> Victim | None:
    """find_largest_process(): scan the processes in /proc's order (ascending pid) and keep the
    largest; None when there is none, or when it is earlyoom itself (hidepid)."""
    victim: Victim | None = None
    for p in procs:
        victim = is_larger(args, victim, p, flavor) or victim
    if victim is not None and victim.proc.pid == self_pid:
        warn(f"find_largest_process: selected myself (pid {self_pid}). Do you use hidpid? See "
             "https://github.com/rfjakob/earlyoom/wiki/proc-hidepid")
        return None
    return victim


def sending_line(sig: int, v: Victim, flavor: Flavor) -> str:
    """kill_process()'s `sending SIGTERM to process ...` line."""
    p = v.proc
    head = f"sending {SIGNAMES.get(sig, '?')} to process {p.pid} uid {p.uid} \"{p.comm}\": "
    if not flavor.long_kill_line:
        return head + f"badness {v.oom_score}, VmRSS {p.rss_kib // 1024} MiB"
    return head + (f"oom_score {v.oom_score}, oom_score_adj {p.oom_score_adj}, "
                   f"VmRSS {v.rss_kib // 1024} MiB, cmdline \"{p.cmdline[:CMDLINE_MAX]}\"")


def seconds(elapsed_ns: int, tick: int, flavor: Flavor) -> str:
    """The `%.3f` seconds of kill_wait()'s lines (v1.7: `%.1f` of tick * 100 ms)."""
    if not flavor.mrelease:
        return f"{tick * 100 / 1000:.1f}"
    return f"{elapsed_ns / 1e9:.3f}"


DBUS_SEND = "/usr/bin/dbus-send"
#: notify_process_killed() in --dryrun runs its programs at most once per second of CLOCK_MONOTONIC.
NOTIFY_RATELIMIT_S = 1


def hook_env(v: Victim, flavor: Flavor) -> dict[str, str]:
    """The environment notify_ext() (-N) and the -P pre-hook add for the victim: EARLYOOM_PID, _UID,
    _NAME (comm), and since v1.8 EARLYOOM_CMDLINE (NULs as spaces, at most 255 bytes)."""
    p = v.proc
    env = {"EARLYOOM_PID": str(p.pid), "EARLYOOM_UID": str(p.uid), "EARLYOOM_NAME": p.comm}
    if flavor.spawn_subprocess:
        env["EARLYOOM_CMDLINE"] = p.cmdline[:CMDLINE_MAX]
    return env


def dbus_argv(body: str) -> tuple[str, ...]:
    """notify_dbus(): the dbus-send command line of a notification (`-n`)."""
    return ("dbus-send", "--system", "/", "net.nuetzlich.SystemNotifications.Notify", "string:earlyoom",
            f"string:{body}")
