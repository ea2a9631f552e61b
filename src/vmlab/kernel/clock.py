"""The simulated clock: the model's time, advanced only by modelled costs, never by the wall clock.

The kernel measures time with sched_clock(); the model has no real CPU, so each thing that takes time
(a cache hit, a minor fault, a major fault's I/O, write-back, reclaim) charges its cost from `Costs`.
Timers that the kernel runs on its own clock (the flusher's dirty_expire, kswapd, the OOM reaper's 2 s,
the PSI averages, printk's timestamps) read `Clock.now_ns` and register with `Clock.at`.

Stall accounting is the PSI seam: time charged with `memstall=True` is time the task waited for memory
(direct reclaim, a refault of its working set, swap-in); observers registered with `Clock.observe` see
every interval as it is charged, and those registered with `Clock.observe_memstall` (PSI) see only where
the stall state of charged time flips, so an advance that flips nothing and fires no timer is one store.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

NSEC_PER_USEC: Final = 1_000
NSEC_PER_MSEC: Final = 1_000_000
NSEC_PER_SEC: Final = 1_000_000_000
HZ: Final = 250  # CONFIG_HZ of this machine's kernel
JIFFY_NS: Final = NSEC_PER_SEC // HZ


@dataclass(frozen=True)
class Costs:
    """What each modelled event costs, in nanoseconds (defaults: a present-day x86 with an NVMe SSD).

    scan_ns was measured on this machine's kernel (6.18, the vmscan tracepoints around a 16 MiB
    writer in an 8 MiB v1 memcg): a memcg reclaim took 1.0-1.15 us a page on a pass over mapped
    pages (mostly kept: their PTEs young), 2.0-2.9 us on passes that unmapped and wrote them, 0.7 us
    on passes that freed written ones. At 200 ns (its value before) reclaim did in no time what
    takes the kernel milliseconds, so its swap writes did not complete while it scanned, and the
    model wrote 2,667 pages of such a shmem writer where the kernel wrote 2,355-2,523; at 1 us,
    2,445 (tests/test_host_shmem_swap.py). It is charged a folio: a THP's referenced check looks at one
    PMD (the kernel's trace: microseconds), while splitting it to swap it out hands its 512 pages on
    as folios of their own, each charged as it comes (the trace: about 2 ms for the split and the
    pageouts); tests/test_host_thp_swap.py."""

    hit_ns: int = 100  # a load/store to a mapped page, or a read() of a cached page
    minor_fault_ns: int = 1_000  # fault path without I/O (zero fill, map a cached page)
    major_fault_ns: int = 100_000  # one read I/O from the backing device (readahead pages ride along)
    writeback_ns: int = 100_000  # one write I/O of a dirty page (pageout, flusher, fsync)
    swap_io_ns: int = 100_000  # one swap-in or swap-out I/O
    scan_ns: int = 1_000  # reclaim: look at one LRU folio


#: An observer of charged time: (start_ns, duration_ns, memstall).
Observer = Callable[[int, int, bool], None]
#: An observer of stall flips: (start_ns of the first interval in the new state, memstall).
FlipObserver = Callable[[int, bool], None]


@dataclass
class Clock:
    """Simulated time in nanoseconds since boot, with a timer queue and stall observers."""

    costs: Costs = field(default_factory=Costs)
    now_ns: int = 0
    _timers: list[tuple[int, int, Callable[[], None]]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _observers: list[Observer] = field(default_factory=list)
    _flip_observers: list[FlipObserver] = field(default_factory=list)
    #: The stall state of the last non-empty interval charged (not stalled before any).
    stalled: bool = False
    #: Nesting depth of psi_memstall_enter() sections: time charged inside one is a memory stall.
    _memstall_depth: int = 0

    def advance(self, ns: int, *, memstall: bool = False) -> None:
        """Let `ns` nanoseconds pass (a stall on memory when `memstall` or inside a memstall section),
        firing timers that fall due in order, each at its own time; the observers see each interval
        (up to a timer, then to the end) as it is charged, the flip observers each non-empty interval
        whose stall state differs from the one before it (at its start)."""
        end = self.now_ns + ns
        timers = self._timers
        if (ns >= 0 and memstall == self.stalled and not self._memstall_depth and not self._observers
                and not (timers and timers[0][0] <= end)):
            self.now_ns = end  # nothing due, no flip, outside a memstall section: the common case
            return
        if ns < 0:
            raise ValueError(f"time cannot go back ({ns} ns)")
        if self._memstall_depth:
            memstall = True
        while True:
            until, fn = end, None
            if timers and timers[0][0] <= end:
                until, _, fn = heapq.heappop(timers)
            start = self.now_ns
            if until > start:
                self.now_ns = until
                if memstall != self.stalled:
                    self.stalled = memstall
                    for flip in self._flip_observers:
                        flip(start, memstall)
                for observer in self._observers:
                    observer(start, until - start, memstall)
            if fn is None:
                return
            fn()

    @contextmanager
    def memstall(self, stall: bool = True) -> Iterator[None]:
        """psi_memstall_enter() ... psi_memstall_leave() around the block when `stall`: every interval
        charged inside, by whatever path (I/O, reclaim's scanning, write-out), is a memory stall."""
        if not stall:
            yield
            return
        self._memstall_depth += 1
        try:
            yield
        finally:
            self._memstall_depth -= 1

    def at(self, when_ns: int, fn: Callable[[], None]) -> None:
        """Run `fn` when the clock reaches `when_ns` (at once on the next advance if that is past)."""
        heapq.heappush(self._timers, (when_ns, next(self._seq), fn))

    def sleep_until(self, done: Callable[[], bool], deadline_ns: int | None = None) -> bool:
        """A task's sleep until `done()` holds, woken by the timers as they fall due (a write's end,
        ...): True once it holds; False when no timer due by `deadline_ns` (or at all, without one)
        can make it hold, the clock then at the deadline (or where it was)."""
        while not done():
            due = self.next_timer_ns()
            if due is None or (deadline_ns is not None and due > deadline_ns):
                if deadline_ns is not None:
                    self.advance(max(0, deadline_ns - self.now_ns))
                return False
            self.advance(max(0, due - self.now_ns))
        return True

    def next_timer_ns(self) -> int | None:
        """When the earliest pending timer falls due (None: no timer pending)."""
        return self._timers[0][0] if self._timers else None

    def observe(self, observer: Observer) -> None:
        """Call `observer(start_ns, duration_ns, memstall)` for every interval charged from now on."""
        self._observers.append(observer)

    def observe_memstall(self, observer: FlipObserver) -> None:
        """Call `observer(start_ns, memstall)` whenever the stall state of charged time flips from now
        on (at the start of the first interval in the new state); the observer starts not stalled, so
        it must register while the clock is not (ValueError otherwise)."""
        if self.stalled:
            raise ValueError("a stall observer must register outside a stall")
        self._flip_observers.append(observer)

    def printk_time(self) -> str:
        """The `[seconds.micros]` prefix dmesg prints for a message logged now."""
        secs, rem = divmod(self.now_ns, NSEC_PER_SEC)
        return f"[{secs:5d}.{rem // NSEC_PER_USEC:06d}]"
