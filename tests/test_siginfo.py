"""The lines a fatal access ends a transcript with, as strace prints them: a fault signal's
`--- SIGSEGV {...} ---` then `+++ killed by ... +++`; a SIGKILL (the OOM killer's) only the latter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmlab.cli import main
from vmlab.lab.siginfo import fault

MAPS = "10000000-10001000 r--p 00000000 00:00 0 \n"


def test_fault_signals_name_the_page() -> None:
    """A write to the read-only page is SEGV_ACCERR; past the mapping, SEGV_MAPERR at the first page
    not covered; the walk stops there, however long the range (2^62 bytes here)."""
    assert fault(MAPS, 0x10000000, 1, True, "SIGSEGV") == (
        "--- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_ACCERR, si_addr=0x10000000} ---")
    assert fault(MAPS, 0x10000010, 1 << 62, False, "SIGSEGV") == (
        "--- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=0x10001000} ---")


def test_sigkill_has_no_siginfo_line() -> None:
    assert fault(MAPS, 0x10000000, 1, True, "SIGKILL") is None


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace on the host")
def test_strace_prints_no_siginfo_for_sigkill(tmp_path: Path) -> None:
    """What strace prints for a process SIGKILLed (here by itself): no signal-delivery stop line."""
    log = tmp_path / "k.log"
    subprocess.run(["strace", "-o", str(log), sys.executable, "-c",
                    "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], check=False, timeout=60)
    lines = log.read_text().splitlines()
    assert lines[-1] == "+++ killed by SIGKILL +++"
    assert not any(line.startswith("--- SIGKILL") for line in lines)


def test_an_oom_killed_write_ends_like_strace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A write the OOM killer stops (1 GiB into a 256 MiB machine without swap) ends its transcript
    with `+++ killed by SIGKILL +++` alone (it printed a made-up SIGSEGV line before it)."""
    scn = tmp_path / "oom.vml"
    scn.write_text("set ram 256M\na = mmap(NULL, 1G, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|"
                   "MAP_NORESERVE, -1, 0)\nwrite a, 1G\n")
    assert main(["run", str(scn)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["write 0x7fffb7e00000, 1073741824", "+++ killed by SIGKILL +++"]
