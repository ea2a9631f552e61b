"""The simulated clock: timers fire in order at their own time; stalls reach observers."""

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
