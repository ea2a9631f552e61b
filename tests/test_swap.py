"""Swap in the model (mm/swapfile.c, mm/swap_state.c, do_swap_page): areas and slots, swap-out through
the reclaim seam and MADV_PAGEOUT, swap-in (cache hits, readahead), swap entries through fork, zap,
mremap, mprotect and swapoff, with the invariant checker (slots match entries, swap cache owned
once, no dirty page dropped) after every step."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from swapkit import (
    MADV_PAGEOUT,
    PRIVATE_ANON,
    RW,
    complete_swap_writes,
    free_unmapped_swap_cache,
    model_with_swap,
    shrink_inactive_anon,
)
from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.page_flags import PG
from vmlab.kernel.pgtable import pte_pfn
from vmlab.kernel.swap import LRU_INACTIVE_ANON, lru_add_drain
from vmlab.kernel.swap_state import reclaim_anon_folio, swapin_nr_pages
from vmlab.kernel.swapfile import swp_offset, sys_swapon
from vmlab.kernel.uapi import EBUSY, EINVAL, EISDIR, ENOENT, MREMAP_FIXED, MREMAP_MAYMOVE

PG_SIZE = 4096
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63


def _meminfo_kb(backend: ModelBackend, field: str) -> int:
    """One /proc/meminfo field of the model, in kB."""
    table = dict(line.split(":", 1) for line in backend.machine_view("meminfo").splitlines())
    return int(table[field].split()[0])


def _anon(backend: ModelBackend, pid: int, pages: int) -> int:
    addr = backend.syscall(pid, "mmap", (0, pages * PG_SIZE, RW, PRIVATE_ANON, -1, 0))
    assert backend.access(pid, addr, pages * PG_SIZE, True) is None
    return addr


def test_swapon_sizes_priorities_and_errors(tmp_path: Path, swapfile: Path) -> None:
    backend, pid = model_with_swap(swapfile)
    # /proc/swaps as the kernel printed it for a 16 MiB file (`cat -A /proc/swaps` on this host).
    name = str(swapfile)
    pad = " " * max(1, 40 - len(name))  # "%*s" with width 40 - len, at least 1
    assert backend.machine_view("swaps").splitlines()[1] == name + pad + "file\t\t16380\t\t0\t\t-2"
    assert backend.syscall(pid, "swapon", (str(swapfile), 0)) == -EBUSY
    assert backend.syscall(pid, "swapon", (str(tmp_path / "nope"), 0)) == -ENOENT
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\0" * 4096)
    assert backend.syscall(pid, "swapon", (str(tiny), 0)) == -EINVAL
    second = tmp_path / "second"
    second.write_bytes(b"\0" * (64 << 10))
    assert backend.syscall(pid, "swapon", (str(second), 0)) == 0
    swap = backend.mem.swap
    assert [si.prio for si in swap.active()] == [-2, -3]
    assert swap.total_swap_pages == 4095 + 15 == swap.nr_swap_pages
    assert backend.syscall(pid, "swapoff", (str(swapfile),)) == 0
    assert [si.prio for si in swap.active()] == [-2]  # the lower default priority moves up
    assert backend.syscall(pid, "swapoff", (str(swapfile),)) == -EINVAL
    mem = PhysMem(64 << 20)
    assert sys_swapon(mem.swap, "/x", 0x8000 | 5, size_bytes=1 << 20) == 0 and mem.swap.active()[0].prio == 5


def test_pageout_then_read_back_from_the_swap_cache(swapfile: Path) -> None:
    backend, pid = model_with_swap(swapfile)
    own = backend.counters(pid).rss_anon_kb  # what the exec wrote: the stack's top, the data's tail
    addr = _anon(backend, pid, 256)
    assert backend.syscall(pid, "madvise", (addr, 256 * PG_SIZE, MADV_PAGEOUT)) == 0
    check_machine(backend)
    c0 = backend.counters(pid)
    assert own > 0 and (c0.vm_swap_kb, c0.rss_anon_kb) == (1024, own)
    # Type 0, offsets 1, 2, 3, ... in address order, as the host's pagemap showed (test_host_swap).
    assert backend.pagemap(pid, addr, addr + 4 * PG_SIZE) == [PM_SWAP | (i << 5) for i in range(1, 5)]
    assert backend.mem.events["pswpout"] == 256 and len(backend.mem.swap.cache) == 256
    assert backend.machine_view("swaps").split("\n")[1].split("\t")[-3] == "1024"
    # The write is done but the folios stay in the swap cache: reading them back is a minor fault.
    assert backend.access(pid, addr, 16 * PG_SIZE, False) is None
    c1 = backend.counters(pid)
    assert (c1.majflt - c0.majflt, c1.minflt - c0.minflt) == (0, 16)
    assert (c1.vm_swap_kb, c1.rss_anon_kb) == (960, 64 + own)
    entries = backend.pagemap(pid, addr, addr + PG_SIZE)
    assert entries[0] & PM_PRESENT and not entries[0] & PM_SWAP
    check_machine(backend)


def test_reclaim_frees_on_the_second_pass_and_swapin_reads_ahead(swapfile: Path) -> None:
    backend, pid = model_with_swap(swapfile)
    mem = backend.mem
    # The program's own inactive anon folios (the data page its exec wrote) are older: scanned too,
    # once the CPU's lru_add batch has moved (as shrink_inactive_list() drains it first).
    addr = _anon(backend, pid, 64)
    lru_add_drain(mem)
    nr = mem.lruvec.nr_pages[LRU_INACTIVE_ANON]
    assert nr >= 64
    free0 = mem.nr_free_pages
    scanned, freed = shrink_inactive_anon(backend, nr)
    assert (scanned, freed) == (nr, 0) and mem.events["pswpout"] == nr  # written, kept for now
    check_machine(backend)
    # Under write-back until the writes complete (no plug here: one request each, one after another),
    # which the next pass waits for.
    assert _meminfo_kb(backend, "Writeback") == 4 * nr
    scanned, freed = shrink_inactive_anon(backend, nr)
    assert _meminfo_kb(backend, "Writeback") == 0
    assert mem.events["pgrotated"] == nr  # each write's end moved its folio to the tail
    assert (scanned, freed) == (nr, nr) and mem.events["pswpout"] == nr and not mem.swap.cache
    assert mem.nr_free_pages == free0 + nr
    check_machine(backend)
    c0 = backend.counters(pid)
    assert backend.access(pid, addr, 64 * PG_SIZE, False) is None
    c1 = backend.counters(pid)
    # Sequential faults: the window grows 1, 2 (adjacent), 4, 8 (hits + 2 rounded up, at most
    # 2**page-cluster), so far fewer major faults than pages.
    assert c1.majflt - c0.majflt < 20 and c1.majflt + c1.minflt - c0.majflt - c0.minflt == 64
    assert mem.events["pswpin"] == 64 and mem.events["swap_ra"] == mem.events["swap_ra_hit"] > 0
    assert mem.events["pgmajfault"] == c1.majflt - c0.majflt
    check_machine(backend)


def test_a_rotational_area_reads_aligned_blocks_of_slots(swapfile: Path) -> None:
    """With the area on a rotational disk (nr_rotate_swap: no VMA readahead) a swap-in fault reads the
    slots in use of the aligned block of 2^page-cluster around its entry (swap_cluster_readahead; the
    global hit count starts at 4, so the first window is already 8), whichever pages they hold."""
    backend, pid = model_with_swap(swapfile)
    mem = backend.mem
    [si] = mem.swap.active()
    si.solidstate = False
    assert not mem.swap.vma_readahead()
    addr = _anon(backend, pid, 64)
    lru_add_drain(mem)
    nr = mem.lruvec.nr_pages[LRU_INACTIVE_ANON]
    shrink_inactive_anon(backend, nr)
    shrink_inactive_anon(backend, nr)
    assert not mem.swap.cache
    assert backend.access(pid, addr + 20 * PG_SIZE, 1, False) is None  # one page, in the middle
    block = {swp_offset(e) for e in mem.swap.cache}
    start = min(block) & ~7  # every slot read is in the one block
    assert block == {off for off in range(max(start, 1), start + 8) if si.swap_map[off]}
    assert len(block) > 1 and mem.events["swap_ra"] == len(block) - 1
    check_machine(backend)


def test_swapin_window() -> None:
    assert swapin_nr_pages(10, 20, 0, 8, 0) == 1  # random, no hits
    assert swapin_nr_pages(10, 11, 0, 8, 0) == 2  # adjacent
    assert swapin_nr_pages(10, 11, 1, 8, 0) == 4  # hits + 2 rounded up to 4
    assert swapin_nr_pages(10, 11, 7, 8, 0) == 8  # capped by page-cluster
    assert swapin_nr_pages(10, 40, 0, 8, 8) == 4  # shrinks at most by half


def test_write_fault_on_a_swapped_page_drops_its_slot(swapfile: Path) -> None:
    """A write fault maps the page from the swap cache and frees its slot (should_try_to_free_swap),
    but not while the page's write is still in flight (folio_free_swap leaves a folio under
    write-back alone)."""
    backend, pid = model_with_swap(swapfile)
    addr = _anon(backend, pid, 4)
    backend.syscall(pid, "madvise", (addr, 4 * PG_SIZE, MADV_PAGEOUT))
    assert backend.access(pid, addr, PG_SIZE, True) is None  # at once: the write is in flight
    swap = backend.mem.swap
    assert len(swap.cache) == 4 and swap.active()[0].inuse_pages == 4
    complete_swap_writes(backend)
    lru_add_drain(backend.mem)  # the writes' ends queued rotations, each holding a reference
    assert backend.access(pid, addr + PG_SIZE, PG_SIZE, True) is None
    assert len(swap.cache) == 3 and swap.active()[0].inuse_pages == 3
    check_machine(backend)


def test_fork_shares_swap_entries_then_cow(swapfile: Path) -> None:
    backend, pid = model_with_swap(swapfile)
    addr = _anon(backend, pid, 16)
    backend.syscall(pid, "madvise", (addr, 16 * PG_SIZE, MADV_PAGEOUT))
    child = backend.fork(pid)
    check_machine(backend)
    assert backend.counters(child).vm_swap_kb == 64
    smaps = backend.view(pid, "smaps")
    block = smaps[smaps.index(f"{addr:08x}-"):]
    assert "Swap:                 64 kB" in block and "SwapPss:              32 kB" in block
    assert backend.access(child, addr, 2 * PG_SIZE, True) is None  # not exclusive: COW copies
    assert backend.access(pid, addr, 2 * PG_SIZE, False) is None
    check_machine(backend)
    backend.exit(child)
    check_machine(backend)
    assert backend.access(pid, addr, 16 * PG_SIZE, True) is None
    check_machine(backend)


def test_munmap_mremap_mprotect_and_swapoff(swapfile: Path) -> None:
    backend, pid = model_with_swap(swapfile)
    own = backend.counters(pid).rss_anon_kb  # what the exec wrote: the stack's top, the data's tail
    addr = _anon(backend, pid, 32)
    backend.syscall(pid, "madvise", (addr, 32 * PG_SIZE, MADV_PAGEOUT))
    # The written folios leave the cache (MADV_PAGEOUT put them back through the lru_add batch: the
    # last one waits there at the end of its write, unrotated, so they are not the oldest 32).
    free_unmapped_swap_cache(backend)
    swap = backend.mem.swap
    assert not swap.cache and swap.active()[0].inuse_pages == 32
    assert backend.syscall(pid, "munmap", (addr, 8 * PG_SIZE)) == 0
    assert swap.active()[0].inuse_pages == 24 and backend.counters(pid).vm_swap_kb == 96
    new = backend.syscall(pid, "mremap", (addr + 8 * PG_SIZE, 8 * PG_SIZE, 8 * PG_SIZE,
                                          MREMAP_MAYMOVE | MREMAP_FIXED, addr - (1 << 30)))
    assert new == addr - (1 << 30)
    assert backend.syscall(pid, "mprotect", (addr + 16 * PG_SIZE, 16 * PG_SIZE, 1)) == 0
    check_machine(backend)
    assert backend.counters(pid).vm_swap_kb == 96
    assert backend.access(pid, new, 8 * PG_SIZE, True) is None
    check_machine(backend)
    assert backend.syscall(pid, "swapoff", (str(swapfile),)) == 0
    check_machine(backend)
    c = backend.counters(pid)
    assert (c.vm_swap_kb, c.rss_anon_kb) == (0, 96 + own) and not swap.active() and not swap.cache


def test_without_swap_anon_is_kept_and_activated() -> None:
    backend = ModelBackend(64 << 20)
    pid = backend.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=64 << 20))
    _anon(backend, pid, 4)
    mem = backend.mem
    lru_add_drain(mem)
    head = mem.lruvec.oldest(LRU_INACTIVE_ANON, 1)[0]
    mem.lruvec.delete(mem.mem_map, head)
    assert not reclaim_anon_folio(mem, head, lambda pfn: []) and mem.mem_map.test(head, PG.active)
    mem.lruvec.add(mem.mem_map, head)
    check_machine(backend)


OPS = st.lists(st.tuples(st.sampled_from(["touch", "read", "pageout", "shrink", "fork", "exit", "unmap",
                                          "remap", "swapoff"]),
                         st.integers(0, 63), st.integers(1, 24)), min_size=1, max_size=14)


@settings(max_examples=60)
@given(OPS)
def test_random_swap_steps_keep_every_invariant(ops: list[tuple[str, int, int]]) -> None:
    """Random writes, reads, page-outs, reclaim passes, forks, exits, unmaps, moves and swapoff/swapon
    on a 64-page anon region: check_machine holds after every step and at the end no slot or swap
    cache page is left once every process has exited."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "swap"
        path.write_bytes(b"\0" * (1 << 20))
        backend, pid = model_with_swap(path)
        addr = _anon(backend, pid, 64)
        pids = [pid]
        for op, first, n in ops:
            who = pids[first % len(pids)]
            lo, length = addr + first * PG_SIZE, min(n, 64 - first) * PG_SIZE
            if op in ("touch", "read"):
                if backend.access(who, lo, length, op == "touch") is not None:  # unmapped: SIGSEGV
                    pids.remove(who)
                    if not pids:
                        break
            elif op == "pageout":
                backend.syscall(who, "madvise", (lo, length, MADV_PAGEOUT))
            elif op == "shrink":
                shrink_inactive_anon(backend, n)
            elif op == "fork" and len(pids) < 4:
                pids.append(backend.fork(who))
            elif op == "exit" and len(pids) > 1:
                backend.exit(who)
                pids.remove(who)
            elif op == "unmap":
                backend.syscall(who, "munmap", (lo, length))
            elif op == "remap":
                backend.syscall(who, "mremap", (lo, length, length, MREMAP_MAYMOVE | MREMAP_FIXED,
                                                lo - (1 << 32)))
            elif op == "swapoff" and backend.mem.swap.active():
                assert backend.syscall(who, "swapoff", (str(path),)) == 0
                assert backend.syscall(who, "swapon", (str(path), 0)) == 0
            check_machine(backend)
        backend.close()
        free_unmapped_swap_cache(backend)  # those whose writes were in flight at the exits
        swap = backend.mem.swap
        assert not swap.cache and swap.nr_swap_pages == swap.total_swap_pages == 255


def test_swapon_names_the_file_not_the_string(tmp_path: Path, swapfile: Path) -> None:
    """The kernel marks the swap file's inode (S_SWAPFILE): a second swapon of it under another name
    is -EBUSY, swapoff finds it under any name, /proc/swaps prints the resolved path. The model compared
    the strings, so `/tmp/./x` made a second area on the same file (found by fuzzing scenarios).
    A directory cannot be opened O_RDWR (-EISDIR), another non-regular file is -EINVAL
    (claim_swapfile), an empty name -ENOENT; swapoff of a missing name is -ENOENT (file_open_name)."""
    backend, pid = model_with_swap(swapfile)
    other = os.path.join(os.path.dirname(swapfile), ".", os.path.basename(swapfile))
    assert backend.syscall(pid, "swapon", (other, 0)) == -EBUSY
    assert backend.syscall(pid, "swapon", (str(tmp_path), 0)) == -EISDIR
    assert backend.syscall(pid, "swapon", ("/dev/null", 0)) == -EINVAL
    assert backend.syscall(pid, "swapon", ("", 0)) == -ENOENT
    assert backend.syscall(pid, "swapoff", (str(tmp_path / "nope"),)) == -ENOENT
    assert backend.syscall(pid, "swapoff", (other,)) == 0
    assert not backend.mem.swap.active()
    backend.close()


def test_a_slot_fork_shared_is_read_in_under_the_oldest_anon_vma(swapfile: Path) -> None:
    """__folio_set_anon(): a folio read in for a swap entry that fork shared (not exclusive) takes the
    oldest anon_vma of the fork tree, so that the parent, mapping it from the swap cache after the
    child read it in, finds it through its own anon_vma chain. The model gave it the child's
    anon_vma, which the parent's VMA does not chain to (check_machine; found by the pressure test's
    explore runs, seeds 7 and 11, once MADV_FREE was in the mix)."""
    backend, pid = model_with_swap(swapfile)
    addr = _anon(backend, pid, 1)
    assert backend.syscall(pid, "madvise", (addr, PG_SIZE, MADV_PAGEOUT)) == 0
    while backend.mem.swap.cache:  # reclaim until the written folio has left the swap cache
        shrink_inactive_anon(backend, 1)
    child = backend.fork(pid)
    assert backend.access(child, addr, PG_SIZE, False) is None  # a new folio, read by the child
    assert backend.access(pid, addr, PG_SIZE, False) is None  # the parent maps it from the swap cache
    check_machine(backend)


def test_kswapd_waits_for_the_swap_writes_it_meets_again(tmp_path: Path) -> None:
    """A writer outrunning a slow swap device (10 ms an I/O) on a 64 MiB machine: kswapd, having taken
    only folios under write-back (PGDAT_WRITEBACK) and then meeting folios marked for immediate
    reclaim again, sleeps until more than SWAP_CLUSTER_MAX writes have completed
    (reclaim_throttle(VMSCAN_THROTTLE_WRITEBACK)) and frees them then. The writer's 32 MiB all fit;
    before kswapd waited, it found nothing to free and the writer was OOM-killed."""
    path = tmp_path / "swap64"
    with path.open("wb") as f:
        f.truncate(64 << 20)
    backend, pid = model_with_swap(path)
    mem = backend.mem
    mem.clock.costs = dataclasses.replace(mem.clock.costs, swap_io_ns=10_000_000)
    addr = backend.syscall(pid, "mmap", (0, 32 << 20, RW, PRIVATE_ANON, -1, 0))
    assert backend.access(pid, addr, 32 << 20, True) is None
    events = mem.events
    assert events["oom_kill"] == 0 and events["nr_throttled_written"] > 0 and events["pswpout"] > 2048
    check_machine(backend)


def test_madv_pageout_of_a_page_whose_write_is_in_flight_activates_it(swapfile: Path) -> None:
    """A page paged out and mapped again before its write ended (do_swap_page maps the swap-cache
    folio under write-back): a second MADV_PAGEOUT leaves it mapped and activates it, marked for
    immediate reclaim (shrink_folio_list's write-back case for reclaim outside a v1 memcg)."""
    backend, pid = model_with_swap(swapfile)
    addr = _anon(backend, pid, 1)
    assert backend.syscall(pid, "madvise", (addr, PG_SIZE, MADV_PAGEOUT)) == 0
    assert backend.access(pid, addr, PG_SIZE, False) is None  # at once: the write is in flight
    mm = backend.tasks[pid].mm
    assert mm.pt is not None
    mem = backend.mem
    pfn = pte_pfn(mm.pt.get_pte(addr))
    assert mem.mem_map.test(pfn, PG.writeback)
    assert backend.syscall(pid, "madvise", (addr, PG_SIZE, MADV_PAGEOUT)) == 0
    assert pte_pfn(mm.pt.get_pte(addr)) == pfn and mem.mem_map.test(pfn, PG.active)
    assert mem.mem_map.test(pfn, PG.reclaim) and mem.events["pswpout"] == 1
    check_machine(backend)
