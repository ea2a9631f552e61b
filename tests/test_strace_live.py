"""strace replay of real programs traced now, on this machine: the maps the model computes at the
program's first read() of /proc/self/maps must equal, byte for byte, what the program read.

Each program runs as `setarch -R strace -f -v -s 65536 -o LOG CMD` (ASLR off), the form
`vmlab strace-replay` documents; the test then replays LOG with `--at-read /proc/self/maps`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmlab.lab.backends import make_backend
from vmlab.lab.diff import mask
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
    # realloc()s that mremap a written chunk to a new place, then a mapping placed just below it:
    # the kernel keeps the moved VMA's vm_pgoff (it was faulted: written when malloc made it), so
    # the two do not merge.
    # bash's `read` builtin reads 128 bytes ahead and seeks back to the end of the line it took.
    "bash-read": ["bash", "-c", "while IFS= read -r l; do echo \"$l\"; done < /proc/self/maps"],
    # Files made in /dev/shm (tmpfs): shmem files of that mount, one unlinked while still mapped.
    "python3-shm": ["python3", "-S", "-c",
                    "import mmap, os, sys\nms = []\nfor n in ('a', 'b'):\n"
                    "    p = f'/dev/shm/vmlab-strace-{os.getpid()}-{n}'\n"
                    "    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)\n"
                    "    os.ftruncate(fd, 1 << 20)\n    ms.append((p, mmap.mmap(fd, 1 << 20)))\n"
                    "    ms[-1][1][:4096] = b'x' * 4096\n    os.close(fd)\n"
                    "os.unlink(ms[0][0])\nmaps = open('/proc/self/maps').read()\nos.unlink(ms[1][0])\n"
                    "sys.stdout.write(maps)"],
    "python3-realloc": ["python3", "-S", "-c",
                        "bufs = [bytearray(n) for n in (10**5, 10**6, 10**7, 3*10**7)]\ndel bufs[1]\n"
                        "b = bytearray(10**6)\nfor i in range(20): b += bytearray(10**6)\n"
                        "import mmap\nm = mmap.mmap(-1, 5 << 20)\nm.resize(9 << 20)\nx = bytearray(10**6)\n"
                        "import sys; sys.stdout.write(open('/proc/self/maps').read())"],
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
    """Equal but for the inode numbers of shmem objects (a shared anonymous mapping's: the host's
    count since boot), masked as `vmlab diff` masks them."""
    got, read = replay_maps(trace(tmp_path, PROGRAMS[name]))
    assert mask(got) == mask(read)


def test_replay_with_decorated_log(tmp_path: Path) -> None:
    """-y, -tt and -T decorations change nothing in the replay."""
    got, read = replay_maps(trace(tmp_path, PROGRAMS["cat"], "-y", "-tt", "-T"))
    assert got == read


def _run_traced(tmp_path: Path, argv: list[str]) -> Path:
    """Run argv (a path, not looked up) under strace like trace(); the log's path."""
    log = tmp_path / "trace.log"
    subprocess.run(["setarch", "-R", "strace", "-f", "-v", "-s", "65536", "-o", str(log), *argv], env={},
                   check=True, stdout=subprocess.DEVNULL, timeout=60)
    return log


def test_replay_of_a_script(tmp_path: Path) -> None:
    """A `#!` script traced from its own execve: the model runs its interpreter with the script's
    argv (binfmt_script) and the maps python read are the model's."""
    if shutil.which("python3", path="/usr/bin") is None:
        pytest.skip("/usr/bin/python3 is not installed")
    script = tmp_path / "maps.py"
    script.write_text("#!/usr/bin/python3 -S\nimport sys; sys.stdout.write(open('/proc/self/maps').read())\n")
    script.chmod(0o755)
    got, read = replay_maps(_run_traced(tmp_path, [str(script), "arg"]))
    assert got == read


MAKES_FILES = """
import mmap, os, sys
os.chdir(sys.argv[1])
fd = os.open("made", os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, 8192)
shared = mmap.mmap(fd, 8192)
mfd = os.memfd_create("vmlab", os.MFD_CLOEXEC)
os.ftruncate(mfd, 4096)
anon = mmap.mmap(mfd, 4096)
tmp = os.open("gone", os.O_RDWR | os.O_CREAT, 0o600)
os.unlink("gone")
os.ftruncate(tmp, 4096)
deleted = mmap.mmap(tmp, 4096)
sys.stdout.write(open("/proc/self/maps").read())
"""


def test_replay_of_files_the_program_made(tmp_path: Path) -> None:
    """A file created by a relative open after chdir, a memfd, and a temporary file unlinked as soon
    as it is open, each sized with ftruncate and mapped MAP_SHARED: the replay makes all three in the
    model, under their names, the last one `(deleted)`. The created file is removed before the
    replay (as a program's temporary file would be), so its device and inode are the model's own, as
    the deleted one's; a memfd's inode number is the host's count since boot (masked as `vmlab diff`
    masks it). Everything else in the maps is the kernel's."""
    python3 = shutil.which("python3", path="/usr/bin")
    if python3 is None:
        pytest.skip("/usr/bin/python3 is not installed")
    work = tmp_path / "work"
    work.mkdir()
    log = _run_traced(tmp_path, [python3, "-S", "-c", MAKES_FILES, str(work)])
    (work / "made").unlink()
    got, read = replay_maps(log)
    made, gone = f" {work / 'made'}", f" {work / 'gone'} (deleted)"
    assert made in read and gone in read and "/memfd:vmlab (deleted)" in read

    def masked(text: str) -> str:
        lines = [re.sub(r" [0-9a-f]{2}:[0-9a-f]{2} \d+ +", " * ", ln) if ln.endswith((made, gone)) else ln
                 for ln in text.splitlines()]
        return mask("\n".join(lines))

    assert masked(got) == masked(read)


def test_replay_of_numpy_with_blas_threads(tmp_path: Path) -> None:
    """numpy (this interpreter's) multiplying matrices: OpenBLAS's threads and their stacks, its
    buffers (here placed with mbind(MPOL_PREFERRED, NULL); a build without NUMA support makes no such
    call), a library's bss and TLS written as soon as they are made, so that a mapping later made
    between them merges with one side only, as on the kernel."""
    code = ("import numpy as np\na = np.ones((600, 600))\nb = a @ a\n"
            "import sys; sys.stdout.write(open('/proc/self/maps').read())")
    log = _run_traced(tmp_path, [sys.executable, "-c", code])
    got, read = replay_maps(log)
    assert mask(got) == mask(read)
