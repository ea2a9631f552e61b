"""Memory cgroups in the model (mm/memcontrol.c, mm/vmscan.c memcg reclaim, 6.18 v1): page cache charged
to the task that brings it in, memcg reclaim before the memcg OOM, swap-out from memcg reclaim,
memory.stat from the charged pages, and the memcg invariants of check_machine. The differential
checks against the kernel are in test_lru_host.py and test_oom_kill.py."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from memcgkit import drained_model_counters, model_to_the_limit
from memcgkit import memcg_machine as machine
from swapkit import model_with_swap
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.fork import THREAD_SIZE_PAGES
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.memcontrol import MEMCG_CHARGE_BATCH, NR_MEMCG_STOCK, PAGE_COUNTER_MAX, MemCgroup
from vmlab.kernel.mm_types import MM_STRUCT_SIZE, RSS_STAT_SIZE
from vmlab.kernel.swap import lru_add_drain
from vmlab.kernel.uapi import PAGE_SIZE
from vmlab.kernel.xarray import XA_NODE_SIZE

MB = 1 << 20
PAGE = 4096
RW, PRIVATE_ANON, NORESERVE_ANON = 3, 0x22, 0x22 | 0x4000
POSIX_FADV_DONTNEED = 4


def read_all(model: ModelBackend, pid: int, path: str, buf: int, chunk: int = MB) -> int:
    """open, read() to EOF in `chunk`s into `buf`, close; the bytes read."""
    fd = model.syscall(pid, "openat", (-100, path, 0))
    total = 0
    while (n := model.syscall(pid, "read", (fd, buf, chunk))) > 0:
        total += n
    model.syscall(pid, "close", (fd,))
    return total


def test_page_cache_is_charged_to_the_reader_and_uncharged_when_dropped() -> None:
    """read() charges the pages it brings in to the reader's memcg (cache, inactive_file), the stock
    holds the rest of a charge batch, the buffer's page tables and the page cache's XArray nodes (17
    for 1,024 pages: 16 leaves and their parent) count as kmem, and dropping the pages uncharges
    them and their nodes (what is left of a page of node bytes may stay in the object stock)."""
    model, pid, memcg = machine(64 * MB)
    model.create_file("/sim/f", 4 * MB)
    buf = model.syscall(pid, "mmap", (0, MB, RW, PRIVATE_ANON, -1, 0))
    assert read_all(model, pid, "/sim/f", buf) == 4 * MB
    lru_add_drain(model.mem)  # the last pages read wait in the CPU's lru_add batch, off the lists
    state = memcg.page_state()
    assert state["cache"] == 1024 and state["inactive_file"] + state["active_file"] == 1024
    assert state["rss"] == 256  # the buffer
    # The buffer's page table is charged too, as kmem (its PTE table: the PUD and PMD tables above
    # it came with the exec's writes to the top of the stack, in the root memcg).
    assert memcg.kmem_charged == 1 and memcg.kmem_obj_pages == -(-17 * XA_NODE_SIZE // PAGE_SIZE)
    assert memcg.kmem.usage == memcg.kmem_charged + memcg.kmem_obj_pages
    assert memcg.memory.usage == memcg.charged + memcg.kmem.usage + model.memcgs.stock_pages(memcg)
    assert 0 <= model.memcgs.stock_pages(memcg) <= MEMCG_CHARGE_BATCH
    check_machine(model)
    fd = model.syscall(pid, "openat", (-100, "/sim/f", 0))
    assert model.syscall(pid, "fadvise64", (fd, 0, 0, POSIX_FADV_DONTNEED)) == 0
    assert memcg.page_state()["cache"] == 0 and memcg.stat["pgpgout"] > 0
    assert model._inode("/sim/f").xa_nodes.nr_nodes() == 0 and memcg.kmem_obj_pages <= 1
    check_machine(model)


def test_a_file_larger_than_the_limit_is_read_by_reclaiming_its_cache() -> None:
    """Reading 4x the limit: the memcg reclaims its own page cache at the limit (no OOM, the reader
    lives), usage never passes the limit, failed charges are counted, and only memcg reclaim ran
    (no global pgscan_direct / allocstall: the machine has room)."""
    model, pid, memcg = machine(16 * MB)
    model.create_file("/sim/big", 64 * MB)
    buf = model.syscall(pid, "mmap", (0, MB, RW, PRIVATE_ANON, -1, 0))
    assert read_all(model, pid, "/sim/big", buf) == 64 * MB
    assert pid in model.tasks and memcg.events["oom_kill"] == 0
    assert memcg.memory.watermark == memcg.memory.max and memcg.memory.failcnt > 0
    assert memcg.memory.usage <= memcg.memory.max
    assert model.mem.events["pgsteal_file"] > 0 and model.mem.events["pgscan_direct"] == 0
    assert not any(k.startswith("allocstall") and v for k, v in model.mem.events.items())
    assert memcg.events["max"] > 0
    resident = model.residency("/sim/big")
    assert resident == list(range(16384 - len(resident), 16384))  # the file's tail stays
    check_machine(model)


def test_cache_goes_before_the_memcg_oom_kills_the_hog() -> None:
    """A process with page cache and an anon hog past the limit: the cache is reclaimed first, then
    the memcg OOM kills the hog with the kernel's report lines; the limit holds throughout."""
    model, pid, memcg = machine(32 * MB)
    model.create_file("/sim/f", 16 * MB)
    buf = model.syscall(pid, "mmap", (0, MB, RW, PRIVATE_ANON, -1, 0))
    read_all(model, pid, "/sim/f", buf)
    assert memcg.page_state()["cache"] == 4096
    hog = model.spawn("hog")
    assert model.memcg_attach(hog, "/t") == 0
    addr = model.syscall(hog, "mmap", (0, 64 * MB, RW, NORESERVE_ANON, -1, 0))
    assert model.access(hog, addr, 24 * MB, True) is None  # fits once the cache is reclaimed
    assert memcg.page_state()["cache"] < 4096 and memcg.events["oom_kill"] == 0
    assert model.access(hog, addr + 24 * MB, 40 * MB, True) == "SIGKILL"
    log = model.dmesg()
    assert "hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0" in log
    assert f"Memory cgroup out of memory: Killed process {hog} (hog)" in log
    assert ",oom_memcg=/t,task_memcg=/t,task=hog," in log
    assert memcg.page_state()["cache"] == 0  # all reclaimed before the OOM
    assert memcg.events["oom_kill"] == 1 and pid in model.tasks
    check_machine(model)


def swap_machine(swapfile: Path, limit: int) -> tuple[ModelBackend, int, MemCgroup]:
    """A 128 MiB model machine with `swapfile` swapped on, its first process in memcg /t of `limit`."""
    model, pid = model_with_swap(swapfile, ram=128 * MB)
    assert model.memcg_create("/t", limit) == 0 and model.memcg_attach(pid, "/t") == 0
    memcg = model.memcgs.lookup("/t")
    assert memcg is not None
    return model, pid, memcg


def test_memcg_reclaim_swaps_anon_out_when_swap_exists(swapfile: Path) -> None:
    """With a swap area, an anon working set larger than the limit is swapped out by memcg reclaim
    (pswpout) instead of OOM-killed; usage stays at the limit."""
    model, pid, memcg = swap_machine(swapfile, 8 * MB)
    addr = model.syscall(pid, "mmap", (0, 12 * MB, RW, PRIVATE_ANON, -1, 0))
    assert model.access(pid, addr, 12 * MB, True) is None
    assert memcg.events["oom_kill"] == 0 and model.mem.events["pswpout"] >= 1024
    assert memcg.memory.usage <= memcg.memory.max
    assert model.access(pid, addr, 12 * MB, False) is None  # swapped back in, others out
    assert model.mem.events["pswpin"] > 0
    check_machine(model)


def test_swapped_out_pages_keep_their_memsw_charge_until_their_slots_go(swapfile: Path) -> None:
    """v1 memsw counts memory + swap (memcg1_swapout): once memcg reclaim swaps part of a working set
    out, memsw usage is memory usage plus the memcg's swap, which memory.stat shows; reading the pages
    back moves the charge from the slots to the new folios (memcg1_swapin), and munmap, freeing the
    slots, gives the rest back (mem_cgroup_uncharge_swap)."""
    model, pid, memcg = swap_machine(swapfile, 8 * MB)
    addr = model.syscall(pid, "mmap", (0, 12 * MB, RW, PRIVATE_ANON, -1, 0))
    assert model.access(pid, addr, 12 * MB, True) is None
    out = memcg.swap
    assert out >= 1024 and memcg.memsw.usage == memcg.memory.usage + out
    assert f"swap {out * PAGE}" in memcg.memory_stat_v1()
    check_machine(model)
    assert model.access(pid, addr, 12 * MB, False) is None  # every page back in, others out
    assert model.mem.events["pswpin"] > 0 and memcg.memsw.usage == memcg.memory.usage + memcg.swap
    check_machine(model)
    assert model.syscall(pid, "munmap", (addr, 12 * MB)) == 0
    assert memcg.swap == 0 and memcg.memsw.usage == memcg.memory.usage and not model.memcgs.swap_cgroup
    check_machine(model)


def test_a_memsw_limit_bounds_memory_plus_swap(swapfile: Path) -> None:
    """memory.memsw.limit_in_bytes 12 MiB over memory.limit_in_bytes 8 MiB: a process writing 16 MiB
    swaps about 4 MiB out, then meets the memsw limit, which swapping cannot relieve, and the memcg
    OOM killer kills it. The limits keep memory.max <= memsw.max (-EINVAL otherwise)."""
    model, _, memcg = swap_machine(swapfile, 8 * MB)
    assert model.memcg_set("/t", "memsw.limit_in_bytes", 4 * MB) == -errno.EINVAL
    assert model.memcg_set("/t", "memsw.limit_in_bytes", 12 * MB) == 0
    assert model.memcg_set("/t", "limit_in_bytes", 16 * MB) == -errno.EINVAL
    hog = model.spawn("hog")
    assert model.memcg_attach(hog, "/t") == 0
    addr = model.syscall(hog, "mmap", (0, 16 * MB, RW, PRIVATE_ANON, -1, 0))
    assert model.access(hog, addr, 16 * MB, True) == "SIGKILL"
    assert memcg.events["oom_kill"] == 1 and hog not in model.tasks
    assert model.mem.events["pswpout"] >= 512 and memcg.memsw.failcnt == 0  # 6.18 does not count it
    assert memcg.memsw.watermark <= 3 * 1024 and memcg.swap == 0  # the victim's slots went with it
    check_machine(model)


def test_shrinking_the_limit_reclaims_and_refuses_what_it_cannot() -> None:
    """v1 memory.limit_in_bytes below the usage: reclaim until it fits; -EBUSY when only anon is
    left (no swap)."""
    model, pid, memcg = machine(64 * MB)
    model.create_file("/sim/f", 16 * MB)
    buf = model.syscall(pid, "mmap", (0, 8 * MB, RW, PRIVATE_ANON, -1, 0))
    assert model.access(pid, buf, 8 * MB, True) is None
    read_all(model, pid, "/sim/f", buf)
    assert model.memcg_set("/t", "limit_in_bytes", 12 * MB) == 0
    assert memcg.memory.usage <= 3072 and memcg.memory.max == 3072
    assert model.memcg_set("/t", "limit_in_bytes", 4 * MB) == -16
    assert memcg.memory.max == 3072
    check_machine(model)


def test_memory_stat_has_the_kernels_v1_fields_in_order() -> None:
    """memory.stat's field names, in order, are those of this host's v1 memory.stat."""
    host = Path("/sys/fs/cgroup/memory/memory.stat")
    if not host.exists():
        pytest.skip("no cgroup-v1 memory controller here to compare memory.stat with")
    _, _, memcg = machine(64 * MB)
    mine = [line.split()[0] for line in memcg.memory_stat_v1()]
    theirs = [line.split()[0] for line in host.read_text().splitlines()]
    assert mine == theirs


def test_check_machine_catches_a_charge_out_of_step() -> None:
    """The memcg invariant: usage is the charged pages (plus forced and stocked ones)."""
    model, _, memcg = machine(64 * MB)
    memcg.memory.charge(1)
    with pytest.raises(AssertionError, match="usage"):
        check_machine(model)


def _sparse_writes(model: ModelBackend, pid: int, size: int) -> int:
    """Map `size` bytes (not committed) and write one byte per 2 MiB: one PTE table per write."""
    addr = model.syscall(pid, "mmap", (0, size, RW, NORESERVE_ANON, -1, 0))
    for off in range(0, size, 2 * MB):
        assert model.access(pid, addr + off, 1, True) is None
    return addr


def test_page_tables_stay_charged_to_the_memcg_that_allocated_them() -> None:
    """Tables are charged (kmem, and in usage) to the memcg of the task that faulted them; after the
    task moves to /b its munmap uncharges /a, not /b (v1 moves no charges); /b is charged only for
    the tables the task allocates there."""
    model, pid, a = machine(64 * MB)
    assert model.memcg_create("/b", 64 * MB) == 0
    b = model.memcgs.lookup("/b")
    assert b is not None
    before = a.kmem_charged
    addr = _sparse_writes(model, pid, 64 * MB)
    assert a.kmem_charged - before >= 32 and a.kmem.usage == a.kmem_charged + a.kmem_obj_pages
    check_machine(model)
    assert model.memcg_attach(pid, "/b") == 0
    addr_b = _sparse_writes(model, pid, 16 * MB)
    assert 8 <= b.kmem_charged <= 9  # 8 PTE tables, and a PMD table if the region crossed a 1 GiB line
    assert b.kmem_obj_pages == 0  # the mapping extended the first one's VMA: no new slab object
    check_machine(model)
    assert model.syscall(pid, "munmap", (addr, 64 * MB)) == 0
    # /a's 32 PTE tables are uncharged from /a; upper tables still used by neighbours stay.
    assert a.kmem_charged - before <= 2 and 8 <= b.kmem_charged <= 9
    check_machine(model)
    assert model.syscall(pid, "munmap", (addr_b, 16 * MB)) == 0
    assert b.kmem_charged <= 1
    check_machine(model)


def test_fork_charges_the_childs_page_tables_to_the_forking_task() -> None:
    """dup_mmap() allocates the child's PGD and tables in the parent's context: they are charged to
    the parent's memcg, one page per table (the PGD included), with the child's kernel stack and
    slab objects (task_struct, mm_struct, ...), and the child's exit gives them all back."""
    model, pid, memcg = machine(64 * MB)
    _sparse_writes(model, pid, 16 * MB)
    model.memcgs.drain_all_stock(model.memcgs.root)
    tables, kmem = memcg.kmem_charged, memcg.kmem.usage
    child = model.fork(pid)
    mm = model.tasks[child].mm
    assert mm.pt is not None
    assert memcg.kmem_charged - tables == mm.pt.nr_tables() == mm.pt.pgtables_bytes // PAGE + 1
    assert memcg.kernel_stack == THREAD_SIZE_PAGES
    slab = sum(model.tasks[child].objects.sizes) + MM_STRUCT_SIZE + RSS_STAT_SIZE  # and the VMAs'
    assert memcg.kmem.usage - kmem >= mm.pt.nr_tables() + THREAD_SIZE_PAGES + slab // PAGE
    check_machine(model)
    model.exit(child)
    model.memcgs.drain_all_stock(model.memcgs.root)
    assert (memcg.kmem_charged, memcg.kernel_stack, memcg.kmem.usage) == (tables, 0, kmem)
    check_machine(model)


def test_a_batch_that_fails_on_memsw_leaves_the_whole_charge_without_swap(swapfile: Path) -> None:
    """try_charge_memcg() (6.18) clears MEMCG_RECLAIM_MAY_SWAP when a try fails on memsw, and nothing in
    that charge sets it again: when the batch (MEMCG_CHARGE_BATCH pages) fails on memsw and the exact
    charge then fails on memory, the reclaim for it still may not swap. A process writes 4 MiB in /t
    (limit 2 MiB: reclaim swaps the rest out) and moves to /u; /t's memsw limit is set 32 pages above
    its usage. Reading the pages back charges the swap-ins to /t: the batch fails on memsw, the page
    on memory, and reclaim, not swapping, frees nothing of /t's anon; the memcg OOM finds no task in
    /t and the fault fails (VM_FAULT_OOM: the kernel retries it for ever; test_host_swap's
    test_swap_in_charged_to_a_memcg_its_task_left_loops_in_the_fault shows this host stalling with
    the same 32 pages of memsw room). With 64 pages of room the batch fits memsw, reclaim swaps, and
    the read completes."""
    model, pid, memcg = swap_machine(swapfile, 2 * MB)
    addr = model.syscall(pid, "mmap", (0, 4 * MB, RW, PRIVATE_ANON, -1, 0))
    assert model.access(pid, addr, 4 * MB, True) is None
    assert model.memcg_create("/u", None) == 0 and model.memcg_attach(pid, "/u") == 0
    assert memcg.swap >= 256 and memcg.memory.usage > memcg.memory.max - MEMCG_CHARGE_BATCH
    limit = memcg.memsw.usage + 32
    assert model.memcg_set("/t", "memsw.limit_in_bytes", limit * PAGE) == 0
    assert model.access(pid, addr, 4 * MB, False) == "VM_FAULT_OOM"
    assert memcg.memsw.usage < memcg.memsw.max  # memsw had room for the page, not for the batch
    assert memcg.events["oom"] >= 1 and memcg.events["oom_kill"] == 0
    assert "Out of memory and no killable processes..." in model.dmesg()
    assert model.memcg_set("/t", "memsw.limit_in_bytes", (memcg.memsw.usage + 64) * PAGE) == 0
    assert model.access(pid, addr, 4 * MB, False) is None
    assert memcg.events["oom_kill"] == 0 and pid in model.tasks
    check_machine(model)


def test_the_charge_stock_keeps_a_slot_per_memcg_up_to_seven() -> None:
    """Each memcg's first page charges a batch of MEMCG_CHARGE_BATCH and stocks the rest in a slot of
    its own; a sibling's charges leave it there (6.18: NR_MEMCG_STOCK slots per CPU), so the next
    page of each comes from its stock. An eighth memcg takes a slot drained for it (the model's
    first; the kernel's a random one); drain_all_stock of one memcg drains every slot."""
    model = ModelBackend()
    tree = model.memcgs
    groups = [tree.mkdir(f"/g{i}") for i in range(NR_MEMCG_STOCK + 1)]
    for memcg in groups[:NR_MEMCG_STOCK]:
        assert tree.try_charge_memcg(memcg, 1, 0) == 0
    assert [m.memory.usage for m in groups] == [MEMCG_CHARGE_BATCH] * NR_MEMCG_STOCK + [0]
    for memcg in groups[:NR_MEMCG_STOCK]:
        assert tree.try_charge_memcg(memcg, 1, 0) == 0  # from its stock: usage unchanged
    assert tree.stock_pages() == NR_MEMCG_STOCK * (MEMCG_CHARGE_BATCH - 2)
    assert tree.try_charge_memcg(groups[-1], 1, 0) == 0
    assert groups[0].memory.usage == 2 and tree.stock_pages(groups[0]) == 0  # its slot went
    assert groups[1].memory.usage == MEMCG_CHARGE_BATCH == groups[-1].memory.usage
    tree.drain_all_stock(groups[3])
    assert tree.stock_pages() == 0 and [m.memory.usage for m in groups] == [2] * NR_MEMCG_STOCK + [1]


def test_a_fork_its_memcg_has_no_room_for_fails_and_leaves_nothing_charged() -> None:
    """copy_process() charges its objects with GFP_KERNEL: at the limit, with nothing to reclaim and
    the OOM killer disabled (v1 oom_kill_disable), the first charge that does not fit fails the fork
    with -ENOMEM and what was charged before it goes back."""
    model, pid, memcg = machine(8 * MB)
    assert model.memcg_set("/t", "oom_kill_disable", 1) == 0
    model_to_the_limit(model, memcg)
    before = drained_model_counters(model, memcg)
    assert model.fork(pid) == -errno.ENOMEM
    assert list(model.tasks) == [pid] and memcg.events["oom"] == 1 and not memcg.events["oom_kill"]
    assert drained_model_counters(model, memcg) == before and memcg.kernel_stack == 0
    check_machine(model)


@pytest.mark.parametrize(("files", "killed"), [
    ("", False),                                   # swap takes what the 8 MiB do not hold
    (" memsw.limit_in_bytes=10M", True),           # memory + swap bounded at 10 MiB
    (" swappiness=0", True),                       # memcg reclaim does not swap at all
])
def test_memcg_statement_writes_the_files_it_is_given(files: str, killed: bool, tmp_path: Path) -> None:
    """`memcg /PATH LIMIT FILE=VALUE...` writes each file after the limit (each a step with its result),
    and the writer of 12 MiB in the 8 MiB memcg, with 16 MiB of swap, lives or is killed by it."""
    from vmlab.lab.run import run
    from vmlab.lab.scenario import parse

    swap = f"/tmp/vmlab-memcg-files-{tmp_path.name}.swap"
    text = (f"set ram 64M\nfile {swap} 16M\nswapon(\"{swap}\")\nmemcg /box 8M{files}\njoin /box\n"
            "a = mmap(NULL, 12M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nwrite a, 12M\n"
            f"expect {'killed SIGKILL' if killed else '= 0'}\n")
    model = ModelBackend()
    try:
        transcript = run(parse(text, "m.vml"), model)
    finally:
        Path(swap).unlink(missing_ok=True)
    assert transcript.failures == 0, transcript.text()
    for setting in files.split():
        assert f"memcg /box {setting.split('=')[0]}=" in transcript.text()
    memcg = model.memcgs.lookup("/box")
    assert memcg is not None
    assert memcg.memsw.max == (10 << 20 if "memsw" in files else PAGE_COUNTER_MAX * PAGE_SIZE) // PAGE_SIZE
    assert memcg.swappiness == (0 if "swappiness" in files else 60)
