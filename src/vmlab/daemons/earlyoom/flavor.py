"""Which earlyoom release is modelled: the rules and message formats that changed between v1.7 (Debian
bookworm's package) and v1.9.0 (master, 2026-07), read from the two tags' main.c, kill.c, meminfo.c."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flavor:
    """One earlyoom release."""

    version: str
    #: v1.8+: percentages of "user mem total" = MemAvailable + AnonPages; v1.7: of MemTotal.
    user_mem_total: bool
    #: v1.8+: pid <= 2 and ppid == 2 (kthreads) are skipped, rss from /proc/PID/stat; v1.7: pid <= 1
    #: and VmRSS == 0 (read after the score comparison) are skipped.
    skips_kthreadd: bool
    #: v1.8+: the kill line shows oom_score, oom_score_adj and cmdline; v1.7: "badness".
    long_kill_line: bool
    #: v1.8+: pidfd_open + process_mrelease after each kill; a "process %d did not exit" line.
    mrelease: bool
    #: master: startup_selftests() (the signal-0 kill, the -N/-P checks) before the limit lines; v1.7
    #: and the v1.9.0 tag print the limits first.
    selftest_first: bool
    #: v1.8+: hooks run through notify_spawn_subprocess() (EARLYOOM_CMDLINE too, -P waits 200 ms for
    #: its program); v1.7: a bare fork() + execl(), PID/UID/NAME only.
    spawn_subprocess: bool
    #: Long options this release knows (v1.7 lacks --ignore, --ignore-root-user, --sort-by-rss, ...).
    long_options: tuple[str, ...]
    short_options: str


V1_9 = Flavor("v1.9.0", True, True, True, True, True, True,
              ("prefer", "avoid", "ignore", "dryrun", "ignore-root-user", "sort-by-rss", "syslog",
               "kernel-oom", "help", "debug"),
              "m:s:M:S:kingN:P:dvr:ph")
V1_7 = Flavor("v1.7", False, False, False, False, False, False, ("prefer", "avoid", "dryrun", "help"),
              "m:s:M:S:kingN:dvr:ph")
FLAVORS = {"1.9": V1_9, "1.7": V1_7}
