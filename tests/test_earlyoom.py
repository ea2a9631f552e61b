"""earlyoom on the model machine: its limits and messages (from earlyoom's sources), the adaptive poll,
the SIGTERM -> SIGKILL escalation, and acting before the kernel's OOM killer."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmlab.backend import Settings
from vmlab.daemons.earlyoom.flavor import V1_7, V1_9
from vmlab.daemons.earlyoom.kill import ProcInfo, find_largest_process, sending_line
from vmlab.daemons.earlyoom.main import SIGKILL, SIGTERM, UsageError, lowmem_sig, parse_args, sleep_time_ms
from vmlab.daemons.earlyoom.meminfo import MemInfo, parse_meminfo, print_mem_stats
from vmlab.errors import InputError
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.uapi import MAP_ANONYMOUS, MAP_PRIVATE
from vmlab.lab.daemons import start_earlyoom
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
