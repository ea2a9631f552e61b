"""Read a whole `strace -f -v -s 65536 -o LOG CMD` log (also -y, -tt/-ttt/-r, -T) and replay it on a backend.

`read_log` turns the log into events, joining `<unfinished ...>` heads with their `<... resumed>` tails;
it uses the same call parser as the scenario language (vmlab.lab.syntax). `Replay` follows execve, the
memory syscalls, fork/vfork/clone, the file-descriptor calls and what names files (memfd_create,
ftruncate, chdir, fchdir, unlink) on the model and yields the
/proc/<pid>/maps the kernel would have shown; where the model's result differs from the log's it reports
a divergence and follows the log so the replay stays in step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from vmlab.backend import Arg, Backend, Program, Settings
from vmlab.errors import InputError
from vmlab.kernel import uapi
from vmlab.lab.calls import CONSTANTS as _CONST
from vmlab.lab.calls import FD_CALLS, FORKS, MEMORY_CALLS, SYSCALLS, UNMODELLED_MM_CALLS, interpret_args
from vmlab.lab.calls import format_result as _fmt
from vmlab.lab.syntax import (
    Call,
    Exited,
    Expr,
    Num,
    Resumed,
    Seq,
    Signal,
    Source,
    Str,
    check_operands,
    evaluate,
    expr_names,
    parse_event,
    parse_expr,
    read_source,
    split_prefix,
)


def ok(value: int) -> bool:
    """Whether a syscall return value is a success (not -errno)."""
    return not -4095 <= value < 0


@dataclass(frozen=True)
class Event:
    """One complete thing that happened to a traced process, at the log line where it completed."""

    line: int
    pid: int | None
    body: Call | Signal | Exited
    src: Source


def read_log(path: str) -> list[Event]:
    """The events of the strace log at `path` (InputError: a missing file, a line that does not parse)."""
    return parse_log(read_source(path, "strace log"), path)


def parse_log(text: str, path: str = "<log>") -> list[Event]:
    """Parse a log's text into events; an unfinished call becomes one event when its tail arrives."""
    events: list[Event] = []
    pending: dict[int | None, tuple[str, int, int]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.startswith("strace: "):
            continue
        line = split_prefix(raw)
        src = Source(path, lineno, line.body_col - 1)
        if line.body.startswith(("+++", "---")) and not line.body.startswith(("+++ exited", "+++ killed",
                                                                                "--- SIG")):
            continue  # `+++ superseded by execve +++`, `--- stopped by SIGSTOP ---`
        body = parse_event(line.body, src)
        if isinstance(body, Resumed):
            head = pending.pop(line.pid, None)
            if head is None:
                continue  # the log starts inside this call (strace -p): nothing to join it with
            text_, hline, hcol = head
            joined = text_ + body.tail
            body = parse_event(joined, Source(path, hline, hcol))
            src = Source(path, hline, hcol)
        if isinstance(body, Call) and body.unfinished:
            head_text = line.body[: line.body.rindex("<unfinished")]
            pending[line.pid] = (head_text.removesuffix(" "), lineno, line.body_col - 1)
            continue
        assert not isinstance(body, Resumed)
        if isinstance(body, Call):
            _check_result(body, src)
        events.append(Event(src.line, line.pid, body, src))
    return events


def _check_result(call: Call, src: Source) -> None:
    """A logged return value is a number strace printed: a name in it (`= FOO`) or an operation
    without a value (`= 1/0`) is an InputError, not a traceback when the replay reads it."""
    value = call.result.value if call.result is not None else None
    if value is None:
        return
    names = expr_names(value)
    if names:
        raise src.error(f"the result of {call.name} must be a number, not '{names[0].name}'", names[0].col)
    check_operands(value, src, {})


def _result(call: Call) -> int | None:
    """The logged return value (-errno for an error), or None for `= ?`/no result."""
    res = call.result
    if res is None or res.value is None:
        return None
    if res.errno is not None:
        import errno as _errno

        return -getattr(_errno, res.errno, uapi.EINVAL)
    value = evaluate(res.value, {})
    return value if isinstance(value, int) else None


def _path_names(path: str, pid: int | None) -> set[str]:
    """The names one path goes by: itself, its absolute form, and /proc/self as /proc/<pid>."""
    names = {path, os.path.normpath(path)}
    if pid is not None:
        names |= {n.replace("/proc/self/", f"/proc/{pid}/") for n in list(names)}
    return names


def _path_matches(target: str, names: set[str], pid: int | None) -> bool:
    """Whether the user's PATH names a file that went by `names` in process `pid`."""
    return bool(_path_names(target, pid) & names)


def maps_read_in_log(events: list[Event], path: str) -> str:
    """The text the traced program itself read from its first descriptor opened on `path`.

    It is the buffers of the read() calls on that descriptor, each put at the file offset it was
    read from (an lseek() moves the offset to what it returned: bash's `read` builtin reads ahead and
    seeks back to the end of the line), until one returns 0 or the descriptor is closed; InputError
    when the log has no such read or strace cut a buffer short.
    """
    pid_of: int | None = None
    aliases: set[int] = set()  # the descriptors (the opened one and its dups) that refer to the file
    opened = False
    text, pos = bytearray(), 0
    for ev in events:
        call = ev.body
        if not isinstance(call, Call):
            continue
        ret = _result(call)
        if not opened and call.name in ("open", "openat") and ret is not None and ret >= 0:
            if _path_matches(path, _open_names(call, ev), ev.pid):
                opened, pid_of, aliases = True, ev.pid, {ret}
            continue
        if not opened or ev.pid != pid_of:
            continue
        fd = _fd_arg(call, ev)
        if call.name in ("dup", "dup2", "dup3", "fcntl") and fd in aliases and ret is not None and ret >= 0:
            aliases.add(ret)
        elif call.name == "close" and fd in aliases:
            aliases.discard(fd)
            if not aliases:
                break
        elif call.name == "read" and fd in aliases:
            if not ret:
                break
            buf = _arg(call, ev, 1)
            if not isinstance(buf, Str) or buf.truncated:
                raise ev.src.error("the read() buffer is missing or cut short (trace with -s 65536)", 1)
            text[pos:pos + ret] = buf.value[:ret]
            pos += ret
        elif call.name == "lseek" and fd in aliases and ret is not None and ret >= 0:
            pos = ret
        elif call.name in ("dup2", "dup3") and ret in aliases:
            aliases.discard(ret)  # another file was dup'ed over one of the aliases
    if not opened or not text:
        raise InputError(f"the log has no read() of a descriptor opened on {path}", events[0].src.path
                         if events else "")
    return text.decode("utf-8", "surrogateescape")


def _arg(call: Call, ev: Event, index: int) -> Expr:
    """Argument `index` of `call` as an expression (InputError where it does not parse)."""
    arg = call.args[index]
    return parse_expr(list(arg.toks), ev.src, arg.end_col)


def _absolute_name(names: set[str]) -> str | None:
    """The first absolute path among a descriptor's names (sorted), or None."""
    return next((n for n in sorted(names) if n.startswith("/")), None)


def _fd_arg(call: Call, ev: Event, index: int = 0) -> int | None:
    """Argument `index` of `call` as a plain integer (an fd), or None if it is not one."""
    if len(call.args) <= index:
        return None
    try:
        expr = _arg(call, ev, index)
    except InputError:
        return None
    return expr.value if isinstance(expr, Num) else None


def _open_names(call: Call, ev: Event) -> set[str]:
    """Every name the file opened by an open/openat call goes by (its path argument and -y decoration)."""
    names: set[str] = set()
    path_arg = call.args[1 if call.name == "openat" else 0]
    expr = parse_expr(list(path_arg.toks), ev.src, path_arg.end_col)
    if isinstance(expr, Str):
        names |= _path_names(expr.text(), ev.pid)
        if call.name == "openat" and not expr.text().startswith("/"):
            dirfd = call.args[0].toks[0].decoration if call.args[0].toks else None
            if dirfd:
                names |= _path_names(os.path.join(dirfd, expr.text()), ev.pid)
    if call.result is not None and call.result.path:
        names.add(call.result.path)
    return names


@dataclass
class Fd:
    """A traced descriptor: the model's descriptor for it (None if the model has none) and its names."""

    model_fd: int | None
    names: set[str]
    cloexec: bool = False


@dataclass
class Proc:
    """A traced process: its model pid, descriptor table and working directory (shared between
    threads)."""

    model_pid: int
    fds: dict[int, Fd] = field(default_factory=dict)
    #: The working directory relative paths start from (chdir, fchdir; at first the execve's PWD).
    cwd: str | None = None


@dataclass(frozen=True)
class Divergence:
    """Where the replay and the log disagree, or the log did something the model does not follow."""

    line: int
    pid: int | None
    message: str

    def text(self, path: str) -> str:
        """`LOG:LINE: [pid N] message`."""
        who = f"[pid {self.pid}] " if self.pid is not None else ""
        return f"{path}:{self.line}: {who}{self.message}"


#: Calls the replay follows for what later opens and mmaps name: memfd files, sizes, the directory,
#: names removed (a file mapped after its unlink shows `(deleted)`).
FILE_CALLS = frozenset({"memfd_create", "ftruncate", "chdir", "fchdir", "unlink", "unlinkat"})


class Replay:
    """Follows a log's events on a backend (normally the model)."""

    def __init__(self, events: list[Event], backend: Backend, at_read: str | None = None,
                 report: Callable[[Divergence], None] | None = None) -> None:
        self.events, self.backend, self.at_read = events, backend, at_read
        self.report = report
        self.procs: dict[int | None, Proc] = {}
        self.main: int | None = None
        self.divergences: list[Divergence] = []
        self.finals: dict[int | None, str] = {}
        self.captured: str | None = None
        self.forked: set[int] = set()
        self.parent_of = self._parents()

    def _parents(self) -> dict[int, tuple[int | None, bool]]:
        """child log pid -> (parent log pid, shares the address space) from every completed clone/fork."""
        out: dict[int, tuple[int | None, bool]] = {}
        for ev in self.events:
            if isinstance(ev.body, Call) and ev.body.name in FORKS:
                child = _result(ev.body)
                if child is not None and child > 0:
                    text = " ".join(a.text for a in ev.body.args)
                    out[child] = (ev.pid, "CLONE_VM" in text and "CLONE_VFORK" not in text)
        return out

    def diverge(self, ev: Event, message: str) -> None:
        """Record and report one divergence."""
        d = Divergence(ev.line, ev.pid, message)
        self.divergences.append(d)
        if self.report is not None:
            self.report(d)

    def run(self) -> str:
        """Replay every event; return the maps text to print (at the --at-read point, or at the end)."""
        for ev in self.events:
            if self.captured is not None:
                break
            self.event(ev)
        if self.at_read is not None:
            if self.captured is None:
                src = self.events[0].src if self.events else Source("<log>", 0)
                raise InputError(f"the log has no read() of a descriptor opened on {self.at_read}",
                                 src.path)
            return self.captured
        if self.main in self.procs:
            return self.backend.view(self.procs[self.main].model_pid, "maps")
        if self.main in self.finals:
            return self.finals[self.main]
        raise InputError("the log has no successful execve to start from", self.events[0].src.path
                         if self.events else "")

    def event(self, ev: Event) -> None:
        """Replay one event."""
        body = ev.body
        if isinstance(body, Exited):
            self.exit(ev)
            return
        if isinstance(body, Signal):
            return
        if ev.pid not in self.procs and not self.adopt(ev):
            return
        name = body.name
        if name == "execve":
            self.execve(ev, body)
        elif name in FORKS:
            child = _result(body)
            if child is not None and child > 0 and child not in self.forked:
                self.fork(ev.pid, child)
        elif name == "mbind" and len(body.args) > 3 and body.args[3].text != "NULL":
            self.diverge(ev, "mbind() with a nodemask is not modelled (the model keeps no user memory to "
                             "read it from); not followed")
        elif name in MEMORY_CALLS:
            self.memory(ev, body)
        elif name in FD_CALLS:
            self.fd_call(ev, body)
        elif name in FILE_CALLS:
            self.file_call(ev, body)
        elif name == "read":
            self.read(ev, body)
        elif name in UNMODELLED_MM_CALLS or self.unmodelled_special(body):
            self.diverge(ev, f"{name}() changes the address space but is not modelled; not followed")
        else:
            self.other_fd_result(ev, body)

    def adopt(self, ev: Event) -> bool:
        """Start or fork the process of an event from a pid not seen yet; False to skip the event."""
        body = ev.body
        if ev.pid in self.parent_of and self.parent_of[ev.pid][0] in self.procs:
            assert ev.pid is not None
            self.fork(self.parent_of[ev.pid][0], ev.pid)
            return True
        if isinstance(body, Call) and body.name == "execve" and not self.procs:
            return True
        if isinstance(body, Call) and body.name in MEMORY_CALLS | FD_CALLS:
            raise ev.src.error("the log does not start with this process's execve (trace from the start, "
                               "not with -p)", 1)
        return False

    def unmodelled_special(self, call: Call) -> bool:
        """ioctl(UFFDIO_*), prctl(PR_SET_MM...), arch_prctl(ARCH_MAP_VDSO_*): address-space changes too."""
        text = " ".join(a.text for a in call.args)
        return ((call.name == "ioctl" and "UFFDIO_" in text) or (call.name == "prctl" and "PR_SET_MM" in text)
                or (call.name == "arch_prctl" and "ARCH_MAP_VDSO" in text))

    def fork(self, parent: int | None, child: int) -> None:
        """fork/vfork/clone in the model; a CLONE_VM thread shares its parent's process entry."""
        self.forked.add(child)
        proc = self.procs[parent]
        if self.parent_of.get(child, (None, False))[1]:
            self.procs[child] = proc
            return
        model_child = self.backend.fork(proc.model_pid)
        fds = {n: Fd(f.model_fd, set(f.names), f.cloexec) for n, f in proc.fds.items()}
        self.procs[child] = Proc(model_child, fds, proc.cwd)

    def exit(self, ev: Event) -> None:
        """A process ended: keep its last maps, then reap it in the model."""
        proc = self.procs.pop(ev.pid, None)
        if proc is None:
            return
        if any(p is proc for p in self.procs.values()):
            return  # a thread ended; its address space lives on
        self.finals[ev.pid] = self.backend.view(proc.model_pid, "maps")
        self.backend.exit(proc.model_pid)

    def execve(self, ev: Event, call: Call) -> None:
        """A successful execve: the first one starts the model process, later ones exec in it."""
        if _result(call) != 0:
            return
        program = self.program(ev, call)
        if not self.procs:
            self.main = ev.pid
            try:
                model_pid = self.backend.start(program, Settings())
            except OSError as e:
                raise ev.src.error(f"cannot replay execve: the model cannot run {program.path}: "
                                   f"{os.strerror(e.errno) if e.errno else e}", call.col) from None
            pwd = next((v[4:] for v in program.envp if v.startswith("PWD=/")), None)
            self.procs[ev.pid] = Proc(model_pid, cwd=pwd)
            return
        proc = self.procs[ev.pid]
        ret = self.backend.syscall(proc.model_pid, "execve", (program.path, program.argv, program.envp))
        if ret != 0:
            self.diverge(ev, f"execve(\"{program.path}\") {_fmt(ret, False)} in the model, = 0 in the log")
        proc.fds = {n: f for n, f in proc.fds.items() if not f.cloexec}

    def program(self, ev: Event, call: Call) -> Program:
        """The Program an execve line runs (an elided envp is reported and taken as empty)."""
        if len(call.args) != 3:
            raise ev.src.error("execve takes 3 arguments", call.col)
        path_e = _arg(call, ev, 0)
        argv_e = _arg(call, ev, 1)
        if not isinstance(path_e, Str) or not isinstance(argv_e, Seq):
            raise ev.src.error("execve needs a quoted path and an argv array (trace with -v)", call.col)
        try:
            env_e = _arg(call, ev, 2)
        except InputError:
            env_e = None
        envp: tuple[str, ...] = ()
        if isinstance(env_e, Seq) and not env_e.truncated:
            envp = tuple(i.text() for i in env_e.items if isinstance(i, Str))
        else:
            self.diverge(ev, "execve's envp is not in the log (trace with -v); using an empty environment")
        path = path_e.text()
        if not os.path.exists(path):
            raise ev.src.error(f"cannot replay execve: {path} does not exist on this host", call.args[0].col)
        return Program(path, tuple(i.text() for i in argv_e.items if isinstance(i, Str)), envp)

    def memory(self, ev: Event, call: Call) -> None:
        """A memory syscall: run it in the model; on a different result, report and follow the log."""
        proc = self.procs[ev.pid]
        args = [evaluate(e, _CONST) for e in interpret_args(call, ev.src, lambda _n: False)]
        if call.name == "mmap" and not int(args[3]) & uapi.MAP_ANONYMOUS:  # type: ignore[arg-type]
            fd = proc.fds.get(int(args[4]))  # type: ignore[arg-type]
            if fd is None or fd.model_fd is None:
                what = ", ".join(sorted(fd.names)) if fd else "unknown origin"
                self.diverge(ev, f"mmap of fd {args[4]} ({what}) the model has no file for; mapped "
                                 "anonymous memory at the log's address instead")
                args[3] = uapi.MAP_PRIVATE | uapi.MAP_ANONYMOUS | uapi.MAP_FIXED
                args[4], args[5] = -1, 0
                args[0] = _result(call) or 0
            else:
                args[4] = fd.model_fd
        got = self.backend.syscall(proc.model_pid, call.name, tuple(args))
        want = _result(call)
        if want is not None and want != got:
            addr = SYSCALLS[call.name].returns_addr
            self.diverge(ev, f"{call.name}: the log says {_fmt(want, addr)}, the model returned "
                             f"{_fmt(got, addr)}" + self.follow(proc.model_pid, call.name, args, got, want))
            got = want  # followed: the log's mapping is the model's now
        if call.name == "mmap" and ok(got):
            self.written_when_made(proc, got, int(args[2]), int(args[3]))  # type: ignore[arg-type]

    def written_when_made(self, proc: Proc, addr: int, prot: int, flags: int) -> None:
        """What strace cannot show, assumed for a new private anonymous mapping made writable: the
        program writes it at once (malloc's chunk header, a library's bss, TLS, an interpreter's
        arena). Its first page is written in the model too, so the VMA has an anon_vma as the
        kernel's has: two such neighbours with different anon_vmas do not merge with a mapping made
        between them, and an mremap move keeps the VMA's vm_pgoff (copy_vma() resets only an
        unfaulted one's)."""
        if flags & uapi.MAP_ANONYMOUS and not flags & uapi.MAP_SHARED and prot & uapi.PROT_WRITE:
            self.backend.access(proc.model_pid, addr, 1, True)

    def follow(self, pid: int, name: str, args: list[Arg], got: int, want: int) -> str:
        """Bring the model in step with the log after mmap/mremap placed memory elsewhere; say what it did."""
        if name == "mmap":
            length = int(args[1])
            if ok(got):
                self.backend.syscall(pid, "munmap", (got, length))
            if ok(want):
                fixed = (want, length, args[2], (int(args[3]) & ~uapi.MAP_FIXED_NOREPLACE) | uapi.MAP_FIXED,
                         args[4], args[5])
                self.backend.syscall(pid, "mmap", fixed)
                return "; re-mapped with MAP_FIXED at the log's address"
            return "; undone" if ok(got) else ""
        if name == "mremap" and ok(want):
            flags = uapi.MREMAP_MAYMOVE | uapi.MREMAP_FIXED
            if ok(got):
                self.backend.syscall(pid, "mremap", (got, int(args[2]), int(args[2]), flags, want))
            else:
                self.backend.syscall(pid, "mremap", (args[0], args[1], args[2], flags, want))
            return "; moved to the log's address with MREMAP_FIXED"
        return "; not followed"

    def fd_call(self, ev: Event, call: Call) -> None:
        """open/openat/dup*/fcntl(F_DUPFD*)/close: keep the log's descriptor numbers mapped to the model's."""
        proc = self.procs[ev.pid]
        ret = _result(call)
        if ret is None or ret < 0:
            return  # a failed call changed nothing
        if call.name == "fcntl":
            call = self.fcntl_head(call)
        args = interpret_args(call, ev.src, lambda _n: False)
        values = [evaluate(a, _CONST) for a in args]
        if call.name in ("open", "openat"):
            flags = int(values[2 if call.name == "openat" else 1])  # type: ignore[arg-type]
            given = str(values[1 if call.name == "openat" else 0])
            dirfd = int(values[0]) if call.name == "openat" else uapi.AT_FDCWD  # type: ignore[arg-type]
            names = _open_names(call, ev) | self._absolute(proc, dirfd, given)
            path = (call.result.path if call.result and call.result.path else _absolute_name(names) or given)
            # O_CREAT stays: a file the program made and removed since is made in the model, empty.
            safe = flags & ~(uapi.O_TRUNC | uapi.O_EXCL | uapi.O_APPEND)
            mfd = self.backend.syscall(proc.model_pid, "openat", (uapi.AT_FDCWD, path, safe))
            self.set_fd(proc, ret, Fd(mfd if mfd >= 0 else None, names, bool(flags & uapi.O_CLOEXEC)))
        elif call.name == "close":
            fd = proc.fds.pop(int(values[0]), None)  # type: ignore[arg-type]
            if fd is not None and fd.model_fd is not None and not self._shared(proc, fd.model_fd):
                self.backend.syscall(proc.model_pid, "close", (fd.model_fd,))
        elif call.name in ("dup", "dup2", "dup3") or (
                call.name == "fcntl" and values[1] in (uapi.F_DUPFD, uapi.F_DUPFD_CLOEXEC)):
            old = proc.fds.get(int(values[0]))  # type: ignore[arg-type]
            if old is None or old.model_fd is None:
                self.set_fd(proc, ret, Fd(None, set(old.names) if old else set()))
                return
            mfd = self.backend.syscall(proc.model_pid, "dup", (old.model_fd,))
            cloexec = (call.name == "dup3" and bool(int(values[2]) & uapi.O_CLOEXEC)  # type: ignore[arg-type]
                       ) or (call.name == "fcntl" and values[1] == uapi.F_DUPFD_CLOEXEC)
            self.set_fd(proc, ret, Fd(mfd if mfd >= 0 else None, set(old.names), cloexec))
        elif call.name == "fcntl" and values[1] == uapi.F_SETFD and ret == 0 and len(values) > 2:
            fd = proc.fds.get(int(values[0]))  # type: ignore[arg-type]
            if fd is not None:
                fd.cloexec = bool(int(values[2]) & 1)  # type: ignore[arg-type]

    @staticmethod
    def _absolute(proc: Proc, dirfd: int, path: str) -> set[str]:
        """The absolute name of a relative `path` from the working directory or from `dirfd`'s
        absolute name, where the replay knows it (else nothing)."""
        if path.startswith("/"):
            return set()
        if dirfd == uapi.AT_FDCWD:
            base = proc.cwd
        else:
            fd = proc.fds.get(dirfd)
            base = _absolute_name(fd.names) if fd else None
        return {os.path.normpath(os.path.join(base, path))} if base else set()

    def file_call(self, ev: Event, call: Call) -> None:
        """memfd_create (a shmem file in the model too), ftruncate, chdir, fchdir, unlink and unlinkat,
        when they succeeded."""
        proc = self.procs[ev.pid]
        ret = _result(call)
        if ret is None or ret < 0 or not call.args:
            return
        first = _arg(call, ev, 0)
        if call.name == "memfd_create" and isinstance(first, Str) and len(call.args) == 2:
            flags_e = _arg(call, ev, 1)
            flags = int(evaluate(flags_e, _CONST))  # type: ignore[arg-type]
            mfd = self.backend.syscall(proc.model_pid, "memfd_create", (first.text(), flags))
            self.set_fd(proc, ret, Fd(mfd if mfd >= 0 else None, {f"/memfd:{first.text()} (deleted)"},
                                      bool(flags & uapi.MFD_CLOEXEC)))
        elif call.name == "ftruncate" and isinstance(first, Num) and len(call.args) == 2:
            fd = proc.fds.get(first.value)
            length = _arg(call, ev, 1)
            if fd is not None and fd.model_fd is not None and isinstance(length, Num):
                got = self.backend.syscall(proc.model_pid, "ftruncate", (fd.model_fd, length.value))
                if got != ret:
                    self.diverge(ev, f"ftruncate: the log says {_fmt(ret, False)}, the model returned "
                                     f"{_fmt(got, False)}")
        elif call.name == "chdir" and isinstance(first, Str):
            text = first.text()
            proc.cwd = (os.path.normpath(text) if text.startswith("/")
                        else next(iter(self._absolute(proc, uapi.AT_FDCWD, text)), None))
        elif call.name == "fchdir" and isinstance(first, Num):
            fd = proc.fds.get(first.value)
            proc.cwd = _absolute_name(fd.names) if fd else None
        elif call.name in ("unlink", "unlinkat"):
            self.unlink(ev, call, proc)

    def unlink(self, ev: Event, call: Call, proc: Proc) -> None:
        """A successful unlink/unlinkat of a file (not rmdir: AT_REMOVEDIR) the model has: it goes there
        too, from the model's view of the namespace only."""
        at = call.name == "unlinkat"
        if len(call.args) != (3 if at else 1):
            return
        path_e = _arg(call, ev, 1 if at else 0)
        if not isinstance(path_e, Str):
            return
        dirfd, flags = uapi.AT_FDCWD, 0
        if at:
            dirfd, flags = (int(evaluate(_arg(call, ev, i), _CONST)) for i in (0, 2))  # type: ignore[arg-type]
        if flags:
            return
        path = path_e.text()
        path = next(iter(self._absolute(proc, dirfd, path)), path)
        got = self.backend.syscall(proc.model_pid, "unlink", (path,))
        if got not in (0, -uapi.ENOENT):
            self.diverge(ev, f"{call.name}: the log says = 0, the model returned {_fmt(got, False)}")

    @staticmethod
    def fcntl_head(call: Call) -> Call:
        """fcntl with its third argument kept only for the commands the replay follows (else: a struct)."""
        cmd = call.args[1].text if len(call.args) > 1 else ""
        keep = 3 if cmd in ("F_DUPFD", "F_DUPFD_CLOEXEC", "F_SETFD") else 2
        return Call(call.name, call.col, call.args[:keep], call.result, call.unfinished)

    def _shared(self, proc: Proc, model_fd: int) -> bool:
        """Whether another log descriptor of the process still uses `model_fd`."""
        return any(f.model_fd == model_fd for f in proc.fds.values())

    def set_fd(self, proc: Proc, number: int, fd: Fd) -> None:
        """Bind log descriptor `number` (closing what it named before, as dup2 does)."""
        old = proc.fds.pop(number, None)
        if old is not None and old.model_fd is not None and not self._shared(proc, old.model_fd) \
                and old.model_fd != fd.model_fd:
            self.backend.syscall(proc.model_pid, "close", (old.model_fd,))
        proc.fds[number] = fd

    def other_fd_result(self, ev: Event, call: Call) -> None:
        """A call the replay does not follow that returned a descriptor (socket, eventfd2, ...)."""
        ret = _result(call)
        if call.result is not None and call.result.path and ret is not None and ret >= 0:
            self.set_fd(self.procs[ev.pid], ret, Fd(None, {call.result.path}))
        elif call.name in ("eventfd2", "socket", "epoll_create1", "timerfd_create",
                           "signalfd4", "perf_event_open", "userfaultfd", "pidfd_open") and ret and ret >= 0:
            self.set_fd(self.procs[ev.pid], ret, Fd(None, {f"{call.name}()"}))

    def read(self, ev: Event, call: Call) -> None:
        """A read(): with --at-read, the first one on PATH captures the model's maps just before it."""
        if self.at_read is None:
            return
        num = _fd_arg(call, ev)
        fd = self.procs[ev.pid].fds.get(num) if num is not None else None
        if fd is not None and _path_matches(self.at_read, fd.names, ev.pid):
            self.captured = self.backend.view(self.procs[ev.pid].model_pid, "maps")


