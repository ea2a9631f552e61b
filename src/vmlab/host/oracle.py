"""HostBackend: scenario steps run on the running kernel, in stepper processes (stepper.c).

Each process is a stepper exec'd with ASLR off; the backend drives it over a SOCK_SEQPACKET channel on
its fd 1000 (see the protocol in stepper.c) and reads /proc/<pid>/* between commands, while the stepper
is blocked in read(). Every stepper process is a child of this Python process (a FORK is a
clone(CLONE_PARENT)), so the backend reaps each one and reports the signal that killed it.

Memory cgroups, oom_score_adj and comm are written for real, the cgroups in a tree of the run's own
(vmlab.host.memcg_tree) removed on close(); a memory hog runs only inside one of them with a limit,
where the kernel's memcg OOM killer ends it. `show dmesg` gives the kernel's log lines since the
backend started.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import os
import resource
import signal
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from vmlab.backend import MEMCG_OOM_WAIT, Arg, Counters, ProcessDied, Program, Settings
from vmlab.errors import InputError
from vmlab.host import outside, pagecache, procfs
from vmlab.host.kmsg import Kmsg, Record
from vmlab.host.memcg_tree import MemcgTree
from vmlab.host.syscall_64 import PROCESS_CALLS, SYSCALL_NR
from vmlab.kernel.uapi import ADDR_COMPAT_LAYOUT, ADDR_NO_RANDOMIZE, AT_FDCWD, INR_OPEN_CUR
from vmlab.linux import CacheStat

PR_CAPBSET_DROP = 24
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
#: Settings that are global vm sysctls on the host: the backend checks that the host's agree.
HOST_SYSCTLS = ("mmap_min_addr", "overcommit_memory", "overcommit_ratio", "overcommit_kbytes",
                "admin_reserve_kbytes", "user_reserve_kbytes")

#: The stepper's end of its channel; 1001 and 1002 are used briefly by FORK. Scenarios must not touch them.
CHANNEL_FD = 1000
RESERVED_FDS = range(CHANNEL_FD, CHANNEL_FD + 3)

CMD = struct.Struct("<IIQ6Q")  # op, flags, nr, arg[6]: struct cmd
REPLY = struct.Struct("<IIqQ")  # tag, pad, value, aux: struct reply
OP_NOP, OP_SYSCALL, OP_ACCESS, OP_FORK, OP_EXIT = range(5)
TAG_HELLO, TAG_DONE = 1, 2
ACCESS_WRITE = 1
#: How often a command that may fault looks whether its process fell asleep in a memcg OOM wait.
OOM_POLL_S = 0.05
IO_SIZE = 4 * 4096
PAYLOAD_MAX = IO_SIZE - CMD.size
U64 = (1 << 64) - 1


class StepperDied(ProcessDied):
    """A stepper ended where the step expected an answer (a signal in a syscall, a bad exit)."""

    def __init__(self, pid: int, status: int) -> None:
        self.status = status
        sig = signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else None
        how = f"killed by {sig}" if sig else f"exited with status {os.WEXITSTATUS(status)}"
        super().__init__(pid, sig, f"vmlab host: process {pid} {how}")


@dataclass
class _Stepper:
    """One live stepper process: its pid, our end of its channel, and where its payload area is."""

    pid: int
    sock: socket.socket
    payload: int = 0
    settled: bool = False  # known to be blocked in read() since its last reply
    own_faults: tuple[int, int] = (0, 0)  # (minflt, majflt) the oracle's fork handshake caused here


@dataclass(frozen=True)
class _Reply:
    tag: int
    value: int
    aux: int
    fd: int | None


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, for personality() and an execve() with an exactly ordered envp."""
    return ctypes.CDLL(None, use_errno=True)


def _cstrings(items: tuple[str, ...]) -> ctypes.Array[ctypes.c_char_p]:
    """A NULL-terminated char*[] for execve."""
    return (ctypes.c_char_p * (len(items) + 1))(*(os.fsencode(s) for s in items), None)


def _encode_args(name: str, args: tuple[Arg, ...], base: int) -> tuple[list[int], bytes]:
    """Six register values and the payload: strings (and string lists) are copied into the stepper's
    payload area at `base` and passed by address; integers pass as 64-bit values (negative ones as the
    kernel sees them, two's complement)."""
    if len(args) > 6:
        raise InputError(f"{name}: at most 6 arguments, got {len(args)}")
    payload = bytearray()

    def put(data: bytes) -> int:
        payload.extend(b"\0" * (-len(payload) % 8))
        addr = base + len(payload)
        payload.extend(data)
        return addr

    regs = []
    for arg in args:
        if isinstance(arg, str):
            regs.append(put(os.fsencode(arg) + b"\0"))
        elif isinstance(arg, tuple):
            ptrs = [put(os.fsencode(s) + b"\0") for s in arg]
            regs.append(put(struct.pack(f"<{len(ptrs) + 1}Q", *ptrs, 0)))
        elif isinstance(arg, int) and not isinstance(arg, bool) and -(1 << 63) <= arg <= U64:
            regs.append(arg & U64)
        else:
            raise InputError(f"{name}: argument {arg!r} is not a 64-bit integer, a string or a string list")
    if len(payload) > PAYLOAD_MAX:
        raise InputError(f"{name}: string arguments take {len(payload)} bytes, more than {PAYLOAD_MAX}")
    return regs + [0] * (6 - len(regs)), bytes(payload)


def _check_reserved_fds(name: str, args: tuple[Arg, ...]) -> None:
    """close/dup2/dup3 must leave the stepper's channel fds alone."""
    slot = {"close": 0, "dup2": 1, "dup3": 1}.get(name)
    if slot is not None and len(args) > slot and args[slot] in RESERVED_FDS:
        raise InputError(f"{name}: fd {args[slot]} is reserved for the host oracle's command channel "
                         f"(fds {RESERVED_FDS.start}-{RESERVED_FDS.stop - 1})")


def _rlimit_stack(settings: Settings) -> tuple[int, int]:
    """The (soft, hard) RLIMIT_STACK to exec with: the soft limit from Settings, the hard one raised
    to it if needed."""
    inf = resource.RLIM_INFINITY
    soft = inf if settings.rlimit_stack is None else settings.rlimit_stack
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    if hard != inf and (soft == inf or soft > hard):
        hard = soft
    return soft, hard


def _exec_stepper(channel: int, program: Program, settings: Settings,
                  argv: ctypes.Array[ctypes.c_char_p], envp: ctypes.Array[ctypes.c_char_p]) -> None:
    """In the forked child: fds 0-2 on /dev/null, the channel on CHANNEL_FD and nothing else open,
    default signal state, the stack limit and personality from `settings`, the default descriptor
    limit (INR_OPEN_CUR, whatever the runner's is), then execve."""
    os.dup2(channel, CHANNEL_FD)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, CHANNEL_FD)
    os.closerange(CHANNEL_FD + 1, 1 << 30)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_STACK, _rlimit_stack(settings))
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(INR_OPEN_CUR, nofile_hard), nofile_hard))
    for cap, keep in ((CAP_SYS_ADMIN, settings.cap_sys_admin), (CAP_SYS_RESOURCE, settings.cap_sys_resource)):
        if not keep and _libc().prctl(PR_CAPBSET_DROP, cap, 0, 0, 0):
            os._exit(126)  # root regains only the bounding set's capabilities at exec
    _libc().personality(ADDR_NO_RANDOMIZE | (ADDR_COMPAT_LAYOUT if settings.legacy_va_layout else 0))
    _libc().execve(os.fsencode(program.path), argv, envp)


class HostBackend:
    """vmlab.backend.Backend on the running kernel. Use it as a context manager, or call close()."""

    name = "host"

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._procs: dict[int, _Stepper] = {}
        self._settings = Settings()
        self._memcgs = MemcgTree()
        #: The kernel's log from the first start() on (None: /dev/kmsg cannot be read here).
        self._kmsg: Kmsg | None = None
        self._log: list[Record] = []

    def __enter__(self) -> HostBackend:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- the Backend protocol -------------------------------------------------------------------

    def start(self, program: Program, settings: Settings) -> int:
        """Exec `program` (a stepper) with ASLR off and `settings`; return its pid once it answers."""
        self._check_settings(settings)
        self._settings = settings
        if not os.path.isfile(program.path) or not os.access(program.path, os.X_OK):
            raise InputError(f"{program.path}: not an executable file")
        if self._kmsg is None and not self._procs:
            with contextlib.suppress(OSError):
                self._kmsg = Kmsg()
        argv, envp = _cstrings(program.argv), _cstrings(program.envp)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child execs or exits
                try:
                    _exec_stepper(theirs.fileno(), program, settings, argv, envp)
                finally:
                    os._exit(127)
        finally:
            theirs.close()
        proc = _Stepper(pid, ours)
        self._procs[pid] = proc
        ours.settimeout(self.timeout)
        try:
            self._await_hello(proc)
        except StepperDied as died:  # a program that is not the stepper ran and ended (reaped)
            how = f"was killed by {died.signal}" if died.signal else f"exited ({os.WEXITSTATUS(died.status)})"
            raise InputError(f"{program.path} {how} without answering: the host backend drives only the "
                             "vmlab stepper (`exec` of another program runs on the model: vmlab run FILE)"
                             ) from None
        return pid

    def notes(self) -> list[str]:
        """What acts on this kernel's memory from outside the scenario (vmlab.host.outside): DAMON
        schemes, user-space OOM killers."""
        return outside.notes()

    def syscall(self, pid: int, name: str, args: tuple[Arg, ...]) -> int:
        """Run syscall `name` in `pid`; its raw result (-errno on failure; brk: the raw brk value).

        A successful execve (of a stepper) returns 0 once the new image answers. StepperDied if the
        process is killed during the call.
        """
        if name in PROCESS_CALLS:
            raise InputError(f"{name}: processes are created and ended by the fork and exit steps")
        if name in ("swapon", "swapoff"):
            raise InputError(f"{name} runs on the model only: the host's swap is the whole machine's")
        if name not in SYSCALL_NR:
            raise InputError(f"unknown syscall {name!r}")
        _check_reserved_fds(name, args)
        proc = self._proc(pid)
        regs, payload = _encode_args(name, args, proc.payload)
        reply = self._call(proc, OP_SYSCALL, 0, SYSCALL_NR[name], regs, payload)
        if reply is None:
            raise StepperDied(pid, self._reap(proc))
        if reply.tag == TAG_HELLO:  # execve succeeded: a fresh stepper image answers
            proc.payload = reply.aux
            self.nop(pid)
            return 0
        return reply.value

    def access(self, pid: int, addr: int, length: int, write: bool) -> str | None:
        """Touch one byte per page of [addr, addr+length); None, or the signal that killed `pid`, or
        MEMCG_OOM_WAIT when a fault left it asleep in its v1 memcg's OOM wait queue (oom_kill_disable:
        /proc/PID/wchan mem_cgroup_oom_synchronize), where it stays: its later steps are not run."""
        if addr < 0 or length < 0 or addr + length > U64:
            raise InputError(f"access: range {addr:#x}+{length:#x} is outside the address space")
        proc = self._proc(pid)
        try:
            reply = self._call(proc, OP_ACCESS, ACCESS_WRITE if write else 0, 0, [addr, length],
                               oom_wait=True)
        except _InOomWait:  # asleep until the memcg's OOM is resolved: killed or woken later (close())
            return MEMCG_OOM_WAIT
        if reply is not None:
            return None
        died = StepperDied(pid, self._reap(proc))
        if died.signal is None:
            raise died
        return died.signal

    def fork(self, pid: int) -> int:
        """fork() in `pid`; the child's pid (or -errno if the kernel refused). Both answer commands."""
        proc = self._proc(pid)
        before = self.stat(pid)
        reply = self._call(proc, OP_FORK, 0, 0, [])
        if reply is None:
            raise StepperDied(pid, self._reap(proc))
        if reply.value < 0:
            return reply.value
        if reply.fd is None:
            raise RuntimeError(f"vmlab host: fork in {pid} returned no channel for child {reply.value}")
        child = _Stepper(reply.value, socket.socket(fileno=reply.fd))
        child.sock.settimeout(self.timeout)
        self._procs[child.pid] = child
        self._await_hello(child)
        self.nop(pid)  # absorbs the parent's COW faults on the stepper's own pages
        after = self.stat(pid)
        minflt, majflt = proc.own_faults
        proc.own_faults = (minflt + after.minflt - before.minflt, majflt + after.majflt - before.majflt)
        return child.pid

    def exit(self, pid: int) -> None:
        """`pid` calls exit_group(0); it is reaped."""
        proc = self._proc(pid)
        if self._call(proc, OP_EXIT, 0, 0, []) is not None:
            raise RuntimeError(f"vmlab host: process {pid} answered an EXIT")
        status = self._reap(proc)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            raise StepperDied(pid, status)

    def view(self, pid: int, name: str) -> str:
        """The text of /proc/<pid>/<name>: maps, smaps, smaps_rollup, status, stat or statm."""
        if name not in procfs.TEXT_FILES:
            raise InputError(f"unknown view {name!r} (known: {', '.join(procfs.TEXT_FILES)})")
        self._settle(self._proc(pid))
        text = procfs.read_text(pid, name)
        if text is None:
            raise ProcessLookupError(f"vmlab host: process {pid} is gone")
        return text

    def machine_view(self, name: str, arg: str = "") -> str:
        """/proc/meminfo, /proc/vmstat, /proc/pressure/memory or /proc/swaps of this machine, the
        kernel's log since the run started (dmesg) or the files of one of the run's memory cgroups
        (memcg; KeyError for another); the LRU lists and fincore are the model's only
        (NotImplementedError). The counters
        of meminfo and vmstat are read after the per-CPU deltas are folded in (vm.stat_refresh, where
        it can be written: root), as the model's are exact: read raw, nr_vmscan_write lagged pswpout
        by 6 of 256 pages."""
        if name == "memcg":
            return self._memcgs.files(arg)
        if name == "dmesg":
            return self.dmesg()
        path = {"meminfo": "/proc/meminfo", "vmstat": "/proc/vmstat", "pressure": "/proc/pressure/memory",
                "swaps": "/proc/swaps"}
        if name not in path:
            raise NotImplementedError(name)
        if name in ("meminfo", "vmstat"):
            with contextlib.suppress(OSError), open("/proc/sys/vm/stat_refresh", "w") as f:
                f.write("1")
        with open(path[name]) as f:
            return f.read()

    def counters(self, pid: int) -> Counters:
        """minflt/majflt (stat) and the status kB fields of `pid`, less the faults the oracle's own
        fork handshake caused in it (the stepper's COW faults on its own pages after each fork), so
        that the fault counts are the scenario's alone. The kernel's fork itself takes no fault."""
        self._settle(self._proc(pid))
        counters = procfs.read_counters(pid)
        if counters is None:
            raise ProcessLookupError(f"vmlab host: process {pid} is gone")
        minflt, majflt = self._procs[pid].own_faults
        return dataclasses.replace(counters, minflt=counters.minflt - minflt, majflt=counters.majflt - majflt)

    def pagemap(self, pid: int, start: int, end: int) -> list[int]:
        """The raw /proc/<pid>/pagemap entries of the pages of [start, end) (PFNs: we are root)."""
        self._settle(self._proc(pid))
        entries = procfs.read_pagemap_raw(pid, start, end)
        if entries is None:
            raise ProcessLookupError(f"vmlab host: process {pid} is gone")
        return entries

    def residency(self, path: str) -> list[int]:
        """The pages of file `path` in the host's page cache (mincore), once readahead I/O in flight
        has completed (see pagecache.settled_residency)."""
        return pagecache.settled_residency(path)

    def file_size(self, path: str) -> int:
        """The size of file `path`."""
        return os.path.getsize(path)

    def folios(self, path: str) -> list[tuple[int, int]]:
        """The folios holding the cached pages of file `path` (see pagecache.cached_folios)."""
        return pagecache.cached_folios(path)

    def file_cachestat(self, path: str) -> CacheStat:
        """cachestat(2) of the whole file `path`: its cached, dirty and under-write-back pages, as the
        kernel counts them now (write-back completes on the disk's time: nr_writeback is only
        settled after a wait such as fsync). OSError where the kernel has no cachestat."""
        stat = pagecache.cachestat_path(path)
        if stat is None:
            raise OSError(errno.ENOSYS, "cachestat(2) is not available")
        return stat

    def kpageflags(self, pfn: int) -> int:
        """/proc/kpageflags of frame `pfn`."""
        return procfs.read_kpageflags(pfn)

    def kpagecount(self, pfn: int) -> int:
        """/proc/kpagecount of frame `pfn`."""
        return procfs.read_kpagecount(pfn)

    def close(self) -> None:
        """SIGKILL and reap every process still running; close every channel; remove the run's memory
        cgroups and stop reading the kernel's log."""
        procs, self._procs = self._procs, {}
        try:
            for proc in procs.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            for proc in procs.values():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.pid, 0)
                proc.sock.close()
        finally:
            self._memcgs.close()
            if self._kmsg is not None:
                self._kmsg.close()
                self._kmsg = None

    # --- machine operations: memory cgroups, oom_score_adj, comm, the hog, deaths -----------------

    def memcg_create(self, path: str, limit: int | None) -> int:
        """mkdir the memory cgroup `path` of the run's tree (and its parents) and write
        memory.limit_in_bytes (bytes; None: no limit); 0 or -errno."""
        return self._memcgs.create(path, limit)

    def memcg_set(self, path: str, name: str, value: int) -> int:
        """Write a control file of the run's memory cgroup `path` (memcg_tree.WRITABLE); 0 or -errno."""
        return self._memcgs.set(path, name, value)

    def memcg_attach(self, pid: int, path: str) -> int:
        """echo PID > PATH/cgroup.procs for a process of ours; 0 or -errno."""
        self._settle(self._proc(pid))
        return self._memcgs.attach(pid, path)

    def set_oom_score_adj(self, pid: int, adj: int) -> int:
        """The process writes `adj` to its own /proc/self/oom_score_adj (its capabilities decide
        whether it may go below its minimum: CAP_SYS_RESOURCE); 0 or -errno. InputError when the
        scenario gave it CAP_SYS_RESOURCE (the default) but this host's root lacks it (a container):
        the kernel refused what the model would allow."""
        fd = self.syscall(pid, "openat", (AT_FDCWD, "/proc/self/oom_score_adj", os.O_WRONLY))
        if fd < 0:
            return fd
        text = str(adj)
        written = self.syscall(pid, "write", (fd, text, len(text)))
        self.syscall(pid, "close", (fd,))
        refused = written == -errno.EACCES and self._settings.cap_sys_resource
        if refused and not has_capability(CAP_SYS_RESOURCE):
            raise InputError(f"oom_score_adj {adj}: this host's root lacks CAP_SYS_RESOURCE (a container?), "
                             "so the kernel refuses it; `set cap_sys_resource off` runs the scenario as "
                             "this host can")
        return min(written, 0)

    def set_comm(self, pid: int, name: str) -> int:
        """Write /proc/PID/comm of a process of ours; 0 or -errno."""
        return self._write_proc(pid, "comm", name)

    @property
    def memcg_base(self) -> Path:
        """The directory under the v1 memory hierarchy that holds the run's cgroups (made with the
        first, removed by close())."""
        return self._memcgs.base

    def hog_budget(self, pid: int) -> int | None:
        """How much a memory hog in `pid` may map before it gives up: twice the limit of the run's
        memory cgroup that confines it; None when no cgroup of the run with a limit holds it (on the
        host the hog would take the machine's memory)."""
        limit = self._memcgs.confining_limit(self._proc(pid).pid)
        return None if limit is None else 2 * limit

    def reap_deaths(self) -> list[tuple[int, str]]:
        """The processes of ours that died since they last answered, killed by a signal while they
        were not in a command of ours (the OOM killer chose another task than the one charging):
        (pid, signal), each reaped."""
        out = []
        for proc in list(self._procs.values()):
            with contextlib.suppress(ChildProcessError):
                # one with SIGKILL pending is on its way out: wait for it
                got, status = os.waitpid(proc.pid, 0 if _sigkill_pending(proc.pid) else os.WNOHANG)
                if got and os.WIFSIGNALED(status):
                    self._procs.pop(proc.pid, None)
                    proc.sock.close()
                    out.append((proc.pid, signal.Signals(os.WTERMSIG(status)).name))
        return out

    def dmesg(self) -> str:
        """The kernel's log lines since the backend's first process started, as `dmesg` prints them."""
        if self._kmsg is None:
            raise NotImplementedError("dmesg: /dev/kmsg cannot be read here")
        self._log += self._kmsg.read()
        return "".join(r.dmesg() + "\n" for r in self._log)

    # --- extras for tests and the lab ---------------------------------------------------------

    def nop(self, pid: int) -> None:
        """A command that does nothing: a round trip, and the warm-up after start/fork/execve."""
        proc = self._proc(pid)
        if self._call(proc, OP_NOP, 0, 0, []) is None:
            raise StepperDied(pid, self._reap(proc))

    def stat(self, pid: int) -> procfs.Stat:
        """/proc/<pid>/stat of a live process of ours."""
        self._settle(self._proc(pid))
        stat = procfs.read_stat(pid)
        if stat is None:
            raise ProcessLookupError(f"vmlab host: process {pid} is gone")
        return stat

    def entries(self, pid: int, start: int, end: int) -> list[procfs.PagemapEntry]:
        """pagemap() as decoded entries."""
        return [procfs.PagemapEntry(raw) for raw in self.pagemap(pid, start, end)]

    @property
    def pids(self) -> tuple[int, ...]:
        """The processes still running, in start order."""
        return tuple(self._procs)

    # --- the channel ------------------------------------------------------------------------------

    def _write_proc(self, pid: int, name: str, value: str) -> int:
        """Write /proc/PID/NAME of a process of ours (settled first); 0 or -errno."""
        self._settle(self._proc(pid))
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(value)
        except OSError as err:
            return -(err.errno or errno.EIO)
        return 0

    def _proc(self, pid: int) -> _Stepper:
        try:
            return self._procs[pid]
        except KeyError:
            raise ProcessLookupError(f"vmlab host: no running process {pid} of this backend") from None

    @staticmethod
    def _check_settings(settings: Settings) -> None:
        """The host can set RLIMIT_STACK, the personality and CAP_SYS_ADMIN per process, but the vm
        sysctls are global: each must equal the host's (a reserve left at None is not checked)."""
        for name in HOST_SYSCTLS:
            wanted = getattr(settings, name)
            if wanted is None:
                continue
            with open(f"/proc/sys/vm/{name}") as f:
                host = int(f.read())
            if wanted != host:
                raise InputError(f"{name} {wanted} differs from this host's vm.{name} = {host}")

    def _call(self, proc: _Stepper, op: int, flags: int, nr: int, args: list[int],
              payload: bytes = b"", oom_wait: bool = False) -> _Reply | None:
        """Send one command and wait for its reply; None if the process ended instead; with
        `oom_wait`, _InOomWait if it falls asleep in a memcg OOM wait meanwhile."""
        message = CMD.pack(op, flags, nr, *args, *[0] * (6 - len(args))) + payload
        proc.settled = False
        try:
            proc.sock.send(message)
        except (BrokenPipeError, ConnectionResetError):
            return None
        return self._receive(proc, oom_wait)

    def _receive(self, proc: _Stepper, oom_wait: bool = False) -> _Reply | None:
        """The next reply of `proc` (with the fd it carries, if any); None at end of file. With
        `oom_wait`, looks every OOM_POLL_S whether the process sleeps in a memcg OOM wait
        (_InOomWait)."""
        deadline = time.monotonic() + self.timeout
        if oom_wait:
            proc.sock.settimeout(OOM_POLL_S)
        try:
            while True:
                try:
                    data, ancdata, _, _ = proc.sock.recvmsg(REPLY.size, socket.CMSG_SPACE(4),
                                                            socket.MSG_CMSG_CLOEXEC)
                    break
                except ConnectionResetError:
                    return None
                except TimeoutError:
                    if oom_wait and _wchan(proc.pid) == "mem_cgroup_oom_synchronize":
                        raise _InOomWait from None
                    if not oom_wait or time.monotonic() >= deadline:
                        raise RuntimeError(f"vmlab host: process {proc.pid} did not answer within "
                                           f"{self.timeout} s") from None
        finally:
            if oom_wait:
                proc.sock.settimeout(self.timeout)
        if not data:
            return None
        fd = None
        for level, kind, blob in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fd = struct.unpack_from("<i", blob)[0]
        tag, _, value, aux = REPLY.unpack(data)
        return _Reply(tag, value, aux, fd)

    def _settle(self, proc: _Stepper) -> None:
        """Wait until `proc` is back in its blocking read() after its last reply (state S), so what
        /proc shows is a checkpoint: between the reply and the read it is still running (state R)."""
        if proc.settled:
            return
        for _ in range(100000):
            stat = procfs.read_stat(proc.pid)
            if stat is None or stat.state != "R":
                break
            os.sched_yield()
        proc.settled = True

    def _await_hello(self, proc: _Stepper) -> None:
        """Wait for a new stepper's HELLO, then warm it up with one NOP."""
        reply = self._receive(proc)
        if reply is None:
            raise StepperDied(proc.pid, self._reap(proc))
        if reply.tag != TAG_HELLO or reply.value != proc.pid:
            raise RuntimeError(f"vmlab host: process {proc.pid} is not a stepper (got {reply})")
        proc.payload = reply.aux
        self.nop(proc.pid)

    def _reap(self, proc: _Stepper) -> int:
        """waitpid() an ended process, forget it, and return its wait status."""
        self._procs.pop(proc.pid, None)
        proc.sock.close()
        try:
            return os.waitpid(proc.pid, 0)[1]
        except ChildProcessError:
            raise RuntimeError(f"vmlab host: process {proc.pid} was reaped elsewhere") from None


class _InOomWait(Exception):
    """The process a command waits on sleeps in its memcg's OOM wait queue."""


def _wchan(pid: int) -> str:
    """/proc/PID/wchan: the kernel function the process sleeps in ("" when it runs or is gone)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip()
    except OSError:
        return ""


def has_capability(cap: int) -> bool:
    """This process holds capability `cap` in its effective set (/proc/self/status CapEff); a
    process it starts holds it too, unless dropped (Settings.cap_sys_admin, cap_sys_resource)."""
    with open("/proc/self/status") as f:
        eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    return bool(eff >> cap & 1)


def _sigkill_pending(pid: int) -> bool:
    """SIGKILL is pending for process `pid` (its own or its thread group's: /proc/PID/status SigPnd,
    ShdPnd), as for a task the OOM killer chose."""
    try:
        with open(f"/proc/{pid}/status") as f:
            masks = [int(line.split()[1], 16) for line in f if line.startswith(("SigPnd:", "ShdPnd:"))]
    except OSError:
        return False
    return any(mask >> (signal.SIGKILL - 1) & 1 for mask in masks)


__all__ = ["CHANNEL_FD", "HostBackend", "StepperDied"]
