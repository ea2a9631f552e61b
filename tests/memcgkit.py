"""A model machine whose first process runs in a memory cgroup, a writer driven until it is killed, and
the v1 counters of a memcg on both sides (the host's with the per-CPU charge stocks drained): what the
memcg tests and their host comparisons share."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmlab.backend import Program, Settings
from vmlab.host.oracle import HostBackend
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.binfmts import STACK_TOP
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.memcontrol import MemCgroup
from vmlab.kernel.uapi import MADV_WILLNEED

from hostkit import on_cpu

MB = 1 << 20
PG = 4096


def memcg_machine(limit: int, ram: int = 256 * MB,
                  program: Program | None = None) -> tuple[ModelBackend, int, MemCgroup]:
    """A model machine of `ram` bytes whose first process (`program`, the built-in one by default)
    runs in memcg /t of `limit` bytes."""
    model = ModelBackend(ram)
    pid = model.start(program or Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=ram))
    assert model.memcg_create("/t", limit) == 0 and model.memcg_attach(pid, "/t") == 0
    memcg = model.memcgs.lookup("/t")
    assert memcg is not None
    return model, pid, memcg


def drain_cpu_batches(backend: ModelBackend | HostBackend, pid: int) -> None:
    """madvise(MADV_WILLNEED) of task `pid`'s top stack page, on either side: lru_add_drain() on its
    CPU (start_host_stepper pins the stepper to CPU 0; the model has one), so the pages that CPU's
    folio batches still hold are on their lists, and those unmapped meanwhile freed and uncharged."""
    assert backend.syscall(pid, "madvise", (STACK_TOP - PG, PG, MADV_WILLNEED)) == 0


def writes_until_killed(backend: ModelBackend | HostBackend, pid: int, addr: int, length: int,
                        stride: int) -> tuple[int, str | None]:
    """Write one byte every `stride` bytes of [addr, addr + length) until an access is refused: (the
    writes that went through, the signal that ended them, None when all did)."""
    done = 0
    for off in range(0, length, stride):
        sig = backend.access(pid, addr + off, 1, True)
        if sig is not None:
            return done, sig
        done += 1
    return done, None


@dataclass(frozen=True)
class Counters:
    """memory.usage_in_bytes, memory.kmem.usage_in_bytes, memory.memsw.usage_in_bytes, in pages."""

    usage: int
    kmem: int
    memsw: int

    def __sub__(self, other: Counters) -> Counters:
        return Counters(self.usage - other.usage, self.kmem - other.kmem, self.memsw - other.memsw)


def host_counters(cg: Path) -> Counters:
    """The v1 memcg's counters as the kernel shows them now."""
    def read(name: str) -> int:
        return int((cg / f"memory.{name}").read_text()) // PG
    return Counters(read("usage_in_bytes"), read("kmem.usage_in_bytes"), read("memsw.usage_in_bytes"))


def model_counters(memcg: MemCgroup) -> Counters:
    """The model memcg's counters."""
    return Counters(memcg.memory.usage, memcg.kmem.usage, memcg.memsw.usage)


def settled_host_counters(cg: Path, timeout: float = 10.0) -> Counters:
    """The counters once kmem stopped changing for 0.5 s (freed tables are uncharged after RCU)."""
    deadline = time.monotonic() + timeout
    last = host_counters(cg)
    while True:
        time.sleep(0.5)
        now = host_counters(cg)
        if now == last:
            return now
        if time.monotonic() > deadline:
            raise RuntimeError(f"{cg}: counters still moving after {timeout} s: {last} -> {now}")
        last = now


def drained_host_counters(cg: Path) -> Counters:
    """The settled counters with every CPU's charge stock given back, so that usage is what is really
    charged: a memory.limit_in_bytes just below the usage makes mem_cgroup_resize_max() call
    drain_all_stock() before it reclaims (a refusal, -EBUSY, comes after the drain: it is fine); the
    limit is then put back. The write is made from CPU 0, where start_host_stepper's tasks charge:
    drain_all_stock() drains the writer's own CPU at once but only schedules work on the others, and
    the limit is tried again before that work runs on a busy machine, so the group would be reclaimed
    (its page cache evicted) instead. A reclaim all the same (memory.stat pgpgout moved) is an error."""
    limit_file = cg / "memory.limit_in_bytes"
    limit = limit_file.read_text()
    usage = int((cg / "memory.usage_in_bytes").read_text())
    pgpgout = memcg_stat(cg)["pgpgout"]
    with on_cpu(0):
        try:
            limit_file.write_text(str(max(usage - PG, PG)))
        except OSError:
            pass  # -EBUSY: nothing left to reclaim once the stocks were drained
        finally:
            limit_file.write_text(limit)
    if memcg_stat(cg)["pgpgout"] != pgpgout:
        raise RuntimeError(f"{cg}: draining the charge stocks reclaimed pages, so the counters are off")
    return settled_host_counters(cg)


def memcg_stat(cg: Path) -> dict[str, int]:
    """memory.stat of a v1 memcg as a dict."""
    return {k: int(v) for k, v in (line.split() for line in (cg / "memory.stat").read_text().splitlines())}


def drained_model_counters(model: ModelBackend, memcg: MemCgroup) -> Counters:
    """The model memcg's counters with the charge and object stocks given back."""
    model.memcgs.drain_all_stock(model.memcgs.root)
    return model_counters(memcg)


def start_host_stepper(host: HostBackend, program: Program, cg: Path) -> int:
    """A stepper pinned to CPU 0 and moved into `cg` (what it charged before stays in the root)."""
    pid = host.start(program, Settings())
    os.sched_setaffinity(pid, {0})
    (cg / "cgroup.procs").write_text(str(pid))
    return pid


#: A workload in phases: (backend, pid, how to read the counters) -> the counters before the first
#: phase and after each.
Phases = Callable[[HostBackend | ModelBackend, int, Callable[[], Counters]], list[Counters]]


def phases_on_both(program: Program, cg: Path, work: Phases, settle: bool = False,
                   model_program: Program | None = None) -> tuple[list[Counters], list[Counters]]:
    """`work` run by a stepper pinned to CPU 0 in the host memcg `cg`, then by the first process of a
    model machine in a 64 MiB memcg (`model_program`, the built-in one by default), each reading its
    counters with every stock drained (on the host once the RCU-freed objects are freed too, when
    `settle`): (kernel, model), each phase's counters less those before the first. The model's
    invariants are checked."""
    def host_read() -> Counters:
        if settle:
            settled_host_counters(cg)
        return drained_host_counters(cg)

    with HostBackend(timeout=60) as host:
        pid = start_host_stepper(host, program, cg)
        kernel = work(host, pid, host_read)
    model, mpid, memcg = memcg_machine(64 * MB, program=model_program)
    got = work(model, mpid, lambda: drained_model_counters(model, memcg))
    check_machine(model)
    return [c - kernel[0] for c in kernel], [c - got[0] for c in got]


def host_to_the_limit(cg: Path) -> Counters:
    """Bring the memcg to its limit: every CPU's charge stock given back, memory.limit_in_bytes set to
    the usage (nothing in it is reclaimable without swap but its page cache); the counters then."""
    drained = drained_host_counters(cg)
    (cg / "memory.limit_in_bytes").write_text(str(drained.usage * PG))
    return drained


def model_to_the_limit(model: ModelBackend, memcg: MemCgroup) -> None:
    """host_to_the_limit() on the model: the stock given back, memory.limit_in_bytes set to the usage."""
    usage = drained_model_counters(model, memcg).usage
    assert memcg.set_limit(usage) == 0


def host_oom_control(cg: Path) -> dict[str, int]:
    """memory.oom_control of a v1 memcg as a dict (oom_kill_disable, under_oom, oom_kill)."""
    text = (cg / "memory.oom_control").read_text()
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


def model_oom_control(memcg: MemCgroup) -> dict[str, int]:
    """The model memcg's memory.oom_control as a dict."""
    return {k: int(v) for k, v in (line.split() for line in memcg.oom_control().splitlines())}


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `cond()` every 10 ms until true; fail naming `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)
