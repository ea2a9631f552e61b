"""shmem pages on swap in the model (vmlab.kernel.shmem): a shared anonymous mapping or a memfd written
past its memcg's limit goes partly to swap (shmem_writeout: the page cache's entry becomes a swap
entry, the folio passes through the swap cache), and every way back to the data (a fault, read(),
write(), swapoff) reads it back; truncation and the object's end free the slots. The invariant checker
(check_machine: slots against swap PTEs and shmem swap entries, shmem_swaplist) runs after each step.
tests/test_host_shmem_swap.py holds the same workload against the kernel.
"""

from __future__ import annotations

from pathlib import Path

from swapkit import complete_swap_writes, model_with_swap
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.mm_types import Inode
from vmlab.kernel.page_flags import PG as PG_FLAGS
from vmlab.kernel.swapfile import is_swap_slot_pte

SHARED_ANON = 0x21  # MAP_SHARED | MAP_ANONYMOUS
PRIVATE_ANON = 0x22
RW = 3
PG = 4096
SIZE = 8 << 20


def _machine(swapfile: Path) -> tuple[ModelBackend, int]:
    """A model with swap and a process in a 4 MiB memcg."""
    model, _ = model_with_swap(swapfile)
    assert model.memcg_create("/t", 4 << 20) == 0
    proc = model.spawn("proc")
    assert model.memcg_attach(proc, "/t") == 0
    return model, proc


def _meminfo(model: ModelBackend) -> dict[str, int]:
    return {k.rstrip(":"): int(v) for k, v, *_ in map(str.split, model.machine_view("meminfo").splitlines())}


def _shmem_inode(model: ModelBackend, pid: int, addr: int) -> Inode:
    vma = next(v for v in model.tasks[pid].mm if v.vm_start == addr)
    assert vma.vm_file is not None
    return vma.vm_file.inode


def _written_past_the_limit(swapfile: Path) -> tuple[ModelBackend, int, int, Inode]:
    model, proc = _machine(swapfile)
    addr = model.syscall(proc, "mmap", (0, SIZE, RW, SHARED_ANON, -1, 0))
    assert model.access(proc, addr, SIZE, True) is None
    complete_swap_writes(model)
    check_machine(model)
    return model, proc, addr, _shmem_inode(model, proc, addr)


def test_written_shmem_goes_to_swap_and_a_fault_brings_it_back(swapfile: Path) -> None:
    model, proc, addr, inode = _written_past_the_limit(swapfile)
    mem = model.mem
    swapped = len(inode.swapped)
    info = _meminfo(model)
    assert swapped >= (SIZE >> 20) * 256 // 2  # at least half of the 8 MiB is on swap
    assert len(inode.i_pages) + swapped == SIZE // PG and not inode.i_pages.keys() & inode.swapped.keys()
    assert info["Shmem"] == len(inode.i_pages) * 4  # pages on swap (or in the swap cache) are not Shmem
    assert mem.events["pswpout"] >= swapped
    assert model.counters(proc).vm_swap_kb == 0  # no swap PTE: the shmem pages' entries are in i_pages
    assert mem.swap.shmem_swaplist == {inode.handle: inode}
    index = min(inode.swapped)
    entry = inode.swapped[index]
    majflt, pswpin = model.counters(proc).majflt, mem.events["pswpin"]
    assert model.access(proc, addr + index * PG, PG, False) is None
    check_machine(model)
    pfn = inode.i_pages[index]
    assert index not in inode.swapped and entry not in mem.swap.cache
    assert model.counters(proc).majflt == majflt + 1 and mem.events["pswpin"] > pswpin
    assert mem.mem_map.test(pfn, PG_FLAGS.dirty)  # the slot is freed, the data is only in memory again


def test_read_and_write_of_a_memfd_read_its_pages_back_from_swap(swapfile: Path) -> None:
    model, proc = _machine(swapfile)
    fd = model.syscall(proc, "memfd_create", ("vmlab", 0))
    assert model.syscall(proc, "ftruncate", (fd, SIZE)) == 0
    addr = model.syscall(proc, "mmap", (0, SIZE, RW, 0x01, fd, 0))  # MAP_SHARED
    buf = model.syscall(proc, "mmap", (0, PG, RW, PRIVATE_ANON, -1, 0))
    assert model.access(proc, addr, SIZE, True) is None
    assert model.access(proc, buf, PG, True) is None
    complete_swap_writes(model)
    inode = _shmem_inode(model, proc, addr)
    first, *_, last = sorted(inode.swapped)
    pswpin = model.mem.events["pswpin"]
    assert model.syscall(proc, "pread64", (fd, buf, PG, first * PG)) == PG
    assert model.syscall(proc, "pwrite64", (fd, buf, PG, last * PG)) == PG
    check_machine(model)
    assert first in inode.i_pages and last in inode.i_pages  # read back, not replaced by new pages
    assert model.mem.events["pswpin"] >= pswpin + 2


def test_truncation_and_the_objects_end_free_its_slots(swapfile: Path) -> None:
    model, proc = _machine(swapfile)
    fd = model.syscall(proc, "memfd_create", ("vmlab", 0))
    assert model.syscall(proc, "ftruncate", (fd, SIZE)) == 0
    addr = model.syscall(proc, "mmap", (0, SIZE, RW, 0x01, fd, 0))  # MAP_SHARED
    assert model.access(proc, addr, SIZE, True) is None
    complete_swap_writes(model)
    inode = _shmem_inode(model, proc, addr)
    si = model.mem.swap.active()[0]
    cut = SIZE // PG // 2
    beyond = sum(1 for i in inode.swapped if i >= cut)
    used = si.inuse_pages
    assert beyond and model.syscall(proc, "ftruncate", (fd, cut * PG)) == 0
    check_machine(model)
    assert not [i for i in inode.swapped if i >= cut] and si.inuse_pages <= used - beyond
    assert model.syscall(proc, "munmap", (addr, SIZE)) == 0 and model.syscall(proc, "close", (fd,)) == 0
    complete_swap_writes(model)
    check_machine(model)
    assert si.inuse_pages == 0 and not inode.swapped and not model.mem.swap.shmem_swaplist


def test_swapoff_reads_every_shmem_page_back(swapfile: Path) -> None:
    model, proc, _, inode = _written_past_the_limit(swapfile)
    swapped = len(inode.swapped)
    model.memcg_set("/t", "limit_in_bytes", 64 << 20)
    assert model.syscall(proc, "swapoff", (str(swapfile),)) == 0
    check_machine(model)
    assert not inode.swapped and len(inode.i_pages) == SIZE // PG and swapped
    assert _meminfo(model)["Shmem"] == SIZE // 1024


def test_without_swap_written_shmem_stays_and_the_memcg_ooms(swapfile: Path) -> None:
    """No swap: the written pages cannot leave (shmem_writeout finds no slot and reclaim activates
    them), so a writer past its memcg's limit is OOM-killed, and nothing was dropped."""
    model, proc = _machine(swapfile)
    assert model.syscall(proc, "swapoff", (str(swapfile),)) == 0
    addr = model.syscall(proc, "mmap", (0, SIZE, RW, SHARED_ANON, -1, 0))
    assert model.access(proc, addr, SIZE, True) == "SIGKILL"
    assert model.mem.events["pswpout"] == 0
    check_machine(model)


def _smaps_swap_kb(model: ModelBackend, pid: int, addr: int) -> int:
    smaps = model.view(pid, "smaps")
    block = smaps[smaps.index(f"{addr:08x}-"):].split("VmFlags")[0]
    return next(int(line.split()[1]) for line in block.splitlines() if line.startswith("Swap:"))


def test_smaps_swap_counts_the_objects_pages_on_swap_except_under_a_private_copy(swapfile: Path) -> None:
    """smaps' Swap of a shmem mapping (shmem_swap_usage): a shared mapping of the whole object counts
    every page of it on swap, one of part of it those in its range; a private writable mapping those
    under no PTE (smaps_pte_hole), so a page it copied on write no longer counts."""
    model, proc = _machine(swapfile)
    fd = model.syscall(proc, "memfd_create", ("vmlab", 0))
    assert model.syscall(proc, "ftruncate", (fd, SIZE)) == 0
    shared = model.syscall(proc, "mmap", (0, SIZE, RW, 0x01, fd, 0))
    assert model.access(proc, shared, SIZE, True) is None
    complete_swap_writes(model)
    inode = _shmem_inode(model, proc, shared)
    half = SIZE // 2
    second = sum(1 for i in inode.swapped if i >= half // PG)
    part = model.syscall(proc, "mmap", (0, half, RW, 0x01, fd, half))
    private = model.syscall(proc, "mmap", (0, SIZE, RW, 0x02, fd, 0))  # MAP_PRIVATE
    swapped = len(inode.swapped)
    assert _smaps_swap_kb(model, proc, shared) == _smaps_swap_kb(model, proc, private) == 4 * swapped
    assert _smaps_swap_kb(model, proc, part) == 4 * second and 0 < second < swapped
    assert model.access(proc, private, PG, True) is None  # page 0 read back and copied
    assert model.access(proc, shared, SIZE, True) is None  # the object cycles through swap again
    complete_swap_writes(model)
    check_machine(model)
    assert 0 in inode.swapped  # the object's page 0 is on swap again, under the private copy
    copy_swapped = is_swap_slot_pte(model.tasks[proc].mm.pt.get_pte(private))
    assert _smaps_swap_kb(model, proc, shared) == 4 * len(inode.swapped)
    assert _smaps_swap_kb(model, proc, private) == 4 * (len(inode.swapped) - 1 + copy_swapped)


def test_madv_remove_punches_a_hole_pages_and_slots_but_not_a_private_copy(swapfile: Path) -> None:
    """MADV_REMOVE of the second half of a shared mapping (shmem_fallocate's hole punch): the object's
    pages there leave the cache, its pages on swap there lose their slots, every mapping's PTEs of
    them go, but a private mapping's copy on write of one stays, mapped and untouched."""
    model, proc = _machine(swapfile)
    fd = model.syscall(proc, "memfd_create", ("vmlab", 0))
    assert model.syscall(proc, "ftruncate", (fd, SIZE)) == 0
    shared = model.syscall(proc, "mmap", (0, SIZE, RW, 0x01, fd, 0))
    private = model.syscall(proc, "mmap", (0, SIZE, RW, 0x02, fd, 0))  # MAP_PRIVATE
    assert model.access(proc, shared, SIZE, True) is None
    last = SIZE // PG - 1
    assert model.access(proc, private + last * PG, PG, True) is None  # a copy of the last page
    complete_swap_writes(model)
    inode = _shmem_inode(model, proc, shared)
    si = model.mem.swap.active()[0]
    half = SIZE // PG // 2
    second = sum(1 for i in inode.swapped if i >= half)
    used, rss_anon = si.inuse_pages, model.counters(proc).rss_anon_kb
    assert second and model.syscall(proc, "madvise", (shared + half * PG, SIZE // 2, 9)) == 0  # MADV_REMOVE
    check_machine(model)
    assert not [i for i in [*inode.i_pages, *inode.swapped] if i >= half]
    assert si.inuse_pages == used - second
    assert model.counters(proc).rss_anon_kb == rss_anon  # the private copy (or its swap entry) stays
    pt = model.tasks[proc].mm.pt
    assert pt is not None and pt.get_pte(private + last * PG) != 0
    assert model.syscall(proc, "madvise", (private, SIZE, 9)) == -13  # EACCES: not a shared mapping


def test_swapoff_survives_the_oom_kill_of_the_objects_last_user(swapfile: Path) -> None:
    """swapoff reading a shmem object back into a memcg too small for it OOM-kills the object's only
    user; its end frees the object and its slots, some of them while a slot cluster around the page
    being read was read ahead: the page is then not read (the explore profile found swap_read_folio
    asked for a slot already freed), and swapoff completes."""
    model, proc = _machine(swapfile)
    addr = model.syscall(proc, "mmap", (0, SIZE, RW, SHARED_ANON, -1, 0))
    assert model.access(proc, addr, SIZE, True) is None
    complete_swap_writes(model)
    other = model.spawn("other")  # swapoff from outside the memcg
    assert model.syscall(other, "swapoff", (str(swapfile),)) == 0
    check_machine(model)
    assert proc not in model.tasks and not model.mem.swap.shmem_swaplist and not model.mem.swap.active()
