"""User-space daemons started on the model machine: the machine as a daemon's `System` (its /proc
views, kill(2), process_mrelease(2), the simulated clock), and a way to start earlyoom on it."""

from __future__ import annotations

from collections.abc import Callable

from vmlab.daemons.earlyoom.daemon import Earlyoom, Output
from vmlab.daemons.earlyoom.flavor import V1_9, Flavor
from vmlab.daemons.earlyoom.kill import ProcInfo
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.mm_types import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES
from vmlab.kernel.signal import BY_NUMBER


class ModelSystem:
    """The model machine as seen by a daemon running in process `self_pid` on it."""

    def __init__(self, backend: ModelBackend, self_pid: int) -> None:
        """A view of `backend` for the daemon process `self_pid`."""
        self.backend, self.self_pid = backend, self_pid

    def now_ns(self) -> int:
        """The simulated clock."""
        return self.backend.mem.clock.now_ns

    def at(self, when_ns: int, fn: Callable[[], None]) -> None:
        """A timer on the simulated clock."""
        self.backend.mem.clock.at(when_ns, fn)

    def meminfo(self) -> str:
        """The model's /proc/meminfo."""
        return self.backend.machine_view("meminfo")

    def proc(self, pid: int) -> ProcInfo:
        """What /proc/PID/{stat,comm,cmdline,oom_score,oom_score_adj} and the directory's owner say."""
        task = self.backend.tasks[pid]
        rss = task.mm.rss
        pages = rss[MM_ANONPAGES] + rss[MM_FILEPAGES] + rss[MM_SHMEMPAGES]
        return ProcInfo(pid, task.ppid, task.uid, task.comm, " ".join(task.cmdline),
                        self.backend.oom.oom_score(task), task.oom_score_adj, int(pages) * 4)

    def processes(self) -> list[ProcInfo]:
        """Every process, ascending pid (readdir of /proc)."""
        return [self.proc(pid) for pid in sorted(self.backend.tasks)]

    def is_alive(self, pid: int) -> bool:
        """The process has not exited (the model reaps at once: no zombies)."""
        return pid in self.backend.tasks

    def kill(self, pid: int, sig: int) -> int:
        """kill(2) from the daemon's process, with a signal number (pid < 0: a process group)."""
        return self.backend.kill(pid, BY_NUMBER.get(sig, "0"), self.self_pid)

    def getpgid(self, pid: int) -> int:
        """getpgid(2) from the daemon's process."""
        return self.backend.getpgid(self.self_pid, pid)

    def setpriority(self, niceval: int) -> int:
        """setpriority(PRIO_PROCESS, 0, niceval) of the daemon's process."""
        return self.backend.setpriority(self.self_pid, 0, niceval)

    def set_oom_score_adj(self, adj: int) -> int:
        """The daemon writes its own /proc/PID/oom_score_adj."""
        return self.backend.set_oom_score_adj(self.self_pid, adj)

    def process_mrelease(self, pid: int) -> int:
        """process_mrelease(2)."""
        return self.backend.process_mrelease(pid)


def journal(backend: ModelBackend, pid: int, log: Callable[[str], None]) -> Output:
    """An Output that hands `log` each line as the journal would show it, stamped with the simulated
    time: `[    0.800018] earlyoom[1002]: sending SIGTERM to ...` (stdout, stderr and syslog alike); a
    program the daemon starts (not run by the model) as `[    0.800018] earlyoom[1002] starts: env
    EARLYOOM_PID=1003 ... /path/to/script`."""
    clock = backend.mem.clock

    def out(stream: str, text: str) -> None:
        sep = " starts:" if stream == "exec" else ":"
        log(f"{clock.printk_time()} earlyoom[{pid}]{sep} {text}")

    return out


def start_earlyoom(backend: ModelBackend, argv: list[str], log: Callable[[str], None],
                   flavor: Flavor = V1_9, uid: int = 0) -> Earlyoom:
    """Spawn an `earlyoom` process of user `uid` on the machine and run `argv` (argv[0] = "earlyoom")
    in it, its lines going to `log` (see journal()); raises vmlab.daemons.earlyoom.main.UsageError as
    earlyoom exits on a bad command line (the process is gone again then, as it is after -v/-h)."""
    pid = backend.spawn("earlyoom", uid=uid)
    backend.tasks[pid].cmdline = tuple(argv)
    daemon = Earlyoom(argv, ModelSystem(backend, pid), journal(backend, pid, log), flavor)
    try:
        status = daemon.start()
    except Exception:
        backend.exit(pid)
        raise
    if status is not None:
        backend.exit(pid)
    return daemon
