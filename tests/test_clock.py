"""The simulated clock: timers fire in order at their own time; stalls reach observers."""

import pytest

from vmlab.kernel.clock import Clock


def test_timers_fire_in_order_at_their_time() -> None:
    clock = Clock()
    seen: list[tuple[str, int]] = []
    clock.at(300, lambda: seen.append(("b", clock.now_ns)))
    clock.at(100, lambda: seen.append(("a", clock.now_ns)))
    clock.advance(250)
    assert seen == [("a", 100)]
    clock.advance(100)
    assert seen == [("a", 100), ("b", 300)]
    assert clock.now_ns == 350


def test_observers_see_stall_intervals_split_at_timers() -> None:
    clock = Clock()
    got: list[tuple[int, int, bool]] = []
    clock.observe(lambda start, ns, stall: got.append((start, ns, stall)))
    clock.at(40, lambda: None)
    clock.advance(100, memstall=True)
    clock.advance(10)
    assert got == [(0, 40, True), (40, 60, True), (100, 10, False)]


def test_printk_time_format() -> None:
    clock = Clock(now_ns=12_345_678_901)
    assert clock.printk_time() == "[   12.345678]"


def test_faults_take_time_and_count_in_vmstat() -> None:
    """Each completed fault charges Costs.minor_fault_ns to the clock and counts in pgfault, one by one
    or in the first-touch bulk path alike (16 first-touch writes: 16 faults)."""
    from vmlab.backend import Program, Settings
    from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
    from vmlab.kernel.machine import ModelBackend

    model = ModelBackend(64 << 20)
    pid = model.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=64 << 20))
    mem = model.mem
    addr = model.syscall(pid, "mmap", (0, 16 * 4096, 3, 0x22, -1, 0))
    t0, n0 = mem.clock.now_ns, mem.events["pgfault"]
    assert model.access(pid, addr, 16 * 4096, True) is None
    assert mem.events["pgfault"] - n0 == 16
    assert mem.clock.now_ns - t0 == 16 * mem.clock.costs.minor_fault_ns
    t1 = mem.clock.now_ns
    assert model.access(pid, addr, 4096, False) is None  # a hit: no fault, no fault time
    assert mem.clock.now_ns == t1 and mem.events["pgfault"] - n0 == 16


def test_memstall_observers_see_only_flips_at_their_start() -> None:
    """Clock.observe_memstall: a flip observer is called where the stall state of charged time changes
    (at the first non-empty interval in the new state), never for an interval that flips nothing."""
    clock = Clock()
    got: list[tuple[int, bool]] = []
    clock.observe_memstall(lambda start, stall: got.append((start, stall)))
    clock.advance(10)
    clock.advance(0, memstall=True)  # empty: no flip
    clock.at(25, lambda: None)
    clock.advance(20, memstall=True)
    clock.advance(5, memstall=True)
    clock.advance(7)
    assert got == [(10, True), (35, False)]
    assert clock.now_ns == 42


def test_memstall_observer_must_register_outside_a_stall() -> None:
    clock = Clock()
    clock.advance(10, memstall=True)
    with pytest.raises(ValueError):
        clock.observe_memstall(lambda start, stall: None)


def test_sleep_until_wakes_at_the_timer_that_makes_it_hold() -> None:
    """A sleep runs the timers in turn until its condition holds; with a deadline before that, it
    ends at the deadline, the later timer still pending; with nothing pending, at once."""
    clock = Clock()
    done: list[int] = []
    for t in (10, 20, 30):
        clock.at(t, lambda t=t: done.append(t))  # type: ignore[misc]
    assert not clock.sleep_until(lambda: 30 in done, deadline_ns=25)
    assert clock.now_ns == 25 and done == [10, 20]
    assert clock.sleep_until(lambda: 30 in done) and clock.now_ns == 30
    assert not clock.sleep_until(lambda: 40 in done) and clock.now_ns == 30
