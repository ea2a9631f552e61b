"""The shared call parser on every strace form, from logs captured here (fixtures/strace/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmlab.errors import InputError
from vmlab.lab.calls import CONSTANTS, format_arg, format_call, format_result, interpret_args
from vmlab.lab.syntax import Call, Exited, Num, Resumed, Signal, Source, evaluate, parse_event, split_prefix

FIX = Path(__file__).parent / "fixtures" / "strace"
SRC = Source("t", 1)


def log_line(name: str, needle: str) -> str:
    """The first line of a captured log that contains `needle`."""
    return next(line for line in (FIX / name).read_text().splitlines() if needle in line)


def parse(line: str) -> tuple[int | None, Call | Signal | Exited | Resumed]:
    """pid and event of a raw strace line."""
    sp = split_prefix(line)
    return sp.pid, parse_event(sp.body, SRC)


def args(call: Call) -> list[object]:
    """The call's arguments evaluated (constants only)."""
    return [evaluate(e, CONSTANTS) for e in interpret_args(call, SRC, lambda _n: False)]


def test_pid_timestamp_duration_and_fd_decoration() -> None:
    pid, call = parse(log_line("cat_y_tt_T.log", "mmap(NULL, 34547"))
    assert pid == 3832 and isinstance(call, Call)
    assert args(call) == [0, 34547, 1, 2, 3, 0]
    exprs = interpret_args(call, SRC, lambda _n: False)
    assert isinstance(exprs[4], Num) and exprs[4].path == "/etc/ld.so.cache"
    assert call.result is not None and evaluate(call.result.value, {}) == 0x7FFFF7FB7000  # type: ignore[arg-type]


def test_plain_line_without_pid() -> None:
    pid, call = parse(log_line("nof.log", "mmap(0x7ffff7dfb000"))
    assert pid is None and isinstance(call, Call)
    assert args(call) == [0x7FFFF7DFB000, 1400832, 5, 0x812, 3, 0x26000]


def test_bracket_pid_prefix() -> None:
    pid, call = parse("[pid  4242] munmap(0x7ffff7fb7000, 34547) = 0")
    assert pid == 4242 and isinstance(call, Call) and args(call) == [0x7FFFF7FB7000, 34547]


def test_errno_result() -> None:
    _, call = parse(log_line("errs.log", "EEXIST"))
    assert isinstance(call, Call) and call.result is not None
    assert call.result.errno == "EEXIST" and evaluate(call.result.value, {}) == -1  # type: ignore[arg-type]


def test_result_with_returned_fd_path() -> None:
    _, call = parse(log_line("cat_y_tt_T.log", '"/etc/ld.so.cache", O_RDONLY'))
    assert isinstance(call, Call) and call.result is not None
    assert call.result.path == "/etc/ld.so.cache"
    assert call.args[0].toks[0].decoration == "/tmp/cap"  # AT_FDCWD</tmp/cap>


def test_execve_arrays() -> None:
    _, call = parse(log_line("cat_plain.log", "execve("))
    assert isinstance(call, Call)
    assert args(call) == ["/usr/bin/cat", ("/usr/bin/cat", "/proc/self/maps"), ()]


def test_unfinished_and_resumed_lines() -> None:
    _, head = parse(log_line("fork_sh.log", "vfork( <unfinished"))
    assert isinstance(head, Call) and head.unfinished and head.name == "vfork"
    _, tail = parse(log_line("fork_sh.log", "<... vfork resumed>"))
    assert isinstance(tail, Resumed) and tail.name == "vfork" and tail.tail.strip().startswith(")")


def test_signal_and_killed() -> None:
    _, sig = parse(log_line("segv.log", "--- SIGSEGV"))
    assert isinstance(sig, Signal) and sig.signal == "SIGSEGV" and "SEGV_MAPERR" in sig.info
    _, ex = parse(log_line("segv.log", "+++ killed"))
    assert ex == Exited(None, "SIGSEGV")
    _, ex = parse(log_line("cat_plain.log", "+++ exited"))
    assert ex == Exited(0, None)


def test_c_string_escapes() -> None:
    _, call = parse(r'write(1, "a\n\t\"\\\101\x42\0", 9) = 9')
    assert isinstance(call, Call)
    tok = call.args[1].toks[0]
    assert tok.value == b'a\n\t"\\AB\x00'


def test_unmodelled_call_with_structs_still_parses() -> None:
    _, call = parse(log_line("cat_plain.log", "prlimit64("))
    assert isinstance(call, Call) and len(call.args) == 4


@pytest.mark.parametrize(("text", "value"), [
    ("a = mmap(NULL, 2M+4K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)", 2 * 2**20 + 4096),
    ("mmap(NULL, 2*PAGE_SIZE, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)", 8192),
    ("mmap(NULL, (1 << 12) + 0x1000, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)", 8192),
])
def test_scenario_expressions(text: str, value: int) -> None:
    from vmlab.lab.scenario import CallStep
    from vmlab.lab.scenario import parse as parse_scenario

    step = parse_scenario(text).steps[0]
    assert isinstance(step, CallStep)
    assert evaluate(step.args[1], CONSTANTS) == value


def test_bad_number_is_an_error() -> None:
    with pytest.raises(InputError, match=r"t:1:\d+: error: bad number '4Q'"):
        parse("munmap(0x1000, 4Q)")


def test_formatting_like_strace() -> None:
    assert format_call("mmap", (0, 65536, 3, 0x22, -1, 0)) == \
        "mmap(NULL, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)"
    assert format_arg("mapf", 0x100012) == "MAP_PRIVATE|MAP_FIXED|MAP_FIXED_NOREPLACE"
    assert format_arg("prot", 0) == "PROT_NONE"
    assert format_result(-17, True) == "= -1 EEXIST (File exists)"
    assert format_result(0x7FFFF7FF6000, True) == "= 0x7ffff7ff6000"
