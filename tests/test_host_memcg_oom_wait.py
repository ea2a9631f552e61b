"""Who waits in a v1 memcg OOM with the OOM killer disabled: only a task whose charge was refused in
a user page fault, on this host's kernel and on the model.

6.18 (mm/memcontrol-v1.c memcg1_oom_prepare, mm/memcontrol.c mem_cgroup_oom_synchronize): with
memory.oom_control `oom_kill_disable 1`, a refused charge fails (-ENOMEM) whatever the context; only
when current->in_user_fault is set (handle_mm_fault of a FAULT_FLAG_USER fault, which x86's
do_user_addr_fault passes only for a fault from user mode) does the task go to sleep at the end of the
fault, and only then is under_oom marked. So at the limit:
- mlock() populates through GUP (no FAULT_FLAG_USER): -ENOMEM from the fault, EAGAIN from mlock;
- mmap(MAP_POPULATE) populates through GUP and ignores the failure: it returns the address;
- madvise(MADV_POPULATE_WRITE) populates through GUP: ENOMEM;
- pread() of a cached file, or read() of /dev/zero, into an untouched buffer faults in kernel mode
  (copy_to_user, clear_user): nothing copied, EFAULT;
- pread() of an uncached file into a buffer already there: the page cache's charge is refused
  (readahead's __GFP_NORETRY one, then filemap_create_folio's), so filemap_read returns -ENOMEM;
  with the first page cached, it returns that page's bytes (already_read) and stops at the second;
- a store by the task itself (user mode) sleeps (state D) with under_oom 1 until a larger limit wakes
  it (memcg1_oom_recover); the fault is then retried and charges its page.
Nothing else is charged and oom_kill stays 0.

The task is tests/memcgwait.c, in a memcg the test makes (and removes: the `memcgs` fixture), pinned
to CPU 0. It maps everything it needs before the memcg is brought to its limit (memcgkit
host_to_the_limit) and answers through a pipe page it already has, so its replies need no charge (the
stepper's socket replies do, and a refused charge drains the object stock they rely on). The model
runs the same steps at its own limit. Run with -s to see both sides:
`PYTHONPATH=src:tests python -m pytest -q tests/test_host_memcg_oom_wait.py -s`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memcgkit import (
    PG,
    Counters,
    host_counters,
    host_oom_control,
    host_to_the_limit,
    memcg_machine,
    model_counters,
    model_oom_control,
    model_to_the_limit,
    wait_until,
)
from vmlab.host import procfs
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import MEMCG_OOM_WAIT, ModelBackend
from vmlab.kernel.uapi import (
    EAGAIN,
    EFAULT,
    ENOMEM,
    MADV_POPULATE_WRITE,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_POPULATE,
    MAP_PRIVATE,
    O_RDONLY,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)

from hostkit import Hog, Hogs, Memcgs, build_test_program

pytestmark = pytest.mark.host

#: memcgwait.c's layout: regions of 16 pages in one 2 MiB block at a 512 GiB-aligned address.
BASE = 0x600000000000
REGION = 16 * PG
A, B, P = BASE, BASE + 4 * REGION, BASE + 8 * REGION
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
NOTHING_WAITS = {"oom_kill_disable": 1, "under_oom": 0, "oom_kill": 0}


@pytest.fixture
def waiters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hogs]:
    """Start memcgwait tasks; every one is SIGKILLed by pid and reaped afterwards."""
    h = Hogs(build_test_program(tmp_path_factory, "memcgwait"))
    try:
        yield h
    finally:
        h.kill_all()


def cached_file(path: Path) -> Path:
    """A 16-page file this process wrote and read: its page cache is charged to this process's memcg,
    so reading it charges the reader nothing but its buffer."""
    path.write_bytes(b"x" * REGION)
    assert len(path.read_bytes()) == REGION
    return path


def uncached_file(path: Path) -> Path:
    """A 16-page file written, synced and dropped from the page cache (POSIX_FADV_DONTNEED): reading
    it charges the reader for its pages."""
    path.write_bytes(b"x" * REGION)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


def first_page_cached_file(path: Path) -> Path:
    """uncached_file() whose first page alone was read back (POSIX_FADV_RANDOM: no readahead)."""
    uncached_file(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        assert len(os.pread(fd, PG, 0)) == PG
    finally:
        os.close(fd)
    return path


def model_task(path: Path) -> tuple[ModelBackend, int, int, int]:
    """memcgwait's start on a model machine whose first process runs in memcg /t: its mappings, the
    two pages it touches, /dev/zero and `path` opened; (model, pid, fd of path, fd of /dev/zero)."""
    model, pid, _ = memcg_machine(64 << 20)
    for addr, prot in ((A, RW), (B, RW), (P, RW), (P + REGION, PROT_NONE)):
        assert model.syscall(pid, "mmap", (addr, REGION, prot, ANON, -1, 0)) == addr
    assert model.access(pid, B + REGION - PG, 1, True) is None
    assert model.access(pid, P, 1, True) is None
    zero = model.syscall(pid, "openat", (-100, "/dev/zero", O_RDONLY, 0))
    fd = model.syscall(pid, "openat", (-100, str(path), O_RDONLY, 0))
    assert fd >= 0 and zero >= 0
    return model, pid, fd, zero


def host_task(waiters: Hogs, cg: Path, path: Path) -> Hog:
    """memcgwait started in `cg` on CPU 0, with `path` opened."""
    hog = waiters.start("uoom", 0, 0, cg, cpu=0)
    hog.send(f"open {path}")
    hog.expect("ok")
    return hog


#: The operations at the limit on the model, (model, pid, fd of the file, fd of /dev/zero) -> result,
#: and the result expected.
MODEL_OPS: dict[str, tuple[Callable[[ModelBackend, int, int, int], int], int]] = {
    "mlock": (lambda m, pid, fd, zero: m.syscall(pid, "mlock", (A, REGION)), -EAGAIN),
    "populate": (lambda m, pid, fd, zero: m.syscall(pid, "mmap", (P + REGION, REGION, RW,
                                                                   ANON | MAP_POPULATE, -1, 0)), P + REGION),
    "madvise": (lambda m, pid, fd, zero: m.syscall(pid, "madvise", (A, REGION, MADV_POPULATE_WRITE)),
                -ENOMEM),
    "pread": (lambda m, pid, fd, zero: m.syscall(pid, "pread64", (fd, B, 4 * PG, 0)), -EFAULT),
    "zero": (lambda m, pid, fd, zero: m.syscall(pid, "read", (zero, B, 4 * PG)), -EFAULT),
    "pread1": (lambda m, pid, fd, zero: m.syscall(pid, "pread64", (fd, B + REGION - PG, PG, 0)), -ENOMEM),
    "pread2": (lambda m, pid, fd, zero: m.syscall(pid, "pread64", (fd, B + REGION - PG, 2 * PG, 0)), PG),
}
#: How each operation's file is made: written and read back (cached) unless named here.
FILES: dict[str, Callable[[Path], Path]] = {"pread1": uncached_file, "pread2": first_page_cached_file}


@pytest.mark.parametrize("name", list(MODEL_OPS))
def test_refused_charge_outside_a_user_fault_does_not_wait(name: str, waiters: Hogs, memcgs: Memcgs,
                                                           tmp_path: Path) -> None:
    """mlock, MAP_POPULATE, MADV_POPULATE_WRITE, and pread() or a /dev/zero read() into an untouched
    buffer, or pread() of an uncached file (or one with only its first page cached) into a buffer
    already there, at the limit, OOM killer disabled:
    the same result on both, nothing charged, under_oom 0 and oom_kill 0 right after it (the kernel
    never marks under_oom for them; the model used to leave it at 1)."""
    model_op, expected = MODEL_OPS[name]
    path = FILES.get(name, cached_file)(tmp_path / "data")
    cg = memcgs.make(f"uoom_{name}", "64M")
    hog = host_task(waiters, cg, path)
    (cg / "memory.oom_control").write_text("1")
    k_before = host_to_the_limit(cg)
    hog.send(name)
    reply = hog.reply()
    k_oom = host_oom_control(cg)
    k_after = host_counters(cg)
    assert reply.startswith("ret "), f"memcgwait said {reply!r}, exit {hog.proc.poll()}"
    k_ret = int(reply.split()[1])

    model, pid, fd, zero = model_task(path)
    memcg = model.tasks[pid].memcg
    assert memcg is not None and model.memcg_set("/t", "oom_kill_disable", 1) == 0
    model_to_the_limit(model, memcg)
    m_before = model_counters(memcg)
    m_ret = model_op(model, pid, fd, zero)
    m_oom = model_oom_control(memcg)
    m_after = model_counters(memcg)
    check_machine(model)
    print(f"{name}: kernel {k_ret:#x} {k_oom} {k_before} -> {k_after}\n"
          f"{name}: model  {m_ret:#x} {m_oom} {m_before} -> {m_after}")

    assert k_ret == m_ret == expected
    assert k_oom == m_oom == NOTHING_WAITS
    assert k_after == k_before and m_after == m_before
    assert not model.memcgs.oom_waitq


def test_refused_charge_in_a_user_fault_waits(waiters: Hogs, memcgs: Memcgs, tmp_path: Path) -> None:
    """A store by the task itself at the limit, OOM killer disabled: it sleeps in the memcg OOM wait
    queue (the kernel's task in state D, TASK_KILLABLE; the model's access reports MEMCG_OOM_WAIT)
    with under_oom 1, nothing charged, no kill; one page more of limit wakes it: under_oom 0, and
    the retried fault charges that page."""
    path = cached_file(tmp_path / "data")
    cg = memcgs.make("uoom_user", "64M")
    hog = host_task(waiters, cg, path)
    (cg / "memory.oom_control").write_text("1")
    k_before = host_to_the_limit(cg)
    hog.send("touch")
    wait_until(lambda: host_oom_control(cg)["under_oom"] == 1, 10, "under_oom 1")
    k_oom = host_oom_control(cg)
    stat = procfs.read_stat(hog.pid)
    k_state = stat.state if stat is not None else "gone"
    k_waiting = host_counters(cg)
    (cg / "memory.limit_in_bytes").write_text(str((k_before.usage + 1) * PG))
    hog.expect("ok")
    k_woken = host_oom_control(cg)
    k_after = host_counters(cg)

    model, pid, _, _ = model_task(path)
    memcg = model.tasks[pid].memcg
    assert memcg is not None and model.memcg_set("/t", "oom_kill_disable", 1) == 0
    model_to_the_limit(model, memcg)
    m_before = model_counters(memcg)
    m_sig = model.access(pid, B, 1, True)
    m_oom = model_oom_control(memcg)
    m_waiting = model_counters(memcg)
    assert model.memcg_set("/t", "limit_in_bytes", (m_before.usage + 1) * PG) == 0
    m_woken = model_oom_control(memcg)
    m_retry = model.access(pid, B, 1, True)
    m_after = model_counters(memcg)
    check_machine(model)
    print(f"kernel: state {k_state}, {k_oom} -> woken {k_woken}; {k_before} -> {k_waiting} -> {k_after}\n"
          f"model:  {m_sig}, {m_oom} -> woken {m_woken}; {m_before} -> {m_waiting} -> {m_after}")

    assert k_state == "D" and m_sig == MEMCG_OOM_WAIT
    assert k_oom == m_oom == NOTHING_WAITS | {"under_oom": 1}
    assert k_waiting == k_before and m_waiting == m_before
    assert k_woken == m_woken == NOTHING_WAITS
    assert m_retry is None and not model.memcgs.oom_waitq
    assert k_after - k_before == m_after - m_before == Counters(1, 0, 1)
