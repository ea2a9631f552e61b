"""earlyoom's poll_loop() and kill_wait() as a daemon on a simulated clock: each nanosleep() of the C
program is a timer (`System.at`), so the daemon runs between the model's own events, deterministically.

The daemon sees its machine through `System` only: the text of /proc/meminfo, the process table as
/proc shows it, kill(2), process_mrelease(2) and the clock. Where the model differs from the program:
- reading /proc takes no simulated time (the C program's 2.5 ms victim scan is instantaneous here);
- the pidfd number in the process_mrelease lines is 4, the first free descriptor of the real daemon
  (0-2 and its static /proc/meminfo FILE);
- the programs earlyoom starts (-n's dbus-send, the -N script, the -P pre-hook) are not run: each is
  recorded in `spawns` and printed as an "exec" line (`Output`) with its argv and the environment it
  would get; it is taken to exit at once with status 0 (so -P's 200 ms wait ends at once), and the
  model has no such files: the -N/-P executability check passes (the absolute-path check is modelled).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from errno import EPERM, ESRCH, ETIME
from typing import Protocol

from vmlab.daemons.earlyoom.flavor import V1_9, Flavor
from vmlab.daemons.earlyoom.kill import (
    DBUS_SEND,
    NOTIFY_RATELIMIT_S,
    ProcInfo,
    Victim,
    dbus_argv,
    find_largest_process,
    hook_env,
    seconds,
    sending_line,
)
from vmlab.daemons.earlyoom.main import (
    SIGKILL,
    SIGTERM,
    Options,
    lowmem_sig,
    parse_args,
    sleep_time_ms,
    startup_lines,
)
from vmlab.daemons.earlyoom.meminfo import MemInfo, parse_meminfo, print_mem_stats
from vmlab.daemons.earlyoom.msg import pct

NSEC_PER_MSEC = 1_000_000
KILL_WAIT_POLL_MS = 100
KILL_WAIT_TICKS = 100  # kill_wait() waits at most 100 * 100 ms
PIDFD = 4
#: -P: notify_spawn_subprocess() waits this long for the pre-hook before it kills.
PREHOOK_STARTUP_SLEEP_MS = 200
PRIO_NICE, PRIO_OOM_SCORE_ADJ = -20, -100


class System(Protocol):
    """The machine as earlyoom sees it from user space."""

    self_pid: int

    def now_ns(self) -> int:
        """CLOCK_MONOTONIC, in nanoseconds."""
        ...

    def at(self, when_ns: int, fn: Callable[[], None]) -> None:
        """Run `fn` when the clock reaches `when_ns` (the end of a nanosleep())."""
        ...

    def meminfo(self) -> str:
        """The text of /proc/meminfo."""
        ...

    def processes(self) -> list[ProcInfo]:
        """Every process, in /proc's readdir order (ascending pid)."""
        ...

    def is_alive(self, pid: int) -> bool:
        """is_alive() of a pid > 0: the process exists and is not a zombie."""
        ...

    def kill(self, pid: int, sig: int) -> int:
        """kill(2) as kill(2) reads `pid` (< 0: a process group): 0 or -errno."""
        ...

    def getpgid(self, pid: int) -> int:
        """getpgid(2): the process group of `pid`, or -errno."""
        ...

    def process_mrelease(self, pid: int) -> int:
        """process_mrelease(2) through a pidfd of `pid`: 0 or -errno."""
        ...

    def setpriority(self, niceval: int) -> int:
        """setpriority(PRIO_PROCESS, 0, niceval) for earlyoom itself: 0 or -errno."""
        ...

    def set_oom_score_adj(self, adj: int) -> int:
        """Write earlyoom's own /proc/PID/oom_score_adj: 0 or -errno."""
        ...


#: out(stream, line): "stdout" for info(), "stderr" for warn() and the startup notes, "syslog.PRIORITY"
#: for both after --syslog, "exec" for a program earlyoom starts (the model's own line).
Output = Callable[[str, str], None]


@dataclass(frozen=True)
class Spawn:
    """A program earlyoom starts: when, why ("-n", "-N", "-P"), its argv and the variables it adds to
    its environment."""

    time_ns: int
    option: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]

    def line(self) -> str:
        """The spawn as a shell command line: `env NAME=VALUE... PROGRAM ARGS...`."""
        words = [f"{k}={v}" for k, v in self.env]
        return " ".join(shlex.quote(w) for w in (["env", *words] if words else []) + list(self.argv))


class Earlyoom:
    """One earlyoom process: `start()` reads the options and runs the first poll; afterwards it runs
    from its timers until `stop()` or until its own process is gone."""

    def __init__(self, argv: list[str], system: System, out: Output, flavor: Flavor = V1_9) -> None:
        """Not started yet; `argv[0]` is the program name."""
        self.argv, self.system, self.out, self.flavor = argv, system, out, flavor
        self.args = Options()
        self.running = False
        self.report_countdown_ms = 0
        #: Every signal sent: (time ns, pid (< 0: a process group), signal number) (in --dryrun none).
        self.kills: list[tuple[int, int, int]] = []
        #: Every poll: (time ns, sleep ms chosen after it).
        self.polls: list[tuple[int, int]] = []
        #: Every program started (-n, -N, -P), in order.
        self.spawns: list[Spawn] = []
        #: notify_process_killed()'s `static prev_notify` (whole seconds), for the --dryrun rate limit.
        self.prev_notify_s = 0

    # -- messages --

    def warn(self, text: str) -> None:
        """warn(): to stderr (syslog LOG_WARNING with --syslog)."""
        self.out(self.args.stream("warning"), text)

    def info(self, text: str) -> None:
        """info(): to stdout (syslog LOG_INFO with --syslog)."""
        self.out(self.args.stream("info"), text)

    def debug(self, text: str) -> None:
        """debug(): to stdout with -d (syslog LOG_DEBUG with --syslog)."""
        if self.args.debug:
            self.out(self.args.stream("debug"), text)

    def stderr(self, text: str) -> None:
        """fprintf(stderr, ...): stderr whatever --syslog says."""
        self.out("stderr", text)

    # -- main() --

    def start(self) -> int | None:
        """main(): the banner, the options (UsageError as earlyoom exits), -p, the self-test and the
        limits (in the flavour's order), then the first poll. None while it runs, or the exit status of
        a -v/-h run."""
        self.stderr(f"earlyoom {self.flavor.version}")
        m = self.read()
        self.args = parse_args(self.argv, m, self.flavor)
        for stream, note in self.args.notes:
            self.out(stream, note)
        if self.args.exit_now is not None:
            return self.args.exit_now
        if self.args.set_my_priority:
            self.raise_priority()
        self.running = True

        def limits() -> None:
            for line in startup_lines(self.args, m, self.flavor):
                self.stderr(line)

        if self.flavor.selftest_first:
            self.selftests(lambda: (limits(), self.poll()))
        else:
            limits()
            self.selftests(self.poll)
        return None

    def raise_priority(self) -> None:
        """-p: setpriority(-20) and oom_score_adj -100 for earlyoom itself, each failure a warning."""
        fail = False
        res = self.system.setpriority(PRIO_NICE)
        if res:
            self.warn(f"Could not set priority: {os.strerror(-res)}. Continuing anyway")
            fail = True
        res = self.system.set_oom_score_adj(PRIO_OOM_SCORE_ADJ)
        if res:
            self.warn(f"Could not set oom_score_adj: {os.strerror(-res)}. Continuing anyway")
            fail = True
        if not fail:
            self.stderr("Priority was raised successfully")

    def selftests(self, then: Callable[[], None]) -> None:
        """startup_selftests(): a kill with signal 0 of the victim find_largest_process() picks (its
        -g line, its "Could not find" pause), then the -N/-P paths must be absolute; then `then`."""
        self.debug("startup_selftests: dry-running oom kill...")
        victim = self.find_victim()

        def hooks() -> None:
            a = self.args
            checks = [("N", "notify_ext", "notify script")]
            if self.flavor.spawn_subprocess:
                checks.append(("P", "kill_process_prehook", "pre-hook program"))
            for flag, field, what in checks:
                path = getattr(a, field)
                if path is not None and not path.startswith("/"):
                    self.warn(f"startup_selftests: -{flag}: {what} '{path}' is not an absolute path, "
                              f"disabling -{flag}")
                    setattr(a, field, None)
            then()

        self.kill_process(0, victim, hooks)

    def stop(self) -> None:
        """The daemon is stopped (its pending timers do nothing)."""
        self.running = False

    def read(self) -> MemInfo:
        """parse_meminfo()."""
        return parse_meminfo(self.system.meminfo(), self.flavor)

    def find_victim(self) -> Victim | None:
        """find_largest_process() over the live table."""
        return find_largest_process(self.args, self.system.processes(), self.system.self_pid, self.flavor,
                                    self.warn)

    def later(self, ms: int, fn: Callable[[], None]) -> None:
        """nanosleep(ms), then `fn` (unless stopped meanwhile, or earlyoom's own process is gone: a
        SIGTERM to its own process group, say)."""
        def wake() -> None:
            if self.running and not self.system.is_alive(self.system.self_pid):
                self.stop()
            if self.running:
                fn()
        self.system.at(self.system.now_ns() + ms * NSEC_PER_MSEC, wake)

    # -- poll_loop() --

    def poll(self) -> None:
        """One round of poll_loop(): compare, pick, re-check, kill (and wait), then sleep."""
        if not self.system.is_alive(self.system.self_pid):
            self.stop()  # earlyoom itself was killed
            return
        a = self.args
        m = self.read()
        sig = lowmem_sig(a, m)
        if sig:
            kind, mem, swap = (("SIGKILL", a.mem_kill_percent, a.swap_kill_percent) if sig == SIGKILL
                               else ("SIGTERM", a.mem_term_percent, a.swap_term_percent))
            self.warn(print_mem_stats(m))
            self.warn(f"low memory! at or below {kind} limits: mem {pct(mem)}, swap {pct(swap)}")
            victim = self.find_victim()
            m = self.read()
            if lowmem_sig(a, m) == 0:
                self.warn("memory situation has recovered while selecting victim")
            else:
                self.kill_process(sig, victim, lambda: self.sleep(m))
                return
        elif a.report_interval_ms and self.report_countdown_ms <= 0:
            self.info(print_mem_stats(m))
            self.report_countdown_ms = a.report_interval_ms
        self.sleep(m)

    def sleep(self, m: MemInfo) -> None:
        """The end of a round: the adaptive sleep, then the next poll."""
        if not self.running:
            return
        ms = sleep_time_ms(self.args, m, self.flavor)
        self.debug(f"adaptive sleep time: {ms} ms")
        self.polls.append((self.system.now_ns(), ms))
        self.report_countdown_ms -= ms
        self.later(ms, self.poll)

    # -- the programs earlyoom starts --

    def spawn(self, option: str, argv: tuple[str, ...], env: dict[str, str]) -> None:
        """fork() + exec of `argv` with `env` added (notify_spawn_subprocess(), v1.7's execl()): recorded
        and printed, not run."""
        spawn = Spawn(self.system.now_ns(), option, argv, tuple(env.items()))
        self.spawns.append(spawn)
        if self.flavor.spawn_subprocess:
            self.debug(f"notify_spawn_subprocess: exec {DBUS_SEND if option == '-n' else argv[0]}")
        self.out("exec", spawn.line())

    def notify_dbus(self, body: str) -> None:
        """notify_dbus() (-n)."""
        self.spawn("-n", dbus_argv(body), {})

    def notify_process_killed(self, victim: Victim) -> None:
        """notify_process_killed(): the -n notification and the -N script, after the kill; in --dryrun
        at most once per whole second of the clock (counted from a `prev_notify` of 0)."""
        a = self.args
        if a.dryrun:
            now_s = self.system.now_ns() // 1_000_000_000
            if now_s - self.prev_notify_s < NOTIFY_RATELIMIT_S:
                self.debug("notify_process_killed: rate limit hit, skipping notifications this time")
                return
            self.prev_notify_s = now_s
        if a.notify:
            self.notify_dbus(f"Low memory! Killing process {victim.proc.pid} {victim.proc.comm}")
        if a.notify_ext is not None:
            self.spawn("-N", (a.notify_ext,), hook_env(victim, self.flavor))

    # -- kill_process() and kill_wait() --

    def kill_process(self, sig: int, victim: Victim | None, done: Callable[[], None]) -> None:
        """kill_process(): log the victim, run the -P pre-hook, signal it and wait for it (kill_wait()),
        notify (-n, -N), report a failure; `done` runs when the C function would return."""
        if victim is None:
            self.warn("Could not find a process to kill. Sleeping 1 second.")
            if self.args.notify:
                self.notify_dbus("Error: Could not find a process to kill. Sleeping 1 second.")
            self.later(1000, done)
            return
        if sig != 0 or self.args.debug:
            self.warn(sending_line(sig, victim, self.flavor))
        prehook = self.args.kill_process_prehook
        if sig != 0 and prehook is not None:
            self.debug(f"going to invoke program before killing: {prehook}")
            self.spawn("-P", (prehook,), hook_env(victim, self.flavor))
            self.debug("notify_spawn_subprocess: child exited, status=0")

        def waited(res: int) -> None:
            if sig == 0:
                done()
                return
            self.notify_process_killed(victim)
            if res:
                self.kill_failed(res, done)
            else:
                done()

        self.kill_wait(victim.proc.pid, sig, waited)

    def kill_wait(self, pid: int, sig: int, done: Callable[[int], None]) -> None:
        """kill_wait(): -g turns the victim into its process group (-pgid); v1.8+ opens a pidfd of a
        single victim first; kill (and process_mrelease), then for a real signal look every 100 ms
        whether it is gone, for 10 s at most. `done(res)` gets 0 or -errno."""
        a = self.args
        if a.dryrun and sig != 0:
            self.warn("dryrun, not actually sending any signal")
            done(0)
            return
        if a.kill_process_group:
            pgid = self.system.getpgid(pid)
            if pgid < 0:
                done(pgid)
                return
            pid = -pgid
            self.warn(f"killing whole process group {pgid} (-g flag is active)")
        pidfd = False
        if self.flavor.mrelease and pid > 0 and sig != 0:
            pidfd = self.system.is_alive(pid)
            if not pidfd:
                self.warn(f"kill_wait pid {pid}: error opening pidfd: {os.strerror(ESRCH)}")
        res = self.kill_release(pid, sig, pidfd)
        if res or sig == 0:
            done(res)
            return
        self.wait_tick(pid, sig, pidfd, self.system.now_ns(), 0, done)

    def alive(self, pid: int) -> bool:
        """is_alive(): for a group (pid < 0) whether kill(pid, 0) succeeds."""
        if pid < 0:
            return self.system.kill(pid, 0) == 0
        return self.system.is_alive(pid)

    def kill_release(self, pid: int, sig: int, pidfd: bool) -> int:
        """kill_release(): kill(), then (v1.8+, with a pidfd) process_mrelease() and its line."""
        res = self.system.kill(pid, sig)
        if res or sig == 0:
            return res
        self.kills.append((self.system.now_ns(), pid, sig))
        if pidfd:
            rel = self.system.process_mrelease(pid)
            if rel:
                self.warn(f"kill_release: pid={pid}: process_mrelease pidfd={PIDFD} failed: "
                          f"{os.strerror(-rel)}")
            else:
                self.info(f"kill_release: pid={pid}: process_mrelease pidfd={PIDFD} success")
        return 0

    def wait_tick(self, pid: int, sig: int, pidfd: bool, t0: int, tick: int,
                  done: Callable[[int], None]) -> None:
        """One turn of kill_wait()'s loop: escalate SIGTERM to SIGKILL once the KILL limits are reached,
        stop waiting when the process (group) is gone, else look again 100 ms later (100 times at
        most)."""
        a = self.args
        secs = seconds(self.system.now_ns() - t0, tick, self.flavor)
        if sig != SIGKILL:
            now = self.read()
            self.debug(print_mem_stats(now))
            if now.MemAvailablePercent <= a.mem_kill_percent and now.SwapFreePercent <= a.swap_kill_percent:
                sig = SIGKILL
                if self.flavor.mrelease:
                    self.warn(f"escalating to SIGKILL after {secs} seconds")
                    res = self.kill_release(pid, sig, pidfd)
                else:  # v1.7: kill first, print after
                    res = self.kill_release(pid, sig, pidfd)
                    self.warn(f"escalating to SIGKILL after {secs} seconds")
                if res:
                    done(res)
                    return
        elif a.debug:
            self.info(print_mem_stats(self.read()))
        if not self.alive(pid):
            self.warn(f"process {pid} exited after {secs} seconds" if self.flavor.mrelease
                      else f"process exited after {secs} seconds")
            done(0)
            return
        if tick + 1 == KILL_WAIT_TICKS:
            self.later(KILL_WAIT_POLL_MS, lambda: self.gave_up(pid, done))
            return
        self.later(KILL_WAIT_POLL_MS, lambda: self.wait_tick(pid, sig, pidfd, t0, tick + 1, done))

    def gave_up(self, pid: int, done: Callable[[int], None]) -> None:
        """kill_wait() after 10 s: ETIME."""
        if self.flavor.mrelease:
            self.warn(f"process {pid} did not exit")
        done(-ETIME)

    def kill_failed(self, res: int, done: Callable[[], None]) -> None:
        """kill_process() after a failed kill_wait(): the error (and its -n notification), a 1 s pause
        after EPERM, then `done`."""
        self.warn(f"kill failed: {os.strerror(-res)}")
        if self.args.notify:
            self.notify_dbus("Error: Failed to kill process")
        if res == -EPERM:
            self.warn("sleeping 1 second")
            self.later(1000, done)
            return
        done()


__all__ = ["SIGKILL", "SIGTERM", "Earlyoom", "Spawn", "System"]
