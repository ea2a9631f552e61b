"""Anonymous THPs under memory pressure, against this host's kernel: a process maps 12 MiB with
MADV_HUGEPAGE in a cgroup-v1 memcg limited to 8 MiB, with a 16 MiB swap file on (swapkit's
host_swap), writes it all, then reads it back. Each write fault maps a 2 MiB THP while the memcg can
charge one; when it cannot, memcg reclaim swaps out the oldest THPs: a swap file takes no large
entries, so each is split first (its PMD into PTEs, the folio into 512 pages) and its pages are written
one by one (vmlab.kernel.huge_memory). Before, the model never reclaimed a THP: it kept 7 of 8 THPs
where the kernel keeps 4, and swapped small pages instead.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from swapkit import T, in_a_memcg_on_both, model_in_a_memcg
from vmlab.backend import Backend, Program, Settings
from vmlab.host.oracle import HostBackend
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend

from hostkit import Memcgs, on_cpu

pytestmark = pytest.mark.host

PRIVATE_ANON = 0x22  # MAP_PRIVATE | MAP_ANONYMOUS
RW = 3
MADV_HUGEPAGE = 14
SIZE = 12 << 20
THPS = SIZE >> 21
EVENTS = ("thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge", "thp_split_page",
          "thp_split_pmd", "thp_swpout", "thp_swpout_fallback", "pswpout", "pswpin")


def _vmstat(backend: Backend) -> dict[str, int]:
    table = dict(line.split() for line in backend.machine_view("vmstat").splitlines())
    return {name: int(table[name]) for name in EVENTS}


def _rollup(backend: Backend, pid: int, field: str) -> int:
    """A field of the process's smaps_rollup, kB."""
    line = next(x for x in backend.view(pid, "smaps_rollup").splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def _phases(backend: Backend, pid: int, settle: Callable[[], None]) -> dict[str, object]:
    """Write SIZE of a MADV_HUGEPAGE mapping 2 MiB at a time (one THP fault each), then read it all
    back: the events of each write and of the read, and the process's THPs, anon and swap after
    each phase."""
    out: dict[str, object] = {}
    addr = backend.syscall(pid, "mmap", (0, SIZE, RW, PRIVATE_ANON, -1, 0))
    assert addr % (2 << 20) == 0, f"{addr:#x}: not 2 MiB aligned"
    assert backend.syscall(pid, "madvise", (addr, SIZE, MADV_HUGEPAGE)) == 0
    writes = []
    for i in range(THPS):
        v0 = _vmstat(backend)
        assert backend.access(pid, addr + (i << 21), 2 << 20, True) is None
        settle()
        v1 = _vmstat(backend)
        writes.append({k: v1[k] - v0[k] for k in EVENTS})
    out["writes"] = writes
    out["write"] = {k: sum(w[k] for w in writes) for k in EVENTS}
    out["write_kb"] = {f: _rollup(backend, pid, f) for f in ("AnonHugePages", "Anonymous", "Swap")}
    v0 = _vmstat(backend)
    assert backend.access(pid, addr, SIZE, False) is None
    settle()
    v1 = _vmstat(backend)
    out["read"] = {k: v1[k] - v0[k] for k in EVENTS}
    return out


def test_thps_are_split_to_swap_as_on_the_kernel(host_swap: Path, program: Program, memcgs: Memcgs,
                                                 tmp_path: Path) -> None:
    """On both, while the mapping is written: every fault maps a THP (thp_fault_alloc, no
    fallback: the charge reclaims room for it), no THP is swapped whole (thp_swpout 0), and each THP
    reclaimed is split first: thp_split_page = thp_split_pmd = thp_swpout_fallback, its 512 pages
    written; the THPs left mapped by PMD are the others (AnonHugePages). Reading back faults the
    swapped pages in as small pages: no new THP.

    The first charge that reclaims (the fourth THP's) splits two or three of the three THPs before
    it: the kernel splits three or two (8 runs: 3 3 2 3 2 3 3 2), as the writes of the first one end
    before or after reclaim comes back to the list's tail (its trace: the referenced check of a THP
    takes microseconds, a split and its 512 pageouts about 2 ms); the model, whose scan is charged
    by folio (one PMD to look at for a THP, each page of a split one as it is handled), splits two.
    The sixth THP's charge is not held: the kernel splits every THP left but the new one (5 in all,
    in every run; its trace shows priority 0 coming round the list to them again, the clean
    swap-cache pages of the first round too few to make up 512), the model frees those pages and
    splits one (3 in all)."""
    kernel, got = in_a_memcg_on_both(_phases, program, memcgs, tmp_path, "thp")
    for run in (kernel, got):
        write, read, writes = run["write"], run["read"], run["writes"]
        assert isinstance(write, dict) and isinstance(read, dict) and isinstance(writes, list)
        assert (write["thp_fault_alloc"], write["thp_fault_fallback"], write["thp_swpout"]) == (THPS, 0, 0)
        assert write["thp_split_page"] == write["thp_split_pmd"] == write["thp_swpout_fallback"] >= 1
        assert write["pswpout"] == 512 * write["thp_split_page"]
        assert run["write_kb"]["AnonHugePages"] == (THPS - write["thp_split_page"]) * 2048  # type: ignore[index]
        assert read["thp_fault_alloc"] == 0 and read["pswpin"] >= 1
        assert [w["thp_split_page"] for w in writes[:3]] == [0, 0, 0]
        assert writes[3]["thp_split_page"] in (2, 3)
        assert writes[3]["pswpout"] == 512 * writes[3]["thp_split_page"]


MADV_PAGEOUT = 21


def _pageout_steps(backend: Backend, pid: int) -> list[tuple[dict[str, int], dict[str, int]]]:
    """Three THPs written, then MADV_PAGEOUT of the first whole, of 8 KiB in the middle of the second,
    of the third whole: after each, the events and the process's AnonHugePages and Swap, and the
    mapping's anon memory (Anonymous less what the program had besides the mapping)."""
    addr = backend.syscall(pid, "mmap", (0, 6 << 20, RW, PRIVATE_ANON, -1, 0))
    assert backend.syscall(pid, "madvise", (addr, 6 << 20, MADV_HUGEPAGE)) == 0
    assert backend.access(pid, addr, 6 << 20, True) is None
    anon0 = _rollup(backend, pid, "Anonymous")  # the program's own anon pages besides the mapping's 6 MiB
    out = []
    for start, length in ((0, 2 << 20), ((3 << 20) - (4 << 10), 8 << 10), (4 << 20, 2 << 20)):
        v0 = _vmstat(backend)
        assert backend.syscall(pid, "madvise", (addr + start, length, MADV_PAGEOUT)) == 0
        v1 = _vmstat(backend)
        seen = {f: _rollup(backend, pid, f) for f in ("AnonHugePages", "Swap", "Anonymous")}
        seen["Anonymous"] += (6 << 10) - anon0
        out.append(({k: v1[k] - v0[k] for k in EVENTS if v1[k] != v0[k]}, seen))
    return out


def test_madv_pageout_of_thps_agrees_with_the_kernel(host_swap: Path, program: Program,
                                                     tmp_path: Path) -> None:
    """MADV_PAGEOUT of a THP the range covers whole isolates it whole, and reclaim splits it to swap
    it (thp_split_page, thp_split_pmd and thp_swpout_fallback 1, its 512 pages written); of a range
    inside a THP splits the folio first (no fallback counted) and writes only the range's 2 pages;
    the same on model and kernel, event for event, and in smaps_rollup. Before, the model left every
    THP alone."""
    with on_cpu(0), HostBackend(timeout=60) as host:
        kernel = _pageout_steps(host, host.start(program, Settings()))
    model, proc = model_in_a_memcg(tmp_path, 64 << 20)
    got = _pageout_steps(model, proc)
    check_machine(model)
    print(f"kernel {kernel}\nmodel  {got}")
    assert got == kernel


def _meminfo_thp_kb(backend: Backend) -> int:
    """/proc/meminfo's AnonHugePages (machine-wide)."""
    line = next(x for x in backend.machine_view("meminfo").splitlines() if x.startswith("AnonHugePages:"))
    return int(line.split()[1])


def _thp_counts(backend: Backend, pid: int) -> list[tuple[int, int]]:
    """Two THPs written, 4 KiB of the first unmapped (its PMD split: the folio stays large, mapped by
    PTEs), then a fork whose child writes a page of the second (the child's PMD split, the parent's
    kept): after each step the change of /proc/meminfo's AnonHugePages and the process's smaps_rollup
    AnonHugePages."""
    base = _meminfo_thp_kb(backend)
    addr = backend.syscall(pid, "mmap", (0, 4 << 20, RW, PRIVATE_ANON, -1, 0))
    assert backend.syscall(pid, "madvise", (addr, 4 << 20, MADV_HUGEPAGE)) == 0
    assert backend.access(pid, addr, 4 << 20, True) is None
    seen = [(_meminfo_thp_kb(backend) - base, _rollup(backend, pid, "AnonHugePages"))]
    assert backend.syscall(pid, "munmap", (addr + (4 << 10), 4 << 10)) == 0
    seen.append((_meminfo_thp_kb(backend) - base, _rollup(backend, pid, "AnonHugePages")))
    child = backend.fork(pid)
    assert backend.access(child, addr + (2 << 20), 1, True) is None
    seen.append((_meminfo_thp_kb(backend) - base, _rollup(backend, pid, "AnonHugePages")))
    backend.exit(child)
    return seen


def _on_both(steps: Callable[[Backend, int], T], program: Program) -> tuple[T, T]:
    """`steps` by a new process on the kernel (on CPU 0, in no memcg), then on a model machine of its
    own (checked after); (kernel's, model's), both printed."""
    with on_cpu(0), HostBackend(timeout=60) as host:
        kernel = steps(host, host.start(program, Settings()))
    model = ModelBackend()
    try:
        got = steps(model, model.start(program, Settings()))
        check_machine(model)
    finally:
        model.close()
    print(f"kernel {kernel}\nmodel  {got}")
    return kernel, got


def test_anon_huge_pages_counts_the_thps_mapped_by_a_pmd(program: Program) -> None:
    """/proc/meminfo's AnonHugePages is NR_ANON_THPS: a THP counts while some process maps it by a PMD.
    Unmapping 4 KiB of one splits its PMD (the folio stays large, its other pages mapped by PTEs): it
    counts no more, on both; a fork child's write to a shared THP splits the child's PMD only (the
    copy of the page is small) and the parent's still counts. Before, the model counted every large
    anon folio (4096 kB after the munmap where the kernel shows 2048). Machine-wide: an idle host
    changes it for nothing else meanwhile."""
    kernel, got = _on_both(_thp_counts, program)
    assert got == kernel == [(4096, 4096), (2048, 2048), (2048, 2048)]


def test_madv_pageout_of_thps_without_swap_splits_them_as_the_kernel(program: Program) -> None:
    """With no swap area, MADV_PAGEOUT of a whole THP still splits it (folio_alloc_swap fails, as for
    any THP, then for each page: thp_swpout_fallback 1, nothing written) and of a range inside one
    splits that one too; the pages stay, mapped. Equal on model and kernel, event for event."""
    if len(Path("/proc/swaps").read_text().splitlines()) > 1:
        pytest.skip("the host has a swap area on: this test needs none")
    kernel, got = _on_both(_pageout_steps, program)
    assert got == kernel
    assert [events.get("pswpout", 0) for events, _ in kernel] == [0, 0, 0]


SPLIT_EVENTS = ("thp_deferred_split_page", "thp_split_page", "thp_split_pmd", "thp_swpout_fallback")


def _split_events(backend: Backend) -> dict[str, int]:
    """The THP split events of /proc/vmstat."""
    table = dict(line.split() for line in backend.machine_view("vmstat").splitlines())
    return {name: int(table[name]) for name in SPLIT_EVENTS}


def _deferred_split_steps(backend: Backend, pid: int, settle: Callable[[], None]) -> list[dict[str, int]]:
    """Three THPs written, one page of each unmapped (each left partially mapped), then 8 MiB of small
    pages written 1 MiB at a time: the THP events after the munmaps, then after each MiB, as changes
    since the munmaps' start."""
    base = _split_events(backend)
    seen = []
    addr = backend.syscall(pid, "mmap", (0, 6 << 20, RW, PRIVATE_ANON, -1, 0))
    assert backend.syscall(pid, "madvise", (addr, 6 << 20, MADV_HUGEPAGE)) == 0
    assert backend.access(pid, addr, 6 << 20, True) is None
    for i in range(3):
        assert backend.syscall(pid, "munmap", (addr + (i << 21) + (4 << 10), 4 << 10)) == 0
    small = backend.syscall(pid, "mmap", (0, 8 << 20, RW, PRIVATE_ANON, -1, 0))
    for i in range(-1, 8):
        if i >= 0:
            assert backend.access(pid, small + (i << 20), 1 << 20, True) is None
        settle()
        now = _split_events(backend)
        seen.append({k: now[k] - base[k] for k in SPLIT_EVENTS})
    return seen


def test_partially_mapped_thps_are_split_by_the_shrinker_as_on_the_kernel(
        host_swap: Path, program: Program, memcgs: Memcgs, tmp_path: Path) -> None:
    """A THP with one page unmapped is partially mapped: its PMD is split (thp_split_pmd) and it joins
    the deferred split queue (thp_deferred_split_page), the folio still large. When the memcg first
    reclaims, the deferred split shrinker (do_shrink_slab with DEFAULT_SEEKS: a few queued THPs are
    scanned only at low priority) splits all three, freeing their unmapped pages, before reclaim
    meets them as THPs (no thp_swpout_fallback). Each step's THP events equal on model and kernel.
    Before, the model queued nothing and split none."""
    kernel, got = in_a_memcg_on_both(_deferred_split_steps, program, memcgs, tmp_path, "defer")
    assert got == kernel
    assert kernel[0] == {"thp_deferred_split_page": 3, "thp_split_page": 0, "thp_split_pmd": 3,
                         "thp_swpout_fallback": 0}
    assert kernel[-1]["thp_split_page"] == 3


MADV_FREE = 8
LAZY_EVENTS = ("pglazyfree", "pglazyfreed", "thp_split_page", "thp_split_pmd", "thp_swpout_fallback")


def _lazyfree_steps(backend: Backend, pid: int, settle: Callable[[], None],
                    rewrite: bool) -> list[tuple[dict[str, int], int, int]]:
    """Two THPs written, MADV_FREE of both (the second written again when `rewrite`), then 6 MiB of
    small pages written 1 MiB at a time: after MADV_FREE and after each MiB, the lazyfree and THP
    events since MADV_FREE's start, and smaps_rollup's AnonHugePages and LazyFree."""
    table = dict(line.split() for line in backend.machine_view("vmstat").splitlines())
    base = {name: int(table[name]) for name in LAZY_EVENTS}
    addr = backend.syscall(pid, "mmap", (0, 4 << 20, RW, PRIVATE_ANON, -1, 0))
    assert backend.syscall(pid, "madvise", (addr, 4 << 20, MADV_HUGEPAGE)) == 0
    assert backend.access(pid, addr, 4 << 20, True) is None
    assert backend.syscall(pid, "madvise", (addr, 4 << 20, MADV_FREE)) == 0
    if rewrite:
        assert backend.access(pid, addr + (2 << 20), 1, True) is None
    small = backend.syscall(pid, "mmap", (0, 6 << 20, RW, PRIVATE_ANON, -1, 0))
    seen = []
    for i in range(-1, 6):
        if i >= 0:
            assert backend.access(pid, small + (i << 20), 1 << 20, True) is None
        settle()
        table = dict(line.split() for line in backend.machine_view("vmstat").splitlines())
        seen.append(({name: int(table[name]) - base[name] for name in LAZY_EVENTS},
                     _rollup(backend, pid, "AnonHugePages"), _rollup(backend, pid, "LazyFree")))
    return seen


@pytest.mark.parametrize("rewrite", [False, True])
def test_lazyfree_thps_are_discarded_whole_as_on_the_kernel(host_swap: Path, program: Program,
                                                            memcgs: Memcgs, tmp_path: Path,
                                                            rewrite: bool) -> None:
    """MADV_FREE of a whole THP marks it lazyfree (pglazyfree 512, LazyFree 2048 kB, still mapped by
    its PMD); a write after it makes it no longer LazyFree in smaps (its PMD dirty). When the memcg
    reclaims, a clean lazyfree THP is discarded whole: its PMD split (thp_split_pmd), its 512 pages
    dropped (pglazyfreed 512), the folio never split; a written one is not discarded (its PMD split,
    swap-backed again). Each step's events and the two smaps fields equal on model and kernel. The
    model had left THPs alone at MADV_FREE, never reclaimed a lazyfree THP, and its MMU set no
    accessed or dirty bit on a 2 MiB leaf."""
    kernel, got = in_a_memcg_on_both(partial(_lazyfree_steps, rewrite=rewrite), program, memcgs, tmp_path,
                                      "lazy")
    assert got == kernel
    assert kernel[0] == ({"pglazyfree": 1024, "pglazyfreed": 0, "thp_split_page": 0, "thp_split_pmd": 0,
                          "thp_swpout_fallback": 0}, 4096, 2048 if rewrite else 4096)
    assert kernel[-1][0]["pglazyfreed"] == (512 if rewrite else 1024)
