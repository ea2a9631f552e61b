"""The hot path (ModelBackend.access_trace) leaves the machine exactly as the same accesses made one by
one through the fault path: same fault counts, same counters, same pagemap and smaps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.machine import ModelBackend

PAGES = 48


def _machine() -> tuple[ModelBackend, int, int]:
    model = ModelBackend(256 << 20)
    pid = model.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=256 << 20))
    base = model.syscall(pid, "mmap", (0x10000000, PAGES * 4096, 3, 0x32, -1, 0))  # private anon, fixed
    model.syscall(pid, "mprotect", (base + 8 * 4096, 8 * 4096, 1))  # a read-only stretch
    model.access(pid, base, 4 * 4096, True)
    model.access(pid, base + 16 * 4096, 4 * 4096, False)  # zero pages: a store there is a wp fault
    return model, pid, base


def _state(model: ModelBackend, pid: int, base: int) -> tuple[object, ...]:
    return (model.counters(pid), model.pagemap(pid, base, base + PAGES * 4096),
            model.view(pid, "smaps"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, PAGES * 4096 - 1), st.booleans()), min_size=1, max_size=300))
def test_trace_equals_one_by_one(refs: list[tuple[int, bool]]) -> None:
    a, pid_a, base = _machine()
    b, pid_b, _ = _machine()
    refs = [(off, w and not 8 * 4096 <= off < 16 * 4096) for off, w in refs]  # no SIGSEGV here
    addrs = np.array([base + off for off, _ in refs], dtype=np.uint64)
    writes = np.array([w for _, w in refs], dtype=bool)
    assert a.access_trace(pid_a, addrs, writes) is None
    for off, w in refs:
        assert b.access(pid_b, base + off, 1, w) is None
    assert _state(a, pid_a, base) == _state(b, pid_b, base)


def test_trace_stops_at_a_fatal_access() -> None:
    model, pid, base = _machine()
    addrs = np.array([base, base + 9 * 4096, base + 4096], dtype=np.uint64)
    assert model.access_trace(pid, addrs, np.array([True, True, True])) == "SIGSEGV"
    assert pid not in model.tasks
