"""The real kernel's address space right after execve, before the new program runs one instruction.

The child asks to be traced (PTRACE_TRACEME), sets its personality (ADDR_NO_RANDOMIZE, optionally
ADDR_COMPAT_LAYOUT) and RLIMIT_STACK, then execs with an exact argv and envp. A successful execve of a
traced process stops it with SIGTRAP once load_elf_binary has returned: at that stop /proc/PID shows
only what the kernel mapped (no ld.so or libc work yet). The snapshot is read, then the child is killed.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from vmlab.host.procfs import status_kb_lines
from vmlab.kernel.uapi import ADDR_COMPAT_LAYOUT, ADDR_NO_RANDOMIZE

PTRACE_TRACEME = 0
#: /proc/PID/stat fields (1-based, man proc_pid_stat) that hold mm_struct layout fields.
STAT_FIELDS = {
    "start_code": 26, "end_code": 27, "start_stack": 28, "start_data": 45, "end_data": 46,
    "start_brk": 47, "arg_start": 48, "arg_end": 49, "env_start": 50, "env_end": 51,
}


class ExecFailed(RuntimeError):
    """The child's execve failed: `errno` is what it returned, or 0 when the child did not reach the
    exec SIGTRAP stop; then `status` is its wait status (a failure after the point of no return shows
    as a stop for the fatal SIGSEGV)."""

    def __init__(self, message: str, err: int = 0, status: int = 0) -> None:
        super().__init__(message)
        self.errno = err
        self.status = status


@dataclass(frozen=True)
class ExecSnapshot:
    """/proc/PID views of a process stopped right after execve."""

    maps: str
    smaps: str
    mm_fields: dict[str, int]  # STAT_FIELDS read from /proc/PID/stat
    status_kb: dict[str, int]  # the kB lines of /proc/PID/status (VmSize, VmStk, VmRSS, VmPTE, ...)
    cmdline: tuple[str, ...] = ()  # /proc/PID/cmdline: the arguments on the new stack
    comm: str = ""  # /proc/PID/comm


def _cstrings(items: Sequence[str]) -> ctypes.Array[ctypes.c_char_p]:
    """A NULL-terminated char *[] for execve."""
    arr = (ctypes.c_char_p * (len(items) + 1))()
    arr[:-1] = [os.fsencode(s) for s in items]
    arr[-1] = None
    return arr


def _child(path: str, argv: Sequence[str], envp: Sequence[str], rlimit_stack: int | None, legacy: bool,
           trace: bool, errpipe: int) -> None:
    """In the forked child: personality, rlimit, TRACEME, execve; report errno on the pipe if it fails."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.personality(ADDR_NO_RANDOMIZE | (ADDR_COMPAT_LAYOUT if legacy else 0))
        limit = resource.RLIM_INFINITY if rlimit_stack is None else rlimit_stack
        resource.setrlimit(resource.RLIMIT_STACK, (limit, resource.getrlimit(resource.RLIMIT_STACK)[1]))
        if trace and libc.ptrace(PTRACE_TRACEME, 0, None, None) != 0:
            raise OSError(ctypes.get_errno(), "ptrace")
        c_argv, c_envp = _cstrings(argv), _cstrings(envp)
        libc.execve(os.fsencode(path), c_argv, c_envp)
        err = ctypes.get_errno()
    except BaseException as e:  # anything here must end in _exit, never return to the caller's code
        err = getattr(e, "errno", 0) or 255
    try:
        os.write(errpipe, str(err).encode())
    finally:
        os._exit(127)


def spawn(path: str, argv: Sequence[str], envp: Sequence[str], rlimit_stack: int | None, legacy: bool,
          trace: bool, stdout: int | None = None) -> int:
    """Fork a child that execs `path` with exactly argv/envp, ASLR off; its pid once execve succeeded.

    Raises ExecFailed with the child's errno if execve failed. With `trace` the child stops at the exec
    SIGTRAP. `stdout` (a fd) becomes the child's standard output.
    """
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        if stdout is not None:
            os.dup2(stdout, 1)
        _child(path, argv, envp, rlimit_stack, legacy, trace, wfd)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        report = r.read()
    if report:
        os.waitpid(pid, 0)
        err = int(report)
        raise ExecFailed(f"execve({path!r}) failed: {os.strerror(err)}", err)
    return pid


def _read(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/{name}") as f:
        return f.read()


def snapshot_at_exec(path: str, argv: Sequence[str], envp: Sequence[str], rlimit_stack: int | None,
                     legacy: bool = False) -> ExecSnapshot:
    """Exec `path` for real (ASLR off) and read maps, smaps, the mm fields, status, cmdline and comm at
    the exec stop."""
    pid = spawn(path, argv, envp, rlimit_stack, legacy, trace=True)
    _, status = os.waitpid(pid, 0)
    if not os.WIFSTOPPED(status):
        raise ExecFailed(f"{path}: died during exec, wait status {status:#x}", status=status)
    try:
        if os.WSTOPSIG(status) != signal.SIGTRAP:
            raise ExecFailed(f"{path}: expected the exec SIGTRAP stop, got wait status {status:#x}",
                             status=status)
        maps, smaps = _read(pid, "maps"), _read(pid, "smaps")
        fields = _read(pid, "stat").rsplit(")", 1)[1].split()
        mm_fields = {k: int(fields[n - 3]) for k, n in STAT_FIELDS.items()}
        status_kb = status_kb_lines(_read(pid, "status"))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = tuple(os.fsdecode(a) for a in f.read().split(b"\0")[:-1])
        comm = _read(pid, "comm").rstrip("\n")
    finally:
        os.kill(pid, signal.SIGKILL)  # still our unreaped, stopped child: the pid cannot be reused
        os.waitpid(pid, 0)
    return ExecSnapshot(maps, smaps, mm_fields, status_kb, cmdline, comm)


def run_to_exit(path: str, argv: Sequence[str], envp: Sequence[str], rlimit_stack: int | None,
                legacy: bool = False) -> tuple[int, bytes]:
    """Run `path` untraced (ASLR off) to completion; its exit status and everything it wrote to stdout."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    try:
        pid = spawn(path, argv, envp, rlimit_stack, legacy, trace=False, stdout=wfd)
    finally:
        os.close(wfd)
    chunks = []
    with os.fdopen(rfd, "rb") as r:
        while chunk := r.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)
