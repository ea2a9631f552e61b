"""shmem pages on swap, against this host's kernel: a process writes 16 MiB of MAP_SHARED|MAP_ANONYMOUS
memory (a shmem object) in a cgroup-v1 memcg limited to 8 MiB, with a 16 MiB swap file on (swapkit's
host_swap), reads it all back, then unmaps it. memcg reclaim unmaps the written pages and moves them
from the page cache to the swap cache to write them (shmem_writeout); reading them back is a major fault
per slot cluster (shmem_swapin_folio); the object's end frees its slots.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from swapkit import host_sized_swapfile, in_a_memcg_on_both, model_with_swap
from vmlab.backend import Backend, Program, Settings
from vmlab.host.oracle import HostBackend
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.page_writeback import filemap_cachestat
from vmlab.linux import CacheStat, cachestat

from hostkit import Memcgs, on_cpu

pytestmark = pytest.mark.host

SHARED_ANON = 0x21  # MAP_SHARED | MAP_ANONYMOUS
RW = 3
SIZE = 16 << 20
PG = 4096
#: The /proc/vmstat counters each phase reports, as changes.
EVENTS = ("pswpout", "pswpin", "pgrotated", "nr_shmem", "nr_swapcached", "pgmajfault",
          "workingset_refault_anon")
#: How far the model's swap writes while the object is written may be from the kernel's (a fraction of
#: the kernel's): measured 2,355-2,523 on the kernel in 18 runs, 2,445 in the model (2,667 while
#: reclaim's scan took 200 ns a page: Costs.scan_ns). The writes while it is read back are not held:
#: the kernel's vary more (3,754-4,187 in 8 runs, once 4,992; the model 3,895).
WRITES_TOLERANCE = 0.10
#: How far the model's shmem + swap-cache pages at the end of the writes may be from the kernel's:
#: the memcg's charge stock holds up to MEMCG_CHARGE_BATCH pages (measured 1,997-2,028 against 1,989).
RESIDENT_TOLERANCE = 64
#: How far the model's reads and major faults while reading back may be from the kernel's (a fraction):
#: one cluster of 8 slots read a fault on both, the clusters' boundaries differ with the slots given
#: (measured 514 faults / 4,101-4,102 reads against 513-515 / 4,102-4,109).
READ_TOLERANCE = 0.01


def _vmstat(backend: Backend) -> dict[str, int]:
    table = dict(line.split() for line in backend.machine_view("vmstat").splitlines())
    return {name: int(table[name]) for name in EVENTS}


def _host_swap_used() -> int:
    """The pages in use of the host's (one) swap area."""
    return int(Path("/proc/swaps").read_text().splitlines()[1].split()[3]) // 4


#: cachestat(2) of the file the mapping at an address maps, of a byte range of it (0, 0: all).
CacheStatOf = Callable[[int, int, int], CacheStat]


def _host_cachestat(pid: int, length: int) -> CacheStatOf:
    """The host's, for mappings of `length` bytes (the file opened by its /proc/PID/map_files link)."""
    def stat(addr: int, off: int = 0, count: int = 0) -> CacheStat:
        fd = os.open(f"/proc/{pid}/map_files/{addr:x}-{addr + length:x}", os.O_RDONLY)
        try:
            return cachestat(fd, off, count)
        finally:
            os.close(fd)
    return stat


def _model_cachestat(model: ModelBackend, pid: int) -> CacheStatOf:
    """The model's."""
    def stat(addr: int, off: int = 0, count: int = 0) -> CacheStat:
        vma = model.tasks[pid].mm.vma_lookup(addr)
        assert vma is not None and vma.vm_file is not None
        return filemap_cachestat(model.mem, vma.vm_file.inode, off, count)
    return stat


T = TypeVar("T")
#: Steps run on one side: (backend, pid, settle, swap slots in use, cachestat) -> what they showed.
Steps = Callable[[Backend, int, Callable[[], None], Callable[[], int], CacheStatOf], T]


def _in_a_memcg_on_both(steps: Steps[T], program: Program, memcgs: Memcgs, tmp_path: Path) -> tuple[T, T]:
    """`steps` with each side's count of swap slots in use and its cachestat, by in_a_memcg_on_both."""
    def side(backend: Backend, pid: int, settle: Callable[[], None]) -> T:
        if isinstance(backend, ModelBackend):
            return steps(backend, pid, settle, lambda: backend.mem.swap.active()[0].inuse_pages,
                         _model_cachestat(backend, pid))
        return steps(backend, pid, settle, _host_swap_used, _host_cachestat(pid, SIZE))
    return in_a_memcg_on_both(side, program, memcgs, tmp_path, "shmem")


def _phases(backend: Backend, pid: int, settle: Callable[[], None], swap_used: Callable[[], int],
            cachestat: CacheStatOf) -> dict[str, object]:
    """Write SIZE of a shared anonymous mapping, read it back, unmap it: what each phase changed."""
    out: dict[str, object] = {}
    addr = backend.syscall(pid, "mmap", (0, SIZE, RW, SHARED_ANON, -1, 0))
    for phase, write in (("write", True), ("read", False)):
        v0, c0 = _vmstat(backend), backend.counters(pid)
        assert backend.access(pid, addr, SIZE, write) is None
        settle()
        v1, c1 = _vmstat(backend), backend.counters(pid)
        out[phase] = {k: v1[k] - v0[k] for k in EVENTS}
        out[f"{phase}_task"] = (c1.majflt - c0.majflt, c1.vm_swap_kb, c1.rss_shmem_kb)
        out[f"swap_used_after_{phase}"] = swap_used()
        out[f"cachestat_after_{phase}"] = cachestat(addr)
        smaps = backend.view(pid, "smaps")
        block = smaps[smaps.index(f"{addr:08x}-"):].split("VmFlags")[0]
        out[f"smaps_swap_after_{phase}"] = next(
            int(line.split()[1]) for line in block.splitlines() if line.startswith("Swap:"))
    assert backend.syscall(pid, "munmap", (addr, SIZE)) == 0
    settle()
    out["swap_used_after_unmap"] = swap_used()
    return out


def test_shmem_swap_out_and_back_agrees_with_the_kernel(host_swap: Path, program: Program,
                                                        memcgs: Memcgs, tmp_path: Path) -> None:
    """On both: while the object is written, no major fault, every page written to swap is still there
    (its slot held by the object's swap entry, not by a PTE: VmSwap stays 0), nearly every written
    folio is rotated when its write ends, and the shmem pages left are exactly the mapped ones
    (RssShmem); reading back reads a cluster of slots a major fault, each page a workingset refault,
    and frees each page's slot as it is used (the slots in use are then those written less those
    read, plus the readahead pages not used yet, under one cluster: no page was read twice, its
    readahead folio reclaimed before its use; the model did so 13 times while its reclaim scanned in
    no time); after each phase the mapping's smaps Swap counts every slot in use and cachestat of the
    object counts each page cached or, on swap, evicted, none tagged dirty; unmapping the object (its
    last reference) frees every slot. The model's writes, resident pages, reads and faults are within
    the tolerances above of the kernel's. (What is left mapped after reading back varies on the
    kernel, RssShmem 6,088-7,820 kB in 8 runs; the model's 7,408 is not held.)"""
    kernel, got = _in_a_memcg_on_both(_phases, program, memcgs, tmp_path)
    for run in (kernel, got):
        write, read = run["write"], run["read"]
        assert isinstance(write, dict) and isinstance(read, dict)
        majflt, vm_swap_kb, rss_shmem_kb = run["write_task"]  # type: ignore[misc]
        assert write["pgmajfault"] == majflt == vm_swap_kb == 0
        assert run["swap_used_after_write"] == write["pswpout"] >= 1 << 10
        assert write["pgrotated"] >= 0.9 * write["pswpout"]
        # nr_shmem is machine-wide: another process's tmpfs use would show (none seen on an idle host).
        assert abs(rss_shmem_kb // 4 - write["nr_shmem"]) <= 16
        assert read["workingset_refault_anon"] == read["pswpin"] >= 4 * read["pgmajfault"]
        assert run["read_task"][0] == read["pgmajfault"]  # type: ignore[index]
        unread = run["swap_used_after_read"] - (  # type: ignore[operator]
            run["swap_used_after_write"] + read["pswpout"] - read["pswpin"])  # type: ignore[operator]
        assert 0 <= unread < 8
        assert run["swap_used_after_unmap"] == 0
        # smaps' Swap of the mapping: the object's pages on swap (shmem_swap_usage), every slot in use;
        # cachestat of its file: the pages cached (none tagged dirty), those on swap as evicted
        for phase in ("write", "read"):
            used = run[f"swap_used_after_{phase}"]
            assert run[f"smaps_swap_after_{phase}"] == 4 * used  # type: ignore[operator]
            stat = run[f"cachestat_after_{phase}"]
            assert isinstance(stat, CacheStat)
            assert (stat.nr_cache + stat.nr_evicted, stat.nr_dirty, stat.nr_evicted) == (SIZE // PG, 0, used)
    k_write, m_write = kernel["write"], got["write"]
    k_read, m_read = kernel["read"], got["read"]
    assert isinstance(k_write, dict) and isinstance(m_write, dict)
    assert isinstance(k_read, dict) and isinstance(m_read, dict)
    assert abs(m_write["pswpout"] - k_write["pswpout"]) <= WRITES_TOLERANCE * k_write["pswpout"]
    resident = [w["nr_shmem"] + w["nr_swapcached"] for w in (k_write, m_write)]
    assert abs(resident[0] - resident[1]) <= RESIDENT_TOLERANCE
    for name in ("pswpin", "pgmajfault"):
        assert abs(m_read[name] - k_read[name]) <= READ_TOLERANCE * k_read[name]


MADV_PAGEOUT = 21
MADV_REMOVE = 9


def _pageout_steps(backend: Backend, pid: int, cachestat: CacheStatOf) -> dict[str, object]:
    """MADV_PAGEOUT of 256 written pages of a shared anonymous mapping, then a read of 16 of them."""
    pages = 256
    addr = backend.syscall(pid, "mmap", (0, pages * PG, RW, SHARED_ANON, -1, 0))
    assert backend.access(pid, addr, pages * PG, True) is None
    v0, c0 = _vmstat(backend), backend.counters(pid)
    assert backend.syscall(pid, "madvise", (addr, pages * PG, MADV_PAGEOUT)) == 0
    v1, c1 = _vmstat(backend), backend.counters(pid)
    smaps = backend.view(pid, "smaps")
    block = smaps[smaps.index(f"{addr:08x}-"):].split("VmFlags")[0]
    out: dict[str, object] = {
        "pswpout": v1["pswpout"] - v0["pswpout"], "rss_shmem_kb": (c0.rss_shmem_kb, c1.rss_shmem_kb),
        "smaps": [line for line in block.splitlines() if line.startswith(("Rss", "Swap", "Shared"))],
        "cachestat": cachestat(addr)[:4]}
    assert backend.access(pid, addr, 16 * PG, False) is None
    v2, c2 = _vmstat(backend), backend.counters(pid)
    out["read_back"] = (c2.majflt - c1.majflt, v2["pswpin"] - v1["pswpin"], c2.rss_shmem_kb)
    return out


def test_madv_pageout_writes_a_shared_anonymous_mapping_to_swap_as_the_kernel_does(
        host_swap: Path, program: Program, tmp_path: Path) -> None:
    """MADV_PAGEOUT of 256 written pages of a shared anonymous mapping (shmem, mapped only here): the
    kernel unmaps and writes every one to swap (reclaim_pages: shmem_writeout), so RssShmem falls to 0,
    smaps counts 1 MiB of Swap, cachestat 256 pages evicted; reading 16 back reads whole slot
    clusters. The model did nothing to shmem folios."""
    with on_cpu(0), HostBackend(timeout=30) as host:
        pid = host.start(program, Settings())
        kernel = _pageout_steps(host, pid, _host_cachestat(pid, 256 * PG))
    model, proc = model_with_swap(host_sized_swapfile(tmp_path), host_disk=True)
    got = _pageout_steps(model, proc, _model_cachestat(model, proc))
    check_machine(model)
    print(f"kernel {kernel}\nmodel  {got}")
    assert got == kernel


def _punch_steps(backend: Backend, pid: int, settle: Callable[[], None], swap_used: Callable[[], int],
                 cachestat: CacheStatOf) -> dict[str, int]:
    """A shared anonymous mapping of SIZE written in the memcg, then MADV_REMOVE of its second half:
    the pages of each half on swap before, the slots in use before and after, and the pages cached
    and on swap after."""
    addr = backend.syscall(pid, "mmap", (0, SIZE, RW, SHARED_ANON, -1, 0))
    assert backend.access(pid, addr, SIZE, True) is None
    settle()
    half = SIZE // 2
    out = {"first_half_swapped": cachestat(addr, 0, half).nr_evicted,
           "second_half_swapped": cachestat(addr, half, half).nr_evicted, "used_before": swap_used()}
    assert backend.syscall(pid, "madvise", (addr + half, half, MADV_REMOVE)) == 0
    after = cachestat(addr, 0, 0)
    out.update(used_after=swap_used(), cached_after=after.nr_cache, evicted_after=after.nr_evicted,
               rss_shmem_kb=backend.counters(pid).rss_shmem_kb)
    return out


def test_madv_remove_punches_a_hole_in_the_object_pages_and_slots(host_swap: Path, program: Program,
                                                                  memcgs: Memcgs, tmp_path: Path) -> None:
    """MADV_REMOVE of the second half of a shared anonymous mapping written past its memcg's limit
    (shmem_fallocate's hole punch): on both, the second half's pages leave the cache and its pages on
    swap lose their slots, so the slots in use fall by those and the object keeps only its first half
    (cached or on swap), of which RssShmem counts the cached pages. The model's MADV_REMOVE only
    zapped the PTEs: the pages stayed cached and the slots in use."""
    kernel, got = _in_a_memcg_on_both(_punch_steps, program, memcgs, tmp_path)
    for run in (kernel, got):
        assert run["second_half_swapped"] > 0
        assert run["used_after"] == run["used_before"] - run["second_half_swapped"]
        assert run["cached_after"] + run["evicted_after"] == SIZE // PG // 2
        assert run["evicted_after"] == run["first_half_swapped"]
        assert run["rss_shmem_kb"] == 4 * run["cached_after"]


MADV_WILLNEED = 3
PRIVATE_ANON = 0x22
PM_SWAP = 1 << 62
#: How far the pages MADV_WILLNEED reads may be apart (see the test).
WILLNEED_TOLERANCE = 2
#: The window MADV_WILLNEED asks for: 1 MiB a quarter of the way in, among the first pages written
#: (the oldest, so the most of them on swap).
WINDOW = (SIZE // 4, 1 << 20)


def _willneed_steps(flags: int) -> Steps[dict[str, int]]:
    """SIZE of anonymous memory (shared: a shmem object; private: anon pages) written in the memcg,
    then MADV_WILLNEED of WINDOW and a read of it: the window's pages on swap before, the pages the
    advice read (pswpin), and the major faults and reads of the read after it."""
    def steps(backend: Backend, pid: int, settle: Callable[[], None], swap_used: Callable[[], int],
              cachestat: CacheStatOf) -> dict[str, int]:
        addr = backend.syscall(pid, "mmap", (0, SIZE, RW, flags, -1, 0))
        assert backend.access(pid, addr, SIZE, True) is None
        settle()
        start, length = addr + WINDOW[0], WINDOW[1]
        if flags == SHARED_ANON:
            swapped = cachestat(addr, *WINDOW).nr_evicted
        else:
            swapped = sum(1 for e in backend.pagemap(pid, start, start + length) if e & PM_SWAP)
        v0 = _vmstat(backend)
        assert backend.syscall(pid, "madvise", (start, length, MADV_WILLNEED)) == 0
        settle()
        v1, c1 = _vmstat(backend), backend.counters(pid)
        assert backend.access(pid, start, length, False) is None
        v2, c2 = _vmstat(backend), backend.counters(pid)
        return {"swapped": swapped, "willneed_pswpin": v1["pswpin"] - v0["pswpin"],
                "read_majflt": c2.majflt - c1.majflt, "read_pswpin": v2["pswpin"] - v1["pswpin"]}
    return steps


@pytest.mark.parametrize("flags", [SHARED_ANON, PRIVATE_ANON], ids=["shmem", "anon"])
def test_madv_willneed_reads_swapped_pages_into_the_swap_cache(flags: int, host_swap: Path, program: Program,
                                                              memcgs: Memcgs, tmp_path: Path) -> None:
    """MADV_WILLNEED of a range of anonymous memory partly on swap (madvise_willneed: shmem_swapin_range
    for a shmem object, swapin_walk for anon PTEs): each page on swap that is not in the swap cache is
    read into it, one slot at a time; reading the range then takes every page from the swap cache,
    no major fault and nothing more read. The model read nothing at the advice, so the read faulted
    its pages in by clusters (major faults)."""
    kernel, got = _in_a_memcg_on_both(_willneed_steps(flags), program, memcgs, tmp_path)
    for run in (kernel, got):
        assert run["swapped"] >= 64
        assert 0 < run["willneed_pswpin"] <= run["swapped"]
        assert run["read_majflt"] == run["read_pswpin"] == 0
    # 256 pages on swap in the window and 256 read on both, except that the kernel sometimes still has
    # one of them in the swap cache (anon, 2 runs of 10: 255 read).
    assert got["swapped"] == kernel["swapped"]
    assert abs(got["willneed_pswpin"] - kernel["willneed_pswpin"]) <= WILLNEED_TOLERANCE
