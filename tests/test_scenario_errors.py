"""Every class of bad scenario input: one `FILE:LINE:COL: error:` line, exit status 2, nothing run."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmlab.cli import main

OK = "a = mmap(NULL, 4K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
CASES = [
    ("unknown syscall", OK + "frobnicate(1, 2)\n", 2, 1, "unknown syscall 'frobnicate'"),
    ("unknown flag", "mmap(NULL, 4K, PROT_READ|PROT_BOGUS, MAP_PRIVATE, -1, 0)\n", 1, 26,
     "undefined name 'PROT_BOGUS'"),
    ("unparsable address", OK + "munmap(0x, 4096)\n", 2, 8, "bad number '0x'"),
    ("dangling operator", OK + "munmap(a +, 4096)\n", 2, 11, "expected an expression"),
    ("wrong arity", OK + "munmap(a)\n", 2, 1, "munmap takes 2 arguments, got 1"),
    ("undefined variable", OK + "munmap(b, 4096)\n", 2, 8, "undefined name 'b'"),
    ("undefined variable in access", OK + "write zz, 4096\n", 2, 7, "undefined name 'zz'"),
    ("unknown view", OK + "show pagetables\n", 2, 6, "unknown view 'pagetables'"),
    ("unknown setting", "set max_maps 3\n", 1, 5, "unknown setting 'max_maps'"),
    ("set after a step", OK + "set max_map_count 100\n", 2, 5, "must come before the first step"),
    ("unknown process", OK + "@kid munmap(a, 4096)\n", 2, 2, "no live process 'kid'"),
    ("string where a number belongs", OK + 'munmap("a", 4096)\n', 2, 8, "expected a number"),
    ("unterminated expect", OK + "expect maps\n...\n", 2, 1, "has no 'end' line"),
    ("unbalanced call", OK + "munmap(a, 4096\n", 2, 15, "missing ')'"),
    ("pagemap without a range", OK + "show pagemap\n", 2, 6, "expected 'pagemap ADDR[, LEN] [verbose]'"),
    ("pagemap of an undefined name", OK + "show pagemap b, 4K verbose\n", 2, 14, "undefined name 'b'"),
    ("arguments to counters", OK + "show counters a\n", 2, 15, "'counters' takes nothing after it"),
    ("unknown counter", OK + "expect counters minflt +1 RssAnno +4 kB\n", 2, 8, "'RssAnno' is not a counter"),
    ("counter without a number", OK + "expect counters minflt\n", 2, 8, "'minflt' needs a number"),
    ("two-line counters block", OK + "expect counters\nminflt +1\nmajflt +0\nend\n", 2, 1,
     "exactly one line"),
    ("file outside the temporary directory", 'file "/etc/vmlab.dat" 4K\n', 1, 6, "must be directly in"),
    ("file after a step", OK + 'file "/tmp/vmlab-x.dat" 4K\n', 2, 6, "must come before the first step"),
    ("file without a size", 'file /tmp/vmlab-x.dat\n', 1, 6, "expected 'file PATH SIZE'"),
    # Found by fuzzing scenarios: each of these was a Python traceback (exit 1) or ran on regardless.
    ("division by zero in a setting", "set ram 1/0\n", 1, 10, "division by zero"),
    ("negative shift in a setting", "set ram 1 << -1\n", 1, 11, "shift count -1 is not 0 to 63"),
    ("division by zero in an argument", OK + "munmap(a, 4K / (2 - 2))\n", 2, 14, "division by zero"),
    ("huge shift in an access", OK + "read a, 1 << 4000\n", 2, 11, "shift count 4000 is not 0 to 63"),
    ("division by zero in an expect", OK + "expect = a / 0\n", 2, 12, "division by zero"),
    ("RAM the model cannot boot", "set ram 1M\n", 1, 9, "ram must be 2M to 64G, not 1048576"),
    ("RAM the model cannot hold", "set ram 1T\n", 1, 9, "ram must be 2M to 64G"),
    ("overcommit_memory out of range", "set overcommit_memory 3\n", 1, 23,
     "overcommit_memory must be 0 to 2, not 3"),
    ("negative max_map_count", "set max_map_count -1\n", 1, 19, "max_map_count must be 0 to"),
    ("NUL byte in a path", 'openat(AT_FDCWD, "/tmp/a\\0b", O_RDONLY)\n', 1, 18,
     "a path or argument cannot hold a NUL byte"),
    ("NUL byte in a file statement", 'file "/tmp/a\\000" 4K\n', 1, 6, "cannot hold a NUL byte"),
    ("negative unsigned setting", "set mmap_min_addr -4K\n", 1, 19, "mmap_min_addr must be 0 to"),
    ("fcntl command the model does not carry out", 'fcntl(0, F_SETLK, 0)\n', 1, 10,
     "fcntl F_SETLK is not modelled"),
]


@pytest.mark.parametrize(("what", "text", "line", "col", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_location(tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str,
                                          text: str, line: int, col: int, message: str) -> None:
    path = tmp_path / "bad.vml"
    path.write_text(text)
    assert main(["run", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing ran, nothing half-written
    assert err == f"{path}:{line}:{col}: error: {message}\n" or (
        err.startswith(f"{path}:{line}:{col}: error: ") and message in err), err


def test_settings_the_program_cannot_start_with(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """vm.max_map_count 0: exec itself fails (no room for the first VMA: -ENOMEM), which the runner let
    escape as an OSError traceback; it is one line naming the scenario, exit 2, nothing run."""
    path = tmp_path / "bad.vml"
    path.write_text("set max_map_count 0\n" + OK)
    assert main(["run", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: error: the program cannot start with these settings: ")
    assert err.endswith("Cannot allocate memory\n") and err.count("\n") == 1, err


@pytest.mark.host
def test_host_backend_cannot_drive_another_program(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`exec /usr/bin/true` on the host backend: the program runs, exits and never answers the
    oracle, which let a StepperDied traceback escape (vmlab diff of the docs' own `exec` example);
    it is one line naming the scenario and the program, exit 2."""
    from hostutil import program_or_skip

    program_or_skip()
    path = tmp_path / "other.vml"
    path.write_text("exec /usr/bin/true\n" + OK)
    for command in (["run", "--backend", "host", str(path)], ["diff", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err == (f"{path}: error: /usr/bin/true exited (0) without answering: the host backend "
                       "drives only the vmlab stepper (`exec` of another program runs on the model: "
                       "vmlab run FILE)\n"), err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.vml")]) == 2
    assert capsys.readouterr().err == f"{tmp_path / 'nope.vml'}: error: cannot read scenario: " \
                                      "No such file or directory\n"


@pytest.mark.parametrize(("result", "col", "message"), [
    ("FOO", 65, "the result of mmap must be a number, not 'FOO'"), ("1/0", 66, "division by zero")])
def test_strace_log_with_a_result_that_is_no_number(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    result: str, col: int, message: str) -> None:
    """strace-replay evaluated `= FOO` (KeyError) and `= 1/0` (ZeroDivisionError) only when replaying
    the call, as tracebacks (found by fuzzing); the log is checked as it is read."""
    log = tmp_path / "x.log"
    log.write_text('execve("/bin/true", ["true"], []) = 0\n'
                   f"mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = {result}\n")
    assert main(["strace-replay", str(log)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"{log}:2:{col}: error: {message}\n"


def test_missing_strace_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["strace-replay", str(tmp_path / "x.log")]) == 2
    assert "error: cannot read strace log" in capsys.readouterr().err


def test_strace_log_of_a_program_the_model_cannot_exec(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The log's first execve succeeded, but the file is no program the model can run here (a text
    file without `#!`: ENOEXEC): one line naming the execve, not the OSError's traceback it was."""
    text = tmp_path / "notes"
    text.write_text("plain text\n")
    text.chmod(0o755)
    log = tmp_path / "x.log"
    log.write_text(f'execve("{text}", ["notes"], []) = 0\n')
    assert main(["strace-replay", str(log)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (f"{log}:1:1: error: cannot replay execve: the model cannot run {text}: "
                                 "Exec format error\n")


def test_unlink_outside_the_temporary_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The host backend would remove the file for real: only files directly in /tmp, as `file` makes."""
    scn = tmp_path / "u.vml"
    scn.write_text('unlink("/etc/hostname")\n')
    assert main(["run", str(scn)]) == 2
    assert capsys.readouterr().err == (f"{scn}:1:8: error: unlink takes a file directly in /tmp (the host "
                                       "backend removes it for real)\n")
