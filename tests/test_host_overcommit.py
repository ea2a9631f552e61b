"""Overcommit, model against the running kernel (Linux 6.18, no swap).

(a) mode 0: the largest single private writable mmap that succeeds is RAM + swap, in pages, on both
    (each at its own totalram_pages: the model's differs from the host's MemTotal, printed);
(b) mode 2: for a short window the test sets vm.overcommit_kbytes = Committed_AS + 2 GiB and
    vm.overcommit_memory = 2, runs mmap/brk/mprotect/mremap/fork/shmem steps in a stepper, and
    compares which fail with ENOMEM against the model given the same limit and the host's committed
    pages as an offset; the sysctls are restored in a finally. The kernel's check reads a percpu
    counter that may lag by up to nr_cpus * batch pages (util.py), so every step is sized so that the
    model gives the same answers with the offset moved by +-FUZZ (checked first);
(c) mode 0: Committed_AS deltas around each step of a workload, host /proc/meminfo (an exact sum)
    against the model's counter; other processes change Committed_AS too, so the workload is rerun
    (fresh processes) until every step's host delta has equalled the model's once (exact, 0 tolerance).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from vmlab.backend import Backend, Program, Settings
from vmlab.host.oracle import HostBackend
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.uapi import ENOMEM, MAP_NORESERVE, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE

PG = 4096
MIB = 1 << 20
R, RW = 1, 3
PRIV, SHARED, ANON, FIXED = 0x02, 0x01, 0x20, 0x10
PA = PRIV | ANON
BASE = 0x200000000  # a free area well below mmap_base, for MAP_FIXED steps
#: Larger than the percpu lag of the kernel's mode-2 check: 2 CPUs x 0.4% of 24 GiB / 2 = 94 MiB.
FUZZ = 128 * MIB
RUNS = 6
#: How far other processes may move Committed_AS during a mode-2 window for it to count.
QUIET_KB = 32 << 10

#: A step: ("mmap"|"munmap"|..., args) runs a syscall in the first process; ("fork",) forks it,
#: ("exit",) ends the newest child; ("brk+", bytes) moves the break by bytes from where it is (its result:
#: 0, or -ENOMEM when the break stayed); a fork's result is 0 or -errno.
Step = tuple[object, ...]


def meminfo_kb(field: str) -> int:
    """One /proc/meminfo field in kB, read in one small read (no buffering of our own)."""
    fd = os.open("/proc/meminfo", os.O_RDONLY)
    try:
        text = os.read(fd, 8192).decode()
    finally:
        os.close(fd)
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def sysctl_read(name: str) -> int:
    with open(f"/proc/sys/vm/{name}") as f:
        return int(f.read())


def sysctl_write(name: str, value: int) -> None:
    with open(f"/proc/sys/vm/{name}", "w") as f:
        f.write(str(value))


@dataclass
class Run:
    """The result and the committed change (kB) of each step, on one backend."""

    results: list[int]
    deltas: list[int]


def run_steps(backend: Backend, pid: int, steps: list[Step], committed_kb: Callable[[], int]) -> Run:
    """Run `steps` in process `pid` (and the children it forks), reading committed memory around each."""
    results, deltas, children = [], [], []
    for step in steps:
        before = committed_kb()
        name = step[0]
        if name == "fork":
            result = backend.fork(pid)
            if result > 0:
                children.append(result)
                result = 0  # pids differ between backends
        elif name == "exit":
            backend.exit(children.pop())
            result = 0
        elif name == "brk+":
            old = backend.syscall(pid, "brk", (0,))
            new = old + int(step[1])  # type: ignore[call-overload]
            result = 0 if backend.syscall(pid, "brk", (new,)) == new else -ENOMEM
        else:
            result = backend.syscall(pid, str(name), tuple(step[1:]))  # type: ignore[arg-type]
        deltas.append(committed_kb() - before)
        results.append(result)
    return Run(results, deltas)


def model_run(program: Program, settings: Settings, steps: list[Step], offset_pages: int = 0) -> Run:
    """The steps on a fresh model machine; `offset_pages` stands for the rest of the host's commitments."""
    model = ModelBackend()
    pid = model.start(program, settings)
    model.mem.vm_committed_as += offset_pages
    try:
        return run_steps(model, pid, steps, lambda: model.mem.vm_committed_as * 4)
    finally:
        model.close()


def model_committed_after_start(program: Program, settings: Settings) -> int:
    """The model's committed pages once the stepper has started."""
    model = ModelBackend()
    model.start(program, settings)
    try:
        return model.mem.vm_committed_as
    finally:
        model.close()


def failed(run: Run) -> list[bool]:
    """Which steps failed with ENOMEM."""
    return [r == -ENOMEM for r in run.results]


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to read and set vm.overcommit_* for the whole machine")
    if meminfo_kb("SwapTotal"):
        pytest.skip("the host has swap; these tests assume none (the model has none)")


# --- (a) mode 0: one request above RAM + swap fails ------------------------------------------------------

def test_mode0_boundary_is_totalram(root: None, host: HostBackend, program: Program) -> None:
    """The largest private writable mmap is totalram_pages (+ swap) pages, on the host and in the model."""
    if sysctl_read("overcommit_memory") != 0:
        pytest.skip("the host is not in overcommit mode 0")
    pid = host.start(program, Settings())
    host_pages = meminfo_kb("MemTotal") // 4
    at = host.syscall(pid, "mmap", (0, host_pages * PG, RW, PA, -1, 0))
    assert at > 0, f"host: mmap of totalram_pages = {host_pages} pages failed with {at}"
    assert host.syscall(pid, "munmap", (at, host_pages * PG)) == 0
    assert host.syscall(pid, "mmap", (0, (host_pages + 1) * PG, RW, PA, -1, 0)) == -ENOMEM
    assert host.syscall(pid, "mmap", (0, (host_pages + 1) * PG, RW, PA | MAP_NORESERVE, -1, 0)) > 0

    model = ModelBackend(24 << 30)
    mpid = model.start(program, Settings(ram=24 << 30))
    try:
        model_pages = model.mem.totalram_pages
        at = model.syscall(mpid, "mmap", (0, model_pages * PG, RW, PA, -1, 0))
        assert at > 0
        assert model.syscall(mpid, "munmap", (at, model_pages * PG)) == 0
        assert model.syscall(mpid, "mmap", (0, (model_pages + 1) * PG, RW, PA, -1, 0)) == -ENOMEM
    finally:
        model.close()
    print(f"mode 0 boundary: host totalram_pages {host_pages} (MemTotal {host_pages * 4} kB), "
          f"model (ram=24 GiB) {model_pages}: {model_pages - host_pages} pages more (boot reservations "
          f"the model does not make)")


# --- (c) Committed_AS deltas in mode 0 -----------------------------------------------------------------

def workload_deltas() -> list[Step]:
    """Small steps, one charging rule each (odd page counts so that a wrong rule shows)."""
    a, b, c = BASE, BASE + 0x1000000, BASE + 0x2000000
    return [
        ("mmap", a, 37 * PG, RW, PA | FIXED, -1, 0),  # +37
        ("mmap", b, 5 * PG, R, PA | FIXED, -1, 0),  # read-only: 0
        ("mmap", 0, 11 * PG, RW, PA | MAP_NORESERVE, -1, 0),  # NORESERVE in mode 0: 0
        ("mmap", c, 13 * PG, RW, SHARED | ANON | FIXED, -1, 0),  # the shmem object: +13
        ("munmap", a + 30 * PG, 7 * PG),  # -7
        ("mmap", a + 20 * PG, 16 * PG, RW, PA | FIXED, -1, 0),  # 10 replaced, 6 new: +6
        ("mprotect", b, 5 * PG, RW),  # gains write: +5
        ("mprotect", b, 5 * PG, R),  # untouched anon loses write: -5
        ("brk+", 9 * PG),  # +9
        ("brk+", -4 * PG),  # -4
        ("mremap", a, 36 * PG, 39 * PG, 0, 0),  # grows in place: +3
        ("mmap", a + 39 * PG, PG, R, PA | FIXED, -1, 0),  # a wall
        ("mremap", a, 39 * PG, 41 * PG, MREMAP_MAYMOVE, 0),  # moves, +2
        ("mremap", b, 5 * PG, 5 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0),  # b has no VM_ACCOUNT: 0
        ("mmap", b + 0x100000, 8 * PG, RW, PA | FIXED, -1, 0),  # +8
        ("mremap", b + 0x100000, 8 * PG, 8 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0),  # +8
        ("mremap", b + 0x100000, 8 * PG, 3 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, b + 0x200000),  # 0 (leak)
        ("munmap", b + 0x200000, 3 * PG),  # -3: the shrink's 5 pages stay committed
        ("fork",),  # + every VM_ACCOUNT page of the process
        ("exit",),  # - the same
        ("munmap", c, 13 * PG),  # the shmem object goes: -13
    ]


def test_committed_deltas_match(root: None, program: Program) -> None:
    """Committed_AS changes by what the model's counter changes, step by step (exact, with reruns)."""
    if sysctl_read("overcommit_memory") != 0:
        pytest.skip("the host is not in overcommit mode 0")
    steps = workload_deltas()
    want = model_run(program, Settings(), steps)
    assert all(r >= 0 for r in want.results), want.results
    seen = [False] * len(steps)
    got: list[list[int]] = []
    for _ in range(RUNS):
        with HostBackend(timeout=30) as host:
            pid = host.start(program, Settings())
            run = run_steps(host, pid, steps, lambda: meminfo_kb("Committed_AS"))
        assert run.results == want.results, (run.results, want.results)
        got.append(run.deltas)
        seen = [s or h == m for s, h, m in zip(seen, run.deltas, want.deltas, strict=True)]
        if all(seen):
            break
    missing = [(i, steps[i], want.deltas[i], [g[i] for g in got]) for i, ok in enumerate(seen) if not ok]
    assert not missing, f"steps whose host delta (kB) never equalled the model's ({len(got)} runs): {missing}"
    print(f"Committed_AS deltas (kB), model = host, after {len(got)} run(s): {want.deltas}")


def test_cap_sys_admin_dropped(root: None, host: HostBackend, program: Program) -> None:
    """Settings.cap_sys_admin = False: the host stepper runs without CAP_SYS_ADMIN (CapEff bit 21)."""
    pid = host.start(program, Settings(cap_sys_admin=False))
    status = host.view(pid, "status")
    cap_eff = int(next(x for x in status.splitlines() if x.startswith("CapEff:")).split()[1], 16)
    assert not cap_eff >> 21 & 1
    assert cap_eff, "only CAP_SYS_ADMIN is dropped"


# --- (b) mode 2 ------------------------------------------------------------------------------------------

def workload_mode2() -> list[Step]:
    """Steps of hundreds of MiB around a limit 2 GiB above the start's committed memory."""
    m = MIB
    a, b, c, d = BASE, BASE + (8 << 30), BASE + (16 << 30), BASE + (24 << 30)
    return [
        ("mmap", a, 768 * m, RW, PA | FIXED, -1, 0),  # ok
        ("mmap", b, 768 * m, RW, PA | FIXED, -1, 0),  # ok: 1536 committed
        ("mmap", c, 768 * m, RW, PA | FIXED, -1, 0),  # ENOMEM
        ("mmap", c, 768 * m, RW, PA | FIXED | MAP_NORESERVE, -1, 0),  # ENOMEM: NORESERVE ignored
        ("mmap", c, 768 * m, R, PA | FIXED, -1, 0),  # ok: not accounted
        ("mprotect", c, 768 * m, RW),  # ENOMEM: gaining write charges
        ("brk+", 192 * m),  # ok
        ("brk+", 384 * m),  # refused: the break stays
        ("mremap", a, 768 * m, 1280 * m, MREMAP_MAYMOVE, 0),  # ENOMEM
        ("munmap", b, 768 * m),
        ("mremap", a, 768 * m, 1280 * m, MREMAP_MAYMOVE, 0),  # ok now
        ("fork",),  # ENOMEM: the copy would double it
        ("munmap", a, 1280 * m),
        ("fork",),  # ok
        ("exit",),
        ("mmap", d, 1024 * m, RW, SHARED | ANON | FIXED, -1, 0),  # ok: the shmem object is charged
        ("mmap", d + (2 << 30), 1024 * m, RW, SHARED | ANON | FIXED, -1, 0),  # ENOMEM
        ("mmap", d + (2 << 30), 1024 * m, RW, SHARED | ANON | FIXED | MAP_NORESERVE, -1, 0),  # ENOMEM
        ("munmap", d, 1024 * m),
    ]


@contextlib.contextmanager
def mode2(limit_kb: int, admin_reserve_kb: int) -> Iterator[None]:
    """vm.overcommit_memory = 2 with vm.overcommit_kbytes = limit_kb and vm.admin_reserve_kbytes,
    all restored on the way out (the mode first)."""
    names = ("overcommit_memory", "overcommit_ratio", "overcommit_kbytes", "admin_reserve_kbytes")
    saved = {n: sysctl_read(n) for n in names}
    try:
        sysctl_write("admin_reserve_kbytes", admin_reserve_kb)
        sysctl_write("overcommit_kbytes", limit_kb)
        sysctl_write("overcommit_memory", 2)
        yield
    finally:
        sysctl_write("overcommit_memory", saved["overcommit_memory"])
        sysctl_write("admin_reserve_kbytes", saved["admin_reserve_kbytes"])
        if saved["overcommit_kbytes"]:
            sysctl_write("overcommit_kbytes", saved["overcommit_kbytes"])
        else:
            sysctl_write("overcommit_ratio", saved["overcommit_ratio"])  # also clears overcommit_kbytes
        for name, value in saved.items():
            assert sysctl_read(name) == value, f"vm.{name} not restored"


def workload_admin() -> list[Step]:
    """Steps that a 1 GiB admin reserve refuses only to a process without CAP_SYS_ADMIN."""
    m = MIB
    a, b, c = BASE, BASE + (8 << 30), BASE + (16 << 30)
    return [
        ("mmap", a, 512 * m, RW, PA | FIXED, -1, 0),  # ok
        ("mmap", b, 256 * m, RW, PA | FIXED, -1, 0),  # ok
        ("mmap", c, 512 * m, RW, PA | FIXED, -1, 0),  # root only
        ("fork",),  # refused to both
        ("munmap", c, 512 * m),
        ("fork",),  # root only
    ]


def mode2_compare(program: Program, steps: list[Step], admin_kb: int, cap_sys_admin: bool) -> Run:
    """Run `steps` on the host in mode 2 with a limit 2 GiB above its committed memory and on the model
    with the same limit and offset; check they agree. The model's run.

    A window counts only when it was quiet: no answer lies within FUZZ of the limit given the offset
    measured after the start (other processes may have moved it since the limit was chosen), and the
    host's Committed_AS moved by the model's total over the steps, within QUIET_KB. Up to 3 windows.
    """
    if sysctl_read("overcommit_memory") != 0:
        pytest.skip("the host is not in overcommit mode 0 (the test switches 0 -> 2 -> 0)")
    for _ in range(3):
        limit_kb = meminfo_kb("Committed_AS") + (2 << 20)
        settings = Settings(overcommit_memory=2, overcommit_ratio=0, overcommit_kbytes=limit_kb,
                            user_reserve_kbytes=sysctl_read("user_reserve_kbytes"),
                            admin_reserve_kbytes=admin_kb, cap_sys_admin=cap_sys_admin)
        with mode2(limit_kb, admin_kb), HostBackend(timeout=30) as host:
            pid = host.start(program, settings)
            host_start_kb = meminfo_kb("Committed_AS")
            got = run_steps(host, pid, steps, lambda: 0)
            host_end_kb = meminfo_kb("Committed_AS")
        offset = host_start_kb // 4 - model_committed_after_start(program, settings)
        want = model_run(program, settings, steps, offset)
        fuzz = FUZZ // PG
        lo, hi = (model_run(program, settings, steps, offset + s) for s in (-fuzz, fuzz))
        noise = host_end_kb - host_start_kb - sum(want.deltas)
        if failed(lo) == failed(want) == failed(hi) and abs(noise) <= QUIET_KB:
            break
    else:
        pytest.skip("other processes moved Committed_AS by more than the test tolerates in 3 windows")
    assert got.results == want.results, list(zip(steps, got.results, want.results, strict=True))
    print(f"mode 2, limit {limit_kb} kB, host start {host_start_kb} kB, cap_sys_admin {cap_sys_admin}, "
          f"noise {noise} kB: ENOMEM at steps {[i for i, f in enumerate(failed(want)) if f]}")
    return want


def test_mode2_enomem_matches(root: None, program: Program) -> None:
    """Which steps fail with ENOMEM under a 2 GiB headroom agrees between the host and the model."""
    want = mode2_compare(program, workload_mode2(), sysctl_read("admin_reserve_kbytes"), True)
    assert any(failed(want)) and not all(failed(want))


def test_mode2_admin_reserve(root: None, program: Program) -> None:
    """With vm.admin_reserve_kbytes at 1 GiB, a process without CAP_SYS_ADMIN is refused what root gets,
    on both."""
    steps = workload_admin()
    root_run = mode2_compare(program, steps, 1 << 20, True)
    user_run = mode2_compare(program, steps, 1 << 20, False)
    assert failed(root_run) == [False, False, False, True, False, False]
    assert failed(user_run) == [False, False, True, True, False, True]
