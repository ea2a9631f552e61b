"""Execute a parsed scenario on one Backend and produce its transcript.

Each step is echoed strace-style with its result; `show` renders the view; `expect` failures are reported
with a small unified diff. The transcript is also kept as records (one or more per step) so that
`vmlab diff` can compare two backends step by step.
"""

from __future__ import annotations

import difflib
import errno as _errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vmlab.backend import MACHINE_VIEWS, Backend, Counters, ProcessDied, Program
from vmlab.errors import InputError
from vmlab.lab import paging, siginfo
from vmlab.lab.calls import CONSTANTS, SYSCALLS, format_call, format_result
from vmlab.lab.scenario import (
    MAIN,
    PAGING_VIEWS,
    AccessStep,
    CallStep,
    CommStep,
    EarlyoomStep,
    ExitStep,
    ExpectKilledStep,
    ExpectResultStep,
    ExpectViewStep,
    FileSpec,
    ForkStep,
    HogStep,
    IgnoreStep,
    JoinStep,
    MemcgStep,
    OomScoreAdjStep,
    Scenario,
    SetpgidStep,
    ShowStep,
    SleepStep,
    Step,
)
from vmlab.lab.syntax import EvalError, Expr, Result, evaluate

#: Record kinds `vmlab diff` compares; notes (trace mismatches, expect verdicts) are not compared.
#: "view" is a /proc text view (compared on the lines the model prints), "paging" a paging view.
COMPARED = frozenset({"call", "access", "signal", "view", "paging", "fork", "exit"})
#: The pattern a `file` statement writes (a page-sized, non-zero repeating block).
FILE_PATTERN = bytes(range(1, 256)) * 16 + b"\n"


class Unavailable(Exception):
    """The backend cannot render a view (the model before its paging lands)."""


@dataclass(frozen=True)
class Record:
    """One piece of a transcript: which step produced it, what kind it is, its text (no newline)."""

    step: int
    kind: str
    text: str


@dataclass
class Transcript:
    """Everything a run printed, and the expect failures."""

    records: list[Record] = field(default_factory=list)
    failures: int = 0
    #: The [start, end) ranges of the program's own VMAs right after it started (its image, bss,
    #: stack, vdso): their pages are touched by the program's own code, which only the host runs.
    program_vmas: list[tuple[int, int]] = field(default_factory=list)

    def text(self) -> str:
        """The transcript as printed."""
        return "".join(r.text + "\n" for r in self.records)


def default_program() -> Program:
    """The built-in program: the tiny static stepper (vmlab.host.stepper_build)."""
    from vmlab.host.stepper_build import stepper_program  # lazy: built on first use

    return stepper_program()


class Unbound(Exception):
    """A step names a variable that has no value (its defining step was skipped or failed)."""


def value_of(expr: Expr, env: dict[str, int]) -> int | str | tuple[str, ...]:
    """evaluate(expr, env), an unbound name raising Unbound: a KeyError from deeper down (a model bug)
    must not pass for a skipped step. An operation without a value on a variable (`4K / a` with a = 0;
    on constants alone the scenario checker refuses it) raises Unavailable: the step is skipped."""
    try:
        return evaluate(expr, env)
    except KeyError as err:
        raise Unbound(err.args[0]) from None
    except EvalError as err:
        raise Unavailable(f"column {err.col}: {err.message}") from None


def expected_errno(result: Result, env: dict[str, int]) -> int | None:
    """The return value a `= ...` result stands for (-errno for `-1 ENAME`), None for `= ?`."""
    if result.errno is not None:
        return -getattr(_errno, result.errno, 0) if hasattr(_errno, result.errno) else None
    if result.value is None:
        return None
    value = value_of(result.value, env)
    return value if isinstance(value, int) else None


def make_file(spec: FileSpec) -> None:
    """Write `spec`'s file in place (an existing file keeps its inode), sync it to disk and read it
    back, so it is clean and wholly in the page cache (reference N3).

    It is written one page per write(): the page cache then holds 4 KiB folios, as after `cat f`
    of a cold file. One big write() makes ext4 allocate large folios, and 6.18's fault-around maps a
    whole large folio (a read of page 20 of a 64-page file written at once maps all 64 pages, not
    the 16 of reference P6)."""
    fd = os.open(spec.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        data = (FILE_PATTERN * (spec.size // len(FILE_PATTERN) + 1))[: spec.size]
        for off in range(0, spec.size, paging.PAGE):
            os.write(fd, data[off:off + paging.PAGE])
        os.fsync(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        while os.read(fd, 1 << 20):
            pass
    finally:
        os.close(fd)


def view_matches(expected: tuple[str, ...], actual: list[str]) -> bool:
    """Whether `actual` lines match `expected` (outer whitespace ignored; a `...` line skips any lines)."""
    exp = list(expected)
    act = [a.strip() for a in actual]

    def match(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and exp[i] == act[j] and match(i + 1, j + 1)

    return match(0, 0)


class InvariantBroken(Exception):
    """The model's invariant checker found a broken invariant after a step: a bug in the model."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path} (at the program's start)"
        super().__init__(f"{where}: model bug: an invariant is broken after this step: {message}")


class Runner:
    """Runs one scenario on one backend; `out` (optional) receives each transcript line as it is made."""

    def __init__(self, scenario: Scenario, backend: Backend, program: Program | None = None,
                 out: Callable[[str], None] | None = None, check: Callable[[], None] | None = None) -> None:
        self.scenario, self.backend = scenario, backend
        #: Run after the start and after every step (vmlab run --check: the model's invariant checker);
        #: an AssertionError from it stops the run as InvariantBroken.
        self.check = check
        self.program = program or scenario.program or default_program()
        self.out = out
        self.transcript = Transcript()
        self.pids: dict[str, int] = {}
        #: Processes that are gone, with why (`was killed by SIGSEGV`): their later steps are skipped.
        self.gone: dict[str, str] = {}
        #: Deaths reaped during a step, to be printed after it (other_deaths).
        self.deaths: list[tuple[int, str]] = []
        self.env: dict[str, int] = dict(CONSTANTS)
        self.last: tuple[str, int | str | None] | None = None  # ("call", value) or ("access", signal)
        self.index = 0
        self.baseline: dict[str, Counters | None] = {}  # each process's last counters checkpoint
        #: Lines the machine's daemons printed since the last step, stamped with the simulated time.
        self.daemon_lines: list[str] = []

    def emit(self, kind: str, text: str) -> None:
        """Add a record for the current step and pass its lines to `out`."""
        self.transcript.records.append(Record(self.index, kind, text))
        if self.out is not None:
            self.out(text)

    def run(self) -> Transcript:
        """Make the scenario's files, start the program, run every step, return the transcript (the
        backend is left open)."""
        for spec in self.scenario.files:
            make_file(spec)
        try:
            self.pids[MAIN] = self.backend.start(self.program, self.scenario.settings)
        except OSError as err:  # e.g. vm.max_map_count 0: exec itself fails (-ENOMEM)
            raise InputError(f"the program cannot start with these settings: {err.strerror or err}",
                             self.scenario.path) from None
        except InputError as err:  # the backend cannot run this program
            raise InputError(err.message, err.path or self.scenario.path, err.line, err.col) from None
        for line in self.backend.view(self.pids[MAIN], "maps").splitlines():
            lo, _, hi = line.split(" ", 1)[0].partition("-")
            self.transcript.program_vmas.append((int(lo, 16), int(hi, 16)))
        self.checkpoint(MAIN)
        self.run_check(None)
        argv = ", ".join(f'"{a}"' for a in self.program.argv)
        self.index = -1
        self.emit("note", f"# {self.backend.name}: execve(\"{self.program.path}\", [{argv}]) = 0")
        for line in self.backend.notes():
            self.emit("note", f"# {self.backend.name}: note: {line}")
        for index, step in enumerate(self.scenario.steps):
            self.index = index
            prefix = "" if step.actor == MAIN else f"@{step.actor} "
            if step.actor in self.gone and not isinstance(step, ExpectKilledStep | ExpectResultStep):
                self.emit("note", f"# line {step.line}: skipped, {step.actor} {self.gone[step.actor]}")
                if isinstance(step, ForkStep):  # the child is never born: its steps are skipped too
                    self.gone[step.target] = self.gone[step.actor]
                continue
            try:
                self.step(step, prefix)
            except InputError as err:  # the backend refused the step: name the step's place
                if err.path:
                    raise
                raise InputError(err.message, self.scenario.path, step.line) from None
            except Unbound as err:
                self.emit("note", f"# line {step.line}: skipped, {err.args[0]} has no value")
            except Unavailable as err:
                self.emit("note", f"# line {step.line}: skipped, {err}")
            self.other_deaths()
            self.run_check(step.line)
        return self.transcript

    def run_check(self, line: int | None) -> None:
        """The check, if any, after the step at `line` (None: the program's start)."""
        if self.check is None:
            return
        try:
            self.check()
        except AssertionError as err:
            raise InvariantBroken(self.scenario.path, line, str(err)) from None

    def other_deaths(self) -> None:
        """What the daemons printed meanwhile, then the processes the backend killed on its own (the
        OOM killer, a daemon), oldest process first (the host cannot tell the order of kills between
        two steps; its log can): printed as strace prints a death."""
        if self.daemon_lines:
            self.emit("daemon", "\n".join(self.daemon_lines))
            self.daemon_lines.clear()
        deaths, self.deaths = self.deaths + self.reap(), []
        order = list(self.pids.values())  # the scenario's processes by birth: the same on every backend
        deaths.sort(key=lambda death: order.index(death[0]) if death[0] in order else len(order))
        for pid, sig in deaths:
            name = next((n for n, p in self.pids.items() if p == pid), None)
            if name is None:
                continue
            prefix = "" if name == MAIN else f"@{name} "
            self.emit("signal", f"{prefix}+++ killed by {sig} +++")
            self.gone[name] = f"was killed by {sig}"
            del self.pids[name]

    def reap(self) -> list[tuple[int, str]]:
        """The backend's processes that died since it was last asked, other than by their own access:
        (pid, signal)."""
        reap = getattr(self.backend, "reap_deaths", None)
        return reap() if reap is not None else []

    def step(self, step: Step, prefix: str) -> None:
        """Run one step."""
        pid = self.pids.get(step.actor, 0)
        if isinstance(step, CallStep):
            self.call(step, pid, prefix)
        elif isinstance(step, ForkStep):
            self.fork(step, pid, prefix)
        elif isinstance(step, ExitStep):
            self.backend.exit(pid)
            del self.pids[step.actor]
            self.gone[step.actor] = "exited"  # its later steps are skipped, as a killed one's
            self.emit("exit", f"{prefix}exit_group(0) = ?\n{prefix}+++ exited with 0 +++")
        elif isinstance(step, AccessStep):
            self.access(step, pid, prefix)
        elif isinstance(step, ExpectViewStep):
            self.expect_view(step, pid)
        elif isinstance(step, ShowStep):
            self.show(step, pid, prefix)
        elif isinstance(step, ExpectResultStep | ExpectKilledStep):
            self.expect_result(step)
        elif isinstance(step, MemcgStep):
            self.machine_step(prefix, f"memcg {step.path} limit_in_bytes={step.limit}", "memcg_create",
                              step.path, step.limit)
            for name, value in step.files:
                self.machine_step(prefix, f"memcg {step.path} {name}={value}", "memcg_set", step.path, name,
                                  value)
        elif isinstance(step, JoinStep):
            self.machine_step(prefix, f"join {step.path}", "memcg_attach", pid, step.path)
        elif isinstance(step, OomScoreAdjStep):
            self.machine_step(prefix, f"oom_score_adj {step.value}", "set_oom_score_adj", pid, step.value)
        elif isinstance(step, HogStep):
            self.hog(step, pid, prefix)
        elif isinstance(step, EarlyoomStep):
            self.earlyoom(step, prefix)
        elif isinstance(step, SleepStep):
            self.sleep(pid, step.ns)
            self.emit("call", f"{prefix}sleep {step.written}")
        elif isinstance(step, CommStep):
            self.machine_step(prefix, f"comm {step.name}", "set_comm", pid, step.name)
        elif isinstance(step, IgnoreStep):
            self.machine_step(prefix, f"ignore {step.signal}", "sigignore", pid, step.signal)
        elif isinstance(step, SetpgidStep):
            self.setpgid(step, pid, prefix)

    def setpgid(self, step: SetpgidStep, pid: int, prefix: str) -> None:
        """setpgid(0, 0), or setpgid(0, pid of the named process): printed as strace prints it."""
        if step.group is not None and step.group not in self.pids:
            raise Unbound(step.group)
        pgid = self.pids[step.group] if step.group is not None else 0
        result = self.model_call("setpgid", pid, 0, pgid)
        self.emit("call", f"{prefix}setpgid(0, {pgid}) {format_result(result, False)}")
        self.last = ("call", result)

    def sleep(self, pid: int, ns: int) -> None:
        """The process sleeps `ns`: simulated time on the model (its timers run), real time elsewhere."""
        fn = getattr(self.backend, "sleep", None)
        if fn is not None:
            fn(pid, ns)
        else:
            time.sleep(ns / 1e9)

    def earlyoom(self, step: EarlyoomStep, prefix: str) -> None:
        """Start earlyoom on the model machine; its lines join the transcript as it prints them."""
        from vmlab.daemons.earlyoom.main import UsageError
        from vmlab.lab.daemons import start_earlyoom
        if not hasattr(self.backend, "spawn"):
            raise Unavailable(f"the {self.backend.name} backend does not run earlyoom (it would kill "
                              "processes of the real machine)")
        try:
            daemon = start_earlyoom(self.backend, list(step.argv),  # type: ignore[arg-type]
                                    self.daemon_lines.append)
        except UsageError as err:
            raise InputError(f"earlyoom: {err.message.splitlines()[0]}", self.scenario.path, step.line,
                             step.col + 1) from None
        self.emit("call", f"{prefix}{' '.join(step.argv)} = {daemon.system.self_pid}")

    def machine_step(self, prefix: str, shown: str, method: str, *args: object) -> None:
        """A step that is one machine operation (model_call): printed as `shown` with its result, which
        `expect =` then checks."""
        result = self.model_call(method, *args)
        self.emit("call", f"{prefix}{shown} {format_result(result, False)}")
        self.last = ("call", result)

    def model_call(self, method: str, *args: object) -> int:
        """A machine operation only some backends have (memory cgroups, oom_score_adj)."""
        fn = getattr(self.backend, method, None)
        if fn is None:
            raise Unavailable(f"the {self.backend.name} backend cannot do {method}")
        result = fn(*args)
        assert isinstance(result, int)
        return result

    def hog(self, step: HogStep, pid: int, prefix: str) -> None:
        """The memory hog: mmap STEP and touch it until killed, or until it has taken the backend's
        budget for it (hog_budget: twice the model's RAM; on the host, twice the limit of the run's
        memory cgroup that holds it, and no hog outside one); a death by SIGKILL ends as a shell's
        `Killed`."""
        budget = getattr(self.backend, "hog_budget", None)
        limit = budget(pid) if budget is not None else None
        if limit is None:
            raise Unavailable(f"the {self.backend.name} backend runs the memory hog only inside a memory "
                              "cgroup with a limit (it would take the machine's memory)")
        taken, sig = 0, None
        prot = CONSTANTS["PROT_READ"] | CONSTANTS["PROT_WRITE"]
        flags = CONSTANTS["MAP_PRIVATE"] | CONSTANTS["MAP_ANONYMOUS"]
        while taken < limit and sig is None:
            addr = self.backend.syscall(pid, "mmap", (0, step.step, prot, flags, -1, 0))
            if addr < 0:
                break
            sig = self.backend.access(pid, addr, step.step, True)
            taken += step.step
            if sig is None and step.pause_ns:
                self.sleep(pid, step.pause_ns)
        self.emit("access", f"{prefix}hog {step.step}: {taken >> 20} MiB mapped and touched")
        self.last = ("access", sig)
        if sig is not None:
            shell = {"SIGKILL": "\nKilled", "SIGTERM": "\nTerminated"}.get(sig, "")
            self.emit("signal", f"{prefix}+++ killed by {sig} +++{shell}")
            self.gone[step.actor] = f"was killed by {sig}"
            del self.pids[step.actor]

    def fork(self, step: ForkStep, pid: int, prefix: str) -> None:
        """fork(): the child runs as `step.target`; when the kernel refuses (-ENOMEM: the commit charge
        of the copy under overcommit_memory 2, mm/mmap.c dup_mmap -> security_vm_enough_memory_mm)
        the result is printed as strace prints it and the child's steps are skipped."""
        child = self.backend.fork(pid)
        self.env[step.target] = child
        self.last = ("call", child if child < 0 else 0)
        if child < 0:
            self.emit("fork", f"{prefix}fork() {format_result(child, False)}")
            self.gone[step.target] = "was never created (fork failed)"
            return
        self.pids[step.target] = child
        self.emit("fork", f"{prefix}fork() = {step.target}")
        self.checkpoint(step.target)

    def call(self, step: CallStep, pid: int, prefix: str) -> None:
        """A syscall: run it, echo it, bind its result, note a mismatch with a pasted `= result`."""
        values = tuple(value_of(a, self.env) for a in step.args)
        try:
            result = self.backend.syscall(pid, step.name, values)
        except ProcessDied as died:  # the host's stepper, killed in the call, never answered
            result = None
            self.deaths.append((pid, died.signal or "SIGKILL"))
        self.deaths += self.reap()
        killed = next((sig for p, sig in self.deaths if p == pid), None)
        if killed is not None:  # killed in the call (the model's process too): strace shows no result,
            self.emit("call", f"{prefix}{format_call(step.name, values)} = ?")  # and the death after it
            self.last = ("access", killed)  # (its fate, as an access's: `expect killed SIGKILL`)
            return
        addr = SYSCALLS[step.name].returns_addr
        self.emit("call", f"{prefix}{format_call(step.name, values)} {format_result(result, addr)}")
        if step.target is not None:
            self.env[step.target] = result
        if step.name == "execve" and result == 0:
            self.checkpoint(step.actor)  # a new program: its counters start again
        self.last = ("call", result)
        if step.logged is not None:
            want = expected_errno(step.logged, self.env)
            if want is not None and want != result:
                self.emit("note", f"# note: line {step.line}: the trace says {format_result(want, addr)}, "
                                  f"{self.backend.name} returned {format_result(result, addr)}")

    def access(self, step: AccessStep, pid: int, prefix: str) -> None:
        """Touch memory; a fatal signal is printed as strace prints it and ends the process."""
        addr = value_of(step.addr, self.env)
        length = value_of(step.length, self.env) if step.length is not None else 1
        assert isinstance(addr, int) and isinstance(length, int)
        before = self.backend.view(pid, "maps")
        sig = self.backend.access(pid, addr, length, step.write)
        verb = "write" if step.write else "read"
        self.emit("access", f"{prefix}{verb} {addr:#x}, {length}")
        traces = getattr(self.backend, "traces", None)  # the model's fault call paths, with --trace
        if traces:
            self.emit("trace", "\n".join(traces))
            traces.clear()
        self.last = ("access", sig)
        if sig is not None:
            info = siginfo.fault(before, addr, length, step.write, sig)
            self.emit("signal", (f"{prefix}{info}\n" if info else "") + f"{prefix}+++ killed by {sig} +++")
            self.gone[step.actor] = f"was killed by {sig}"
            del self.pids[step.actor]

    def checkpoint(self, name: str) -> None:
        """Remember process `name`'s counters now, for its next `show counters` (None: unavailable)."""
        try:
            self.baseline[name] = self.paging_call("counters", self.pids[name])
        except Unavailable:
            self.baseline[name] = None

    def paging_call(self, method: str, *args: int) -> object:
        """backend.<method>(*args) for the paging methods a backend may not implement yet."""
        fn = getattr(self.backend, method, None)
        if fn is None:
            raise Unavailable(f"{self.backend.name} backend has no {method}()")
        try:
            return fn(*args)
        except NotImplementedError as err:
            why = f"{self.backend.name} backend: {method}() is not implemented {err}".rstrip()
            raise Unavailable(why) from None

    def render(self, step: ShowStep, pid: int) -> str:
        """The text of the view `step` names, for process `pid` (no trailing newline); Unavailable
        when the backend cannot render it."""
        if step.view == "counters":
            now = self.paging_call("counters", pid)
            base = self.baseline.get(step.actor)
            assert isinstance(now, Counters)
            if base is None:
                raise Unavailable(f"{self.backend.name} backend: no counters at the process start")
            self.baseline[step.actor] = now
            return paging.format_counters(now, base)
        if step.view == "pagemap":
            return self.pagemap(step, pid)
        if step.view in ("residency", "folios", "cachestat"):
            return self.file_view(step.view, step.path)
        if step.view in MACHINE_VIEWS:
            arg = step.path
            fn = getattr(self.backend, "machine_view", None)
            try:
                if fn is None:
                    raise NotImplementedError
                return str(fn(step.view, arg)).rstrip("\n")
            except (KeyError, NotImplementedError, OSError):
                raise Unavailable(f"{self.backend.name} backend cannot render {step.view}") from None
        try:
            return self.backend.view(pid, step.view).rstrip("\n")
        except (KeyError, NotImplementedError):
            raise Unavailable(f"{self.backend.name} backend cannot render {step.view}") from None

    def pagemap(self, step: ShowStep, pid: int) -> str:
        """`show pagemap`: the letters of the acting process's pages, frames numbered over the same
        range of every live process (see vmlab.lab.paging.FrameNumbers)."""
        addr = value_of(step.args[0], self.env)
        length = value_of(step.args[1], self.env) if len(step.args) > 1 else paging.PAGE
        assert isinstance(addr, int) and isinstance(length, int)
        start, end = addr & ~(paging.PAGE - 1), addr + length
        if length <= 0 or start < 0 or end - start > paging.MAX_RANGE:
            raise Unavailable(f"pagemap range {addr:#x}+{length:#x} is empty or larger than "
                              f"{paging.MAX_RANGE >> 20} MiB")

        def kpageflags(pfn: int) -> int:
            value = self.paging_call("kpageflags", pfn)
            assert isinstance(value, int)
            return value

        frames = paging.FrameNumbers()
        mine: tuple[list[int], list[str]] = ([], [])
        for other in self.pids.values():
            entries = self.paging_call("pagemap", other, start, end)
            assert isinstance(entries, list)
            letters = [paging.page_letter(raw, kpageflags) for raw in entries]
            frames.scan(entries, letters)
            if other == pid:
                mine = (entries, letters)
        return paging.render_pagemap(start, *mine, frames, step.verbose)

    def file_view(self, view: str, path: str) -> str:
        """`show residency PATH` (which pages of the file are in the page cache: mincore on the host,
        the machine's cache in the model), `show folios PATH` (the folios that hold them: kpageflags
        on the host) or `show cachestat PATH` (cached, dirty and under-write-back page counts: the
        backend's file_cachestat); Unavailable for a file that is not there."""
        fn = getattr(self.backend, "file_cachestat" if view == "cachestat" else view, None)
        if fn is None:
            raise Unavailable(f"{self.backend.name} backend has no {view}()")
        size = getattr(self.backend, "file_size", os.path.getsize)
        try:
            found = fn(path)
            total = (size(path) + paging.PAGE - 1) // paging.PAGE
        except OSError as err:
            raise Unavailable(f"{view} {path}: {err.strerror or err}") from None
        if view == "folios":
            return paging.format_folios(path, found, total)
        if view == "cachestat":
            return paging.format_cachestat(path, found, total)
        return paging.format_residency(path, found, total)

    def show(self, step: ShowStep, pid: int, prefix: str) -> None:
        """`show VIEW`: echo it and print the view (a note if the backend cannot render it)."""
        kind = "paging" if step.view in PAGING_VIEWS else "machine" if step.view in MACHINE_VIEWS else "view"
        # (a memcg's lines do not name the cgroup: the echo does)
        echo = f"{prefix}show {step.view}" + (f" {step.path}" if step.view == "memcg" else "")
        try:
            text = self.render(step, pid)
        except Unavailable as err:
            self.emit(kind, f"{echo}\n(unavailable)")
            self.emit("note", f"# line {step.line}: {err}")
            return
        self.emit(kind, f"{echo}\n{text}")

    def expect_view(self, step: ExpectViewStep, pid: int) -> None:
        """Compare a view with the expected block; on failure print a unified diff."""
        try:
            actual = self.render(step, pid).splitlines()
        except Unavailable as err:
            self.fail(step, f"expect {step.view}: {err}")
            return
        if step.view == "counters":
            ok = len(step.lines) == len(actual) == 1 and paging.counters_match(step.lines[0], actual[0])
        else:
            ok = view_matches(step.lines, actual)
        if ok:
            self.emit("note", f"# line {step.line}: expect {step.view}: ok")
            return
        diff = difflib.unified_diff(list(step.lines), [a.strip() for a in actual], "expected",
                                    self.backend.name, lineterm="", n=2)
        self.fail(step, f"expect {step.view} differs\n" + "\n".join(diff))

    def expect_result(self, step: ExpectResultStep | ExpectKilledStep) -> None:
        """Compare the previous call's result (or the previous access's fate) with the expectation."""
        if isinstance(step, ExpectKilledStep):
            got = self.last[1] if self.last and self.last[0] == "access" else None
            if got == step.signal:
                self.emit("note", f"# line {step.line}: expect killed {step.signal}: ok")
            else:
                self.fail(step, f"expected killed by {step.signal}, got {got or 'no signal'}")
            return
        want = expected_errno(step.result, self.env)
        got_v = self.last[1] if self.last else None
        if self.last and self.last[0] == "access":
            got_v = 0 if got_v is None else got_v
        if want == got_v:
            self.emit("note", f"# line {step.line}: expect: ok")
            return
        shown = format_result(got_v, True) if isinstance(got_v, int) else f"killed by {got_v}"
        self.fail(step, f"expected {format_result(want, True) if want is not None else '?'}, got {shown}")

    def fail(self, step: Step, message: str) -> None:
        """Report an expect failure."""
        self.transcript.failures += 1
        self.emit("fail", f"{self.scenario.path}:{step.line}: expect failed: {message}")


def run(scenario: Scenario, backend: Backend, program: Program | None = None,
        out: Callable[[str], None] | None = None, check: Callable[[], None] | None = None) -> Transcript:
    """Run `scenario` on `backend` (with `check` after every step) and close the backend afterwards,
    even on failure."""
    try:
        return Runner(scenario, backend, program, out, check).run()
    finally:
        backend.close()
