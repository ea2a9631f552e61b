"""The runner and `vmlab run` on the fake backend: strace-style echo, notes, views, expects, signals."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_backend import FakeBackend
from vmlab.backend import Program
from vmlab.cli import main
from vmlab.errors import InputError
from vmlab.lab import run as run_mod
from vmlab.lab.scenario import parse

PROG = Program("/bin/prog", ("/bin/prog",))


def transcript(text: str) -> run_mod.Transcript:
    """Run `text` on a fresh fake backend."""
    return run_mod.run(parse(text, "s.vml"), FakeBackend(), PROG)


def test_echo_is_strace_style() -> None:
    t = transcript("a = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                   "munmap(a + 4K, 4K)\nmunmap(a + 1, 4K)\n")
    calls = [r.text for r in t.records if r.kind == "call"]
    assert calls == [
        "mmap(NULL, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7fef000",
        "munmap(0x7ffff7ff0000, 4096) = 0",
        "munmap(0x7ffff7fef001, 4096) = -1 EINVAL (Invalid argument)",
    ]
    assert t.failures == 0


def test_pasted_result_mismatch_is_a_note_not_a_failure() -> None:
    t = transcript("mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7ff6000\n")
    notes = [r.text for r in t.records if r.kind == "note" and "trace says" in r.text]
    assert notes == ["# note: line 1: the trace says = 0x7ffff7ff6000, fake returned = 0x7ffff7ffe000"]
    assert t.failures == 0


def test_expect_result_and_view() -> None:
    t = transcript(
        "a = mmap(0x10000000, 8K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)\n"
        "expect = 0x10000000\n"
        "mmap(a, 4K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)\n"
        "expect = -1 EEXIST\n"
        "expect maps\n  00400000-00401000 r-xp 00000000 00:00 0     /bin/prog\n...\nend\n"
        "expect maps\n...\n10000000-10002000 r--p 00000000 00:00 0\n...\nend\n")
    assert t.failures == 1  # the first block's padding differs from the kernel's
    fail = next(r.text for r in t.records if r.kind == "fail")
    assert fail.startswith("s.vml:5: expect failed: expect maps differs\n--- expected\n+++ fake")
    assert "-00400000-00401000 r-xp 00000000 00:00 0     /bin/prog" in fail


def test_segv_is_printed_like_strace_and_ends_the_process() -> None:
    t = transcript("a = mmap(0x10000000, 4K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
                   "write a, 1\nexpect killed SIGSEGV\nmunmap(a, 4096)\n")
    texts = [r.text for r in t.records]
    assert "--- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_ACCERR, si_addr=0x10000000} ---\n" \
           "+++ killed by SIGSEGV +++" in texts
    assert any("skipped, main was killed by SIGSEGV" in x for x in texts)
    assert t.failures == 0


def test_steps_after_an_exit_are_refused() -> None:
    """A process that exited takes no more steps: the scenario is refused where one comes (main's
    ran with no process behind it: a KeyError traceback, found by fuzzing scenarios)."""
    with pytest.raises(InputError, match=r"s.vml:3:1: error: no live process 'main' \(live: child\)"):
        transcript("child = fork()\nexit\nread 0x10000000\n")
    t = transcript("child = fork()\nexit\nprocess child\nread 0x10000000\nexpect killed SIGSEGV\n")
    assert t.failures == 0


def test_fork_and_actors() -> None:
    t = transcript("a = mmap(0x10000000, 8K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
                   "child = fork()\n@child munmap(a, 4K)\n@child show maps\nshow maps\n"
                   "@child read a\nexpect killed SIGSEGV\nread a\nexpect = 0\n")
    views = [r.text for r in t.records if r.kind == "view"]
    assert "@child show maps" in views[0] and "10001000-10002000" in views[0] and "10000000-" not in views[0]
    assert "10000000-10002000" in views[1]
    assert t.failures == 0


def test_strace_pid_prefixes_follow_forks() -> None:
    t = transcript("100  mmap(0x10000000, 4K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
                   "100  clone(child_stack=NULL, flags=SIGCHLD) = 101\n"
                   "[pid 101] munmap(0x10000000, 4096) = 0\n")
    calls = [r.text for r in t.records if r.kind == "call"]
    assert calls[-1] == "@child1 munmap(0x10000000, 4096) = 0"


@pytest.fixture
def fake_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """`vmlab run` on the fake backend with a fixed program."""
    import vmlab.cli.run as cli_run

    monkeypatch.setattr(cli_run, "make_backend", lambda _name: FakeBackend())
    monkeypatch.setattr(run_mod, "default_program", lambda: PROG)


@pytest.mark.usefixtures("fake_cli")
def test_cli_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.vml", tmp_path / "bad.vml"
    good.write_text("mmap(NULL, 4K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nexpect = 0x7ffff7ffe000\n")
    bad.write_text("mmap(NULL, 4K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nexpect = 0x1000\n")
    assert main(["run", str(good)]) == 0
    assert main(["run", str(bad)]) == 1
    assert "expect failed: expected = 0x1000, got = 0x7ffff7ffe000" in capsys.readouterr().out


@pytest.mark.usefixtures("fake_cli")
def test_cli_demo_runs_without_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "show maps" in out and 'openat(AT_FDCWD, "/etc/passwd", O_RDONLY) = 3' in out


def test_examples_parse() -> None:
    from vmlab.lab.scenario import load

    root = Path(__file__).parent.parent / "examples"
    names = sorted(p.name for p in root.glob("*.vml"))
    assert names == ["address-space.vml", "brk.vml", "cow.vml", "earlyoom.vml", "fault-around.vml",
                     "faults.vml", "file-faults.vml", "fork.vml", "mbind.vml", "mmap-placement.vml",
                     "mremap.vml", "oom-hog.vml", "status.vml", "thp.vml", "vma-merge.vml"]
    for p in root.glob("*.vml"):
        assert load(str(p)).steps
    packaged = Path(run_mod.__file__).parent.parent / "examples" / "address-space.vml"
    assert packaged.read_text() == (root / "address-space.vml").read_text()


def test_a_refused_fork_is_printed_and_its_child_never_runs() -> None:
    """Under overcommit_memory 2 dup_mmap() charges every VM_ACCOUNT VMA of the parent again
    (mm/mmap.c: security_vm_enough_memory_mm(oldmm, len) -> fail_nomem), so fork() returns -ENOMEM.
    The runner used to take -12 for the child's pid and raise KeyError at its first checkpoint (the
    scenario fuzzer found it); now the result is printed as strace prints it, `expect` sees it and the
    child's steps are skipped."""
    from vmlab.lab.backends import make_backend

    text = ("set ram 64M\nset overcommit_memory 2\n"
            "a = mmap(NULL, 6M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"  # CommitLimit 8.8M
            "kid = fork()\nexpect = -1 ENOMEM\n@kid read a\nread a\nexpect = 0\n")
    t = run_mod.run(parse(text, "s.vml"), make_backend("model"))
    texts = [r.text for r in t.records]
    assert "fork() = -1 ENOMEM (Cannot allocate memory)" in texts
    assert "# line 6: skipped, kid was never created (fork failed)" in texts
    assert t.failures == 0, t.text()


def test_an_undefined_operation_on_a_variable_skips_the_step() -> None:
    """`4K / a` with a = 0 cannot be refused before the run (the checker refuses it on constants); it
    raised ZeroDivisionError out of the runner. Now the step is skipped with a note naming the column
    (C's `/` truncates toward zero: -7 / 2 is -3)."""
    t = transcript("a = mmap(NULL, 4K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                   "munmap(a, 4K / (a - a))\nmunmap(a, 1 << (a - a - 1))\nmunmap(a, (0 - 7) / 2 + 4099)\n")
    texts = [r.text for r in t.records]
    assert "# line 2: skipped, column 14: division by zero" in texts
    assert "# line 3: skipped, column 13: shift count -1 is not 0 to 63" in texts
    assert "munmap(0x7ffff7ffe000, 4096) = 0" in texts
