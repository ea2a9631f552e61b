"""earlyoom on the model machine: its limits and messages (from earlyoom's sources), the adaptive poll,
the SIGTERM -> SIGKILL escalation, and acting before the kernel's OOM killer."""

from __future__ import annotations

from collections.abc import Callable
from errno import EINVAL, EPERM, ESRCH
from pathlib import Path

import pytest

from vmlab.backend import Settings
from vmlab.daemons.earlyoom.daemon import Earlyoom
from vmlab.daemons.earlyoom.flavor import V1_7, V1_9, Flavor
from vmlab.daemons.earlyoom.kill import ProcInfo, find_largest_process, sending_line
from vmlab.daemons.earlyoom.main import SIGKILL, SIGTERM, UsageError, lowmem_sig, parse_args, sleep_time_ms
from vmlab.daemons.earlyoom.meminfo import MemInfo, parse_meminfo, print_mem_stats
from vmlab.errors import InputError
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.uapi import MAP_ANONYMOUS, MAP_PRIVATE
from vmlab.lab.daemons import ModelSystem, start_earlyoom
from vmlab.lab.run import default_program, run
from vmlab.lab.scenario import parse

MEMINFO = "MemTotal:  1000000 kB\nMemFree: 1 kB\nMemAvailable:  200000 kB\nSwapTotal: 0 kB\n" \
          "SwapFree: 0 kB\nAnonPages:  300000 kB\n"
M = parse_meminfo(MEMINFO, V1_9)


def test_meminfo_percent_of_user_mem_total_and_of_memtotal_in_v1_7() -> None:
    assert M.UserMemTotalKiB == 500000 and M.MemAvailablePercent == 40.0 and M.SwapFreePercent == 0
    assert parse_meminfo(MEMINFO, V1_7).MemAvailablePercent == 20.0
    assert print_mem_stats(M) == ("mem avail:   195 of   488 MiB (40.00%), swap free:    0 of    0 MiB "
                                  "( 0.00%)")


def test_lowmem_sig_needs_both_memory_and_swap() -> None:
    args = parse_args(["earlyoom", "-m", "40", "-s", "100"], M, V1_9)
    assert (args.mem_kill_percent, args.swap_kill_percent) == (20, 50)
    assert lowmem_sig(args, M) == SIGTERM
    assert lowmem_sig(parse_args(["earlyoom", "-m", "40"], M, V1_9), M) == SIGTERM  # no swap: 0 % free
    assert lowmem_sig(parse_args(["earlyoom", "-m", "39.99"], M, V1_9), M) == 0
    assert lowmem_sig(parse_args(["earlyoom", "-m", "90,40"], M, V1_9), M) == SIGKILL


def test_M_merges_with_m_taking_the_lower() -> None:
    args = parse_args(["earlyoom", "-m", "30", "-M", "100000"], M, V1_9)
    assert args.mem_term_percent == 10 and args.mem_kill_percent == 5


@pytest.mark.parametrize(("argv", "message", "code"), [
    (["-m", "abc"], "fatal: -m: trailing garbage 'abc'", 15),
    (["-m", "100"], "fatal: -m: value 100.000000 exceeds limit 99", 15),
    (["-s", "0,0"], "fatal: -s: both SIGTERM and SIGKILL values are zero", 16),
    (["extra"], "fatal: extra argument not understood: 'extra'", 13),
    (["--prefer", "("], "fatal: could not compile regexp '('", 6),
    (["-x"], "earlyoom: invalid option -- 'x'", 13),
    (["-m"], "earlyoom: option requires an argument -- 'm'", 13),
])
def test_bad_flags_fail_as_earlyoom_does(argv: list[str], message: str, code: int) -> None:
    with pytest.raises(UsageError) as err:
        parse_args(["earlyoom", *argv], M, V1_9)
    assert err.value.message.splitlines()[0] == message and err.value.code == code


def test_v1_7_does_not_know_ignore() -> None:
    with pytest.raises(UsageError) as err:
        parse_args(["earlyoom", "--ignore", "x"], M, V1_7)
    assert err.value.message.startswith("earlyoom: unrecognized option '--ignore'")


def test_adaptive_sleep_from_headroom_at_6000_MiB_per_s() -> None:
    big = MemInfo(24 << 20, 0, 1 << 20, 0, 20 << 20, 21 << 20, 20 * 100 / 21, 0.0)
    args = parse_args(["earlyoom"], big, V1_9)
    assert sleep_time_ms(args, big, V1_9) == 1000  # 18 GiB of headroom: the 1 s ceiling
    near = MemInfo(24 << 20, 0, 20 << 20, 0, 3 << 20, 23 << 20, 3 * 100 / 23, 0.0)
    # (13.04 % - 10 %) of 23 GiB = 716 MiB: 716 * 1024 / 6000 = 122 ms
    assert sleep_time_ms(args, near, V1_9) == int((near.MemAvailablePercent - 10) * (23 << 20) / 100) // 6000
    assert sleep_time_ms(args, M, V1_9) == 100  # below the limit: the 100 ms floor


def proc(pid: int, score: int, rss: int, comm: str = "p", adj: int = 0, ppid: int = 1) -> ProcInfo:
    return ProcInfo(pid, ppid, 1000, comm, comm, score, adj, rss)


def test_victim_choice_ties_prefer_avoid_and_protections() -> None:
    args = parse_args(["earlyoom", "--prefer", "^small$", "--avoid", "^big$"], M, V1_9)
    procs = [proc(2, 2000, 1), proc(10, 700, 100, "big"), proc(11, 500, 10, "small"), proc(12, 700, 50),
             proc(13, 2000, 9, adj=-1000), proc(14, 1999, 9, ppid=2)]
    victim = find_largest_process(args, procs, 99, V1_9, print)
    assert victim is not None and victim.proc.pid == 11 and victim.oom_score == 800
    plain = find_largest_process(parse_args(["earlyoom"], M, V1_9), procs[:4], 99, V1_9, print)
    assert plain is not None and plain.proc.pid == 10  # 700 each: the larger VmRSS wins the tie
    assert sending_line(SIGTERM, plain, V1_9) == ('sending SIGTERM to process 10 uid 1000 "big": oom_score '
                                                  '700, oom_score_adj 0, VmRSS 0 MiB, cmdline "big"')


def machine(ram: int = 256 << 20) -> tuple[ModelBackend, int]:
    backend = ModelBackend()
    return backend, backend.start(default_program(), Settings(ram=ram))


def grow(backend: ModelBackend, pid: int, mib: int, pause_ns: int) -> str | None:
    """Map and touch 1 MiB at a time, sleeping between steps, until killed or `mib` taken."""
    for _ in range(mib):
        addr = backend.syscall(pid, "mmap", (0, 1 << 20, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        sig = backend.access(pid, addr, 1 << 20, True)
        if sig is not None:
            return sig
        backend.sleep(pid, pause_ns)
    return None


def test_sigterm_ignored_escalates_to_sigkill() -> None:
    backend, main = machine()
    lines: list[str] = []
    daemon = start_earlyoom(backend, ["earlyoom", "-m", "30,15", "-s", "100", "-r", "0"], lines.append)
    hog = backend.fork(main)
    backend.set_comm(hog, "hog")
    assert backend.sigignore(hog, "SIGTERM") == 0
    sig = grow(backend, hog, 400, 10_000_000)
    assert sig == "SIGKILL"
    backend.sleep(main, 200_000_000)
    text = "\n".join(lines)
    assert [s for _t, _p, s in daemon.kills] == [SIGTERM, SIGKILL]
    assert "process_mrelease pidfd=4 failed: Invalid argument" in text  # SIGTERM ignored: not dying
    assert "escalating to SIGKILL after " in text and f"process {hog} exited after" in text
    assert "Out of memory" not in backend.dmesg()


def test_earlyoom_acts_before_the_kernel_and_not_while_memory_is_plenty() -> None:
    backend, main = machine()
    lines: list[str] = []
    daemon = start_earlyoom(backend, ["earlyoom", "-m", "20", "-s", "100"], lines.append)
    hog = backend.fork(main)
    assert grow(backend, hog, 100, 10_000_000) is None  # 100 of ~210 MiB: above the limit
    assert daemon.kills == [] and not any("low memory" in line for line in lines)
    assert any("mem avail:" in line for line in lines)  # the 1 s report
    assert grow(backend, hog, 400, 10_000_000) == "SIGTERM"
    assert [(pid, s) for _t, pid, s in daemon.kills] == [(hog, SIGTERM)]
    assert backend.dmesg() == ""  # the kernel's OOM killer never ran


def test_adaptive_poll_interval_shrinks_as_memory_fills() -> None:
    backend, main = machine(2 << 30)
    daemon = start_earlyoom(backend, ["earlyoom", "-m", "10", "-s", "100"], lambda _line: None)
    m = parse_meminfo(backend.machine_view("meminfo"), V1_9)
    first = int((m.MemAvailablePercent - 10) * m.UserMemTotalKiB / 100) // 6000  # KiB at 6000 KiB/ms
    backend.sleep(main, 2_000_000_000)
    assert 100 < first < 1000 and {ms for _t, ms in daemon.polls} == {first}
    hog = backend.fork(main)
    grow(backend, hog, 1800, 1_000_000)
    assert daemon.kills, "earlyoom never killed the hog"
    before_kill = [ms for t, ms in daemon.polls if t < daemon.kills[0][0]]
    assert before_kill[0] == first and before_kill[-1] == 100
    assert before_kill == sorted(before_kill, reverse=True)  # less headroom, shorter sleeps
    for (t0, ms), (t1, _) in zip(daemon.polls, daemon.polls[1:], strict=False):
        if t0 < daemon.kills[0][0]:
            assert t1 - t0 == ms * 1_000_000  # the next poll comes exactly one sleep later


EXAMPLE = Path(__file__).parent.parent / "examples" / "earlyoom.vml"


def test_example_kills_the_hog_with_sigterm_and_no_kernel_oom() -> None:
    from vmlab.lab.scenario import load
    transcript = run(load(str(EXAMPLE)), ModelBackend())
    text = transcript.text() if hasattr(transcript, "text") else str(transcript)
    assert transcript.failures == 0
    assert 'sending SIGTERM to process' in text and '"hog"' in text and "Terminated" in text
    assert "Out of memory" not in text and "invoked oom-killer" not in text


@pytest.mark.parametrize(("line", "col", "message"), [
    ("earlyoom -m 10 -s abc", 19, "earlyoom: fatal: -s: trailing garbage 'abc'"),
    ("earlyoom --bogus", 10, "earlyoom: unrecognized option '--bogus'"),
    ("sleep 5 parsecs", 7, "expected a duration"),
    ("ignore SIGKILL", 8, "SIGKILL cannot be ignored"),
])
def test_scenario_errors_name_the_place(line: str, col: int, message: str) -> None:
    with pytest.raises(InputError) as err:
        parse(f"set ram 256M\n{line}\n", "s.vml")
    assert (err.value.line, err.value.col) == (2, col) and message in err.value.message


# -- process groups and kill(2)'s pid (kernel/sys.c, kernel/signal.c) --

def test_setpgid_follows_kernel_sys_c() -> None:
    backend, main = machine(64 << 20)
    child = backend.fork(main)
    grandchild = backend.fork(child)
    daemon = backend.spawn("daemon")
    assert backend.tasks[child].pgid == main  # inherited on fork
    assert backend.setpgid(child, 0, -5) == -EINVAL
    assert backend.setpgid(main, grandchild, 0) == -ESRCH  # not main's child
    assert backend.setpgid(daemon, 0, 0) == -EPERM  # a session leader cannot move
    assert backend.setpgid(child, 0, 4242) == -EPERM  # no such group in the session
    assert backend.setpgid(main, daemon, 0) == -ESRCH
    assert backend.setpgid(child, 0, 0) == 0 and backend.getpgid(main, child) == child
    assert backend.setpgid(child, grandchild, child) == 0  # the parent moves its child
    assert backend.getpgid(main, grandchild) == child and backend.getpgid(main, 4242) == -ESRCH


def test_kill_of_a_group_signals_each_member_the_sender_may_signal() -> None:
    backend, main = machine(64 << 20)
    leader = backend.fork(main)
    assert backend.setpgid(leader, 0, 0) == 0
    mine, roots = backend.fork(leader), backend.fork(leader)
    backend.tasks[leader].uid = backend.tasks[mine].uid = 1000
    user = backend.spawn("user", uid=1000)
    assert backend.kill(-4242, "SIGTERM", user) == -ESRCH
    assert backend.kill(-main, "0", user) == -EPERM  # main is root's: no member may be signalled
    assert backend.kill(-leader, "SIGTERM", user) == 0  # two of three: success
    assert backend.tasks[leader].sigkill and backend.tasks[mine].sigkill
    assert not backend.tasks[roots].sigkill and not backend.tasks[main].sigkill
    assert backend.kill(0, "SIGTERM", roots) == 0  # 0: the sender's own group
    assert backend.tasks[roots].sigkill and not backend.tasks[main].sigkill


def test_kill_minus_one_spares_the_sender_and_ignores_eperm() -> None:
    backend, main = machine(64 << 20)
    user = backend.spawn("user", uid=1000)
    other = backend.spawn("other", uid=1000)
    assert backend.kill(-1, "SIGTERM", user) == 0  # main (root) refuses: not reported
    assert backend.tasks[other].sigkill and not backend.tasks[user].sigkill
    assert not backend.tasks[main].sigkill


# -- earlyoom's -g, -p, -n, -N, -P, --syslog --

def recorder() -> tuple[list[tuple[str, str]], Callable[[str, str], None]]:
    lines: list[tuple[str, str]] = []
    return lines, lambda stream, text: lines.append((stream, text))


def start(backend: ModelBackend, argv: list[str], flavor: Flavor = V1_9, uid: int = 0) -> tuple[
        Earlyoom, list[tuple[str, str]]]:
    """earlyoom on the model machine with every (stream, line) recorded."""
    lines, out = recorder()
    pid = backend.spawn("earlyoom", uid=uid)
    backend.tasks[pid].cmdline = tuple(argv)
    daemon = Earlyoom(argv, ModelSystem(backend, pid), out, flavor)
    assert daemon.start() is None
    return daemon, lines


def texts(lines: list[tuple[str, str]]) -> list[str]:
    return [text for _stream, text in lines]


def group_of_three(backend: ModelBackend, main: int) -> tuple[int, int, int, int]:
    """A leader with two children in its group (the second, "hog", the largest) and a bystander in
    main's group."""
    leader = backend.fork(main)
    assert backend.setpgid(leader, 0, 0) == 0
    helper, hog = backend.fork(leader), backend.fork(leader)
    backend.set_comm(hog, "hog")
    bystander = backend.fork(main)
    return leader, helper, hog, bystander


def test_g_kills_the_victims_whole_group_and_waits_for_the_group() -> None:
    backend, main = machine()
    daemon, lines = start(backend, ["earlyoom", "-m", "20", "-s", "100", "-r", "0", "-g",
                                    "--prefer", "^hog$"])
    leader, helper, hog, bystander = group_of_three(backend, main)
    assert grow(backend, hog, 400, 10_000_000) == "SIGTERM"
    backend.sleep(main, 300_000_000)
    assert [(pid, sig) for _t, pid, sig in daemon.kills] == [(-leader, SIGTERM)]
    assert leader not in backend.tasks and helper not in backend.tasks
    assert bystander in backend.tasks and main in backend.tasks
    text = texts(lines)
    i = text.index(f"killing whole process group {leader} (-g flag is active)")
    assert text[i - 1].startswith(f"sending SIGTERM to process {hog} ")
    assert text[i + 1].startswith(f"process -{leader} exited after ")  # v1.9 prints kill_wait's pid
    assert not any("process_mrelease" in t or "pidfd" in t for t in text)  # no pidfd for a group


def test_g_self_test_prints_the_group_line_even_in_dryrun_and_in_each_flavours_order() -> None:
    for flavor, before_limits in ((V1_9, True), (V1_7, False)):
        backend, main = machine()
        _daemon, lines = start(backend, ["earlyoom", "--dryrun", "-g", "-s", "100"], flavor)
        text = texts(lines)
        group = text.index(f"killing whole process group {main} (-g flag is active)")
        limits = next(i for i, t in enumerate(text) if t.startswith("mem total:"))
        assert (group < limits) == before_limits, flavor.version


def test_g_with_a_victim_gone_before_getpgid_fails_with_esrch() -> None:
    backend, _main = machine()
    daemon, _lines = start(backend, ["earlyoom", "-g"])
    victim = find_largest_process(daemon.args, daemon.system.processes(), daemon.system.self_pid, V1_9, print)
    assert victim is not None
    backend.exit(victim.proc.pid)
    results: list[int] = []
    daemon.kill_wait(victim.proc.pid, SIGTERM, results.append)
    assert results == [-ESRCH] and daemon.kills == []


def test_p_raises_priority_nice_and_oom_score_adj() -> None:
    backend, _main = machine()
    daemon, lines = start(backend, ["earlyoom", "-p", "--prefer", "x"])
    pid = daemon.system.self_pid
    assert backend.view(pid, "oom_score_adj") == "-100\n" and backend.tasks[pid].nice == -20
    text = texts(lines)
    assert text.index("Priority was raised successfully") == text.index(
        "Preferring to kill process names that match regex 'x'") + 1
    assert ("stderr", "Priority was raised successfully") in lines


def test_p_as_a_user_fails_both_and_says_so() -> None:
    backend, _main = machine()
    daemon, lines = start(backend, ["earlyoom", "-p"], uid=1000)
    assert "Could not set priority: Permission denied. Continuing anyway" in texts(lines)
    assert "Could not set oom_score_adj: Permission denied. Continuing anyway" in texts(lines)
    assert "Priority was raised successfully" not in texts(lines)
    assert backend.tasks[daemon.system.self_pid].oom_score_adj == 0


def test_hooks_run_before_and_after_the_kill_with_the_victims_environment() -> None:
    backend, main = machine()
    daemon, lines = start(backend, ["earlyoom", "-m", "20", "-s", "100", "-r", "0", "-n",
                                    "-N", "/etc/after", "-P", "/etc/before"])
    hog = backend.fork(main)
    backend.set_comm(hog, "hog")
    assert grow(backend, hog, 400, 10_000_000) == "SIGTERM"
    backend.sleep(main, 300_000_000)
    env = {"EARLYOOM_PID": str(hog), "EARLYOOM_UID": "0", "EARLYOOM_NAME": "hog",
           "EARLYOOM_CMDLINE": " ".join(backend.tasks[main].cmdline)}
    assert [(s.option, s.argv, dict(s.env)) for s in daemon.spawns] == [
        ("-P", ("/etc/before",), env),
        ("-n", ("dbus-send", "--system", "/", "net.nuetzlich.SystemNotifications.Notify", "string:earlyoom",
                f"string:Low memory! Killing process {hog} hog"), {}),
        ("-N", ("/etc/after",), env)]
    kill_t = daemon.kills[0][0]
    assert daemon.spawns[0].time_ns == kill_t < daemon.spawns[2].time_ns  # -N once the victim is gone
    text = texts(lines)
    assert text.index(daemon.spawns[0].line()) < text.index(
        f"kill_release: pid={hog}: process_mrelease pidfd=4 success")
    assert text.index(f"process {hog} exited after 0.100 seconds") < text.index(daemon.spawns[2].line())
    assert ("exec", daemon.spawns[2].line()) in lines and daemon.spawns[2].line().startswith(
        f"env EARLYOOM_PID={hog} EARLYOOM_UID=0 EARLYOOM_NAME=hog EARLYOOM_CMDLINE=")


def test_v1_7_hook_has_no_cmdline_and_no_P() -> None:
    backend, main = machine()
    with pytest.raises(UsageError):
        parse_args(["earlyoom", "-P", "/x"], M, V1_7)
    daemon, _lines = start(backend, ["earlyoom", "-m", "20", "-s", "100", "-N", "/etc/after"], V1_7)
    hog = backend.fork(main)
    assert grow(backend, hog, 400, 10_000_000) == "SIGTERM"
    backend.sleep(main, 300_000_000)
    assert [dict(s.env) for s in daemon.spawns] == [
        {"EARLYOOM_PID": str(hog), "EARLYOOM_UID": "0", "EARLYOOM_NAME": backend.tasks[main].comm}]


def test_relative_hook_paths_are_disabled_at_startup() -> None:
    backend, _main = machine()
    daemon, lines = start(backend, ["earlyoom", "-N", "after.sh", "-P", "before.sh"])
    assert daemon.args.notify_ext is None and daemon.args.kill_process_prehook is None
    text = texts(lines)
    i = text.index("startup_selftests: -N: notify script 'after.sh' is not an absolute path, disabling -N")
    assert text[i + 1] == ("startup_selftests: -P: pre-hook program 'before.sh' is not an absolute path, "
                           "disabling -P")
    assert text[i + 2].startswith("mem total:")  # master: the self-test before the limits


def test_dryrun_runs_the_prehook_every_time_and_N_once_a_second() -> None:
    backend, main = machine()
    assert grow(backend, backend.fork(main), 100, 0) is None  # 100 of ~210 MiB: below -m 80
    daemon, _lines = start(backend, ["earlyoom", "--dryrun", "-m", "80", "-s", "100",
                                     "-N", "/etc/after", "-P", "/etc/before"])
    backend.sleep(main, 3_050_000_000)  # polls every 100 ms, each "kills" in dry run
    pre = [s.time_ns for s in daemon.spawns if s.option == "-P"]
    post = [s.time_ns // 10**9 for s in daemon.spawns if s.option == "-N"]
    assert len(pre) == 31 and post == [1, 2, 3]  # second 0 is within 1 s of prev_notify = 0


def test_syslog_takes_warn_and_info_but_not_the_fprintf_lines() -> None:
    backend, _main = machine()
    _daemon, lines = start(backend, ["earlyoom", "--dryrun", "--syslog", "--dryrun", "-p", "-r", "0.1"])
    assert lines[1] == ("stderr", "dryrun mode enabled, will not kill anything")  # before --syslog
    assert lines[2] == ("syslog.warning", "dryrun mode enabled, will not kill anything")
    assert ("stderr", "Priority was raised successfully") in lines
    assert any(s == "stderr" and t.startswith("mem total:") for s, t in lines)
    assert any(s == "syslog.info" and t.startswith("mem avail:") for s, t in lines)
    with pytest.raises(UsageError):
        parse_args(["earlyoom", "--syslog"], M, V1_7)


def test_setpgid_step_and_group_kill_in_a_scenario() -> None:
    text = ("set ram 256M\nearlyoom -m 10 -s 100 -r 0 -g\nleader = fork()\n@leader setpgid\nexpect = 0\n"
            "@leader worker = fork()\nbystander = fork()\n@bystander setpgid worker\nexpect = -1 EPERM\n"
            "@worker hog 1M every 10ms\nexpect killed SIGTERM\nsleep 1s\n")
    transcript = run(parse(text, "g.vml"), ModelBackend())
    out = str(transcript.text() if hasattr(transcript, "text") else transcript)
    assert transcript.failures == 0, out
    assert "@leader +++ killed by SIGTERM +++" in out and "bystander +++ killed" not in out
    assert "killing whole process group 1003 (-g flag is active)" in out


@pytest.mark.parametrize(("line", "col", "message"), [
    ("setpgid nobody", 9, "no live process 'nobody'"),
    ("setpgid a b", 9, "expected 'setpgid' or 'setpgid NAME'"),
])
def test_setpgid_step_errors(line: str, col: int, message: str) -> None:
    with pytest.raises(InputError) as err:
        parse(f"set ram 256M\n{line}\n", "s.vml")
    assert (err.value.line, err.value.col) == (2, col) and message in err.value.message
