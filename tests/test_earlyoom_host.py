"""The model's earlyoom against the real one (Debian's earlyoom v1.7, run only with --dryrun, so it
kills nothing): the same limits on the host's own /proc/meminfo give the same lines, and the same live
process table gives the same victim and `sending SIGTERM` line.

Races: the host's memory and processes move while the real daemon runs (other tests run in parallel),
so the model decides on snapshots taken just before and just after the real daemon's output, and a run
counts only when the real line equals what the model prints for one of them (up to 5 attempts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmlab.backend import Settings
from vmlab.daemons.earlyoom.daemon import Earlyoom
from vmlab.daemons.earlyoom.flavor import V1_7
from vmlab.daemons.earlyoom.kill import find_largest_process, hook_env, sending_line
from vmlab.daemons.earlyoom.main import parse_args
from vmlab.daemons.earlyoom.meminfo import parse_meminfo, print_mem_stats
from vmlab.daemons.earlyoom.msg import pct
from vmlab.host.oracle import has_capability
from vmlab.host.proctable import read_proctable
from vmlab.kernel.machine import ModelBackend
from vmlab.lab.daemons import ModelSystem
from vmlab.lab.run import default_program

pytestmark = pytest.mark.host
EARLYOOM = shutil.which("earlyoom")
ATTEMPTS = 5


@pytest.fixture(autouse=True)
def need_earlyoom() -> None:
    if EARLYOOM is None:
        pytest.skip("no earlyoom binary (apt-get install -y earlyoom)")
    out = subprocess.run([EARLYOOM, "-v"], capture_output=True, text=True, check=False).stderr
    if "v1.7" not in out:
        pytest.skip(f"earlyoom is {out.strip()!r}; these tests hold the model's v1.7 flavor against v1.7")


def meminfo() -> str:
    with open("/proc/meminfo") as f:
        return f.read()


def dryrun(args: list[str], want: str, seconds: float = 3.0) -> tuple[list[str], list[str]]:
    """Run the real earlyoom with --dryrun until `want` has appeared in three of its lines (or for
    `seconds`); its output lines, and /proc/meminfo read every 10 ms while it ran."""
    samples = [meminfo()]
    proc = subprocess.Popen([EARLYOOM, "--dryrun", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "NO_COLOR": "1"})
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        deadline = time.monotonic() + seconds
        buf = b""
        while time.monotonic() < deadline and sum(want in line for line in lines) < 3:
            samples.append(meminfo())
            try:
                buf += os.read(fd, 65536)
            except BlockingIOError:
                time.sleep(0.01)
            *done, buf = buf.split(b"\n")
            lines.extend(line.decode(errors="replace") for line in done)
    finally:
        proc.kill()  # our own child, by its pid
        proc.wait(timeout=10)
    samples.append(meminfo())
    return lines, samples


def current_percent() -> float:
    return parse_meminfo(meminfo(), V1_7).MemAvailablePercent


@pytest.mark.parametrize("above", [True, False], ids=["limit-above-avail", "limit-below-avail"])
def test_trigger_and_mem_lines_agree_on_host_meminfo(above: bool) -> None:
    for _ in range(ATTEMPTS):
        now = current_percent()
        limit = round(min(now + 3, 99.0) if above else now - 3, 2)
        if not 0 < limit <= 99 or abs(limit - now) < 0.5:
            pytest.skip(f"MemAvailable is {current_percent():.2f}% of MemTotal: no -m limit on that side")
        lines, samples = dryrun(["-m", str(limit), "-s", "100", "-r", "0.1"], "mem avail:")
        models = [parse_meminfo(text, V1_7) for text in samples]
        args = parse_args(["earlyoom", "-m", str(limit), "-s", "100"], models[0], V1_7)
        mem_lines = [line for line in lines if line.startswith("mem avail:")]
        if not set(mem_lines) & {print_mem_stats(m) for m in models}:
            continue  # memory moved while the real daemon read it
        assert all(bool(m.MemAvailablePercent <= limit) == above for m in models)
        low = [line for line in lines if line.startswith("low memory!")]
        expect = f"low memory! at or below SIGTERM limits: mem {pct(args.mem_term_percent)}, swap {pct(100)}"
        assert set(low) == ({expect} if above else set())
        return
    pytest.skip(f"host memory moved in each of {ATTEMPTS} attempts")


@pytest.fixture
def sleepers(tmp_path: Path) -> Iterator[dict[str, int]]:
    """Three sleepers named eoomtest_a/b/c with oom_score_adj 500, 600, 700 (root may raise adj)."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, adj in (("eoomtest_a", 500), ("eoomtest_b", 600), ("eoomtest_c", 700)):
            exe = tmp_path / name
            shutil.copy("/bin/sleep", exe)
            procs[name] = subprocess.Popen([str(exe), "60"])
            Path(f"/proc/{procs[name].pid}/oom_score_adj").write_text(str(adj))
        yield {name: p.pid for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


@pytest.mark.parametrize(("flags", "winner"), [
    (["--prefer", "^eoomtest_a$"], "eoomtest_a"),            # 500 + 300 beats 700
    (["--avoid", "^eoomtest_c$", "--prefer", "eoomtest_b"], "eoomtest_b"),
])
def test_victim_and_sending_line_agree_on_live_processes(sleepers: dict[str, int], flags: list[str],
                                                         winner: str) -> None:
    m = parse_meminfo(meminfo(), V1_7)
    args = parse_args(["earlyoom", "-m", "99", "-s", "100", *flags], m, V1_7)
    for _ in range(ATTEMPTS):
        before = read_proctable()
        lines, _samples = dryrun(["-m", "99", "-s", "100", *flags], "sending SIGTERM to")
        after = read_proctable()
        real = next((line for line in lines if line.startswith("sending SIGTERM to")), None)
        assert real is not None, "\n".join(lines)
        picks = [find_largest_process(args, table, -1, V1_7, print) for table in (before, after)]
        if any(p is None for p in picks) or picks[0].proc.pid != picks[1].proc.pid:  # type: ignore[union-attr]
            continue
        expected = {sending_line(15, p, V1_7) for p in picks if p is not None}
        if real not in expected and picks[0].oom_score != picks[1].oom_score:  # type: ignore[union-attr]
            continue  # a score moved between the snapshots
        assert picks[0] is not None and picks[0].proc.pid == sleepers[winner]
        assert real in expected
        return
    pytest.skip(f"the process table moved in each of {ATTEMPTS} attempts")


# -- -p, -g and -N on the real daemon (dry run) --

CAP_SYS_NICE, CAP_SYS_RESOURCE = 23, 24


def model_startup(argv: list[str], cap_sys_resource: bool) -> tuple[list[str], ModelBackend, int]:
    """The model's v1.7 earlyoom started with `argv` on a fresh model machine (its own task with or
    without CAP_SYS_RESOURCE): its lines, the machine and its pid."""
    backend = ModelBackend()
    backend.start(default_program(), Settings(ram=256 << 20))
    pid = backend.spawn("earlyoom")
    backend.tasks[pid].cap_sys_resource = cap_sys_resource
    lines: list[str] = []
    daemon = Earlyoom(argv, ModelSystem(backend, pid), lambda _s, text: lines.append(text), V1_7)
    assert daemon.start() is None
    daemon.stop()
    return lines, backend, pid


def test_p_sets_nice_and_oom_score_adj_of_the_real_daemon_as_the_model_does() -> None:
    if not has_capability(CAP_SYS_NICE):
        pytest.skip("no CAP_SYS_NICE: setpriority(-20) fails for reasons the model does not know")
    args = ["-p", "-m", "1", "-s", "100"]
    proc = subprocess.Popen([EARLYOOM, "--dryrun", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "NO_COLOR": "1"}, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or not lines[-1].startswith("mem total:"):
            lines.append(proc.stdout.readline().rstrip("\n"))
        adj = int(Path(f"/proc/{proc.pid}/oom_score_adj").read_text())
        nice = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    finally:
        proc.kill()  # our own child, by its pid
        proc.wait(timeout=10)
    model, backend, pid = model_startup(["earlyoom", "--dryrun", *args], has_capability(CAP_SYS_RESOURCE))
    assert lines[:-1] == model[:len(lines) - 1]  # banner, dryrun note, the -p outcome (not "mem total")
    assert (adj, nice) == (backend.tasks[pid].oom_score_adj, backend.tasks[pid].nice)
    assert nice == -20 and adj == (-100 if has_capability(CAP_SYS_RESOURCE) else 0)


@pytest.fixture
def grouped(tmp_path: Path) -> Iterator[dict[str, int]]:
    """eoomtest_a leading a process group, eoomtest_b alone, eoomtest_c (oom_score_adj 700, the victim)
    in a's group."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, adj in (("eoomtest_a", 500), ("eoomtest_b", 600), ("eoomtest_c", 700)):
            exe = tmp_path / name
            shutil.copy("/bin/sleep", exe)
            group = 0 if name != "eoomtest_c" else procs["eoomtest_a"].pid
            procs[name] = subprocess.Popen([str(exe), "60"], process_group=group)
            Path(f"/proc/{procs[name].pid}/oom_score_adj").write_text(str(adj))
        yield {name: p.pid for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
            p.wait(timeout=10)


def test_g_self_test_names_the_victims_group_and_N_gets_its_environment(grouped: dict[str, int],
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "hook.env"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\nenv | grep ^EARLYOOM_ | sort > {out}.tmp && mv {out}.tmp {out}\n")
    hook.chmod(0o755)
    flags = ["-m", "99", "-s", "100", "-g", "--prefer", "^eoomtest_c$", "-N", str(hook), "-N", "rel.sh"]
    m = parse_meminfo(meminfo(), V1_7)
    args = parse_args(["earlyoom", *flags[:-2]], m, V1_7)
    for _ in range(ATTEMPTS):
        before = read_proctable()
        lines, _samples = dryrun(flags[:-2], "sending SIGTERM to")
        picks = [find_largest_process(args, table, -1, V1_7, print) for table in (before, read_proctable())]
        if any(p is None or p.proc.pid != grouped["eoomtest_c"] for p in picks):
            continue  # another process outscored the sleepers meanwhile
        victim = picks[0]
        assert victim is not None
        group = [line for line in lines if "process group" in line]
        assert group == [f"killing whole process group {grouped['eoomtest_a']} (-g flag is active)"]
        assert lines.index(group[0]) > lines.index(next(x for x in lines if x.startswith("        SIGKILL")))
        deadline = time.monotonic() + 5
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = dict(line.split("=", 1) for line in out.read_text().splitlines())
        assert env == hook_env(victim, V1_7)
        relative, _ = dryrun(["-m", "1", "-N", "rel.sh"], "mem avail", 1.0)
        assert ("startup_selftests: -N: notify script 'rel.sh' is not an absolute path, disabling -N"
                in relative)
        return
    pytest.skip(f"the process table moved in each of {ATTEMPTS} attempts")
