"""A scenario's memory cgroups, oom_score_adj and memory hog on the running kernel (the host backend),
against the model: the same OOM kills in the same order, and the run's cgroups gone afterwards.

The host backend makes the scenario's cgroups in a v1 tree of the run's own (vmlab.host.memcg_tree)
and runs a hog only inside one of them, so the kernel's memcg OOM killer, not the machine's, ends it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vmlab.backend import Settings
from vmlab.host import memcg_v1
from vmlab.host.oracle import HostBackend
from vmlab.kernel.machine import ModelBackend
from vmlab.lab.diff import compare
from vmlab.lab.run import Runner, Transcript, default_program
from vmlab.lab.scenario import parse

pytestmark = [pytest.mark.host,
              pytest.mark.skipif(memcg_v1.available() is not None, reason=str(memcg_v1.available()))]

#: The OOM killer's first choice is a bystander that is not charging (oom_score_adj 1000): it dies
#: while asleep, and the hog goes on until the second OOM, with no one else left, kills it.
BYSTANDER = """\
watch = fork()
memcg /t 32M
victim = fork()
@victim join /t
@victim oom_score_adj 1000
@victim v = mmap(NULL, 8M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
@victim touch v, 8M
join /t
hog 1M
expect killed SIGKILL
@watch show memcg /t
@watch show dmesg
"""
KILLED = re.compile(r"Memory cgroup out of memory: Killed process \d+ \(\S+\) total-vm:(\d+)kB, .* "
                    r"oom_score_adj:(-?\d+)$")


def _lines(transcript: Transcript) -> list[str]:
    return [line for rec in transcript.records for line in rec.text.splitlines()]


def test_a_bystander_chosen_by_the_oom_killer_dies_first_on_both() -> None:
    """Both backends: the bystander (adj 1000) is killed by the first OOM, reported after the hog's
    step; the hog, 32 MiB later, by the second; two OOM reports in the log, their victims' total-vm
    and adj equal; memory.oom_control's oom_kill 2."""
    scenario = parse(BYSTANDER, "bystander.vml")
    runs: list[Transcript] = []
    for backend in (ModelBackend(), HostBackend()):
        try:
            runs.append(Runner(scenario, backend).run())
        finally:
            backend.close()
    model, kernel = runs
    assert compare(scenario, model, kernel) == []
    victims = []
    for run in runs:
        lines = _lines(run)
        assert "hog 1048576: 32 MiB mapped and touched" in lines
        assert lines.index("+++ killed by SIGKILL +++") < lines.index("@victim +++ killed by SIGKILL +++")
        assert "memory.oom_control:oom_kill 2" in lines
        assert run.failures == 0
        victims.append([m.groups() for line in lines if (m := KILLED.search(line))])
    assert victims[0] == victims[1] == [("8392", "1000"), ("32968", "0")]


#: oom_kill_disable 1: the hog's fault that finds the memcg full puts it to sleep in the memcg OOM wait
#: queue (mem_cgroup_oom_synchronize), for good.
OOM_WAIT = """\
watch = fork()
memcg /t 8M oom_kill_disable=1
join /t
hog 1M
@watch show memcg /t
"""


def test_a_hog_asleep_in_the_memcg_oom_wait_on_both() -> None:
    """Both backends: the hog's 8th MiB puts it to sleep (MEMCG_OOM_WAIT; the host sees its wchan),
    no one is killed, the cgroup says under_oom 1, oom_kill 0 and the same failcnt; the sleeper is
    killed and the cgroup removed when the run ends."""
    scenario = parse(OOM_WAIT, "oom_wait.vml")
    runs: list[Transcript] = []
    host = HostBackend()
    for backend in (ModelBackend(), host):
        try:
            runs.append(Runner(scenario, backend).run())
        finally:
            backend.close()
    assert compare(scenario, *runs) == []
    views = []
    for run in runs:
        lines = _lines(run)
        assert "+++ killed by MEMCG_OOM_WAIT +++" in lines
        assert "memory.oom_control:under_oom 1" in lines and "memory.oom_control:oom_kill 0" in lines
        views.append([line for line in lines if line.startswith("memory.failcnt:")])
    assert views[0] == views[1]
    assert not host.memcg_base.exists()


def test_the_runs_cgroups_are_gone_after_it_even_when_it_fails() -> None:
    """The tree (nested cgroups, a process in one) is removed by close(), after an error too; the hog
    budget is twice the limit that confines the process, and there is none outside the tree."""
    host = HostBackend()
    base = host.memcg_base
    try:
        with host:
            pid = host.start(default_program(), Settings())
            assert host.hog_budget(pid) is None  # in the machine's cgroup
            assert host.memcg_create("/a/b", 8 << 20) == 0
            assert host.memcg_attach(pid, "/a/b") == 0
            assert str(pid) in (base / "a/b/cgroup.procs").read_text().split()
            assert host.hog_budget(pid) == 16 << 20
            assert host.memcg_set("/a", "limit_in_bytes", 4 << 20) == 0
            assert host.hog_budget(pid) == 8 << 20  # the lowest limit on the way up
            assert host.memcg_set("/a/b", "no_such_file", 1) < 0
            assert host.memcg_attach(pid, "/nope") < 0
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert not base.exists()
    assert not Path(f"/proc/{pid}").exists()


def test_a_hog_outside_the_runs_cgroups_is_skipped_on_the_host() -> None:
    """`vmlab run --backend host` of a hog in the machine's own cgroup: the step is skipped with the
    reason, and nothing was mapped."""
    host = HostBackend()
    try:
        transcript = Runner(parse("hog 1M\n", "hog.vml"), host).run()
    finally:
        host.close()
    lines = _lines(transcript)
    assert not any(line.startswith("hog ") for line in lines)
    assert any("skipped, the host backend runs the memory hog only inside a memory cgroup" in line
               for line in lines)


#: A process without CAP_SYS_RESOURCE may raise its oom_score_adj and lower it again down to its
#: minimum (0, inherited), not below: EACCES, in the child too.
NO_CAP_SYS_RESOURCE = """\
set cap_sys_resource off
oom_score_adj 500
oom_score_adj 200
oom_score_adj -1000
c = fork()
@c oom_score_adj -5
@c oom_score_adj 1000
"""


def test_oom_score_adj_without_cap_sys_resource_on_both() -> None:
    """The host's stepper writes its own /proc/self/oom_score_adj, its bounding set without
    CAP_SYS_RESOURCE: the results are the model's (0, 0, EACCES, EACCES, 0)."""
    scenario = parse(NO_CAP_SYS_RESOURCE, "adj.vml")
    runs = []
    for backend in (ModelBackend(), HostBackend()):
        try:
            runs.append(Runner(scenario, backend).run())
        finally:
            backend.close()
    assert compare(scenario, *runs) == []
    results = [line.rsplit(" = ", 1)[1] for line in _lines(runs[1]) if "oom_score_adj" in line]
    assert results == ["0", "0", "-1 EACCES (Permission denied)", "-1 EACCES (Permission denied)", "0"]

