"""The model's OOM killer and memcgs, rule by rule (mm/oom_kill.c, mm/memcontrol.c, 6.18)."""

from __future__ import annotations

import pytest

from vmlab.host.oomsnap import MemcgSnap, ProcSnap, Snapshot
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.oom_kill import (
    ABORT,
    GFP_KERNEL,
    MMF_OOM_SKIP,
    OOM_REAPER_DELAY_NS,
    PF_KTHREAD,
    OomControl,
    oom_badness,
    select_bad_process,
)
from vmlab.kernel.oom_score import MmCounters
from vmlab.lab import oom_whatif

MB = 256  # pages


def snap(*procs: tuple[int, str, int, int], limit: int = 16384, version: int = 1) -> Snapshot:
    """Processes (pid, comm, anon pages, adj) in one memcg /t of `limit` pages, nothing else charged:
    its usage is what their pages and page tables charge when imported (measured on a first import
    whose usage leaves room for everything: what build() charges for them, not forced)."""
    ps = tuple(ProcSnap(pid, comm, 0, adj, MmCounters(anon + 300, anon, 100, 0, 0, 12 * 4096), "/t")
               for pid, comm, anon, adj in procs)
    roomy = oom_whatif.build(Snapshot(ps, (MemcgSnap("/t", limit, limit, 60),), version, 1 << 20, 1 << 19))
    memcg = roomy.memcgs.lookup("/t")
    assert memcg is not None
    return Snapshot(ps, (MemcgSnap("/t", limit, memcg.charged + memcg.kmem_charged, 60),), version,
                    1 << 20, 1 << 19)


def chosen(model: ModelBackend) -> object:
    """select_bad_process() over memcg /t now."""
    memcg = model.memcgs.lookup("/t")
    oc = OomControl(memcg, GFP_KERNEL, 0, totalpages=memcg.get_max(0))  # type: ignore[union-attr]
    select_bad_process(oc, model.oom.scan(oc))
    return oc.chosen if oc.chosen in (None, ABORT) else oc.chosen.pid  # type: ignore[union-attr]


def test_badness_divides_before_multiplying() -> None:
    """adj * (totalpages / 1000): 16383 pages give 16 per point, not 16.383."""
    assert oom_badness(1000, 0, 8192, 100, 16383) == 1000 + 2 + 1600
    assert oom_badness(1000, 0, 0, -1000, 16384) == 1000 - 16000  # negative scores exist since 5.9


def test_tie_goes_to_the_task_scanned_last() -> None:
    """Equal points: `points < chosen_points` skips, so the later task in the memcg's order wins."""
    model = oom_whatif.build(snap((501, "a", 4 * MB, 0), (502, "b", 4 * MB, 0), (503, "c", 2 * MB, 0)))
    assert chosen(model) == 502
    model.memcgs.attach(model.memcgs.lookup("/t"), 501)  # type: ignore[arg-type]  # a re-joins: now last
    assert chosen(model) == 501


def test_ineligible_tasks_are_skipped() -> None:
    """adj -1000, MMF_OOM_SKIP, a vfork child, a kernel thread and init never get chosen."""
    model = oom_whatif.build(snap((1, "init", 9 * MB, 0), (601, "min", 8 * MB, -1000),
                                  (602, "skip", 7 * MB, 0), (603, "vfork", 6 * MB, 0),
                                  (604, "kthr", 5 * MB, 0), (605, "ok", 1 * MB, 0)))
    model.tasks[602].mm.mmf |= MMF_OOM_SKIP
    model.tasks[603].in_vfork = True
    model.tasks[604].flags |= PF_KTHREAD
    assert chosen(model) == 605
    model.tasks[601].oom_score_adj = 0
    assert chosen(model) == 601


def test_scan_aborts_while_a_victim_is_exiting() -> None:
    """A victim not yet reaped (oom_mm set, no MMF_OOM_SKIP) aborts the scan: nothing is killed."""
    model = oom_whatif.build(snap((701, "big", 8 * MB, 0), (702, "small", 1 * MB, 0)))
    model.tasks[702].oom_mm = model.tasks[702].mm
    assert chosen(model) == ABORT
    model.tasks[702].mm.mmf |= MMF_OOM_SKIP
    assert chosen(model) == 701


def test_memcg_oom_kills_and_the_grower_gets_its_memory() -> None:
    """Growing past the limit kills the biggest task (SIGKILL, exit), the charge then succeeds, the
    reaper stays silent (the victim exited), v1 counts oom_kill in the victim's memcg."""
    model = oom_whatif.build(snap((801, "big", 30 * MB, 0), (802, "grow", 10 * MB, 0), limit=48 * MB))
    out = oom_whatif.grow(model, 802, 16 << 20)
    assert out.result is None and out.killed == ((801, "big"),)
    assert any("Memory cgroup out of memory: Killed process 801 (big)" in line for line in out.log)
    assert not any("oom_reaper" in line for line in out.log)
    memcg = model.memcgs.lookup("/t")
    assert memcg is not None and memcg.events["oom_kill"] == 1 and "oom_kill 1" in memcg.oom_control()
    assert memcg.memory.usage <= memcg.memory.max


def test_allocating_task_can_be_the_victim_and_dies_killed() -> None:
    """The grower itself is the biggest: its access ends with SIGKILL and its memory is uncharged."""
    model = oom_whatif.build(snap((901, "small", 4 * MB, 0), (902, "hog", 30 * MB, 0), limit=40 * MB))
    out = oom_whatif.grow(model, 902, 32 << 20)
    assert out.result == "SIGKILL" and out.killed == ((902, "hog"),)
    assert model.memcgs.lookup("/t").memory.usage < 6 * MB  # type: ignore[union-attr]


def test_reaper_reaps_a_frozen_victim_two_seconds_later() -> None:
    """A victim that cannot run: the scan aborts meanwhile, the reaper logs its line 2 s after the kill
    and sets MMF_OOM_SKIP, after which the next OOM picks another task."""
    model = oom_whatif.build(snap((1001, "frozen", 30 * MB, 0), (1002, "mid", 12 * MB, 0),
                                  (1003, "grow", 4 * MB, 0), limit=48 * MB))
    model.tasks[1001].frozen = True
    out = oom_whatif.grow(model, 1003, 8 << 20)
    killed = [line for line in out.log if "Killed process" in line]
    reaped = [line for line in out.log if "oom_reaper: reaped process 1001 (frozen)" in line]
    assert len(killed) == 1 and "1001 (frozen)" in killed[0] and len(reaped) == 1
    assert reaped[0].endswith("now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB")
    t_kill, t_reap = (float(line[1:13]) for line in (killed[0], reaped[0]))
    assert t_reap - t_kill == pytest.approx(OOM_REAPER_DELAY_NS / 1e9)
    assert out.result is None  # the reaped memory was enough for the grower


def test_oom_group_v2_kills_the_whole_memcg_but_adj_min() -> None:
    """memory.oom.group (v2): every member but adj -1000 is killed, one Killed line each."""
    model = oom_whatif.build(snap((1101, "a", 20 * MB, 0), (1102, "b", 8 * MB, 0),
                                  (1103, "keep", 2 * MB, -1000), (1104, "grow", 4 * MB, 0),
                                  limit=40 * MB, version=2))
    model.memcg_set("/t", "oom.group", 1)
    out = oom_whatif.grow(model, 1104, 16 << 20)
    assert any("Tasks in /t are going to be killed due to memory.oom.group set" in line for line in out.log)
    assert {pid for pid, _ in out.killed} == {1101, 1102, 1104}
    assert 1103 in model.tasks


#: MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE: a hog larger than RAM passes the overcommit heuristic (mode 0
#: refuses one mapping larger than RAM + swap), so memory runs out at fault time, as in the lecture.
NORESERVE_ANON = 0x22 | 0x4000
ANON = 0x22  # MAP_PRIVATE|MAP_ANONYMOUS


def touch_new(model: ModelBackend, pid: int, nbytes: int, flags: int = ANON) -> str | None:
    """Process `pid` maps `nbytes` of anonymous memory (mmap flags `flags`) and writes all of it; what
    the access ended in (None: it got its memory)."""
    addr = model.syscall(pid, "mmap", (0, nbytes, 3, flags, -1, 0))
    assert addr > 0
    return model.access(pid, addr, nbytes, True)


def test_global_oom_without_victims_panics() -> None:
    """A global OOM with nothing killable: panic("System is deadlocked on memory")."""
    model = ModelBackend(64 << 20)
    pid = model.spawn("hog")
    model.set_oom_score_adj(pid, -1000)
    assert touch_new(model, pid, 128 << 20, NORESERVE_ANON) == "PANIC"
    assert "Out of memory and no killable processes..." in model.dmesg()


def test_global_oom_kills_the_hog_with_the_kernels_lines() -> None:
    """A global OOM: Mem-Info block, the task table, `global_oom` and `Out of memory: Killed process`."""
    model = ModelBackend(64 << 20)
    small = model.spawn("small")
    assert touch_new(model, small, 4 << 20) is None
    hog = model.spawn("hog")
    assert touch_new(model, hog, 128 << 20, NORESERVE_ANON) == "SIGKILL"
    log = model.dmesg()
    assert "hog invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO), order=0" in log
    assert "Mem-Info:" in log and ",global_oom,task_memcg=/,task=hog," in log
    assert f"Out of memory: Killed process {hog} (hog)" in log
    assert small in model.tasks and hog not in model.tasks


def test_oom_kill_allocating_task() -> None:
    """vm.oom_kill_allocating_task: the allocating task dies even though another is bigger."""
    model = ModelBackend(128 << 20)
    model.oom_sysctl.oom_kill_allocating_task = True
    big = model.spawn("big")
    assert touch_new(model, big, 40 << 20) is None
    hog = model.spawn("hog")
    assert touch_new(model, hog, 128 << 20, NORESERVE_ANON) == "SIGKILL"
    assert "Out of memory (oom_kill_allocating_task): Killed process" in model.dmesg()
    assert big in model.tasks


def test_lowering_oom_score_adj_needs_cap_sys_resource() -> None:
    """__set_oom_adj(): below oom_score_adj_min needs CAP_SYS_RESOURCE (-EACCES); out of range -EINVAL."""
    model = ModelBackend(64 << 20)
    pid = model.spawn("p")
    task = model.tasks[pid]
    task.cap_sys_resource = False
    assert model.set_oom_score_adj(pid, 500) == 0
    assert model.set_oom_score_adj(pid, 100) == 0  # the minimum is still 0
    assert model.set_oom_score_adj(pid, -1) == -13
    assert model.set_oom_score_adj(pid, 1001) == -22
    assert model.view(pid, "oom_score_adj") == "100\n"
    total = model.mem.totalram_pages  # no swap
    # An empty mm: points are the adj term alone, adj * (total / 1000) with the division first.
    assert model.view(pid, "oom_score") == f"{(1000 + 100 * (total // 1000) * 1000 // total) * 2 // 3}\n"


def test_oom_hog_example_ends_killed() -> None:
    """examples/oom-hog.vml: the hog dies of SIGKILL ("Killed"), the quiet process lives, dmesg has
    the memcg OOM report naming the hog."""
    from pathlib import Path

    from vmlab.lab.run import run
    from vmlab.lab.scenario import load

    path = Path(__file__).parent.parent / "examples" / "oom-hog.vml"
    transcript = run(load(str(path)), ModelBackend())
    text = transcript.text()
    assert transcript.failures == 0
    assert "+++ killed by SIGKILL +++\nKilled\n" in text
    assert "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0," \
           "oom_memcg=/lecture" in text
    assert "Memory cgroup out of memory: Killed process 1001 " in text
    # show memcg: the limit hit (failed charges counted), the kill counted, the quiet process's
    # 16 MiB what is charged now
    assert "memory.limit_in_bytes:67108864\n" in text and "memory.oom_control:oom_kill 1\n" in text
    failcnt = int(text.split("memory.failcnt:")[1].split()[0])
    rss = int(text.split("memory.stat:rss ")[1].split()[0])
    assert failcnt > 0 and 16 << 20 <= rss < 17 << 20


@pytest.mark.parametrize(("text", "message"), [
    ("join /nowhere", "no memcg '/nowhere' made earlier"),
    ("oom_score_adj 2000", "oom_score_adj must be -1000 to 1000"),
    ("hog 0", "expected 'hog STEP' with a positive size"),
    ("memcg lecture 64M", "expected 'memcg /PATH LIMIT'"),
    ("show memcg /nowhere", "expected 'memcg /PATH' of a memcg made earlier"),
    ("memcg /b 8M bogus=1", "1:13: error: unknown memcg file 'bogus'"),
    ("memcg /b 8M swappiness=X", "1:24: error: undefined name 'X'"),
])
def test_bad_oom_statements_are_one_line_errors(text: str, message: str) -> None:
    """Bad scenario input names the line and the problem."""
    from vmlab.errors import InputError
    from vmlab.lab.scenario import parse

    with pytest.raises(InputError) as err:
        parse(text, "s.vml")
    assert str(err.value).startswith("s.vml:1:") and message in str(err.value)


def test_charges_made_before_joining_stay_with_the_parent() -> None:
    """A live memcg whose usage is below what its processes hold (they touched pages and made page
    tables before they joined it; measured in tests/test_oom_kill.py: 133 pages over, for four hogs):
    the import moves the excess to the parent (here the root, which the model does not account), page
    tables first, so the memcg's usage is the live one (its VMAs' slab page stays: objects are not
    moved); when the process exits and the object stock is drained, its memcg's counters come back
    to 0, none going negative."""
    base = snap((1201, "a", 4 * MB, 0))
    own = base.memcgs[0].usage_pages
    roomy = oom_whatif.build(base).memcgs.lookup("/t")
    assert roomy is not None and roomy.memory.usage == own
    tables, pages = roomy.kmem_charged, roomy.charged
    over = tables + 100
    low = MemcgSnap("/t", 16384, own - over, 60)
    model = oom_whatif.build(Snapshot(base.procs, (low,), 1, 1 << 20, 1 << 19))
    memcg = model.memcgs.lookup("/t")
    assert memcg is not None
    assert memcg.memory.usage == memcg.memsw.usage == own - over
    assert (memcg.kmem_charged, memcg.kmem.usage, memcg.charged) == (0, 1, pages - 100)
    assert memcg.kmem_obj_pages == 1
    assert memcg.page_state()["rss"] == pages - 100 == sum(memcg.lruvec.nr_pages)
    check_machine(model)
    model.exit(1201)
    model.memcgs.drain_all_stock(model.memcgs.root)
    check_machine(model)
    assert (memcg.memory.usage, memcg.memsw.usage, memcg.kmem.usage) == (0, 0, 0)


def test_a_process_its_own_call_oom_kills_dies_there() -> None:
    """MAP_POPULATE past the memcg's limit: the population's charge OOM-kills the caller (the only
    process in the memcg), which dies on its way back to user mode: strace shows the call with no
    result and the death, and the process's later steps are skipped. The model let it run on."""
    from vmlab.lab.run import run
    from vmlab.lab.scenario import parse

    text = ("memcg /k 8M\njoin /k\n"
            "a = mmap(NULL, 16M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)\n"
            "expect killed SIGKILL\n"
            "b = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n")
    transcript = run(parse(text, "k.vml"), ModelBackend())
    out = transcript.text()
    assert transcript.failures == 0, out
    assert "MAP_POPULATE, -1, 0) = ?\n+++ killed by SIGKILL +++\n" in out
    assert "# line 5: skipped, main was killed by SIGKILL" in out


def test_a_process_killed_while_it_slept_is_gone_before_the_next_step() -> None:
    """A fatal signal to a process that is not running (the OOM killer's or a user-space killer's
    victim) wakes it to exit; the runner reaps after every step, and by then the victim has exited,
    even when no simulated time passed since the kill (its exit timer, VICTIM_EXIT_NS later, not yet
    due): its later steps are skipped, as on the kernel. The model reported it only once the timer
    fired, and otherwise let it run its next call."""
    from vmlab.lab.run import run
    from vmlab.lab.scenario import parse

    class KillsAtFork(ModelBackend):
        """The model, with the child of the first fork killed at once (as a killer would, between
        steps, taking no time)."""

        def fork(self, pid: int) -> int:
            child = super().fork(pid)
            self.oom.send_sigkill(self.tasks[child])
            return child

    text = ("child = fork()\n"
            "@child b = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n")
    backend = KillsAtFork()
    out = run(parse(text, "k.vml"), backend).text()
    assert "fork() = child\n@child +++ killed by SIGKILL +++\n" in out, out
    assert "# line 2: skipped, child was killed by SIGKILL" in out
    check_machine(backend)


def test_a_host_process_that_never_answers_a_call_is_reported_killed() -> None:
    """The host's stepper killed in a syscall raises ProcessDied (it never answers): the runner shows the
    call with no result and the death, as for the model, and skips the process's later steps."""
    from vmlab.backend import ProcessDied
    from vmlab.lab.run import run
    from vmlab.lab.scenario import parse

    class Dying(ModelBackend):
        def syscall(self, pid: int, name: str, args: tuple[object, ...]) -> int:  # type: ignore[override]
            if name == "mlock":
                self.exit(pid)
                raise ProcessDied(pid, "SIGKILL", f"process {pid} killed by SIGKILL")
            return super().syscall(pid, name, args)  # type: ignore[arg-type]

    text = ("a = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "mlock(a, 4096)\nexpect killed SIGKILL\nmunlock(a, 4096)\n")
    transcript = run(parse(text, "d.vml"), Dying())
    out = transcript.text()
    assert transcript.failures == 0, out
    assert ") = ?\n+++ killed by SIGKILL +++\n" in out and "# line 4: skipped, main was killed" in out
