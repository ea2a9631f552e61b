"""MADV_FREE (lazily freed anon folios) and MAP_DROPPABLE, in the model and against this host's kernel.

Model (unit): MADV_FREE cleans the PTEs and sends small exclusive anon folios through the CPU's
lru_lazyfree batch (31 folios; drained by the next MADV_FREE, zaps, reclaim) to the inactive file list
without PG_swapbacked; swap entries in the range go; reclaim discards clean ones (pglazyfreed) and
gives re-written ones PG_swapbacked back. MAP_DROPPABLE's folios are never swap-backed. check_machine
holds throughout, and fails on a broken lazyfree state.

Host (differential): scenario texts run by `vmlab diff`'s machinery on the model and the kernel, every
result and view compared (smaps LazyFree, Private_Clean/Dirty, Referenced, VmFlags `dp`), and a v1
memcg pressure run comparing, page for page, which pages of a MADV_FREE'd buffer survive.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from vmlab.backend import Backend, Program, Settings
from vmlab.host.writeback import read_vmstat
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.mm_types import MM_ANONPAGES, MM_SWAPENTS
from vmlab.kernel.page_flags import F_SWAPBACKED, PG
from vmlab.kernel.pgtable import _PAGE_ACCESSED, _PAGE_DIRTY, pte_pfn
from vmlab.kernel.swap import (
    FOLIO_BATCH_SIZE,
    LRU_ACTIVE_ANON,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    lru_add_drain,
)

from hostkit import on_cpu

MB = 1 << 20
PAGE = 4096
RW = 0x3
PRIVATE_ANON, DROPPABLE_ANON, SHARED_ANON, FIXED, LOCKED = 0x22, 0x28, 0x21, 0x10, 0x2000
MADV_FREE, MADV_PAGEOUT, MADV_KEEPONFORK, MADV_DODUMP = 8, 21, 19, 17
EINVAL = 22
A = 0x10000000  # the buffer under test
B = 0x20000000  # the allocation that brings reclaim


def model(ram: int = 64 * MB) -> tuple[ModelBackend, int]:
    """A model machine running the built-in program."""
    backend = ModelBackend(ram)
    return backend, backend.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=ram))


def mapped(backend: ModelBackend, pid: int, addr: int, npages: int) -> list[tuple[int, int]]:
    """(PTE, pfn) of each page of [addr, addr + npages pages) that is present."""
    pt = backend.tasks[pid].mm.pt
    assert pt is not None
    out = []
    for i in range(npages):
        pte = pt.get_pte(addr + i * PAGE)
        if pte & 1:
            out.append((pte, pte_pfn(pte)))
    return out


def anon_buffer(backend: ModelBackend, pid: int, npages: int, flags: int = PRIVATE_ANON) -> int:
    """A written anonymous buffer of `npages` pages at A."""
    assert backend.syscall(pid, "mmap", (A, npages * PAGE, RW, flags | FIXED, -1, 0)) == A
    assert backend.access(pid, A, npages * PAGE, True) is None
    return A


# --- the model ------------------------------------------------------------------------------------------

def test_madv_free_goes_through_the_batch_then_to_the_file_list() -> None:
    """16 pages freed sit in the lru_lazyfree batch (still on their anon list, one more reference,
    still swap-backed, PTEs clean and old); the next MADV_FREE drains it first: then they are lazyfree on
    the inactive file list, pglazyfree counts them and smaps shows them as LazyFree. RSS never moves."""
    backend, pid = model()
    mem = backend.mem
    anon_buffer(backend, pid, 64)
    rss = backend.tasks[pid].mm.rss[MM_ANONPAGES]
    assert backend.syscall(pid, "madvise", (A, 16 * PAGE, MADV_FREE)) == 0
    pages = mapped(backend, pid, A, 16)
    assert len(pages) == 16 and sorted(mem.fbatches.lru_lazyfree) == sorted(pfn for _, pfn in pages)
    for pte, pfn in pages:
        assert not pte & (_PAGE_DIRTY | _PAGE_ACCESSED)
        assert pfn in mem.lruvec.lists[LRU_INACTIVE_ANON] and mem.mem_map.test(pfn, PG.swapbacked)
        assert int(mem.mem_map._refcount[pfn]) == 2
    assert mem.events["pglazyfree"] == 0
    check_machine(backend)
    assert backend.syscall(pid, "madvise", (A + 63 * PAGE, PAGE, MADV_FREE)) == 0
    assert mem.events["pglazyfree"] == 16 and len(mem.fbatches.lru_lazyfree) == 1
    for _, pfn in pages:
        flags = int(mem.mem_map.flags[pfn])
        assert not flags & F_SWAPBACKED and not flags >> PG.dirty & 1 and not flags >> PG.active & 1
        assert pfn in mem.lruvec.lists[LRU_INACTIVE_FILE]
    assert backend.tasks[pid].mm.rss[MM_ANONPAGES] == rss
    smaps = backend.view(pid, "smaps")
    block = smaps[smaps.index(f"{A:08x}-"):]
    assert "LazyFree:             64 kB" in block.split("VmFlags")[0]
    check_machine(backend)


def test_a_full_batch_moves_at_once() -> None:
    """folio_batch_add_and_move: the 31st folio moves the batch; 40 pages leave 9 batched."""
    backend, pid = model()
    anon_buffer(backend, pid, 40)
    assert backend.syscall(pid, "madvise", (A, 40 * PAGE, MADV_FREE)) == 0
    assert backend.mem.events["pglazyfree"] == FOLIO_BATCH_SIZE
    assert len(backend.mem.fbatches.lru_lazyfree) == 40 - FOLIO_BATCH_SIZE
    check_machine(backend)


def test_reclaim_drops_clean_lazyfree_and_keeps_rewritten_ones() -> None:
    """In a 16 MiB memcg with no swap: 8 MiB written, MADV_FREE'd, 1 MiB of it written again, then
    12 MiB more. Reclaim discards clean lazyfree pages (PTE cleared, RSS down, pglazyfreed); the
    re-written ones come back swap-backed on the anon lists and stay; nobody is OOM-killed."""
    backend, pid = model(256 * MB)
    mem = backend.mem
    assert backend.memcg_create("/lf", 16 * MB) == 0 and backend.memcg_attach(pid, "/lf") == 0
    anon_buffer(backend, pid, 2048)
    rss = backend.tasks[pid].mm.rss[MM_ANONPAGES]
    assert backend.syscall(pid, "madvise", (A, 8 * MB, MADV_FREE)) == 0
    rewritten = range(512, 768)
    assert backend.access(pid, A + 2 * MB, 1 * MB, True) is None
    assert backend.syscall(pid, "mmap", (B, 12 * MB, RW, PRIVATE_ANON | FIXED, -1, 0)) == B
    assert backend.access(pid, B, 12 * MB, True) is None
    assert pid in backend.tasks
    pt = backend.tasks[pid].mm.pt
    assert pt is not None
    present = [bool(pt.get_pte(A + i * PAGE) & 1) for i in range(2048)]
    dropped = present.count(False)
    assert dropped > 0 and mem.events["pglazyfreed"] == dropped
    assert all(present[i] for i in rewritten)
    for i in rewritten:  # seen once, young: kept (PG_referenced) on the file list, dirty in its PTE
        pte = pt.get_pte(A + i * PAGE)
        assert pte & _PAGE_DIRTY and mem.mem_map.test(pte_pfn(pte), PG.referenced)
        assert not mem.mem_map.test(pte_pfn(pte), PG.swapbacked)
    assert backend.tasks[pid].mm.rss[MM_ANONPAGES] == rss + 3072 - dropped
    check_machine(backend)
    # More reclaim of the memcg: the second look finds the re-written pages unused since but dirty:
    # swap-backed again, on the anon lists (and kept: no swap); every clean lazyfree page goes.
    memcg = backend.memcgs.lookup("/lf")
    vmscan = mem.vmscan
    assert memcg is not None and vmscan is not None
    for _ in range(3):
        vmscan.try_to_free_mem_cgroup_pages(memcg, 2048, True)
    present = [bool(pt.get_pte(A + i * PAGE) & 1) for i in range(2048)]
    assert [i for i in range(2048) if present[i]] == list(rewritten)
    for i in rewritten:
        pfn = pte_pfn(pt.get_pte(A + i * PAGE))
        assert mem.mem_map.test(pfn, PG.swapbacked) and mem.mem_map.test(pfn, PG.dirty)
        assert pfn in mem.lruvec.lists[LRU_ACTIVE_ANON] or pfn in mem.lruvec.lists[LRU_INACTIVE_ANON]
    assert mem.events["pglazyfreed"] == 2048 - 256
    check_machine(backend)


def test_madv_free_drops_swap_entries(swapfile: os.PathLike[str]) -> None:
    """Swapped-out pages in the range lose their swap entries (a zeroed page is cheaper than a
    swap-in): MM_SWAPENTS and the area's use go down; a read then maps the zero page (no RSS). (A
    slot whose folio's write is still in flight stays, with the folio, until reclaim frees it: so
    the writes complete first.)"""
    from swapkit import complete_swap_writes, model_with_swap

    backend, pid = model_with_swap(swapfile)
    anon_buffer(backend, pid, 16)
    assert backend.syscall(pid, "madvise", (A, 16 * PAGE, MADV_PAGEOUT)) == 0
    complete_swap_writes(backend)
    mm = backend.tasks[pid].mm
    assert mm.rss[MM_SWAPENTS] == 16
    assert backend.syscall(pid, "madvise", (A, 16 * PAGE, MADV_FREE)) == 0
    assert mm.rss[MM_SWAPENTS] == 0 and mapped(backend, pid, A, 16) == []
    assert "\t0\t" in backend.machine_view("swaps").splitlines()[1].replace(" ", "\t")
    rss = mm.rss[MM_ANONPAGES]
    assert backend.access(pid, A, 16 * PAGE, False) is None
    assert mm.rss[MM_ANONPAGES] == rss
    check_machine(backend)


def test_shared_folios_after_fork() -> None:
    """After fork the folios are mapped twice: MADV_FREE in the parent still makes the clean ones
    lazyfree (only PG_dirty or swap-cache folios are skipped when shared), and both processes keep
    their mappings; reclaim later finds the child's PTE dirty (fork copies the dirty bit) and gives
    the folio back PG_swapbacked."""
    backend, pid = model()
    anon_buffer(backend, pid, 8)
    child = backend.fork(pid)
    assert backend.syscall(pid, "madvise", (A, 8 * PAGE, MADV_FREE)) == 0
    lru_add_drain(backend.mem)
    for _, pfn in mapped(backend, pid, A, 8):
        assert int(backend.mem.mem_map._mapcount[pfn]) == 1
        assert not backend.mem.mem_map.test(pfn, PG.swapbacked)
    assert len(mapped(backend, child, A, 8)) == 8
    check_machine(backend)


def test_droppable_folios_are_never_swap_backed() -> None:
    """MAP_DROPPABLE: VM_DROPPABLE|VM_NORESERVE|VM_WIPEONFORK|VM_DONTDUMP; its written pages are born
    on the inactive file list without PG_swapbacked; mlock neither locks nor counts it; KEEPONFORK
    and DODUMP are refused; a fork child finds the range empty."""
    backend, pid = model()
    anon_buffer(backend, pid, 8, DROPPABLE_ANON)
    smaps = backend.view(pid, "smaps")
    assert "VmFlags: rd wr mr mw me nr wf dd dp \n" in smaps[smaps.index(f"{A:08x}-"):]
    assert [pfn for _, pfn in mapped(backend, pid, A, 8)] == backend.mem.fbatches.lru_add[-8:]  # waiting
    lru_add_drain(backend.mem)
    for _, pfn in mapped(backend, pid, A, 8):
        assert not backend.mem.mem_map.test(pfn, PG.swapbacked)
        assert pfn in backend.mem.lruvec.lists[LRU_INACTIVE_FILE]
    assert backend.syscall(pid, "mlock", (A, 8 * PAGE)) == 0
    assert backend.tasks[pid].mm.locked_vm == 0
    assert backend.syscall(pid, "madvise", (A, 8 * PAGE, MADV_KEEPONFORK)) == -EINVAL
    assert backend.syscall(pid, "madvise", (A, 8 * PAGE, MADV_DODUMP)) == -EINVAL
    child = backend.fork(pid)
    assert mapped(backend, child, A, 8) == [] and len(mapped(backend, pid, A, 8)) == 8
    for flags in (DROPPABLE_ANON | LOCKED, DROPPABLE_ANON | 0x100, 0x08):  # locked, growsdown, a file's
        fd = backend.syscall(pid, "openat", (-100, "/etc/passwd", 0)) if flags == 0x08 else -1
        assert backend.syscall(pid, "mmap", (0, PAGE, 1, flags, fd, 0)) == -EINVAL
    check_machine(backend)


def test_check_machine_knows_lazyfree_states() -> None:
    """The checker is not weakened: a swap-backed page in a droppable VMA, or a batched folio whose
    batch reference is missing, is reported."""
    backend, pid = model()
    anon_buffer(backend, pid, 4, DROPPABLE_ANON)
    pfn = mapped(backend, pid, A, 1)[0][1]
    backend.mem.mem_map.set(pfn, PG.swapbacked)
    with pytest.raises(AssertionError, match="droppable"):
        check_machine(backend)
    backend.mem.mem_map.clear(pfn, PG.swapbacked)
    check_machine(backend)
    other, opid = model()
    anon_buffer(other, opid, 4)
    assert other.syscall(opid, "madvise", (A, 4 * PAGE, MADV_FREE)) == 0
    other.mem.mem_map._refcount[other.mem.fbatches.lru_lazyfree[0]] -= 1
    with pytest.raises(AssertionError, match="_refcount"):
        check_machine(other)


# --- against the host kernel ----------------------------------------------------------------------------

#: Scenario texts `vmlab diff` runs on the model and on the kernel (every result and view compared).
SCENARIOS: dict[str, str] = {
    # 16 pages freed stay in the CPU's batch (LazyFree 0, but clean and old); a re-write of page 0;
    # the next MADV_FREE drains the batch first, then 48 more: 31 of them move, 17 wait.
    "free_batch_rewrite": """
a = mmap(NULL, 256K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
touch a, 256K
madvise(a, 64K, MADV_FREE)
show smaps
write a, 4K
show smaps
madvise(a+64K, 192K, MADV_FREE)
show smaps
write a+128K, 8K
read a+160K, 4K
show smaps
show counters
""",
    # Where MADV_FREE is refused (file, shmem, locked) and where it has nothing to do (zero pages).
    "free_refused": """
fd = openat(AT_FDCWD, "/etc/passwd", O_RDONLY)
f = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0)
madvise(f, 4096, MADV_FREE)
s = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0)
madvise(s, 64K, MADV_FREE)
l = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_LOCKED, -1, 0)
madvise(l, 64K, MADV_FREE)
z = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
read z, 64K
madvise(z, 64K, MADV_FREE)
madvise(z, 128K, MADV_FREE)
show smaps
""",
    # After fork the folios are shared: the parent's MADV_FREE cleans its PTEs and marks them lazyfree
    # (more than 31: the batch moves); the child's PTEs stay dirty.
    "free_after_fork": """
a = mmap(NULL, 256K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
touch a, 256K
child = fork()
madvise(a, 256K, MADV_FREE)
show smaps
@child show smaps
""",
    # MAP_DROPPABLE: accepted (VmFlags nr wf dd dp) and refused cases, mlock that does not lock,
    # KEEPONFORK/DODUMP refused, MADV_FREE accepted, a fork child that finds it wiped.
    "droppable": """
a = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_DROPPABLE|MAP_ANONYMOUS, -1, 0)
touch a, 16K
show smaps
b = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_DROPPABLE|MAP_ANONYMOUS|MAP_LOCKED, -1, 0)
c = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_DROPPABLE|MAP_ANONYMOUS|MAP_GROWSDOWN, -1, 0)
fd = openat(AT_FDCWD, "/etc/passwd", O_RDONLY)
e = mmap(NULL, 4096, PROT_READ, MAP_DROPPABLE, fd, 0)
f = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_DROPPABLE|MAP_ANONYMOUS|MAP_HUGETLB, -1, 0)
g = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_DROPPABLE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)
h = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_DROPPABLE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_STACK, -1, 0)
mlock(a, 64K)
show status
madvise(a, 64K, MADV_KEEPONFORK)
madvise(a, 64K, MADV_DODUMP)
madvise(a, 64K, MADV_WIPEONFORK)
madvise(a, 64K, MADV_FREE)
mprotect(a, 8K, PROT_READ)
child = fork()
@child show smaps
@child touch a+16K, 4K
@child show smaps
show smaps
show counters
""",
}


@pytest.mark.host
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_agrees_with_kernel(name: str, program: Program) -> None:
    """The model and the kernel give the same results and views for the scenario."""
    from vmlab.lab.backends import make_backend
    from vmlab.lab.diff import diff_scenario
    from vmlab.lab.scenario import parse

    scn = parse(SCENARIOS[name].lstrip(), f"<{name}>")
    # On one CPU: a stepper that migrated in the middle of a MADV_FREE left its lazyfree batch split
    # between the CPUs' batches, neither full, and smaps counted one drained batch (124 kB for 248;
    # once in a full test run).
    with on_cpu(0):
        diffs = diff_scenario(scn, make_backend("model"), make_backend("host"))
    report = "\n".join(f"line {d.line}: {d.source}\n{d.diff}" for d in diffs)
    assert not diffs, report


# --- memory pressure in a v1 memcg, against the host ----------------------------------------------------

LIMIT = 16 * MB
BUF_PAGES = 2048  # 8 MiB
#: How many more droppable pages the model may keep than the kernel: the kernel also charges the
#: memcg for page tables and slab (about 60 pages here: usage 3137 pages against the model's 3074),
#: so its reclaim must free that much more.
KERNEL_CHARGES = 64


@dataclass
class PressureRun:
    """What a pressure run leaves: each buffer page present or not, and the counter deltas."""

    present: str
    pglazyfree: int
    pglazyfreed: int
    oom_killed: bool


def pressure_work(droppable: bool) -> Callable[[Backend, int], str]:
    """The workload: 8 MiB written at A (MAP_DROPPABLE or private anon); for private anon, all of it
    MADV_FREE'd, 1 MiB of it written again and 256 KiB read; then 12 MiB written at B, which a 16 MiB
    memcg can hold only by dropping lazyfree pages (no swap). Returns the buffer's present bits."""
    def work(backend: Backend, pid: int) -> str:
        flags = DROPPABLE_ANON if droppable else PRIVATE_ANON
        assert backend.syscall(pid, "mmap", (A, 8 * MB, RW, flags | FIXED, -1, 0)) == A
        assert backend.access(pid, A, 8 * MB, True) is None
        if not droppable:
            assert backend.syscall(pid, "madvise", (A, 8 * MB, MADV_FREE)) == 0
            assert backend.access(pid, A + 2 * MB, 1 * MB, True) is None
            assert backend.access(pid, A + 5 * MB, 256 * 1024, False) is None
        assert backend.syscall(pid, "mmap", (B, 12 * MB, RW, PRIVATE_ANON | FIXED, -1, 0)) == B
        assert backend.access(pid, B, 12 * MB, True) is None
        return "".join("1" if e >> 63 & 1 else "0" for e in backend.pagemap(pid, A, A + 8 * MB))
    return work


def on_host(program: Program, work: Callable[[Backend, int], str]) -> PressureRun:
    """`work` in a stepper pinned to CPU 0 (the lru_lazyfree batch is per CPU) inside a new 16 MiB
    v1 memcg; the process is killed and the memcg removed whatever happens."""
    from vmlab.host import memcg_v1
    from vmlab.host.memcg_v1 import MemcgV1, pin_to_cpu
    from vmlab.host.oracle import HostBackend

    reason = memcg_v1.available()
    if reason:
        pytest.skip(reason)
    with MemcgV1(f"vmlab_lazyfree_{os.getpid()}", LIMIT) as cg, HostBackend(timeout=60) as host:
        pid = host.start(program, Settings())
        pin_to_cpu(pid, 0)
        cg.attach(pid)
        before = read_vmstat()
        present = work(host, pid)
        after = read_vmstat()
        oom = dict(line.split() for line in (cg.path / "memory.oom_control").read_text().splitlines())
        return PressureRun(present, after["pglazyfree"] - before["pglazyfree"],
                           after["pglazyfreed"] - before["pglazyfreed"], int(oom["oom_kill"]) > 0)


def on_model(work: Callable[[Backend, int], str]) -> PressureRun:
    """`work` in the model (256 MiB machine) inside a 16 MiB memcg; check_machine afterwards."""
    backend, pid = model(256 * MB)
    assert backend.memcg_create("/lazyfree", LIMIT) == 0 and backend.memcg_attach(pid, "/lazyfree") == 0
    present = work(backend, pid)
    check_machine(backend)
    memcg = backend.memcgs.lookup("/lazyfree")
    assert memcg is not None
    events = backend.mem.events
    return PressureRun(present, events["pglazyfree"], events["pglazyfreed"], memcg.events["oom_kill"] > 0)


def _runs(bits: str) -> str:
    """Run-length form of a present-bit string: `0x512 1x256 ...`."""
    out: list[str] = []
    for bit in bits:
        if out and out[-1][0] == bit:
            out[-1] = f"{bit}x{int(out[-1][2:]) + 1}"
        else:
            out.append(f"{bit}x1")
    return " ".join(out)


@pytest.mark.host
def test_madv_free_pages_dropped_under_memcg_pressure_as_the_kernel_drops(program: Program) -> None:
    """Exact: the kernel dropped the oldest clean lazyfree pages and kept the re-written and the read
    ones (measured: 0x512 1x256 0x512 1x64 0x52 1x652 of the 2048 pages; pglazyfree 2048, pglazyfreed
    1076, no OOM kill, in every run); the model keeps the same pages, page for page."""
    work = pressure_work(droppable=False)
    kernel = on_host(program, work)
    got = on_model(work)
    print(f"kernel {_runs(kernel.present)} {kernel}\nmodel  {_runs(got.present)} {got}")
    assert not kernel.oom_killed and not got.oom_killed
    assert kernel.present[512:768] == "1" * 256  # the re-written MiB stays
    assert got.present == kernel.present, f"model {_runs(got.present)} kernel {_runs(kernel.present)}"
    assert got.pglazyfree == kernel.pglazyfree == BUF_PAGES
    # Host counters are machine-wide: another process's MADV_FREE may add to them.
    assert got.pglazyfreed == got.present.count("0") <= kernel.pglazyfreed


@pytest.mark.host
def test_droppable_pages_dropped_under_memcg_pressure(program: Program) -> None:
    """Written MAP_DROPPABLE pages are dropped although dirty, oldest first, without pglazyfreed (the
    freeing goes uncounted: activated for the flusher, freed at putback). Measured: the kernel drops
    all 2048 (its reclaim must also make room for its page-table and slab charges); the model keeps
    at most KERNEL_CHARGES more, the youngest."""
    work = pressure_work(droppable=True)
    kernel = on_host(program, work)
    got = on_model(work)
    print(f"kernel {_runs(kernel.present)} {kernel}\nmodel  {_runs(got.present)} {got}")
    assert not kernel.oom_killed and not got.oom_killed
    for run in (kernel, got):
        kept = run.present.count("1")
        assert run.present == "0" * (BUF_PAGES - kept) + "1" * kept  # the youngest survive
    assert 0 <= got.present.count("1") - kernel.present.count("1") <= KERNEL_CHARGES
    assert got.pglazyfreed == 0 and got.pglazyfree == 0
