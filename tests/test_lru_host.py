"""The active/inactive LRU against the running kernel (classic two lists, no MGLRU; cgroup v1).

The same workload runs in a stepper inside a cgroup-v1 memory cgroup the test makes (and removes) and
in the model; then the LRU state of every cached page of the file is compared page for page: on a
list, active, referenced (host: /proc/kpageflags of the page's frame, see vmlab.host.memcg_v1; model:
the same bits of its mem_map).

Determinism on the host:
- The stepper is pinned to CPU 0 before it joins the cgroup, and every workload ends with
  madvise(MADV_WILLNEED) of its anonymous buffer (madvise_willneed() calls lru_add_drain() on that
  CPU), so the per-CPU folio batches (lru_add, lru_activate: up to 31 small folios each, mm/swap.c;
  a large folio flushes its batch at once) are empty when the flags are read: no page is left off
  its list or with an activation still queued. Seen without it: a file mapped and read through
  faults kept its last two pages (order-0 folios at EOF) off the LRU in 3 runs of 4, even after an
  munmap() (which does not drain here).
- The files are sparse (ftruncate): readahead of a hole completes synchronously (ext4_mpage_readpages
  zero-fills it, no bio), so filemap_get_read_batch() never stops early at a folio still under I/O,
  and which folios a read() marks accessed does not depend on the disk. Folio sizes come from
  readahead's orders, as for data (tests/test_diff_readahead.py).
With both, every comparison here is exact, and repeated runs gave the same page states. Once in a
full CI run the kernel still left 4 pages of mmap_twice off the LRU after the drain, with no outside
event in /proc/vmstat (not seen again in 60 runs of the case alone): the likely cause is the
machine's DAMON pageout, which isolates unmapped file folios from outside the memcg and is now paused
during host tests (interference.py). A run that leaves any page off the LRU is still
discarded and the case run again (interference.until_settled, up to 5 runs, each discarded one
printed): no state after the drain has a page off the LRU.
memory.stat's active_file/inactive_file are per-CPU counters folded in by rstat flushes; read after
a periodic flush of the whole tree (traced: Run.wait_for_flush) they agree exactly with the
kpageflags census (checked in one case; 10 runs of 10). The test read them once two readings 2.5 s
apart agreed, with a 64-page tolerance, because one reading in several runs was 22 pages low: the
flush worker's timer is deferrable, so two readings with no flush between them could agree and
both be stale.

The model runs every workload as the host does: in a 64 MiB v1 memcg (on a 256 MiB machine, so only
the memcg's limit ever reclaims), its pages charged to the memcg and reclaimed from it
(memcontrol.py, vmscan.try_to_free_mem_cgroup_pages).

The one-time scan: a hot file A read twice (activated), a file B read once, then one sequential read
of a file four times the 64 MiB limit. The kernel keeps all of A (active) and none of B, and so does
the model; the scan file's resident tail is the same, page for page (measured: 13,312 pages, 26
folios of 2 MiB, in 5 runs of 5), and so is the memcg's failcnt. What is left for the tail is the
limit less A, the buffer and the kernel's own charges, in whole 2 MiB folios: readahead brings the scan
in as 2 MiB folios, and reclaim takes a folio whole (isolate_lru_folios counts its 512 pages against
a batch of 32), so a failed 512-page charge frees one folio. The model keeps a large page-cache
folio's frames as separate LRU entries and takes them together (vmscan._cache_folio_frames); before
it did, it freed 32 pages at a time and was off by up to a folio (13,226 pages, failcnt 53 for 95).
The model's plain-LRU policy loses A: why the kernel has two lists.

A read of a file larger than the limit: on both, usage stays at the limit, the memcg fails charges
(failcnt) and reclaims its page cache, and nobody is OOM-killed; usage, failcnt, the cache and the
file's residency are the same (measured: 15,936, 95, 15,360 and 15,360 pages, in 5 runs of 5).
"""

from __future__ import annotations

import os
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vmlab.backend import Backend, Program, Settings
from vmlab.host import memcg_v1, rstat
from vmlab.host.memcg_v1 import MemcgV1, PageLru, file_lru_flags, lru_string, pin_to_cpu
from vmlab.host.oracle import HostBackend
from vmlab.kernel import vmscan
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.memcontrol import FLUSH_TIME_NS, flush_memcg_stats

from hostkit import off_cpu
from interference import undisturbed, until_settled

pytestmark = pytest.mark.host

MB = 1 << 20
PAGE = 4096
RW, PRIVATE_ANON_POPULATE = 0x3, 0x22 | 0x8000
O_RDONLY, AT_FDCWD = 0, -100
PROT_READ, MAP_SHARED, MADV_RANDOM, MADV_WILLNEED = 1, 1, 1, 3
POSIX_FADV_NORMAL, POSIX_FADV_NOREUSE = 0, 5
#: Per test process, so that concurrent runs (several worktrees, CI) neither replace nor touch each
#: other's files (seen with two runs at once: pages active and referenced where one run leaves them
#: active only, pages dropped from under a run, the file gone before the model read it).
TAG = os.getpid()
DATA = f"/tmp/vmlab-lru-host-{TAG}.dat"
FILE_SIZE = 8 * MB
NPAGES = FILE_SIZE // PAGE
LIMIT = 64 * MB
#: The model machine's RAM: room for everything, so only the memcg's limit reclaims.
MODEL_RAM = 256 * MB
MEMCG = "/vmlab_lru"
#: A PMD-sized folio: readahead's largest, the unit in which the memcgs below are charged and reclaimed.
FOLIO_PAGES = 512
BUF = 2 * MB
#: How long Run.wait_for_flush waits for the periodic statistics flush (its period is 2 s).
FLUSH_TIMEOUT_S = 10.0


@dataclass
class Run:
    """One backend with its worker process and that process's read buffer, counting the workload's
    steps (each syscall and access): on the host it records when each began, so that a traced memcg
    statistics flush can be placed between two steps; in the model it flushes before the steps the
    host flushed before (`flush_before`)."""

    backend: Backend
    pid: int
    buf: int
    #: Host: CLOCK_MONOTONIC at the start of each step; model: one entry per step (0).
    starts: list[int] = field(default_factory=list)
    flush_before: frozenset[int] = frozenset()
    #: Host: the trace of the kernel's statistics flushes (wait_for_flush); model: None.
    trace: rstat.FlushTrace | None = None

    def _step(self) -> None:
        """Count a step; in the model, flush the statistics first if the host did at this point."""
        if isinstance(self.backend, ModelBackend):
            if len(self.starts) in self.flush_before:
                flush_memcg_stats(self.backend.mem)
            self.starts.append(0)
        else:
            self.starts.append(time.monotonic_ns())

    def call(self, name: str, *args: int | str) -> int:
        """A syscall in the worker; its result."""
        self._step()
        return self.backend.syscall(self.pid, name, args)

    def wait_for_flush(self) -> None:
        """Host: return once the kernel's periodic worker has flushed the statistics of every memcg
        (they are exact until they next change). Not a sleep of its 2 s period: the worker's timer is
        deferrable (stats_flush_dwork) and does not wake an idle CPU, and a CI run once saw no flush
        in 2.5 s of sleep. Model: nothing (on_model replays the kernel's flushes where they fell)."""
        if self.trace is not None:
            self.trace.wait_for_root_flush(timeout=FLUSH_TIMEOUT_S)

    def access(self, addr: int, length: int) -> None:
        """Loads of one byte of each page of [addr, addr + length) in the worker; they must not fault."""
        self._step()
        assert self.backend.access(self.pid, addr, length, False) is None

    def drain(self) -> None:
        """madvise(MADV_WILLNEED) of the anonymous buffer: madvise_willneed() walks it for swap
        entries (none) and calls lru_add_drain() on the worker's CPU, nothing else (a no-op in the
        model, whose LRU has no per-CPU batches)."""
        assert self.call("madvise", self.buf, BUF, MADV_WILLNEED) == 0


def _sparse(path: str, size: int) -> None:
    """A fresh sparse file (no page of it cached)."""
    Path(path).unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def host_or_skip() -> Program:
    """The stepper, or a skip saying why the host part cannot run (no v1 memory controller, or no
    memcg_flush_stats tracepoint to place the statistics flushes by)."""
    from hostutil import program_or_skip

    program = program_or_skip()
    reason = memcg_v1.available() or rstat.available()
    if reason:
        pytest.skip(reason)
    return program


def on_host(program: Program, sizes: dict[str, int], work: Callable[[Run], None],
            observe: Callable[[Run, MemcgV1], object], limit: int = LIMIT) -> tuple[object, frozenset[int]]:
    """Make the files, run `work` in a stepper pinned to CPU 0 inside a new v1 memcg of `limit`, then
    `observe`; the process is killed and the cgroup removed whatever happens. Returns what `observe`
    saw and the steps of the workload before which the kernel flushed the memcg statistics (for
    on_model to do the same).

    The flushes (of the root, by the periodic worker, or of the test's memcg) are traced from the
    memcg's creation to the end of the workload (vmlab.host.rstat) and placed by when each step
    began: a flush during step k is taken as one before step k + 1. Reclaim and the refault test read
    the statistics as last flushed (memcontrol.py), so where a flush falls changes what the kernel
    keeps. The workload starts just after a periodic flush, so that one of less than its 2 s period
    sees none but that one, before its first step, in every run (it took 0.9-1.1 s to pread() the
    benchmark's workload in test_thrashing_host; started anywhere, half its runs saw a flush inside,
    at steps that spread the kernel's pages read over 5 %).

    A run disturbed from outside (drop_caches, global reclaim or compaction by others: what the memcg
    does not keep away) is discarded and run again (interference.undisturbed, each discarded run
    reported). Seen under bench/hostload.py with drop_caches every 0.3 s: 18 runs in 100 of
    mmap_random_twice with 168-1162 pages off the LRU ('-': dropped between the census's mincore and
    its faults, then read back into the census's own per-CPU batch).

    The test process itself keeps off CPU 0 meanwhile (hostkit.off_cpu). Measured on
    test_thrashing_host's mmap workload at 0.9 of the working set: with this process on CPU 1, the
    kernel read 20,145 pages in 10 runs of 10; with it on CPU 0 beside the stepper, 17,757-19,364 in
    6 runs; left to the scheduler, 12 runs of 36 read 17,052-19,502 and two 20,769 and 21,181 (the
    model reads 20,803; two of those runs failed the test's 12 %)."""
    def once() -> tuple[object, frozenset[int]]:
        for path, size in sizes.items():
            _sparse(path, size)
        with (off_cpu(0), rstat.FlushTrace(f"vmlab_lru_{os.getpid()}") as trace,
              MemcgV1(f"vmlab_lru_{os.getpid()}", limit) as cg, HostBackend(timeout=60) as host):
            born = time.monotonic_ns()
            [run] = host_workers(host, program, [cg], trace)
            trace.wait_for_root_flush()
            work(run)
            run.drain()
            flush_before = flushes_before(trace, run.starts, born, [cg])
            return observe(run, cg), flush_before
    return undisturbed(once)


def host_workers(host: HostBackend, program: Program, memcgs: list[MemcgV1],
                 trace: rstat.FlushTrace) -> list[Run]:
    """One stepper in each of `memcgs`, pinned to CPU 0 before it joins, with its read buffer; their
    Runs share one step count (a workload's steps, whichever process takes them) and `trace`."""
    starts: list[int] = []
    runs: list[Run] = []
    for cg in memcgs:
        pid = host.start(program, Settings())
        pin_to_cpu(pid, 0)
        cg.attach(pid)
        runs.append(Run(host, pid, host.syscall(pid, "mmap", (0, BUF, RW, PRIVATE_ANON_POPULATE, -1, 0)),
                        starts=starts, trace=trace))
    return runs


def model_workers(model: ModelBackend, memcgs: list[str], flush_before: frozenset[int],
                  limit: int = LIMIT) -> list[Run]:
    """host_workers in the model: one process in each new memcg of `limit` at `memcgs`, the kernel's
    flushes (`flush_before`) to be replayed at the shared step count."""
    starts: list[int] = []
    runs: list[Run] = []
    for path in memcgs:
        pid = model.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=MODEL_RAM))
        assert model.memcg_create(path, limit) == 0 and model.memcg_attach(pid, path) == 0
        runs.append(Run(model, pid, model.syscall(pid, "mmap", (0, BUF, RW, PRIVATE_ANON_POPULATE, -1, 0)),
                        starts=starts, flush_before=flush_before))
    return runs


def model_finish(model: ModelBackend, run: Run) -> None:
    """After a workload in the model: the kernel's flush after its last step, if it made one; the
    model's own flush worker must not have run (the workload took less than FLUSH_TIME of simulated
    time); the machine's invariants."""
    if len(run.starts) in run.flush_before:
        flush_memcg_stats(model.mem)
    assert model.mem.clock.now_ns < FLUSH_TIME_NS, "the model's own statistics flush ran"
    check_machine(model)


def flushes_before(trace: rstat.FlushTrace, starts: list[int], born: int,
                   memcgs: list[MemcgV1]) -> frozenset[int]:
    """The steps (indexes into `starts`, the CLOCK_MONOTONIC of each step's start; len(starts): after
    the last) before which the kernel flushed the root's statistics or those of one of `memcgs`,
    between `born` (the memcgs' creation) and now: a flush during step k counts as one before k + 1."""
    end = time.monotonic_ns()
    ours = {rstat.ROOT_ID} | {rstat.cgroup_id(cg.path) for cg in memcgs}
    return frozenset(bisect_right(starts, f.time_ns) for f in trace.flushes()
                     if f.flushed and f.memcg_id in ours and born <= f.time_ns <= end)


def on_model(sizes: dict[str, int], work: Callable[[Run], None], plain: bool = False,
             flush_before: frozenset[int] = frozenset(), limit: int = LIMIT) -> ModelBackend:
    """Make the files, run `work` in the model machine (MODEL_RAM, `plain` LRU or the two lists) in a
    memcg of `limit` (as on the host), flushing the memcg statistics before the steps `flush_before`
    names (what on_host saw the kernel do). The model's own flush worker must not run meanwhile: the
    workload takes less than FLUSH_TIME of simulated time."""
    for path, size in sizes.items():
        _sparse(path, size)
    model = ModelBackend(MODEL_RAM)
    [run] = model_workers(model, [MEMCG], flush_before, limit)
    if plain:
        vmscan.set_lru_policy(model.mem, "plain")
    work(run)
    run.drain()
    model_finish(model, run)
    return model


def model_lru(model: ModelBackend, path: str) -> dict[int, PageLru]:
    """The model's file pages by index, with the kpageflags bits the host comparison reads."""
    inode = model._inode(path)
    return {i: PageLru.from_kpf(model.kpageflags(pfn)) for i, pfn in inode.i_pages.items()}


# --- the workloads ---------------------------------------------------------------------------------

def read_pass(path: str, chunk: int) -> Callable[[Run], None]:
    """Open `path` and read() it from start to end in `chunk`-byte calls."""
    def work(run: Run) -> None:
        fd = run.call("openat", AT_FDCWD, path, O_RDONLY)
        while run.call("read", fd, run.buf, chunk) > 0:
            pass
        run.call("close", fd)
    return work


def pread_every(path: str, stride: int) -> Callable[[Run], None]:
    """pread() 4 KiB at page 0, stride, 2*stride, ... of `path`."""
    def work(run: Run) -> None:
        fd = run.call("openat", AT_FDCWD, path, O_RDONLY)
        for index in range(0, NPAGES, stride):
            assert run.call("pread64", fd, run.buf, PAGE, index * PAGE) == PAGE
        run.call("close", fd)
    return work


def map_touch_unmap(path: str, advice: int | None = None,
                    fadvice: tuple[int, ...] = ()) -> Callable[[Run], None]:
    """mmap MAP_SHARED the whole file (after posix_fadvise `fadvice` on the file, in turn; with madvise
    `advice`), read one byte of every page, munmap."""
    def work(run: Run) -> None:
        fd = run.call("openat", AT_FDCWD, path, O_RDONLY)
        for hint in fadvice:
            assert run.call("fadvise64", fd, 0, 0, hint) == 0
        addr = run.call("mmap", 0, FILE_SIZE, PROT_READ, MAP_SHARED, fd, 0)
        if advice is not None:
            assert run.call("madvise", addr, FILE_SIZE, advice) == 0
        run.access(addr, FILE_SIZE)
        assert run.call("munmap", addr, FILE_SIZE) == 0
        run.call("close", fd)
    return work


def steps(*works: Callable[[Run], None]) -> Callable[[Run], None]:
    """The workloads one after the other."""
    def work(run: Run) -> None:
        for w in works:
            w(run)
    return work


#: name -> (workload, the kernel's page-state counts as measured here: A active, I inactive,
#: lower case referenced).
CASES: dict[str, tuple[Callable[[Run], None], dict[str, int]]] = {
    # One read marks a folio referenced; a second read activates it (folio_mark_accessed's two steps).
    "read_4k_once": (read_pass(DATA, PAGE), {"i": NPAGES}),
    "read_4k_twice": (steps(read_pass(DATA, PAGE), read_pass(DATA, PAGE)), {"A": NPAGES}),
    # Two 2 KiB reads of each page in a row are one access: the second is in the folio the previous
    # read ended in (pos_same_folio), so one pass never activates.
    "read_2k_once": (read_pass(DATA, 2048), {"i": NPAGES}),
    "read_1m_once": (read_pass(DATA, MB), {"i": NPAGES}),
    "read_1m_twice": (steps(read_pass(DATA, MB), read_pass(DATA, MB)), {"A": NPAGES}),
    # 6.18 marks every folio of a read's batch, not only the first (all 2048 pages active).
    "read_4k_then_1m": (steps(read_pass(DATA, PAGE), read_pass(DATA, MB)), {"A": NPAGES}),
    # A second access to one page activates its whole folio: after 1 MiB reads the first 512 pages
    # are order-0 folios, then 4- and 16-page ones (800 active); after 4 KiB reads the folios grow
    # to 512 pages and only 27 pages (in folios no pread touched) stay inactive.
    "read_1m_then_pread_16": (steps(read_pass(DATA, MB), pread_every(DATA, 16)), {"A": 800, "i": 1248}),
    "read_4k_then_pread_16": (steps(read_pass(DATA, PAGE), pread_every(DATA, 16)), {"A": 2021, "i": 27}),
    # A mapping's use is seen at munmap (young PTEs of a VMA with recency): referenced, then active.
    "mmap_once": (map_touch_unmap(DATA), {"i": NPAGES}),
    "mmap_twice": (steps(map_touch_unmap(DATA), map_touch_unmap(DATA)), {"A": NPAGES}),
    "read_then_mmap": (steps(read_pass(DATA, PAGE), map_touch_unmap(DATA)), {"A": NPAGES}),
    # MADV_RANDOM takes the recency away (vma_has_recency): nothing is marked.
    "mmap_random_twice": (steps(map_touch_unmap(DATA, MADV_RANDOM), map_touch_unmap(DATA, MADV_RANDOM)),
                          {"I": NPAGES}),
    # So does POSIX_FADV_NOREUSE on the file mapped (FMODE_NOREUSE), until POSIX_FADV_NORMAL ends it.
    "mmap_noreuse_twice": (steps(map_touch_unmap(DATA, fadvice=(POSIX_FADV_NOREUSE,)),
                                 map_touch_unmap(DATA, fadvice=(POSIX_FADV_NOREUSE,))), {"I": NPAGES}),
    "mmap_noreuse_then_normal": (steps(map_touch_unmap(DATA, fadvice=(POSIX_FADV_NOREUSE, POSIX_FADV_NORMAL)),
                                       map_touch_unmap(DATA)), {"A": NPAGES}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_page_lru_states_agree_with_kernel(name: str, files: list[str]) -> None:
    """Every cached page of the file is on the same list with the same PG_referenced in the model as
    in the kernel (exact), and the kernel's counts are the ones measured when the case was written."""
    program = host_or_skip()
    files.append(DATA)
    work, expected = CASES[name]
    sizes = {DATA: FILE_SIZE}

    def observe(run: Run, cg: MemcgV1) -> str:
        return lru_string(file_lru_flags(DATA), NPAGES)

    def host() -> tuple[str, frozenset[int]]:
        kernel, flushes = on_host(program, sizes, work, observe)
        assert isinstance(kernel, str)
        return kernel, flushes

    kernel, flushes = until_settled(host, lambda run: "-" not in run[0],
                                    lambda run: str(dict(Counter(run[0]))))
    model = lru_string(model_lru(on_model(sizes, work, flush_before=flushes), DATA), NPAGES)
    print(f"{name}: kernel {dict(Counter(kernel))} model {dict(Counter(model))}")
    assert dict(Counter(kernel)) == expected
    assert model == kernel, _first_difference(model, kernel)


def _first_difference(model: str, kernel: str) -> str:
    """Where two page-state strings first differ, with some context."""
    i = next((i for i, (a, b) in enumerate(zip(model, kernel, strict=True)) if a != b), len(model))
    return f"first difference at page {i}: model {model[i:i + 40]!r} kernel {kernel[i:i + 40]!r}"


def test_memcg_stat_agrees_with_kpageflags(files: list[str]) -> None:
    """memory.stat's active_file/inactive_file (after the periodic rstat flush) count the pages
    kpageflags shows on each list, and the model's lruvec has the same numbers."""
    program = host_or_skip()
    files.append(DATA)
    sizes = {DATA: FILE_SIZE}
    work = steps(read_pass(DATA, PAGE), read_pass(DATA, PAGE), pread_every(DATA, 1))

    def observe(run: Run, cg: MemcgV1) -> tuple[dict[str, int], Counter[str]]:
        run.wait_for_flush()
        return cg.stat(), Counter(lru_string(file_lru_flags(DATA), NPAGES))

    result, flushes = on_host(program, sizes, work, observe)
    assert isinstance(result, tuple)
    stat, census = result
    active, inactive = stat["active_file"] // PAGE, stat["inactive_file"] // PAGE
    print(f"memory.stat active_file {active} inactive_file {inactive}; kpageflags {dict(census)}")
    assert (active, inactive) == (census["A"] + census["a"], census["I"] + census["i"])
    model = on_model(sizes, work, flush_before=flushes)
    memcg = model.memcgs.lookup(MEMCG)
    assert memcg is not None
    lru = memcg.lruvec.nr_pages  # the memcg's lists: its program's image pages are the root's
    assert (lru[3], lru[2]) == (census["A"] + census["a"], census["I"] + census["i"]) == (NPAGES, 0)


# --- the one-time scan -----------------------------------------------------------------------------

HOT, ONCE, SCAN = (f"/tmp/vmlab-lru-{kind}-{TAG}.dat" for kind in ("hot", "once", "scan"))
SCAN_SIZE = 4 * LIMIT
SCAN_SIZES = {HOT: FILE_SIZE, ONCE: FILE_SIZE, SCAN: SCAN_SIZE}
ONE_TIME_SCAN = steps(read_pass(HOT, MB), read_pass(HOT, MB), read_pass(ONCE, MB), read_pass(SCAN, MB))


def resident(backend: HostBackend | ModelBackend, path: str) -> list[int]:
    """The file's cached page indices (mincore on the host, the page cache in the model)."""
    return backend.residency(path)


def test_one_time_scan_keeps_the_hot_set_as_the_kernel_does(files: list[str]) -> None:
    """In a 64 MiB memcg the kernel keeps the twice-read file whole and active and drops the once-read
    one; the scan's resident pages are the file's tail. The model (two lists) agrees."""
    program = host_or_skip()
    files.extend(SCAN_SIZES)

    def observe(run: Run, cg: MemcgV1) -> dict[str, object]:
        host = run.backend
        assert isinstance(host, HostBackend)
        return {"hot": resident(host, HOT), "once": resident(host, ONCE), "scan": resident(host, SCAN),
                "hot_lru": lru_string(file_lru_flags(HOT), NPAGES),
                "failcnt": int((cg.path / "memory.failcnt").read_text())}

    kernel, flushes = on_host(program, SCAN_SIZES, ONE_TIME_SCAN, observe)
    assert isinstance(kernel, dict)
    model = on_model(SCAN_SIZES, ONE_TIME_SCAN, flush_before=flushes)
    got = {"hot": resident(model, HOT), "once": resident(model, ONCE), "scan": resident(model, SCAN),
           "hot_lru": lru_string(model_lru(model, HOT), NPAGES)}
    scan_pages = SCAN_SIZE // PAGE
    print(f"kernel: hot {len(kernel['hot'])} once {len(kernel['once'])} scan {len(kernel['scan'])} "
          f"(memcg failcnt {kernel['failcnt']}); model: hot {len(got['hot'])} once {len(got['once'])} "
          f"scan {len(got['scan'])}")
    assert kernel["failcnt"] > 0  # the limit was reached: the memcg reclaimed
    assert kernel["hot"] == list(range(NPAGES)) and kernel["hot_lru"] == "A" * NPAGES
    assert kernel["once"] == []
    for who in (kernel, got):
        scan = who["scan"]
        assert isinstance(scan, list)
        assert scan == list(range(scan_pages - len(scan), scan_pages))  # a tail of the scan
    assert got["hot"] == kernel["hot"] and got["hot_lru"] == kernel["hot_lru"]
    assert got["once"] == kernel["once"]
    assert got["scan"] == kernel["scan"]
    assert len(got["scan"]) % FOLIO_PAGES == 0  # type: ignore[arg-type]  # whole folios reclaimed
    memcg = model.memcgs.lookup(MEMCG)
    assert memcg is not None and memcg.memory.failcnt == kernel["failcnt"]
    assert memcg.memory.usage <= LIMIT // PAGE


def test_read_larger_than_the_limit_reclaims_cache_not_oom(files: list[str]) -> None:
    """One read() pass over a file four times the memcg's limit: on the host and in the model the
    memcg's usage ends at the limit (within two 2 MiB folios below it), charges
    failed (failcnt) and the page cache was reclaimed, nothing was OOM-killed, the reader lives."""
    program = host_or_skip()
    files.append(SCAN)
    sizes = {SCAN: SCAN_SIZE}
    work = read_pass(SCAN, MB)

    def observe(run: Run, cg: MemcgV1) -> dict[str, int]:
        stat = cg.stat()
        oom = dict(line.split() for line in (cg.path / "memory.oom_control").read_text().splitlines())
        return {"usage": cg.usage() // PAGE, "failcnt": int((cg.path / "memory.failcnt").read_text()),
                "cache": stat["cache"] // PAGE, "oom_kill": int(oom["oom_kill"]),
                "alive": int(run.pid in cg.procs()), "resident": len(resident(run.backend, SCAN))}

    kernel, flushes = on_host(program, sizes, work, observe)
    assert isinstance(kernel, dict)
    model = on_model(sizes, work, flush_before=flushes)
    memcg = model.memcgs.lookup(MEMCG)
    assert memcg is not None
    state = memcg.page_state()
    got = {"usage": memcg.memory.usage, "failcnt": memcg.memory.failcnt, "cache": state["cache"],
           "oom_kill": memcg.events["oom_kill"], "alive": int(len(model.tasks) == 1),
           "resident": len(resident(model, SCAN))}
    print(f"kernel {kernel}\nmodel  {got}")
    limit = LIMIT // PAGE
    for who in (kernel, got):
        assert limit - FOLIO_PAGES <= who["usage"] <= limit
        assert who["failcnt"] > 0 and who["oom_kill"] == 0 and who["alive"] == 1
        assert who["resident"] < SCAN_SIZE // PAGE // 3  # most of the file was reclaimed
    # One failed charge per reclaim, which frees one 2 MiB folio: failcnt counts the folios reclaimed
    # (95 for 192 MiB over the limit), and the cache left is whole folios.
    assert got == kernel


def test_plain_lru_loses_the_hot_set(files: list[str]) -> None:
    """The same workload under the model's plain LRU: the scan pushes the hot file out entirely (what
    the kernel's two lists prevent, above)."""
    files.extend(SCAN_SIZES)
    model = on_model(SCAN_SIZES, ONE_TIME_SCAN, plain=True)
    two_lists = on_model(SCAN_SIZES, ONE_TIME_SCAN)
    assert resident(model, HOT) == [] and resident(model, ONCE) == []
    assert resident(two_lists, HOT) == list(range(NPAGES))


# --- mapped folios used while a scan runs ------------------------------------------------------------

MAPPED = f"/tmp/vmlab-lru-mapped-{TAG}.dat"
MAPPED_SIZE = 16 * MB
SLICES = 16


def touch_during_scan(stride: int) -> Callable[[Run], None]:
    """Read MAPPED once (readahead's large folios), map it shared, then 16 times: load one byte of every
    `stride`-th page of the mapping, and read the next sixteenth of the scan file."""
    def work(run: Run) -> None:
        fd = run.call("openat", AT_FDCWD, MAPPED, O_RDONLY)
        while run.call("read", fd, run.buf, MB) > 0:
            pass
        addr = run.call("mmap", 0, MAPPED_SIZE, PROT_READ, MAP_SHARED, fd, 0)
        scan = run.call("openat", AT_FDCWD, SCAN, O_RDONLY)
        for _ in range(SLICES):
            for page in range(0, MAPPED_SIZE // PAGE, stride):
                run.access(addr + page * PAGE, 1)
            for _ in range(SCAN_SIZE // MB // SLICES):
                run.call("read", scan, run.buf, MB)
    return work


@pytest.mark.parametrize("stride", [100, 1000])
def test_mapped_pages_used_during_a_scan_stay_as_on_the_kernel(stride: int, files: list[str]) -> None:
    """A mapped file whose pages are loaded between slices of a scan four times the memcg's limit:
    what stays of it (the fault-around block of each page used: measured 896 and 128 pages) and of
    the scan (14,848 and 15,360 pages: whole 2 MiB folios) is the same on both, page for page. Before
    reclaim took large folios whole the model kept 14,246 pages of the scan where the kernel kept
    14,848."""
    program = host_or_skip()
    sizes = {MAPPED: MAPPED_SIZE, SCAN: SCAN_SIZE}
    files.extend(sizes)
    work = touch_during_scan(stride)

    def observe(run: Run, cg: MemcgV1) -> dict[str, list[int]]:
        host = run.backend
        assert isinstance(host, HostBackend)
        return {path: resident(host, path) for path in sizes}

    kernel, flushes = on_host(program, sizes, work, observe)
    assert isinstance(kernel, dict)
    model = on_model(sizes, work, flush_before=flushes)
    got = {path: resident(model, path) for path in sizes}
    print(f"kernel {[len(v) for v in kernel.values()]}, model {[len(v) for v in got.values()]}")
    assert got == kernel
