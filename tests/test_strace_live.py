"""strace replay of real programs traced now, on this machine: the maps the model computes at the
program's first read() of /proc/self/maps must equal, byte for byte, what the program read.

Each program runs as `setarch -R strace -f -v -s 65536 -o LOG CMD` (ASLR off), the form
`vmlab strace-replay` documents; the test then replays LOG with `--at-read /proc/self/maps`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vmlab.lab.backends import make_backend
from vmlab.lab.strace import Replay, maps_read_in_log, read_log

PROGRAMS = {
    "cat": ["cat", "/proc/self/maps"],
    "python3": ["python3", "-S", "-c", "import sys; sys.stdout.write(open('/proc/self/maps').read())"],
    "dd": ["dd", "if=/proc/self/maps", "of=/dev/null", "bs=512", "status=none"],
    "head": ["head", "-c", "100000", "/proc/self/maps"],
    "sh-cat": ["sh", "-c", "cat /proc/self/maps"],
    "grep": ["grep", "-c", "", "/proc/self/maps"],
    "sort": ["sort", "/proc/self/maps"],
    "awk": ["awk", "{print}", "/proc/self/maps"],
    "perl": ["perl", "-ne", "print", "/proc/self/maps"],
    "node": ["node", "-e", "process.stdout.write(require('fs').readFileSync('/proc/self/maps'))"],
}

pytestmark = [
    pytest.mark.host,
    pytest.mark.skipif(shutil.which("strace") is None or shutil.which("setarch") is None,
                       reason="needs strace and setarch on the host"),
]


def trace(tmp_path: Path, argv: list[str], *extra: str) -> Path:
    """Run argv under strace with ASLR off and an empty environment; the log's path."""
    log = tmp_path / "trace.log"
    exe = shutil.which(argv[0], path="/usr/bin:/bin")  # real programs, not shims
    if exe is None:
        pytest.skip(f"{argv[0]} is not installed")
    subprocess.run(["setarch", "-R", "strace", "-f", "-v", "-s", "65536", *extra, "-o", str(log),
                    exe, *argv[1:]], env={}, check=True, stdout=subprocess.DEVNULL, timeout=60)
    return log


def replay_maps(log: Path) -> tuple[str, str]:
    """(what the model says at the first read of /proc/self/maps, what the program read)."""
    events = read_log(str(log))
    backend = make_backend("model")
    try:
        got = Replay(events, backend, at_read="/proc/self/maps").run()
    finally:
        backend.close()
    return got, maps_read_in_log(events, "/proc/self/maps")


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_replay_equals_what_the_program_read(tmp_path: Path, name: str) -> None:
    got, read = replay_maps(trace(tmp_path, PROGRAMS[name]))
    assert got == read


def test_replay_with_decorated_log(tmp_path: Path) -> None:
    """-y, -tt and -T decorations change nothing in the replay."""
    got, read = replay_maps(trace(tmp_path, PROGRAMS["cat"], "-y", "-tt", "-T"))
    assert got == read
