"""PSI against the kernel's own arithmetic (kernel/sched/psi.c, kernel/sched/loadavg.c).

Every expected number below is worked out by hand from the kernel's formulas, not from vmlab.kernel.psi:
HZ=250 (this machine's CONFIG_HZ), so a jiffy is 4 ms and psi_period = jiffies_to_nsecs(2*HZ+1) =
2.004 s; FIXED_1 = 2048; calc_load(load, exp, active) = (load*exp + active*(2048-exp)
[+ 2047 when active >= load]) // 2048; pct = time*100 // period * 2048; LOAD_INT(x) = x >> 11,
LOAD_FRAC(x) = ((x & 2047) * 100) >> 11. The averaging work first runs PSI_FREQ = 501 jiffies after the
first state change, then nsecs_to_jiffies(avg_next_update - now) + 1 jiffies after each run.
"""

import itertools

from vmlab.kernel import psi
from vmlab.kernel.clock import Clock
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.psi import (
    FSHIFT,
    TSK_MEMSTALL,
    TSK_MEMSTALL_RUNNING,
    TSK_ONCPU,
    TSK_RUNNING,
    EXP_10s,
    PsiGroup,
    calc_load,
    fixed_power_int,
)

MS = 1_000_000


def pressure(some: str, full: str) -> str:
    return f"some {some}\nfull {full}\n"


def test_fixed_point_helpers_match_worked_values() -> None:
    # 1677^2 in 11-bit fixed point: (1677*1677 + 1024) >> 11 = 2813353 >> 11 = 1373.
    assert fixed_power_int(EXP_10s, FSHIFT, 2) == 1373
    assert fixed_power_int(EXP_10s, FSHIFT, 1) == 1677
    # Rising: (0*1677 + 204800*371 + 2047) // 2048 = 37100; falling: 37100*1677 // 2048 = 30379.
    assert calc_load(0, EXP_10s, 100 * 2048) == 37100
    assert calc_load(37100, EXP_10s, 0) == 30379


def test_one_period_of_full_stall() -> None:
    """The machine's one task stalls for exactly one period (0 to 2.004 s)."""
    mem = PhysMem(64 << 20)
    mem.clock.advance(2_004 * MS, memstall=True)
    # The work runs at 2.004 s: sample = 2.004e9 = period, pct = 100 -> active = 204800.
    # avg10 = 204800*371 // 2048 = 37100 -> 18 + (236*100 >> 11 = 11) -> 18.11
    # avg60 = 204800*67 // 2048 = 6700 -> 3 + (556*100 >> 11 = 27) -> 3.27
    # avg300 = 204800*14 // 2048 = 1400 -> 0 + (140000 >> 11 = 68) -> 0.68
    line = "avg10=18.11 avg60=3.27 avg300=0.68 total=2004000"
    assert mem.psi.show("memory") == pressure(line, line)


def test_decay_after_the_stall_on_the_kernels_schedule() -> None:
    """After one period of stall the task runs on: the work runs at 4.012, 6.016 and 8.024 s (each a
    jiffy late: delays of 502, 501 and 502 jiffies), each folding a zero sample."""
    mem = PhysMem(64 << 20)
    mem.clock.advance(2_004 * MS, memstall=True)
    mem.clock.advance(8_000 * MS)
    # avg10: 37100 -> 37100*1677//2048 = 30379 -> 24875 -> 20368 = 9 + (1936*100 >> 11 = 94) -> 9.94
    # avg60: 6700 -> 6700*1981//2048 = 6480 -> 6267 -> 6061 = 2 + (1965*100 >> 11 = 95) -> 2.95
    # avg300: 1400 -> 1400*2034//2048 = 1390 -> 1380 -> 1370 = 0 + (137000 >> 11 = 66) -> 0.66
    line = "avg10=9.94 avg60=2.95 avg300=0.66 total=2004000"
    assert mem.psi.show("memory") == pressure(line, line)


def test_a_look_within_one_jiffy_loses_the_stall() -> None:
    """collect_percpu_times weights each CPU by its non-idle time in whole jiffies: reading the file
    3 ms into a stall adds 3e6 * 0 // max(0, 1) = 0 to total, and that time is gone for good."""
    mem = PhysMem(64 << 20)
    mem.clock.advance(3 * MS, memstall=True)
    zero = "avg10=0.00 avg60=0.00 avg300=0.00 total=0"
    assert mem.psi.show("memory") == pressure(zero, zero)
    mem.clock.advance(2_001 * MS)
    assert mem.psi.show("memory") == pressure(zero, zero)


def test_some_without_full_when_another_task_runs() -> None:
    """Task B sleeps in a memstall (a refault: TSK_MEMSTALL without TSK_MEMSTALL_RUNNING) while task
    A runs on the CPU: MEM_SOME holds, MEM_FULL needs NR_RUNNING == NR_MEMSTALL_RUNNING (1 != 0)."""
    clock = Clock()
    group = PsiGroup(clock)
    group.group_change(0, 0, TSK_RUNNING | TSK_ONCPU)
    group.group_change(0, 0, TSK_MEMSTALL)
    clock.advance(2_004 * MS)
    assert group.show("memory") == pressure("avg10=18.11 avg60=3.27 avg300=0.68 total=2004000",
                                            "avg10=0.00 avg60=0.00 avg300=0.00 total=0")


def test_reclaim_on_cpu_is_full_even_with_a_runnable_task() -> None:
    """A reclaims on the CPU (in_memstall, TSK_MEMSTALL|TSK_MEMSTALL_RUNNING) while B waits runnable:
    counts say not FULL (running 2 != memstall-running 1), but the current task is in_memstall."""
    clock = Clock()
    group = PsiGroup(clock)
    group.group_change(0, 0, TSK_RUNNING | TSK_ONCPU)
    group.group_change(0, 0, TSK_RUNNING)
    group.group_change(0, 0, TSK_MEMSTALL | TSK_MEMSTALL_RUNNING, curr_in_memstall=True)
    clock.advance(1_002 * MS)
    # Half a period: pct = 1.002e9*100 // 2.004e9 = 50 -> 102400; avg10 = 102400*371//2048 = 18550
    # = 9 + (118*100 >> 11 = 5) -> 9.05 (show before 2.004 s gives 0.00; read it after the work ran).
    group.group_change(0, TSK_MEMSTALL | TSK_MEMSTALL_RUNNING, 0, curr_in_memstall=False)
    clock.advance(1_002 * MS)
    # avg60 = 102400*67//2048 = 3350 = 1 + (1302*100 >> 11 = 63) -> 1.63; avg300 = 102400*14//2048 =
    # 700 -> 0 + (70000 >> 11 = 34) -> 0.34
    line = "avg10=9.05 avg60=1.63 avg300=0.34 total=1002000"
    assert group.show("memory") == pressure(line, line)


def test_missed_periods_decay_with_calc_load_n() -> None:
    """The only task stalls for 1.002 s and exits: the work at 2.004 s samples 50 % and, with no task
    left, stops. A read at 9 s finds now - avg_next_update = 9 - 4.008 = 4.992 s: two missed periods,
    decayed at once with fixed_power_int(1677, 11, 2) = 1373, then a zero sample."""
    clock = Clock()
    group = PsiGroup(clock)
    group.group_change(0, 0, TSK_RUNNING | TSK_ONCPU | TSK_MEMSTALL | TSK_MEMSTALL_RUNNING,
                       curr_in_memstall=True)
    clock.advance(1_002 * MS)
    group.group_change(0, TSK_RUNNING | TSK_ONCPU | TSK_MEMSTALL | TSK_MEMSTALL_RUNNING, 0,
                       curr_in_memstall=False)
    clock.advance(7_998 * MS)
    # avg10: 18550 -> 18550*1373//2048 = 12436 -> 12436*1677//2048 = 10183 = 4 + (1991*100 >> 11 = 97)
    # avg60: 3350 -> fixed_power_int(1981, 11, 2) = (1981*1981 + 1024) >> 11 = 1916;
    #        3350*1916//2048 = 3134 -> 3134*1981//2048 = 3031 = 1 + (983*100 >> 11 = 47) -> 1.47
    # avg300: 700 -> fixed_power_int(2034, 11, 2) = 2020; 700*2020//2048 = 690 -> 690*2034//2048 = 685
    #        = 0 + (68500 >> 11 = 33) -> 0.33
    line = "avg10=4.97 avg60=1.47 avg300=0.33 total=1002000"
    assert group.show("memory") == pressure(line, line)


def test_cpu_full_is_zero_at_the_system_level() -> None:
    mem = PhysMem(64 << 20)
    mem.clock.advance(3_000 * MS)
    assert mem.psi.show("cpu").splitlines()[1] == "full avg10=0.00 avg60=0.00 avg300=0.00 total=0"


def test_test_states_is_each_states_rule() -> None:
    """test_states() sets exactly the bits of the states whose rule holds (psi.c's per-state rules, as
    pre-6.1 test_state() wrote them one by one), keeps the bits it was given, for every small count."""
    for iowait, memstall, running, ms_running, oncpu in itertools.product(range(3), range(3), range(3),
                                                                          range(3), (False, True)):
        tasks = [iowait, memstall, running, ms_running]
        rules = [iowait > 0, iowait > 0 and not running, memstall > 0,
                 memstall > 0 and running == ms_running, running > int(oncpu), running > 0 and not oncpu,
                 bool(iowait or memstall or running)]
        want = sum(1 << s for s, holds in enumerate(rules) if holds) | (1 << 7 if oncpu else 0)
        assert psi.test_states(tasks, 1 << 7 if oncpu else 0) == want
