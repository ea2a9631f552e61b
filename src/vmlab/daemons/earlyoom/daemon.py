"""earlyoom's poll_loop() and kill_wait() as a daemon on a simulated clock: each nanosleep() of the C
program is a timer (`System.at`), so the daemon runs between the model's own events, deterministically.

The daemon sees its machine through `System` only: the text of /proc/meminfo, the process table as
/proc shows it, kill(2), process_mrelease(2) and the clock. Where the model differs from the program:
- reading /proc takes no simulated time (the C program's 2.5 ms victim scan is instantaneous here);
- the pidfd number in the process_mrelease lines is 4, the first free descriptor of the real daemon
  (0-2 and its static /proc/meminfo FILE).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from errno import EPERM, ESRCH, ETIME
from typing import Protocol

from vmlab.daemons.earlyoom.flavor import V1_9, Flavor
from vmlab.daemons.earlyoom.kill import ProcInfo, Victim, find_largest_process, seconds, sending_line
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
        """is_alive(): the process exists and is not a zombie."""
        ...

    def kill(self, pid: int, sig: int) -> int:
        """kill(2): 0 or -errno."""
        ...

    def process_mrelease(self, pid: int) -> int:
        """process_mrelease(2) through a pidfd of `pid`: 0 or -errno."""
        ...


#: out(stream, line): "stdout" for info(), "stderr" for warn() and the startup notes.
Output = Callable[[str, str], None]


class Earlyoom:
    """One earlyoom process: `start()` reads the options and runs the first poll; afterwards it runs
    from its timers until `stop()` or until its own process is gone."""

    def __init__(self, argv: list[str], system: System, out: Output, flavor: Flavor = V1_9) -> None:
        """Not started yet; `argv[0]` is the program name."""
        self.argv, self.system, self.out, self.flavor = argv, system, out, flavor
        self.args = Options()
        self.running = False
        self.report_countdown_ms = 0
        #: Every signal sent: (time ns, pid, signal number) (in --dryrun none).
        self.kills: list[tuple[int, int, int]] = []
        #: Every poll: (time ns, sleep ms chosen after it).
        self.polls: list[tuple[int, int]] = []

    # -- messages --

    def warn(self, text: str) -> None:
        """warn(): to stderr."""
        self.out("stderr", text)

    def info(self, text: str) -> None:
        """info(): to stdout."""
        self.out("stdout", text)

    def debug(self, text: str) -> None:
        """debug(): to stdout with -d."""
        if self.args.debug:
            self.out("stdout", text)

    # -- main() --

    def start(self) -> int | None:
        """main(): the banner, the options (UsageError as earlyoom exits), the self-test, the limits,
        and the first poll. None while it runs, or the exit status of a -v/-h run."""
        self.warn(f"earlyoom {self.flavor.version}")
        m = self.read()
        self.args = parse_args(self.argv, m, self.flavor)
        for note in self.args.notes:
            self.warn(note)
        if self.args.exit_now is not None:
            return self.args.exit_now
        victim = self.find_victim()  # startup_selftests(): a dry-run kill with signal 0
        if victim is not None and self.args.debug:
            self.warn(sending_line(0, victim, self.flavor))
        for line in startup_lines(self.args, m, self.flavor):
            self.warn(line)
        self.running = True
        self.poll()
        return None

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
        """nanosleep(ms), then `fn` (unless stopped meanwhile)."""
        def wake() -> None:
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
                self.kill_process(sig, victim, m)
                return
        elif a.report_interval_ms and self.report_countdown_ms <= 0:
            self.info(print_mem_stats(m))
            self.report_countdown_ms = a.report_interval_ms
        self.sleep(m)

    def sleep(self, m: MemInfo) -> None:
        """The end of a round: the adaptive sleep, then the next poll."""
        ms = sleep_time_ms(self.args, m, self.flavor)
        self.debug(f"adaptive sleep time: {ms} ms")
        self.polls.append((self.system.now_ns(), ms))
        self.report_countdown_ms -= ms
        self.later(ms, self.poll)

    # -- kill_process() and kill_wait() --

    def kill_process(self, sig: int, victim: Victim | None, m: MemInfo) -> None:
        """kill_process(): log the victim, signal it and wait for it; then poll_loop() sleeps."""
        if victim is None:
            self.warn("Could not find a process to kill. Sleeping 1 second.")
            self.later(1000, lambda: self.sleep(m))
            return
        self.warn(sending_line(sig, victim, self.flavor))
        if self.args.dryrun:
            self.warn("dryrun, not actually sending any signal")
            self.sleep(m)
            return
        pid = victim.proc.pid
        pidfd = self.flavor.mrelease and self.system.is_alive(pid)
        if self.flavor.mrelease and not pidfd:
            self.warn(f"kill_wait pid {pid}: error opening pidfd: {os.strerror(ESRCH)}")
        res = self.kill_release(pid, sig, pidfd)
        if res:
            self.kill_failed(res, m)
            return
        self.wait_tick(pid, sig, pidfd, self.system.now_ns(), 0, m)

    def kill_release(self, pid: int, sig: int, pidfd: bool) -> int:
        """kill_release(): kill(), then (v1.8+, with a pidfd) process_mrelease() and its line."""
        res = self.system.kill(pid, sig)
        if res:
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

    def wait_tick(self, pid: int, sig: int, pidfd: bool, t0: int, tick: int, m: MemInfo) -> None:
        """One turn of kill_wait()'s loop: escalate SIGTERM to SIGKILL once the KILL limits are reached,
        stop waiting when the process is gone, else look again 100 ms later (100 times at most)."""
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
                    self.kill_failed(res, m)
                    return
        elif a.debug:
            self.info(print_mem_stats(self.read()))
        if not self.system.is_alive(pid):
            self.warn(f"process {pid} exited after {secs} seconds" if self.flavor.mrelease
                      else f"process exited after {secs} seconds")
            self.sleep(m)
            return
        if tick + 1 == KILL_WAIT_TICKS:
            self.later(KILL_WAIT_POLL_MS, lambda: self.gave_up(pid, m))
            return
        self.later(KILL_WAIT_POLL_MS, lambda: self.wait_tick(pid, sig, pidfd, t0, tick + 1, m))

    def gave_up(self, pid: int, m: MemInfo) -> None:
        """kill_wait() after 10 s: ETIME."""
        if self.flavor.mrelease:
            self.warn(f"process {pid} did not exit")
        self.kill_failed(-ETIME, m)

    def kill_failed(self, res: int, m: MemInfo) -> None:
        """kill_process() after a failed kill_wait(): the error, a 1 s pause after EPERM, then sleep."""
        self.warn(f"kill failed: {os.strerror(-res)}")
        if res == -EPERM:
            self.warn("sleeping 1 second")
            self.later(1000, lambda: self.sleep(m))
            return
        self.sleep(m)


__all__ = ["SIGKILL", "SIGTERM", "Earlyoom", "System"]
