"""The scenario language: a text file of steps a person writes (or pastes from strace) to drive a backend.

The whole file is parsed and checked before anything runs, so bad input is one `FILE:LINE:COL: error:`
line and nothing half-done. The language is documented in docs/scenario.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from dataclasses import dataclass, field

from vmlab.backend import MACHINE_VIEWS, VIEWS, Program, Settings
from vmlab.daemons.earlyoom.check import check_argv
from vmlab.kernel.signal import SIGNALS, UNBLOCKABLE
from vmlab.kernel.uapi import ULONG_MAX
from vmlab.lab.calls import CONSTANTS, EXITS, FORKS, check_c_string, interpret_args
from vmlab.lab.paging import counter_values
from vmlab.lab.syntax import (
    Call,
    EvalError,
    Exited,
    Expr,
    Result,
    Resumed,
    Signal,
    Source,
    Str,
    Token,
    check_operands,
    evaluate,
    expr_names,
    parse_event,
    parse_expr,
    parse_result,
    read_source,
    split_prefix,
    tokenize,
)

MAIN = "main"
KEYWORDS = frozenset({"set", "exec", "file", "process", "expect", "show", "read", "write", "touch", "fork",
                      "exit", "end", "memcg", "join", "oom_score_adj", "hog", "earlyoom", "sleep", "ignore",
                      "comm", "setpgid", MAIN})
#: Views of the paging state, rendered by vmlab.lab.paging (compared whole by vmlab diff).
PAGING_VIEWS = ("counters", "pagemap", "residency", "folios", "cachestat")
ALL_VIEWS = VIEWS + PAGING_VIEWS + MACHINE_VIEWS
#: Views of one file, named after the view: `show residency PATH`, `show folios PATH`,
#: `show cachestat PATH`, `show fincore PATH`.
FILE_VIEWS = ("residency", "folios", "cachestat", "fincore")
_ASSIGN = re.compile(r"([A-Za-z_]\w*)\s*=(?!=)\s*")
_ACTOR = re.compile(r"@([A-Za-z_]\w*)\s+")
_WORD = re.compile(r"\S+")
MAX_FILE = 64 << 20  # the largest `file` a scenario may make
_ULONG = (0, ULONG_MAX)
#: The values each numeric setting may take: what the kernel's sysctl handlers and setrlimit() accept
#: (vm.overcommit_memory 0..2, vm.max_map_count 0..INT_MAX, vm.overcommit_ratio any int, the rest an
#: unsigned long), and for `ram` what the model can boot (at least 2 MiB, pc_e820) and hold (its
#: mem_map costs about 18 MiB of this process per GiB).
SETTING_RANGES: dict[str, tuple[int, int]] = {
    "ram": (2 << 20, 64 << 30), "overcommit_memory": (0, 2), "max_map_count": (0, (1 << 31) - 1),
    "overcommit_ratio": (-(1 << 31), (1 << 31) - 1),
}
_BOOLS = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False,
          "1": True, "0": False}


@dataclass(frozen=True, kw_only=True)
class Step:
    """One executable step: where it was written and which process runs it."""

    line: int
    col: int
    actor: str
    source: str


@dataclass(frozen=True, kw_only=True)
class CallStep(Step):
    """A syscall; `target` names its result; `logged` is the `= result` pasted with it, if any."""

    name: str
    args: tuple[Expr, ...]
    target: str | None = None
    logged: Result | None = None


@dataclass(frozen=True, kw_only=True)
class ForkStep(Step):
    """fork() (also vfork/clone): the child process is called `target`."""

    target: str
    logged: Result | None = None


@dataclass(frozen=True, kw_only=True)
class ExitStep(Step):
    """The process exits and is reaped."""


@dataclass(frozen=True, kw_only=True)
class AccessStep(Step):
    """Touch each page of [addr, addr+length): a read, or a write (`write` and `touch`)."""

    write: bool
    addr: Expr
    length: Expr | None


@dataclass(frozen=True, kw_only=True)
class ShowStep(Step):
    """Render a view of the acting process: a /proc text view (VIEWS) or a paging view; `pagemap`
    takes the range (`args` = ADDR and LEN) and may be `verbose`."""

    view: str
    args: tuple[Expr, ...] = ()
    verbose: bool = False
    #: `residency PATH`, `folios PATH`, `cachestat PATH`, `fincore PATH`: the file the view is about;
    #: `memcg /PATH`: the memory cgroup.
    path: str = ""


@dataclass(frozen=True, kw_only=True)
class ExpectViewStep(ShowStep):
    """The view must match `lines` (each compared with outer whitespace stripped; `...` skips lines)."""

    lines: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class MemcgStep(Step):
    """`memcg PATH LIMIT [FILE=VALUE]...`: make a memory cgroup (and its parents) with
    memory.limit_in_bytes = LIMIT, then write each of its other files given, in order."""

    path: str
    limit: int
    files: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, kw_only=True)
class JoinStep(Step):
    """`join PATH`: the acting process writes its pid to PATH's cgroup.procs."""

    path: str


@dataclass(frozen=True, kw_only=True)
class OomScoreAdjStep(Step):
    """`oom_score_adj N`: the acting process writes N to /proc/self/oom_score_adj."""

    value: int


@dataclass(frozen=True, kw_only=True)
class HogStep(Step):
    """`hog STEP`: the lecture's memory hog: map STEP bytes of anonymous memory and touch them, again and
    again, until the process is killed (or it has taken twice the machine's RAM)."""

    step: int
    #: `hog STEP every DURATION`: the hog sleeps this long after each step (0: it never sleeps).
    pause_ns: int = 0


@dataclass(frozen=True, kw_only=True)
class EarlyoomStep(Step):
    """`earlyoom [FLAGS...]`: start the earlyoom daemon on the machine with earlyoom's own flags."""

    argv: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SleepStep(Step):
    """`sleep DURATION`: the acting process sleeps; the machine's timers (daemons, write-back) run."""

    ns: int
    written: str  # DURATION as the scenario wrote it, for the trace line


@dataclass(frozen=True, kw_only=True)
class CommStep(Step):
    """`comm NAME`: the acting process writes NAME to /proc/self/comm (prctl(PR_SET_NAME))."""

    name: str


@dataclass(frozen=True, kw_only=True)
class SetpgidStep(Step):
    """`setpgid [NAME]`: the acting process calls setpgid(0, 0) (a group of its own), or setpgid(0,
    pid of NAME) (joins the group NAME leads)."""

    group: str | None = None


@dataclass(frozen=True, kw_only=True)
class IgnoreStep(Step):
    """`ignore SIGNAL`: the acting process sets SIGNAL's disposition to SIG_IGN (`trap '' TERM`)."""

    signal: str


@dataclass(frozen=True)
class FileSpec:
    """`file PATH SIZE`: a file the harness writes before the run (SIZE bytes, synced, in the page cache)."""

    path: str
    size: int


@dataclass(frozen=True, kw_only=True)
class ExpectResultStep(Step):
    """The previous call (or access: 0) must have returned `result`."""

    result: Result


@dataclass(frozen=True, kw_only=True)
class ExpectKilledStep(Step):
    """The previous access must have killed the process with `signal`."""

    signal: str


@dataclass(frozen=True)
class Scenario:
    """A parsed, checked scenario: settings, the first program (None = the built-in one), the steps."""

    path: str
    settings: Settings
    program: Program | None
    steps: tuple[Step, ...]
    files: tuple[FileSpec, ...] = ()


@dataclass
class _State:
    """What the checker knows while reading the file top to bottom."""

    path: str
    settings: dict[str, object] = field(default_factory=dict)
    program: Program | None = None
    files: list[FileSpec] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    variables: set[str] = field(default_factory=set)
    alive: set[str] = field(default_factory=lambda: {MAIN})
    actor: str = MAIN
    pids: dict[int, str] = field(default_factory=dict)
    forks: int = 0
    memcgs: set[str] = field(default_factory=lambda: {"/"})


def load(path: str) -> Scenario:
    """Read and parse the scenario file at `path` (a missing file is an InputError)."""
    return parse(read_source(path, "scenario"), path)


def parse(text: str, path: str = "<scenario>") -> Scenario:
    """Parse and check a whole scenario; raise InputError at the first problem."""
    st = _State(path)
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        i = _statement(st, lines, i)
    settings = Settings(**st.settings)  # type: ignore[arg-type]
    return Scenario(path, settings, st.program, tuple(st.steps), tuple(st.files))


def strip_comment(line: str) -> str:
    """`line` without a `#` comment (a `#` inside a string literal is kept)."""
    quoted = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return line[:i]
        i += 1
    return line


def _statement(st: _State, lines: list[str], i: int) -> int:
    """Parse the statement starting at lines[i]; return the index of the next one."""
    raw = lines[i]
    line = strip_comment(raw).rstrip()
    lineno = i + 1
    stripped = line.lstrip()
    col0 = len(line) - len(stripped)
    src = Source(st.path, lineno, col0)
    if not stripped:
        return i + 1
    if m := _ACTOR.match(stripped):
        actor = _known_process(st, m.group(1), src, 2)
        saved, st.actor = st.actor, actor
        try:
            pad = " " * m.end()
            return _statement(st, [*lines[:i], pad + stripped[m.end():], *lines[i + 1:]], i)
        finally:
            if st.actor == actor:
                st.actor = saved if saved in st.alive else MAIN
    word = _WORD.match(stripped)
    assert word
    head = word.group()
    if head != "process":
        _known_process(st, st.actor, src, 1)  # the acting process exited: it takes no more steps
    rest_col = word.end() + 1 + len(stripped[word.end():]) - len(stripped[word.end():].lstrip())
    rest = stripped[word.end():].strip()
    if head == "expect" and rest.split(maxsplit=1)[:1] and rest.split(maxsplit=1)[0] in ALL_VIEWS:
        rest_src = Source(st.path, lineno, col0 + rest_col - 1)
        if rest.startswith("counters "):
            _expect_counters(st, rest, rest_src, raw.strip())
            return i + 1
        return _expect_block(st, lines, i, rest, src, rest_src)
    handler = _DIRECTIVES.get(head)
    if handler is not None:
        handler(st, rest, Source(st.path, lineno, col0 + rest_col - 1), raw.strip())
        return i + 1
    _step_line(st, stripped, src, raw.strip())
    return i + 1


def _need_no_steps(st: _State, what: str, src: Source) -> None:
    """`set` and `exec` describe the start; they must come before the first step."""
    if st.steps:
        raise src.error(f"'{what}' must come before the first step", 1)


def _set(st: _State, rest: str, src: Source, _raw: str) -> None:
    """`set FIELD VALUE`: a field of vmlab.backend.Settings."""
    _need_no_steps(st, "set", src)
    m = re.fullmatch(r"(\w+)\s+(.+)", rest)
    if not m:
        raise src.error("expected 'set FIELD VALUE'", 1)
    name, value = m.group(1), m.group(2).strip()
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if name not in fields:
        raise src.error(f"unknown setting '{name}' (known: {', '.join(fields)})", 1)
    vcol = m.start(2) + 1
    default = getattr(Settings(), name)
    if isinstance(default, bool):
        if value.lower() not in _BOOLS:
            raise src.error(f"expected on or off, not '{value}'", vcol)
        st.settings[name] = _BOOLS[value.lower()]
    elif name == "rlimit_stack" and value.lower() in ("unlimited", "infinity"):
        st.settings[name] = None
    else:
        number = _constant(value, Source(src.path, src.line, src.col0 + vcol - 1))
        lo, hi = SETTING_RANGES.get(name, _ULONG)
        if not lo <= number <= hi:
            raise src.error(f"{name} must be {_size(lo)} to {_size(hi)}, not {number}", vcol)
        st.settings[name] = number


def _size(value: int) -> str:
    """`value` for a message: in MiB or GiB when it is a whole number of them."""
    for shift, unit in ((30, "G"), (20, "M")):
        if value and value % (1 << shift) == 0 and value >> shift < 1024:
            return f"{value >> shift}{unit}"
    return str(value)


def _constant(text: str, src: Source) -> int:
    """An integer expression of constants only (settings take no variables)."""
    toks = tokenize(text, src, sizes=True)
    expr = parse_expr(toks, src, len(text) + 1)
    for name in expr_names(expr):
        if name.name not in CONSTANTS:
            raise src.error(f"undefined name '{name.name}'", name.col)
    if isinstance(expr, Str):
        raise src.error("expected a number", expr.col)
    try:
        value = evaluate(expr, CONSTANTS)
    except EvalError as err:
        raise src.error(err.message, err.col) from None
    assert isinstance(value, int)
    return value


def _exec(st: _State, rest: str, src: Source, _raw: str) -> None:
    """`exec PATH [ARGS...]`: what the first process runs (argv[0] is PATH, envp is empty)."""
    _need_no_steps(st, "exec", src)
    if st.program is not None:
        raise src.error("the program is already chosen", 1)
    words = _words(rest, src)
    if not words:
        raise src.error("expected 'exec PATH [ARGS...]'", 1)
    st.program = Program(words[0], tuple(words))


def _words(text: str, src: Source) -> list[str]:
    """Whitespace-separated words; a word may be a "quoted string" with C escapes."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text[i] == '"':
            toks = tokenize(text[i:], Source(src.path, src.line, src.col0 + i))
            tok = toks[0]
            assert isinstance(tok.value, bytes)
            check_c_string(tok.value, i + 1, src)
            out.append(tok.value.decode("utf-8", "surrogateescape"))
            i += len(tok.text)
        else:
            m = _WORD.match(text, i)
            assert m
            out.append(m.group())
            i = m.end()
    return out


def _file(st: _State, rest: str, src: Source, _raw: str) -> None:
    """`file PATH SIZE`: a scratch file under the temporary directory, made before the run."""
    _need_no_steps(st, "file", src)
    if rest.startswith('"'):
        tok = tokenize(rest, src, sizes=True)[0]
        path_len = len(tok.text)
    else:
        path_len = len(rest.split(maxsplit=1)[0]) if rest else 0
    words = _words(rest[:path_len], src)
    size_text = rest[path_len:].strip()
    if len(words) != 1 or not size_text:
        raise src.error("expected 'file PATH SIZE'", 1)
    path = os.path.normpath(words[0])
    if os.path.dirname(path) != tempfile.gettempdir():
        raise src.error(f"the file must be directly in {tempfile.gettempdir()} (the run overwrites it)", 1)
    if os.path.lexists(path) and not os.path.isfile(path):
        raise src.error(f"{path} exists and is not a regular file", 1)
    size_col = len(rest) - len(rest[path_len:].lstrip()) + 1
    size = _constant(size_text, Source(src.path, src.line, src.col0 + size_col - 1))
    if not 0 <= size <= MAX_FILE:
        raise src.error(f"file size must be 0 to {MAX_FILE >> 20} MiB", size_col)
    st.files.append(FileSpec(path, size))


def _process(st: _State, rest: str, src: Source, _raw: str) -> None:
    """`process NAME`: later steps without `@NAME` run in NAME."""
    st.actor = _known_process(st, rest, src, 1)


def _known_process(st: _State, name: str, src: Source, col: int) -> str:
    """`name` if it is a live process, else an InputError."""
    if name not in st.alive:
        known = ", ".join(sorted(st.alive)) or "none"
        raise src.error(f"no live process '{name}' (live: {known})", col)
    return name


def _show(st: _State, rest: str, src: Source, raw: str) -> None:
    """`show VIEW`, `show pagemap ADDR[, LEN] [verbose]` or `show residency PATH`."""
    st.steps.append(ShowStep(line=src.line, col=src.col0, actor=st.actor, source=raw, **_view(st, rest, src)))


def _view(st: _State, text: str, src: Source) -> dict[str, object]:
    """The ShowStep fields of `VIEW [ARGS]`: the view name; for pagemap its range and `verbose`; for a
    file's views (residency, folios, cachestat, fincore) its path, a word or a "quoted string"; for
    memcg the cgroup path of one made earlier."""
    name, _, args = text.partition(" ")
    if name not in ALL_VIEWS:
        raise src.error(f"unknown view '{name}' (known: {', '.join(ALL_VIEWS)})", 1)
    args = args.strip()
    if name == "memcg":
        path = _memcg_path(args)
        if not args.startswith("/") or path not in st.memcgs:
            raise src.error(f"expected 'memcg /PATH' of a memcg made earlier (with 'memcg /PATH LIMIT'), "
                            f"not '{args}'", len(name) + 2)
        return {"view": name, "path": path}
    if name in FILE_VIEWS:
        words = _words(args, Source(src.path, src.line, src.col0 + len(name) + 1))
        if len(words) != 1:
            raise src.error(f"expected '{name} PATH'", 1)
        return {"view": name, "path": os.path.normpath(words[0])}
    if name != "pagemap":
        if args:
            raise src.error(f"'{name}' takes nothing after it", len(name) + 2)
        return {"view": name}
    verbose = bool(re.search(r"(^|\s)verbose$", args))
    if verbose:
        args = args[: -len("verbose")].rstrip()
    if not args:
        raise src.error("expected 'pagemap ADDR[, LEN] [verbose]'", 1)
    col = len(text) - len(text[len(name):].lstrip()) + 1
    exprs = _addr_len(st, args, Source(src.path, src.line, src.col0 + col - 1))
    return {"view": name, "args": exprs, "verbose": verbose}


def _addr_len(st: _State, text: str, src: Source) -> tuple[Expr, ...]:
    """`ADDR` or `ADDR, LEN`: one or two checked numeric expressions."""
    toks = tokenize(text, src, sizes=True)
    parts: list[list[Token]] = [[]]
    for tok in toks:
        if tok.text == "," and tok.kind == "OP":
            parts.append([])
        else:
            parts[-1].append(tok)
    if len(parts) > 2 or not all(parts):
        raise src.error("expected 'ADDR' or 'ADDR, LEN'", 1)
    exprs = tuple(parse_expr(p, src, len(text) + 1) for p in parts)
    for expr in exprs:
        if isinstance(expr, Str):
            raise src.error("expected a number", expr.col)
        _check_names(st, expr, src)
    return exprs


def _expect(st: _State, rest: str, src: Source, raw: str) -> None:
    """`expect = RESULT` or `expect killed SIGNAL` (view blocks are handled by _expect_block)."""
    where = {"line": src.line, "col": src.col0, "actor": st.actor, "source": raw}
    if not any(isinstance(s, CallStep | AccessStep | ForkStep | HogStep) for s in st.steps):
        raise src.error("'expect' of a result needs a call or access before it", 1)
    if rest.startswith("="):
        toks = tokenize(rest[1:], Source(src.path, src.line, src.col0 + 1), sizes=True)
        result = parse_result(toks, Source(src.path, src.line, src.col0 + 1), len(rest))
        _check_names(st, result.value, Source(src.path, src.line, src.col0 + 1))
        st.steps.append(ExpectResultStep(**where, result=result))
        return
    m = re.fullmatch(r"killed\s+(SIG[A-Z0-9]+)", rest)
    if m:
        st.steps.append(ExpectKilledStep(**where, signal=m.group(1)))
        return
    raise src.error("expected 'expect = RESULT', 'expect killed SIGNAL' or 'expect VIEW' + block", 1)


def _check_names(st: _State, expr: Expr | None, src: Source) -> None:
    """Raise if `expr` uses a name that is neither a constant nor an assigned variable, or divides by a
    constant zero (or shifts by a bad constant count)."""
    for name in expr_names(expr) if expr is not None else []:
        if name.name not in CONSTANTS and name.name not in st.variables:
            raise src.error(f"undefined name '{name.name}'", name.col)
    if expr is not None:
        check_operands(expr, src, CONSTANTS)


def _expect_block(st: _State, lines: list[str], i: int, rest: str, src: Source, rest_src: Source) -> int:
    """`expect VIEW [ARGS]` followed by the expected lines and a line `end`."""
    spec = _view(st, rest, rest_src)
    body: list[str] = []
    j = i + 1
    while j < len(lines) and lines[j].strip() != "end":
        body.append(lines[j].strip())
        j += 1
    if j == len(lines):
        raise src.error(f"'expect {spec['view']}' block has no 'end' line", 1)
    if spec["view"] == "counters":
        if len(body) != 1:
            raise src.error("an 'expect counters' block holds exactly one line", 1)
        try:
            counter_values(body[0])
        except ValueError as err:
            raise Source(st.path, i + 2, 0).error(str(err), 1) from None
    st.steps.append(ExpectViewStep(line=src.line, col=src.col0, actor=st.actor, source=lines[i].strip(),
                                   lines=tuple(body), **spec))
    return j + 1


def _expect_counters(st: _State, rest: str, src: Source, raw: str) -> None:
    """`expect counters LABEL VALUE [kB] ...`: one line; only the named counters are checked."""
    try:
        counter_values(rest.removeprefix("counters"))
    except ValueError as err:
        raise src.error(str(err), 1) from None
    st.steps.append(ExpectViewStep(line=src.line, col=src.col0, actor=st.actor, source=raw, view="counters",
                                   lines=("counters: " + rest.removeprefix("counters").strip(),)))


def _fork_bare(st: _State, rest: str, src: Source, raw: str) -> None:
    """`fork` with no parentheses."""
    if rest:
        raise src.error("'fork' takes nothing after it (name the child with 'child = fork()')", 1)
    _add_fork(st, None, None, st.actor, src, raw)


def _exit_bare(st: _State, rest: str, src: Source, raw: str) -> None:
    """`exit` with no parentheses."""
    if rest:
        raise src.error("'exit' takes nothing after it", 1)
    _add_exit(st, st.actor, src, raw)


def _access(write: bool) -> object:
    """The handler of `read`/`write`/`touch ADDR[, LEN]`."""

    def handler(st: _State, rest: str, src: Source, raw: str) -> None:
        exprs = _addr_len(st, rest, src)
        st.steps.append(AccessStep(line=src.line, col=src.col0, actor=st.actor, source=raw, write=write,
                                   addr=exprs[0], length=exprs[1] if len(exprs) == 2 else None))

    return handler


#: The memcg files `memcg /PATH LIMIT FILE=VALUE...` may write after the limit.
MEMCG_FILES = ("memsw.limit_in_bytes", "swappiness", "oom_kill_disable")


def _memcg(st: _State, rest: str, src: Source, raw: str) -> None:
    """`memcg PATH LIMIT [FILE=VALUE]...`: FILE one of MEMCG_FILES, VALUE a constant expression."""
    m = re.fullmatch(r"(/\S*)\s+(.+?)((?:\s+[a-z_.]+=\S+)*)", rest)
    if not m:
        raise src.error("expected 'memcg /PATH LIMIT' (e.g. memcg /demo 64M)", 1)
    limit = _constant(m.group(2), Source(src.path, src.line, src.col0 + m.start(2)))
    if limit <= 0:
        raise src.error("the limit must be positive", m.start(2) + 1)
    files: list[tuple[str, int]] = []
    for setting in re.finditer(r"([a-z_.]+)=(\S+)", m.group(3)):
        name, value_at = setting.group(1), m.start(3) + setting.start(2)  # (offsets in `rest`)
        if name not in MEMCG_FILES:
            raise src.error(f"unknown memcg file '{name}' (known: {', '.join(MEMCG_FILES)})",
                            m.start(3) + setting.start() + 1)
        files.append((name, _constant(setting.group(2), Source(src.path, src.line, src.col0 + value_at))))
    path = _memcg_path(m.group(1))
    st.memcgs.add(path)
    st.steps.append(MemcgStep(line=src.line, col=src.col0, actor=st.actor, source=raw,
                              path=path, limit=limit, files=tuple(files)))


def _memcg_path(text: str) -> str:
    """A memcg path as the steps carry it: /a/b (no empty parts, no trailing slash), or /."""
    return "/" + "/".join(part for part in text.split("/") if part)


def _join(st: _State, rest: str, src: Source, raw: str) -> None:
    """`join PATH`: a memcg made earlier by `memcg`, or the root (/)."""
    path = _memcg_path(rest)
    if path not in st.memcgs:
        raise src.error(f"no memcg '{rest}' made earlier (make it with 'memcg {rest} LIMIT')", 1)
    st.steps.append(JoinStep(line=src.line, col=src.col0, actor=st.actor, source=raw, path=path))


def _oom_score_adj(st: _State, rest: str, src: Source, raw: str) -> None:
    """`oom_score_adj N` (-1000..1000)."""
    value = _constant(rest, src)
    if not -1000 <= value <= 1000:
        raise src.error(f"oom_score_adj must be -1000 to 1000, not {value}", 1)
    st.steps.append(OomScoreAdjStep(line=src.line, col=src.col0, actor=st.actor, source=raw, value=value))


def _hog(st: _State, rest: str, src: Source, raw: str) -> None:
    """`hog STEP [every DURATION]`: a positive size, and the pause after each step."""
    m = re.fullmatch(r"(.*?)\s+every\s+(.*)", rest)
    size = m.group(1) if m else rest
    step = _constant(size, src) if size.strip() else 0
    if step <= 0:
        raise src.error("expected 'hog STEP' with a positive size (e.g. hog 1M, or hog 1M every 10ms)", 1)
    pause_ns = _duration(m.group(2), Source(src.path, src.line, src.col0 + m.start(2))) if m else 0
    st.steps.append(HogStep(line=src.line, col=src.col0, actor=st.actor, source=raw, step=step,
                            pause_ns=pause_ns))


_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def _duration(text: str, src: Source) -> int:
    """A time like `5ms`, `1.5s`, `200us` in nanoseconds (positive, at most an hour)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ns|us|ms|s)", text.strip())
    if not m:
        raise src.error(f"expected a duration such as 10ms or 2s, not '{text.strip()}'", 1)
    ns = round(float(m.group(1)) * _UNITS[m.group(2)])
    if not 0 < ns <= 3600 * _UNITS["s"]:
        raise src.error("a duration must be more than 0 and at most 3600s", 1)
    return ns


def _sleep(st: _State, rest: str, src: Source, raw: str) -> None:
    """`sleep DURATION`."""
    ns = _duration(rest, src)
    st.steps.append(SleepStep(line=src.line, col=src.col0, actor=st.actor, source=raw, ns=ns,
                              written=rest.strip()))


def _ignore(st: _State, rest: str, src: Source, raw: str) -> None:
    """`ignore SIGNAL`: a signal whose disposition may be set (not SIGKILL or SIGSTOP)."""
    if rest in UNBLOCKABLE:
        raise src.error(f"{rest} cannot be ignored", 1)
    if rest not in SIGNALS:
        known = ", ".join(sorted(set(SIGNALS) - UNBLOCKABLE))
        raise src.error(f"expected 'ignore SIGNAL' (one of {known})", 1)
    st.steps.append(IgnoreStep(line=src.line, col=src.col0, actor=st.actor, source=raw, signal=rest))


def _comm(st: _State, rest: str, src: Source, raw: str) -> None:
    """`comm NAME`: one word (the kernel keeps its first 15 bytes)."""
    if not re.fullmatch(r"\S+", rest):
        raise src.error("expected 'comm NAME' (one word)", 1)
    st.steps.append(CommStep(line=src.line, col=src.col0, actor=st.actor, source=raw, name=rest))


def _setpgid(st: _State, rest: str, src: Source, raw: str) -> None:
    """`setpgid [NAME]`: NAME, if given, a live process."""
    if rest and not re.fullmatch(r"[A-Za-z_]\w*", rest):
        raise src.error("expected 'setpgid' or 'setpgid NAME' (the process whose group to join)", 1)
    group = _known_process(st, rest, src, 1) if rest else None
    st.steps.append(SetpgidStep(line=src.line, col=src.col0, actor=st.actor, source=raw, group=group))


def _earlyoom(st: _State, rest: str, src: Source, raw: str) -> None:
    """`earlyoom [FLAGS...]`: earlyoom's command line, checked as earlyoom checks it (against the
    machine's RAM for -M; a refused flag is an error at that word)."""
    words, cols = _words_at(rest)
    argv = ["earlyoom", *words]
    ram = int(st.settings.get("ram", Settings().ram))  # type: ignore[call-overload]
    problem = check_argv(argv, ram)
    if problem is not None:
        message, index = problem
        raise src.error(message, cols[index - 1] if index >= 1 else 1)
    if any(isinstance(s, EarlyoomStep) for s in st.steps):
        raise src.error("earlyoom is already running", 1)
    st.steps.append(EarlyoomStep(line=src.line, col=src.col0, actor=st.actor, source=raw, argv=tuple(argv)))


def _words_at(text: str) -> tuple[list[str], list[int]]:
    """The whitespace-separated words of `text` and the 1-based column of each (quotes are kept as
    written: earlyoom's regexes rarely need spaces)."""
    words, cols = [], []
    for m in _WORD.finditer(text):
        words.append(m.group())
        cols.append(m.start() + 1)
    return words, cols


_DIRECTIVES = {
    "memcg": _memcg, "join": _join, "oom_score_adj": _oom_score_adj, "hog": _hog,
    "earlyoom": _earlyoom, "sleep": _sleep, "ignore": _ignore, "comm": _comm, "setpgid": _setpgid,
    "set": _set, "exec": _exec, "file": _file, "process": _process, "show": _show, "expect": _expect,
    "fork": _fork_bare, "exit": _exit_bare,
    "read": _access(False), "write": _access(True), "touch": _access(True),
}


def _step_line(st: _State, text: str, src: Source, raw: str) -> None:
    """A step written as a call: `[@PROC] [VAR =] [strace prefix] name(args) [= result]`."""
    col = 1
    actor = st.actor
    target = None
    if (m := _ASSIGN.match(text)) and not text[m.end():].startswith("("):
        target = m.group(1)
        if target in KEYWORDS or target in CONSTANTS:
            raise src.error(f"'{target}' is reserved and cannot name a result", col)
        col += m.end()
        text = text[m.end():]
    line = split_prefix(text)
    col += line.body_col - 1
    bsrc = Source(src.path, src.line, src.col0 + col - 1)
    if line.pid is not None:
        actor = _actor_for_pid(st, line.pid, bsrc)
    event = parse_event(line.body, bsrc, sizes=True)
    if isinstance(event, Signal | Exited):
        return  # strace's own annotations: the runner prints its own.
    if isinstance(event, Resumed) or (isinstance(event, Call) and event.unfinished):
        raise bsrc.error("join '<unfinished ...>' and '<... resumed>' lines into one call", 1)
    assert isinstance(event, Call)
    if event.name in FORKS:
        _add_fork(st, target, event.result, actor, src, raw)
        return
    if event.name in EXITS:
        _add_exit(st, actor, src, raw)
        return
    call = event
    if call.name == "execve" and not st.steps and st.program is None and target is None:
        args = interpret_args(call, bsrc, lambda _n: False)
        values = [evaluate(a, {}) for a in args]
        st.program = Program(str(values[0]), tuple(values[1]), tuple(values[2]))  # type: ignore[arg-type]
        return
    args = interpret_args(call, bsrc, lambda n: n in st.variables)
    if call.result is not None:
        _check_names(st, call.result.value, bsrc)
    st.steps.append(CallStep(line=src.line, col=src.col0 + col, actor=actor, source=raw, name=call.name,
                             args=args, target=target, logged=call.result))
    if target is not None:
        st.variables.add(target)


def _actor_for_pid(st: _State, pid: int, src: Source) -> str:
    """The process a strace pid prefix names: the first pid seen is the current process."""
    if pid in st.pids:
        return _known_process(st, st.pids[pid], src, 1)
    if st.pids:
        raise src.error(f"pid {pid} was not created by a fork/clone earlier in the scenario", 1)
    st.pids[pid] = st.actor
    return st.actor


def _add_fork(st: _State, target: str | None, logged: Result | None, actor: str, src: Source,
              raw: str) -> None:
    """Record a fork; the child is `target`, or `childN`; a logged `= PID` binds strace's pid to it."""
    st.forks += 1
    child = target or f"child{st.forks}"
    if child in st.alive:
        raise src.error(f"process '{child}' already exists", 1)
    if logged is not None and logged.value is not None and logged.errno is None:
        pid = evaluate(logged.value, {}) if not expr_names(logged.value) else None
        if isinstance(pid, int):
            st.pids[pid] = child
    st.alive.add(child)
    st.variables.add(child)
    st.steps.append(ForkStep(line=src.line, col=src.col0 + 1, actor=actor, source=raw, target=child,
                             logged=logged))


def _add_exit(st: _State, actor: str, src: Source, raw: str) -> None:
    """Record an exit; later steps may not use the process."""
    st.alive.discard(actor)
    if st.actor == actor:
        st.actor = MAIN if MAIN in st.alive else actor
    st.steps.append(ExitStep(line=src.line, col=src.col0 + 1, actor=actor, source=raw))

