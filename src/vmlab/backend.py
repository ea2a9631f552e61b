"""The one interface a scenario runs against: the model (`vmlab.kernel`) or the running kernel (`vmlab.host`).

Both backends execute the same steps and render the same views as the kernel's own text, so "does the
model agree with the kernel?" is a comparison of two transcripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: A syscall argument: a number, a path, or a string list (execve's argv and envp).
Arg = int | str | tuple[str, ...]

#: Views every backend can render, named after the /proc file they mirror. A backend may print only some
#: of a view's `Field:` lines (vmlab diff then compares just those).
VIEWS = ("maps", "smaps", "smaps_rollup", "status", "statm")
#: Machine-wide views (`Backend.machine_view`): /proc/meminfo, /proc/vmstat, /proc/pressure/memory, the
#: LRU lists in order, `fincore --bytes PATH` and a memory cgroup's control files (`memcg /PATH`: the
#: two that take an argument, a path). Their values belong to one machine, so vmlab diff shows them but
#: never compares them.
MACHINE_VIEWS = ("meminfo", "vmstat", "pressure", "lru", "fincore", "swaps", "dmesg", "memcg")


#: What access() reports for a process left asleep in a v1 memcg OOM (memory.oom_control
#: oom_kill_disable 1: mem_cgroup_oom_synchronize), on either backend.
MEMCG_OOM_WAIT = "MEMCG_OOM_WAIT"


class ProcessDied(RuntimeError):
    """A backend's process ended where a step expected it to answer: `signal` ("SIGKILL") when a
    signal ended it, else None (it exited). The host's stepper raises it when the kernel kills it in
    a syscall (it never answers)."""

    def __init__(self, pid: int, signal: str | None, message: str) -> None:
        self.pid = pid
        self.signal = signal
        super().__init__(message)


@dataclass(frozen=True)
class Settings:
    """Machine and process settings a scenario fixes before its first process starts."""

    rlimit_stack: int | None = 8 << 20  # RLIMIT_STACK soft limit in bytes; None = unlimited
    legacy_va_layout: bool = False  # personality ADDR_COMPAT_LAYOUT (setarch -L)
    max_map_count: int = 65530  # vm.max_map_count (the model only: the host's is global)
    mmap_min_addr: int = 4096  # vm.mmap_min_addr
    ram: int = 4 << 30  # the model machine's RAM in bytes (the host's is what it is)
    # vm.overcommit_* and the reserves (global on the host: the host backend only checks they match)
    overcommit_memory: int = 0
    overcommit_ratio: int = 50
    overcommit_kbytes: int = 0
    admin_reserve_kbytes: int | None = None  # None: the model's boot default (util.init_admin_reserve)
    user_reserve_kbytes: int | None = None  # None: the model's boot default (util.init_user_reserve)
    cap_sys_admin: bool = True  # the processes hold CAP_SYS_ADMIN (the host drops it before exec if off)
    # the processes hold CAP_SYS_RESOURCE, as a root shell does (off: as root in a container that drops
    # it, which may not lower its oom_score_adj; the host drops it before exec if off)
    cap_sys_resource: bool = True


@dataclass(frozen=True)
class Counters:
    """A process's fault and memory counters, as /proc/<pid>/stat (faults) and status (kB) print them."""

    minflt: int
    majflt: int
    rss_anon_kb: int
    rss_file_kb: int
    rss_shmem_kb: int
    vm_pte_kb: int
    vm_swap_kb: int
    vm_size_kb: int


@dataclass(frozen=True)
class Program:
    """What the first process execs: an ELF path with its exact argv and envp (they size the stack)."""

    path: str
    argv: tuple[str, ...]
    envp: tuple[str, ...] = ()
    #: Memory accesses (addr, length, write) the program makes on its own before its first checkpoint:
    #: the real program does them; the model replays them after exec so both start alike.
    startup: tuple[tuple[int, int, bool], ...] = ()
    #: Accesses its own code makes right after a fork(), in the child and in the parent, before either
    #: waits again (the model replays them; their faults are the program's, not the scenario's).
    fork_child: tuple[tuple[int, int, bool], ...] = ()
    fork_parent: tuple[tuple[int, int, bool], ...] = ()


class Backend(Protocol):
    """A place where processes run memory syscalls: the model or the real kernel."""

    name: str

    def start(self, program: Program, settings: Settings) -> int:
        """Exec `program` with ASLR off in a new process; return its pid."""
        ...

    def syscall(self, pid: int, name: str, args: tuple[Arg, ...]) -> int:
        """Run syscall `name` in process `pid`; return its result, or -errno as the kernel returns it.

        Names and argument orders are the kernel's (`mmap`, `munmap`, `mprotect`, `mremap`, `brk`,
        `madvise`, `mlock`, `mlock2`, `munlock`, `openat`, `close`, ...). Strings are paths;
        `execve` takes (path, argv, envp).
        """
        ...

    def access(self, pid: int, addr: int, length: int, write: bool) -> str | None:
        """Touch every page of [addr, addr+length) in address order, one byte each.

        Returns None, or the name of the signal ("SIGSEGV", "SIGBUS") that killed the process.
        """
        ...

    def fork(self, pid: int) -> int:
        """fork() in process `pid`; return the child's pid."""
        ...

    def exit(self, pid: int) -> None:
        """The process calls exit(0) and is reaped."""
        ...

    def view(self, pid: int, name: str) -> str:
        """The text of /proc/<pid>/<name> (a name from VIEWS)."""
        ...

    def machine_view(self, name: str, arg: str = "") -> str:
        """The text of a machine-wide view (a name from MACHINE_VIEWS; `arg` is fincore's file or the
        memcg's cgroup path).
        A backend that cannot render one raises NotImplementedError."""
        ...

    def counters(self, pid: int) -> Counters:
        """minflt/majflt (stat fields 10, 12) and RssAnon/RssFile/RssShmem/VmPTE/VmSwap/VmSize (status)."""
        ...

    def pagemap(self, pid: int, start: int, end: int) -> list[int]:
        """The raw 64-bit /proc/<pid>/pagemap entries of the pages of [start, end), PFNs included."""
        ...

    def kpageflags(self, pfn: int) -> int:
        """/proc/kpageflags of one frame (KPF_* bits: KPF_ZERO_PAGE tells the shared zero page)."""
        ...

    def kpagecount(self, pfn: int) -> int:
        """/proc/kpagecount of one frame: the number of page-table mappings of it."""
        ...

    def notes(self) -> list[str]:
        """What can change, from outside the scenario, what it sees here (one line each, for the
        transcript's notes): on the host, a running DAMON scheme or user-space OOM killer. None on
        the model."""
        ...

    def close(self) -> None:
        """End every process this backend started."""
        ...
