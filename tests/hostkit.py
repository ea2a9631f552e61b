"""Fixtures and helpers for the host tests: a compiled hog, memory cgroups made and removed by the
test, hogs confined to them, files the test makes. Everything a test starts is killed (by pid) and
every cgroup and file removed, even on failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmlab.host import damon
from vmlab.lab.scenario import load

HERE = Path(__file__).parent
V1_MEMORY = Path("/sys/fs/cgroup/memory")


@contextlib.contextmanager
def _on_cpus(cpus: set[int]) -> Iterator[None]:
    """This process (and every process it starts meanwhile, which inherits the mask) runs on `cpus`
    only; the old affinity comes back after."""
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, affinity)


def on_cpu(cpu: int = 0) -> contextlib.AbstractContextManager[None]:
    """This process (and what it starts meanwhile) runs on CPU `cpu` only, then as before. A task that
    migrates leaves its per-CPU LRU batches (lru_add, lru_lazyfree, ...) half on each CPU, and a write
    that drains stocks drains its own CPU's at once but the others' later."""
    return _on_cpus({cpu})


def off_cpu(cpu: int = 0) -> contextlib.AbstractContextManager[None]:
    """This process (and what it starts meanwhile) runs on the CPUs it may use but `cpu`, when it may
    use another, then as before. For a test driving a stepper pinned to `cpu`: the driver's own work
    there (its pages through that CPU's folio batches, its switches in and out) changes what the kernel
    reclaims for the stepper, which the model, with one task on its CPU, does not see."""
    affinity = os.sched_getaffinity(0)
    return _on_cpus(affinity - {cpu} or affinity)


def build_test_program(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """tests/NAME.c built with gcc into a temporary directory (skips without a C compiler)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip(f"no C compiler (gcc/cc) to build {name}.c")
    out = tmp_path_factory.mktemp(name) / name
    subprocess.run([gcc, "-O1", "-Wall", "-o", str(out), str(HERE / f"{name}.c")], check=True)
    return out


@pytest.fixture(scope="session")
def hog_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/oomhog.c built with gcc into a temporary directory."""
    return build_test_program(tmp_path_factory, "oomhog")


class Hog:
    """One running oomhog: its Popen, pid and line protocol."""

    def __init__(self, binary: Path, name: str, adj: int, mib: int, cgroup: Path | None,
                 cpu: int | None = None) -> None:
        """Start it (on CPU `cpu` only, from its first instruction, when given: taskset execs the hog
        in the same process) and wait until it has joined `cgroup`, set its adj and touched `mib` MiB."""
        procs = str(cgroup / "cgroup.procs") if cgroup else "-"
        self.name = name
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self.proc = subprocess.Popen([*pin, str(binary), name, str(adj), str(mib), procs],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.expect("ready")

    def send(self, line: str) -> None:
        """Write one command line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def reply(self) -> str:
        """Read one reply line (without its newline; "" when the hog is gone)."""
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def expect(self, word: str) -> None:
        """Read one reply line and check it."""
        got = self.reply()
        assert got == word, f"hog {self.name} ({self.pid}) said {got!r}, exit {self.proc.poll()}"

    def kill(self) -> None:
        """SIGKILL and reap it (no-op when already gone)."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(BrokenPipeError):
                    f.close()


class Hogs:
    """The hogs of one test; `start()` adds one, teardown kills them all."""

    def __init__(self, binary: Path) -> None:
        """No hogs yet."""
        self.binary = binary
        self.all: list[Hog] = []

    def start(self, name: str, adj: int, mib: int, cgroup: Path | None = None, cpu: int | None = None) -> Hog:
        """A new hog (see Hog)."""
        hog = Hog(self.binary, name, adj, mib, cgroup, cpu)
        self.all.append(hog)
        return hog

    def kill_all(self) -> None:
        """SIGKILL and reap every hog started (by pid)."""
        for hog in self.all:
            hog.kill()


@pytest.fixture
def hogs(hog_binary: Path) -> Iterator[Hogs]:
    """Start hogs; every one is SIGKILLed by pid and reaped afterwards."""
    h = Hogs(hog_binary)
    try:
        yield h
    finally:
        h.kill_all()


def _remove_tree(path: Path) -> None:
    """Kill every task left in a cgroup tree (ours only: we made it), then rmdir it, deepest first."""
    if not path.exists():
        return
    dirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for d in [*dirs, path]:
        for _ in range(100):
            pids = [int(x) for x in (d / "cgroup.procs").read_text().split()]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.05)  # tasks still exiting


class Memcgs:
    """cgroup v1 memory cgroups made by one test."""

    def __init__(self, tag: str) -> None:
        """Nothing made yet; names start with `vmlab_<tag>_<pid>`."""
        self.prefix = f"vmlab_{tag}_{os.getpid()}"
        self.made: list[Path] = []

    def make(self, suffix: str, limit: str = "64M") -> Path:
        """A new top-level memory cgroup with `limit` (memory.limit_in_bytes)."""
        path = V1_MEMORY / f"{self.prefix}_{suffix}"
        path.mkdir()
        self.made.append(path)
        (path / "memory.limit_in_bytes").write_text(limit)
        return path


@pytest.fixture
def memcgs() -> Iterator[Memcgs]:
    """Make v1 memory cgroups; each is emptied (SIGKILL) and removed afterwards, even on failure."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create memory cgroups")
    if not (V1_MEMORY / "memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller at /sys/fs/cgroup/memory")
    m = Memcgs("oom")
    try:
        yield m
    finally:
        for path in reversed(m.made):
            _remove_tree(path)


@pytest.fixture
def files() -> Iterator[list[str]]:
    """Paths the test makes; every one is removed afterwards, even on failure."""
    made: list[str] = []
    yield made
    for path in made:
        Path(path).unlink(missing_ok=True)


def example_scenario_files() -> set[Path]:
    """The files the example scenarios' `file` steps write (examples/**/*.vml)."""
    return {Path(spec.path) for vml in (HERE.parent / "examples").rglob("*.vml")
            for spec in load(str(vml)).files}


@pytest.fixture(scope="session", autouse=True)
def scenario_files() -> Iterator[None]:
    """The files the example scenarios write (in /tmp) are removed at the end of the session, but for
    those there before it; other files, another session's among them, are left alone."""
    made = {path for path in example_scenario_files() if not path.exists()}
    yield
    for path in made:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="session", autouse=True)
def no_damon() -> Iterator[None]:
    """The test session runs with the machine's kdamonds paused (vmlab.host.damon.paused; see
    interference.py for what their pageout did to the host tests' file pages). For the whole session,
    not per test marked `host`: the test_host_* modules drive the kernel too, unmarked, and a
    restarted kdamond pages nothing out for a minute anyway."""
    with damon.paused():
        yield
