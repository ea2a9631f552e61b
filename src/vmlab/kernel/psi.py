"""Pressure stall information, after kernel/sched/psi.c and kernel/sched/loadavg.c: per-CPU task counts
and state times, their aggregation into `total=` and the avg10/avg60/avg300 running averages, and the
text of /proc/pressure/{io,memory,cpu}.

The arithmetic is the kernel's, unit for unit: per-CPU state times are u32 nanoseconds, CPUs are weighted
by their non-idle time in whole jiffies (so a sample with less than one jiffy of non-idle time adds
nothing to `total=`), the averaging period is PSI_FREQ = 2*HZ+1 jiffies (2.004 s at this machine's
HZ=250), averages are 11-bit fixed point decayed by EXP_10s/EXP_60s/EXP_300s with calc_load()'s
round-up-when-rising, and missed periods decay with calc_load_n().

The averaging worker runs on the simulated clock as the kernel's delayed work does: first PSI_FREQ
jiffies after a state change, then `nsecs_to_jiffies(avg_next_update - now) + 1` jiffies after each run
(timers expire on jiffy boundaries, so it runs up to a jiffy late and the next period is measured from
when it really ran). Deliberate simplification: the worker is not itself a task, so it reschedules while
any CPU has a task (the kernel's "more than the worker itself on this CPU"); psi triggers (poll) and
per-cgroup groups are not modelled, only the system group.

`attach(clock)` connects the system group to the machine's clock: the machine runs one task on CPU 0,
and an interval the clock charges with `memstall=True` is that task inside psi_memstall_enter()/leave()
(direct reclaim, a refault, a swap-in, throttling), so memory pressure is `some` and `full` alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from vmlab.kernel.clock import HZ, JIFFY_NS, NSEC_PER_USEC

if TYPE_CHECKING:
    from vmlab.kernel.clock import Clock

TICK_NSEC: Final = JIFFY_NS
PSI_FREQ: Final = 2 * HZ + 1  # jiffies: 2 s intervals
#: psi_period = jiffies_to_nsecs(PSI_FREQ).
PSI_PERIOD: Final = PSI_FREQ * TICK_NSEC

FSHIFT: Final = 11
FIXED_1: Final = 1 << FSHIFT
EXP_10s = 1677  # 1/exp(2s/10s) as fixed-point
EXP_60s = 1981  # 1/exp(2s/60s)
EXP_300s = 2034  # 1/exp(2s/300s)
EXPS: Final = (EXP_10s, EXP_60s, EXP_300s)

U32: Final = 0xFFFF_FFFF

# enum psi_task_count and the TSK_* bits.
NR_IOWAIT, NR_MEMSTALL, NR_RUNNING, NR_MEMSTALL_RUNNING = range(4)
NR_PSI_TASK_COUNTS: Final = 4
TSK_IOWAIT: Final = 1 << NR_IOWAIT
TSK_MEMSTALL: Final = 1 << NR_MEMSTALL
TSK_RUNNING: Final = 1 << NR_RUNNING
TSK_MEMSTALL_RUNNING: Final = 1 << NR_MEMSTALL_RUNNING
TSK_ONCPU: Final = 1 << NR_PSI_TASK_COUNTS

# enum psi_states (CONFIG_IRQ_TIME_ACCOUNTING's PSI_IRQ_FULL is not modelled: no interrupts).
PSI_IO_SOME, PSI_IO_FULL, PSI_MEM_SOME, PSI_MEM_FULL, PSI_CPU_SOME, PSI_CPU_FULL, PSI_NONIDLE = range(7)
NR_PSI_STATES: Final = 7
PSI_ONCPU: Final = 1 << NR_PSI_STATES

# enum psi_res and enum psi_aggregators.
PSI_IO, PSI_MEM, PSI_CPU = range(3)
RESOURCES: Final = {"io": PSI_IO, "memory": PSI_MEM, "cpu": PSI_CPU}
PSI_AVGS, PSI_POLL = range(2)


def fixed_power_int(x: int, frac_bits: int, n: int) -> int:
    """fixed_power_int(): x**n in fixed point with `frac_bits` fraction bits, rounding each product."""
    result = 1 << frac_bits
    while n:
        if n & 1:
            result = (result * x + (1 << (frac_bits - 1))) >> frac_bits
        n >>= 1
        if not n:
            break
        x = (x * x + (1 << (frac_bits - 1))) >> frac_bits
    return result


def calc_load(load: int, exp: int, active: int) -> int:
    """calc_load(): one step of the exponential average, rounded up while the load is rising."""
    newload = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        newload += FIXED_1 - 1
    return newload // FIXED_1


def calc_load_n(load: int, exp: int, active: int, n: int) -> int:
    """calc_load_n(): `n` steps of calc_load() with the same `active` at once."""
    return calc_load(load, fixed_power_int(exp, FSHIFT, n), active)


def load_int(x: int) -> int:
    """LOAD_INT()."""
    return x >> FSHIFT


def load_frac(x: int) -> int:
    """LOAD_FRAC(): two decimal digits of the fraction, truncated."""
    return load_int((x & (FIXED_1 - 1)) * 100)


def nsecs_to_jiffies(ns: int) -> int:
    """nsecs_to_jiffies(): whole ticks, truncated."""
    return ns // TICK_NSEC


def test_states(tasks: list[int], state_mask: int) -> int:
    """test_states(): `state_mask` (its PSI_ONCPU bit says whether the CPU runs a task) with the bit of
    every state the CPU with task counts `tasks` is in added, all in one pass."""
    oncpu = state_mask & PSI_ONCPU != 0
    iowait, memstall, running = tasks[NR_IOWAIT], tasks[NR_MEMSTALL], tasks[NR_RUNNING]
    if iowait:
        state_mask |= 1 << PSI_IO_SOME
        if not running:
            state_mask |= 1 << PSI_IO_FULL
    if memstall:
        state_mask |= 1 << PSI_MEM_SOME
        if running == tasks[NR_MEMSTALL_RUNNING]:
            state_mask |= 1 << PSI_MEM_FULL
    if running > oncpu:
        state_mask |= 1 << PSI_CPU_SOME
    if running and not oncpu:
        state_mask |= 1 << PSI_CPU_FULL
    if iowait or memstall or running:
        state_mask |= 1 << PSI_NONIDLE
    return state_mask


@dataclass
class PsiGroupCpu:
    """`struct psi_group_cpu`: one CPU's task counts, state and u32 state times."""

    tasks: list[int] = field(default_factory=lambda: [0] * NR_PSI_TASK_COUNTS)
    state_mask: int = 0
    state_start: int = 0
    times: list[int] = field(default_factory=lambda: [0] * NR_PSI_STATES)
    times_prev: list[list[int]] = field(default_factory=lambda: [[0] * NR_PSI_STATES for _ in range(2)])
    #: cpu_curr(cpu)->in_memstall: the task on this CPU is reclaiming (a memstall is then FULL).
    curr_in_memstall: bool = False


class Scheduler(Protocol):
    """Where the averaging worker's timer goes: the simulated clock (`Clock.at`) and its time."""

    now_ns: int

    def at(self, when_ns: int, fn: Callable[[], None]) -> None: ...


class PsiGroup:
    """`struct psi_group` (the system group): per-CPU state, totals and the running averages."""

    def __init__(self, clock: Scheduler, nr_cpus: int = 1) -> None:
        """group_init() at the clock's current time."""
        self.clock = clock
        self.pcpu = [PsiGroupCpu(state_start=clock.now_ns) for _ in range(nr_cpus)]
        self.total = [[0] * (NR_PSI_STATES - 1) for _ in range(2)]
        self.avg_total = [0] * (NR_PSI_STATES - 1)
        self.avg = [[0, 0, 0] for _ in range(NR_PSI_STATES - 1)]
        self.avg_last_update = clock.now_ns
        self.avg_next_update = clock.now_ns + PSI_PERIOD
        self._avgs_work_pending = False

    # --- state changes ----------------------------------------------------------------------------

    def record_times(self, groupc: PsiGroupCpu, now: int) -> None:
        """record_times(): charge the time since the last change to the states the CPU was in."""
        delta = (now - groupc.state_start) & U32
        groupc.state_start = now
        mask, times = groupc.state_mask, groupc.times
        for some, full in ((PSI_IO_SOME, PSI_IO_FULL), (PSI_MEM_SOME, PSI_MEM_FULL),
                           (PSI_CPU_SOME, PSI_CPU_FULL)):
            if mask & (1 << some):
                times[some] = (times[some] + delta) & U32
                if mask & (1 << full):
                    times[full] = (times[full] + delta) & U32
        if mask & (1 << PSI_NONIDLE):
            times[PSI_NONIDLE] = (times[PSI_NONIDLE] + delta) & U32

    def group_change(self, cpu: int, clear: int, set_: int, *, curr_in_memstall: bool | None = None,
                     wake_clock: bool = True) -> None:
        """psi_group_change() now: update the task counts of `cpu` by the TSK_* bits `clear` and `set_`,
        close the time spent in the old state and enter the new one. `curr_in_memstall` updates the
        in_memstall flag of the task on the CPU."""
        now = self.clock.now_ns
        groupc = self.pcpu[cpu]
        if curr_in_memstall is not None:
            groupc.curr_in_memstall = curr_in_memstall
        if clear & TSK_ONCPU:
            state_mask, clear = 0, clear & ~TSK_ONCPU
        elif set_ & TSK_ONCPU:
            state_mask, set_ = PSI_ONCPU, set_ & ~TSK_ONCPU
        else:
            state_mask = groupc.state_mask & PSI_ONCPU
        for t in range(NR_PSI_TASK_COUNTS):
            if clear & (1 << t):
                if not groupc.tasks[t]:
                    raise AssertionError(f"psi: task underflow! cpu={cpu} t={t} tasks={groupc.tasks}")
                groupc.tasks[t] -= 1
            if set_ & (1 << t):
                groupc.tasks[t] += 1
        state_mask = test_states(groupc.tasks, state_mask)
        if state_mask & PSI_ONCPU and groupc.curr_in_memstall:
            state_mask |= 1 << PSI_MEM_FULL
        self.record_times(groupc, now)
        groupc.state_mask = state_mask
        if wake_clock and not self._avgs_work_pending:
            self._schedule_avgs_work(PSI_FREQ)

    # --- aggregation ---------------------------------------------------------------------------------

    def get_recent_times(self, cpu: int, aggregator: int, now: int) -> tuple[list[int], int]:
        """get_recent_times(): each state's time on `cpu` since this aggregator's last look (the
        current state's live time included), and the mask of states that changed."""
        groupc = self.pcpu[cpu]
        times = list(groupc.times)
        changed = 0
        prev = groupc.times_prev[aggregator]
        for s in range(NR_PSI_STATES):
            if groupc.state_mask & (1 << s):
                times[s] = (times[s] + now - groupc.state_start) & U32
            delta = (times[s] - prev[s]) & U32
            prev[s] = times[s]
            times[s] = delta
            if delta:
                changed |= 1 << s
        return times, changed

    def collect_percpu_times(self, aggregator: int, now: int) -> int:
        """collect_percpu_times(): fold every CPU's recent times into `total`, each CPU weighted by its
        non-idle jiffies; returns the changed-states mask."""
        deltas = [0] * (NR_PSI_STATES - 1)
        nonidle_total = 0
        changed = 0
        for cpu in range(len(self.pcpu)):
            times, cpu_changed = self.get_recent_times(cpu, aggregator, now)
            changed |= cpu_changed
            nonidle = nsecs_to_jiffies(times[PSI_NONIDLE])
            nonidle_total += nonidle
            for s in range(NR_PSI_STATES - 1):
                deltas[s] += times[s] * nonidle
        for s in range(NR_PSI_STATES - 1):
            self.total[aggregator][s] += deltas[s] // max(nonidle_total, 1)
        return changed

    def update_averages(self, now: int) -> int:
        """update_averages(): sample each state's stall share of the period just ended into the
        averages (zeros for whole periods missed); returns the next update time."""
        expires = self.avg_next_update
        missed_periods = (now - expires) // PSI_PERIOD if now - expires >= PSI_PERIOD else 0
        avg_next_update = expires + (1 + missed_periods) * PSI_PERIOD
        period = now - (self.avg_last_update + missed_periods * PSI_PERIOD)
        self.avg_last_update = now
        for s in range(NR_PSI_STATES - 1):
            sample = (self.total[PSI_AVGS][s] - self.avg_total[s]) & U32
            sample = min(sample, period)
            self.avg_total[s] += sample
            self._calc_avgs(self.avg[s], missed_periods, sample, period)
        return avg_next_update

    @staticmethod
    def _calc_avgs(avg: list[int], missed_periods: int, time: int, period: int) -> None:
        """calc_avgs(): decay through the missed periods, then fold in this period's percentage."""
        if missed_periods:
            for w, exp in enumerate(EXPS):
                avg[w] = calc_load_n(avg[w], exp, 0, missed_periods)
        pct = time * 100 // period * FIXED_1
        for w, exp in enumerate(EXPS):
            avg[w] = calc_load(avg[w], exp, pct)

    def _schedule_avgs_work(self, delay_jiffies: int) -> None:
        """schedule_delayed_work(): run the worker `delay_jiffies` ticks from the current jiffy."""
        self._avgs_work_pending = True
        when = (nsecs_to_jiffies(self.clock.now_ns) + delay_jiffies) * TICK_NSEC
        self.clock.at(when, self.avgs_work)

    def avgs_work(self) -> None:
        """psi_avgs_work(): fold the per-CPU times, update the averages when a period is due, and come
        back just after the next one while there is task activity."""
        self._avgs_work_pending = False
        now = self.clock.now_ns
        changed = self.collect_percpu_times(PSI_AVGS, now)
        if now >= self.avg_next_update:
            self.avg_next_update = self.update_averages(now)
        busy = any(any(c.tasks[:NR_MEMSTALL_RUNNING]) for c in self.pcpu)
        if busy or (changed & (1 << PSI_NONIDLE) and len(self.pcpu) > 1):
            self._schedule_avgs_work(nsecs_to_jiffies(self.avg_next_update - now) + 1)

    # --- the view --------------------------------------------------------------------------------------

    def show(self, res: str) -> str:
        """psi_show(): /proc/pressure/<res> now (bring the totals and averages up to date first)."""
        now = self.clock.now_ns
        self.collect_percpu_times(PSI_AVGS, now)
        if now >= self.avg_next_update:
            self.avg_next_update = self.update_averages(now)
        r = RESOURCES[res]
        lines = []
        for full in (0, 1):
            avg, total = [0, 0, 0], 0
            if not (r == PSI_CPU and full):  # CPU FULL is undefined at the system level
                avg = self.avg[r * 2 + full]
                total = self.total[PSI_AVGS][r * 2 + full] // NSEC_PER_USEC
            a10, a60, a300 = (f"{load_int(x)}.{load_frac(x):02d}" for x in avg)
            lines.append(f"{'full' if full else 'some'} avg10={a10} avg60={a60} avg300={a300} total={total}")
        return "\n".join(lines) + "\n"


class MachinePsi:
    """The system group fed by the machine's clock: one task, always on CPU 0; the clock's memstall
    intervals are that task between psi_memstall_enter() and psi_memstall_leave()."""

    def __init__(self, clock: Scheduler) -> None:
        self.group = PsiGroup(clock)
        self.in_memstall = False
        self.group.group_change(0, 0, TSK_RUNNING | TSK_ONCPU)

    def observe(self, start: int, memstall: bool) -> None:
        """A clock flip observer (Clock.observe_memstall): enter or leave the memstall section at
        `start`, where the stall state flips."""
        self.in_memstall = memstall
        clock = self.group.clock
        end = clock.now_ns
        clock.now_ns = start  # the change happened where the interval began
        try:
            if memstall:
                self.group.group_change(0, 0, TSK_MEMSTALL | TSK_MEMSTALL_RUNNING, curr_in_memstall=True)
            else:
                self.group.group_change(0, TSK_MEMSTALL | TSK_MEMSTALL_RUNNING, 0, curr_in_memstall=False)
        finally:
            clock.now_ns = end

    def show(self, res: str = "memory") -> str:
        """/proc/pressure/<res>."""
        return self.group.show(res)


def attach(clock: Clock) -> MachinePsi:
    """The machine's PSI from the clock's current time on, fed by its stall intervals."""
    psi = MachinePsi(clock)
    clock.observe_memstall(psi.observe)
    return psi
