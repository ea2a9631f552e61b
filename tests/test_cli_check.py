"""`vmlab run --check`: the model's invariant checker (vmlab.kernel.debug_vm) after every step."""

from __future__ import annotations

from pathlib import Path

import pytest

import vmlab.kernel.debug_vm
from vmlab.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples"

SCENARIO = """\
set ram 96M
a = mmap(NULL, 32M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
child = fork()
@child write a, 32M
write a, 32M
"""


def test_a_scenario_under_pressure_keeps_every_invariant(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Two processes writing 64 MiB into a 96 MiB machine (MemTotal 49 MiB) without swap: reclaim,
    then the OOM killer (the model's own checker runs after the start and each of the 4 steps)."""
    scn = tmp_path / "p.vml"
    scn.write_text(SCENARIO)
    calls: list[int] = []
    real = vmlab.kernel.debug_vm.check_machine

    def counting(backend: object) -> None:
        calls.append(1)
        real(backend)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vmlab.kernel.debug_vm, "check_machine", counting)
        assert main(["run", "--check", str(scn)]) == 0
    out = capsys.readouterr().out
    assert "+++ killed by SIGKILL +++" in out
    assert len(calls) == 5


def test_the_first_broken_invariant_stops_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A model bug found after the step at line 4 (here: a checker that fails from its third call):
    the transcript so far, then one line naming the step, exit status 3."""
    scn = tmp_path / "p.vml"
    scn.write_text(SCENARIO)
    calls: list[int] = []

    def broken(backend: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise AssertionError("frame 0x1234 is owned twice")

    monkeypatch.setattr(vmlab.kernel.debug_vm, "check_machine", broken)
    assert main(["run", "--check", str(scn)]) == 3
    out, err = capsys.readouterr()
    assert err == (f"{scn}:3: model bug: an invariant is broken after this step: frame 0x1234 is owned "
                   "twice\n")
    assert "fork() = child" in out and "@child write" not in out


def test_check_needs_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--check", "--backend", "host", str(EXAMPLES / "brk.vml")]) == 2
    assert capsys.readouterr().err == "vmlab run: error: --check needs the model backend\n"
