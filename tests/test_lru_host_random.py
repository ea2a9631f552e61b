"""Random workloads under a memory cgroup's limit, on the running kernel and in the model: which pages of
each file are left in the page cache must be the same, page for page.

Each example runs a short random plan in a stepper inside a 64 MiB cgroup-v1 memory cgroup (the setup,
pinning and draining of test_lru_host: on_host, on_model) over three sparse files on ext4, whose
readahead brings them in as large folios: A (8 MiB), B (24 MiB) and S (160 MiB, 2.5 times the limit).
The steps: read() a file whole in 4 KiB, 64 KiB or 1 MiB calls; read on through a third of it; pread()
every n-th page; map a file shared, load one byte of every n-th page and unmap it; map one and load
every n-th page between eight slices of a read of S (each pass of loads after a TLB flush: flush_tlb).
Reclaim then works on large folios, mapped and not, referenced through read() and through young PTEs: it
must take each folio whole and decide for it once, as the kernel does (vmscan._cache_folio_frames,
folio_check_references). Before it did, 9 of 12 such plans left different pages cached in the model; 2
of 12 before it decided once per folio.

Compared: mincore residency of the three files. Not compared: memory.failcnt, which counts failed
charges of the kernel's per-CPU charge batches (MEMCG_CHARGE_BATCH, 64 pages), not modelled (seen:
equal in some plans, 280 against 294 in another).

The kernel was not always the same from run to run: on a fresh machine of this kind one plan left
A with 672, 672 and 668 pages cached in three runs (the model: 672), and 2 of about 8 test runs
failed once (Hypothesis then reports the example flaky). The cause was the machine's DAMON pageout,
which reclaims unmapped file pages from outside the memcg (interference.py); host tests
now pause it, and in 4 test runs since, every plan's first kernel run was the model's. A plan whose
pages differ is still run again once on both sides (KERNEL_TRIES, each differing run printed) for a
disturbance not yet known: the model must be exactly one kernel run.

To rerun one plan by hand, print it from a failing example and call run_plan() with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from test_lru_host import (
    AT_FDCWD,
    MAP_SHARED,
    MB,
    O_RDONLY,
    PAGE,
    PROT_READ,
    Run,
    host_or_skip,
    on_host,
    on_model,
)
from vmlab.host.memcg_v1 import MemcgV1
from vmlab.host.oracle import HostBackend

pytestmark = pytest.mark.host

TAG = os.getpid()
PROT_NONE = 0
A, B, S = (f"/tmp/vmlab-lru-random-{name}-{TAG}.dat" for name in ("a", "b", "s"))
SIZES = {A: 8 * MB, B: 24 * MB, S: 160 * MB}
#: Examples per run in the `ci` profile (3-5 s each); other profiles keep their own.
EXAMPLES = 20 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else settings.default.max_examples

#: Runs of a plan on both sides until the model's pages are one kernel run's (see the module text).
KERNEL_TRIES = 2

#: One step: (kind, file, read size, page stride).
Step = tuple[str, str, int, int]

STEPS = st.tuples(st.sampled_from(["read", "read", "read_on", "pread", "map", "map_during_scan"]),
                  st.sampled_from([A, B, S]), st.sampled_from([4096, 64 * 1024, MB]),
                  st.sampled_from([7, 16, 100, 333]))


def _step(step: Step) -> Step:
    """The step as it runs: pread and mappings over A or B only (S is what the scans read)."""
    kind, path, chunk, stride = step
    if kind in ("pread", "map", "map_during_scan") and path == S:
        path = A
    return kind, path, chunk, stride


def run_plan(plan: list[Step]) -> Callable[[Run], None]:
    """The workload of a plan: its steps in order, each file opened once. Each mapping is placed one
    page past a 2 MiB boundary (MAP_FIXED at map_address), so that no 2 MiB of the file lines up with
    a 2 MiB-aligned address: the kernel maps a 2 MiB page-cache folio that does with one PMD
    (FilePmdMapped, no page table charged), the model with 512 PTEs, a divergence this test is not
    about (explore seed: B's 24 MiB mapping, 10 PMDs on the kernel, 10 more page tables charged in
    the model, which then evicted one 2 MiB folio of S more)."""
    def work(run: Run) -> None:
        fds: dict[str, int] = {}

        def fd(path: str) -> int:
            if path not in fds:
                fds[path] = run.call("openat", AT_FDCWD, path, O_RDONLY)
            return fds[path]

        for number, (kind, path, chunk, stride) in enumerate(map(_step, plan)):
            size = SIZES[path]
            if kind == "read":
                run.call("lseek", fd(path), 0, 0)
                while run.call("read", fd(path), run.buf, chunk) > 0:
                    pass
            elif kind == "read_on":
                for _ in range(size // chunk // 3):
                    if run.call("read", fd(path), run.buf, chunk) <= 0:
                        break
            elif kind == "pread":
                for index in range(0, size // PAGE, stride):
                    run.call("pread64", fd(path), run.buf, PAGE, index * PAGE)
            else:
                addr = run.call("mmap", map_address(number), size, PROT_READ, MAP_SHARED | MAP_FIXED,
                                fd(path), 0)
                for _ in range(8 if kind == "map_during_scan" else 1):
                    flush_tlb(run, addr, size)
                    for index in range(0, size // PAGE, stride):
                        run.access(addr + index * PAGE, 1)
                    if kind == "map_during_scan":
                        for _ in range(SIZES[S] // MB // 8):
                            run.call("read", fd(S), run.buf, MB)
                if kind == "map":
                    assert run.call("munmap", addr, size) == 0
    return work


#: Where the plan's mappings go: a region no mapping of the stepper is near, one per step.
MAP_BASE = 0x600000000000
MAP_FIXED = 0x10


def map_address(step: int) -> int:
    """The address of step `step`'s mapping: one page past a 2 MiB (and 256 MiB) boundary."""
    return MAP_BASE + step * (256 * MB) + PAGE


def flush_tlb(run: Run, addr: int, size: int) -> None:
    """mprotect(PROT_NONE) of the mapping and back: the kernel flushes the CPU's TLB of it, and each load
    after sets its PTE's accessed bit again. Reclaim clears those bits without a flush on x86
    (ptep_clear_flush_young), and a load through a translation the TLB still holds does not set the
    bit: whether it does then depends on what else ran on the CPU meanwhile. The model has no TLB
    (every load sets the bit), and its mprotect keeps the bits as the kernel's does (pte_modify)."""
    assert run.call("mprotect", addr, size, PROT_NONE) == 0
    assert run.call("mprotect", addr, size, PROT_READ) == 0


#: A plan the kernel ran two ways before the loads flushed the TLB: A's touched pages (every 7th)
#: kept young through the fifth slice of S, or some of them evicted and the next load's read-around
#: bringing the whole of A back (A 2,048 pages cached and S 13,312, in about 2 runs of 3, against
#: 402 and 15,360 in the others and in the model). With flush_tlb, 402 and 15,360 in 6 runs of 6.
TOUCHED_PAGES_KEPT_YOUNG = [("map_during_scan", A, 4096, 7), ("pread", A, 4096, 16)]

#: Explore seed 311's plan: B's loads through a shared mapping fault three separate fault-around
#: windows of B's last 1 MiB folio; munmap's zap marks it accessed once for each (three batches of
#: its PTEs), which activates it. The model marked it once per folio, and the scan of S evicted it:
#: B 592 pages cached on the kernel, 336 in the model, and S 12,800 against 13,312.
THREE_RUNS_OF_ONE_FOLIO = [("read_on", B, MB, 7), ("read_on", A, 4096, 7), ("map", B, 4096, 100),
                           ("read", A, MB, 16), ("map_during_scan", S, MB, 100), ("read_on", A, MB, 100)]


@settings(max_examples=EXAMPLES)
@given(st.lists(STEPS, min_size=2, max_size=6))
@example(THREE_RUNS_OF_ONE_FOLIO)
@example(TOUCHED_PAGES_KEPT_YOUNG)
def test_random_workload_leaves_the_kernels_pages_cached(plan: list[Step]) -> None:
    """The same pages of each file stay cached on the kernel and in the model."""
    program = host_or_skip()
    work = run_plan(plan)

    def observe(run: Run, cg: MemcgV1) -> dict[str, list[int]]:
        host = run.backend
        assert isinstance(host, HostBackend)
        return {path: host.residency(path) for path in SIZES}

    try:
        for attempt in range(1, KERNEL_TRIES + 1):
            kernel, flushes = on_host(program, SIZES, work, observe)
            model = on_model(SIZES, work, flush_before=flushes)
            got = {path: model.residency(path) for path in SIZES}
            if got == kernel:
                break
            assert isinstance(kernel, dict)
            print(f"attempt {attempt}: pages cached (kernel, model) "
                  f"{ {Path(p).name: (len(kernel[p]), len(got[p])) for p in SIZES} }")
    finally:
        for path in SIZES:
            Path(path).unlink(missing_ok=True)
    assert isinstance(kernel, dict)
    counts = {Path(p).name: (len(kernel[p]), len(got[p])) for p in SIZES}
    assert got == kernel, f"plan {list(map(_step, plan))}: pages cached (kernel, model) {counts}"
