"""The v1 memcg OOM wait in the model (oom_kill_disable; mm/memcontrol-v1.c 6.18): which memcgs a
sleeper marks under_oom, what wakes it, and that only a user-mode fault parks a task. The differential
check against the kernel is test_host_memcg_oom_wait.py."""

from __future__ import annotations

import pytest

from memcgkit import PG, memcg_machine, model_oom_control, model_to_the_limit
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import MEMCG_OOM_WAIT, ModelBackend
from vmlab.kernel.memcontrol import MemCgroup
from vmlab.kernel.swap import lru_add_drain
from vmlab.kernel.uapi import EBADF, EFAULT, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

REGION = 16 * PG


def anon(model: ModelBackend, pid: int) -> int:
    """A fresh 16-page private anonymous read-write mapping; its address."""
    addr = model.syscall(pid, "mmap", (0, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
    assert addr > 0
    return addr


def waiting(model: ModelBackend, pid: int) -> tuple[MemCgroup, int]:
    """Process `pid` of memcg /t, its OOM killer disabled, parked by a store at the limit; (its memcg,
    the address of the page it waits for)."""
    memcg = model.tasks[pid].memcg
    assert memcg is not None
    addr = anon(model, pid)
    assert model.access(pid, addr + REGION - PG, 1, True) is None  # its page tables
    assert model.memcg_set(memcg.path, "oom_kill_disable", 1) == 0
    model_to_the_limit(model, memcg)
    assert model.access(pid, addr, 1, True) == MEMCG_OOM_WAIT
    assert model_oom_control(memcg)["under_oom"] == 1 and model.memcgs.oom_waitq
    return memcg, addr


def test_a_sleeper_marks_the_memcg_over_its_limit_and_its_descendants() -> None:
    """The limit and oom_kill_disable on the parent, the task in a child: the parent is the memcg over
    its limit, so it and all its descendants (the child and its sibling) show under_oom 1
    (mem_cgroup_mark_under_oom walks the subtree), a memcg beside the parent does not;
    oom_kill_disable 0 on the parent wakes the task and clears them."""
    model, pid, _ = memcg_machine(64 << 20)
    model.memcgs.mkdir("/p/c")
    sibling, beside = model.memcgs.mkdir("/p/s"), model.memcgs.mkdir("/q")
    assert model.memcg_attach(pid, "/p/c") == 0
    parent, child = model.memcgs.lookup("/p"), model.memcgs.lookup("/p/c")
    assert parent is not None and child is not None
    addr = anon(model, pid)
    assert model.access(pid, addr + REGION - PG, 1, True) is None
    assert model.memcg_set("/p", "oom_kill_disable", 1) == 0
    model.memcgs.drain_local_stock()
    assert parent.set_limit(parent.memory.usage) == 0
    assert model.access(pid, addr, 1, True) == MEMCG_OOM_WAIT
    assert [c.under_oom for c in (parent, child, sibling, beside)] == [1, 1, 1, 0]
    assert model.tasks[pid].memcg_oom.memcg_in_oom is parent
    assert model.memcg_set("/p", "oom_kill_disable", 0) == 0
    assert [c.under_oom for c in (parent, child, sibling, beside)] == [0, 0, 0, 0]
    assert not model.memcgs.oom_waitq and model.tasks[pid].memcg_oom.memcg_in_oom is None
    # Woken with the OOM killer back, the retried store kills the only task in the memcg.
    assert model.access(pid, addr, 1, True) == "SIGKILL"
    check_machine(model)


@pytest.mark.parametrize("wake", ["uncharge", "limit", "exit", "runs"])
def test_what_ends_the_wait(wake: str) -> None:
    """A sleeper leaves the queue and unmarks under_oom when another task's pages of the memcg are
    freed (uncharge_batch -> memcg1_oom_recover), when the limit grows, when it dies, or (the model's
    reading of a scenario step) when it runs again; its next store then goes through where there is
    room."""
    model, pid, memcg = memcg_machine(64 << 20)
    other = model.fork(pid)
    spare = anon(model, other)
    assert model.access(other, spare, REGION, True) is None
    lru_add_drain(model.mem)  # its pages on the LRU: held by nothing but their mapping when unmapped
    _, addr = waiting(model, pid)
    if wake == "uncharge":
        assert model.syscall(other, "munmap", (spare, REGION)) == 0
    elif wake == "limit":
        assert memcg.set_limit(memcg.memory.max + 1) == 0
    elif wake == "exit":
        model.exit(pid)
    else:
        assert model.syscall(pid, "lseek", (99, 0, 0)) == -EBADF  # any syscall of its own
    assert model_oom_control(memcg)["under_oom"] == 0 and not model.memcgs.oom_waitq
    if wake in ("uncharge", "limit"):
        assert model.access(pid, addr, 1, True) is None
    check_machine(model)


def test_only_a_user_mode_fault_parks_the_task() -> None:
    """At the limit with the OOM killer disabled, the kernel's own copy into an untouched buffer (a
    /dev/zero read: no FAULT_FLAG_USER) fails with EFAULT and leaves the task's memcg OOM record
    empty; the task's own store to the same page parks it, recording the memcg."""
    model, pid, memcg = memcg_machine(64 << 20)
    addr = anon(model, pid)
    assert model.access(pid, addr + REGION - PG, 1, True) is None
    zero = model.syscall(pid, "openat", (-100, "/dev/zero", 0, 0))
    assert model.memcg_set("/t", "oom_kill_disable", 1) == 0
    model_to_the_limit(model, memcg)
    state = model.tasks[pid].memcg_oom
    assert model.syscall(pid, "read", (zero, addr, PG)) == -EFAULT
    assert state.memcg_in_oom is None and not state.in_user_fault and memcg.under_oom == 0
    assert model.access(pid, addr, 1, True) == MEMCG_OOM_WAIT
    assert state.memcg_in_oom is memcg and not state.in_user_fault and memcg.under_oom == 1
