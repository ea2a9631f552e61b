"""Swap against this host's kernel: a swap file on the ext4 root (fallocate + mkswap + swapon, removed
in a finally with swapoff + rm). While it is on, every process on the machine may swap, so it stays
on for a few seconds only.

1. MADV_PAGEOUT of 256 written anon pages, then a read of 16 and a fork: VmSwap, majflt/minflt, the
   pagemap (swap type/offset, then present), the VMA's smaps Swap/SwapPss and /proc/swaps' Used column
   agree exactly with the model running the same steps with a swap area of the same size.
2. A process writing 16 MiB in a cgroup-v1 memcg limited to 8 MiB is swapped out by memcg reclaim:
   VmSwap equals 4 kB x the pagemap entries with the swap bit, RSS + swap covers every written page,
   every entry names the one area (type 0) and distinct slots — the accounting rules the model keeps
   (check_machine's swap checks), held by the real kernel.
3. A swap-in charged to a memcg the process has left, at that memcg's memsw limit, with no task in
   it to OOM-kill: the fault is retried for ever (the seed-11 finding of the pressure machine).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hostutil import PRIVATE_ANON, RW
from swapkit import (
    MADV_PAGEOUT,
    SWAP_SIZE,
    host_sized_swapfile,
    in_a_memcg_on_both,
    model_with_swap,
)
from vmlab.backend import Backend, Program, Settings
from vmlab.host.oracle import HostBackend
from vmlab.kernel.debug_vm import check_machine

from hostkit import Memcgs, on_cpu

PG_SIZE = 4096
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63
PFN_MASK = (1 << 55) - 1


#: The /proc/vmstat events of reclaim's writes: pageout() counts each folio it writes in
#: nr_vmscan_write, a swap write in pswpout too (machine-wide: nothing else swaps on an idle machine).
WRITE_EVENTS = ("nr_vmscan_write", "pswpout")


def _vmstat(backend: Backend, names: tuple[str, ...]) -> dict[str, int]:
    """The /proc/vmstat counters `names` of the backend's machine (the host's with the per-CPU deltas
    folded in: HostBackend.machine_view)."""
    table = dict(line.split() for line in backend.machine_view("vmstat").splitlines())
    return {name: int(table[name]) for name in names}


def _pageout_steps(backend: Backend, pid: int) -> dict[str, object]:
    """The steps both sides run, and what they show after each."""
    addr = backend.syscall(pid, "mmap", (0, 256 * PG_SIZE, RW, PRIVATE_ANON, -1, 0))
    assert backend.access(pid, addr, 256 * PG_SIZE, True) is None
    c0 = backend.counters(pid)
    v0 = _vmstat(backend, WRITE_EVENTS)
    assert backend.syscall(pid, "madvise", (addr, 256 * PG_SIZE, MADV_PAGEOUT)) == 0
    v1 = _vmstat(backend, WRITE_EVENTS)
    c1 = backend.counters(pid)
    out: dict[str, object] = {"swap_after_pageout": c1.vm_swap_kb,
                              "pageout_writes": {k: v1[k] - v0[k] for k in WRITE_EVENTS},
                              "anon_drop": c0.rss_anon_kb - c1.rss_anon_kb,
                              "pagemap_after_pageout": backend.pagemap(pid, addr, addr + 32 * PG_SIZE)}
    assert backend.access(pid, addr, 16 * PG_SIZE, False) is None
    c2 = backend.counters(pid)
    out["read_back"] = (c2.majflt - c1.majflt, c2.minflt - c1.minflt, c2.vm_swap_kb)
    out["pagemap_after_read"] = [e & ~PFN_MASK if e & PM_PRESENT else e
                                 for e in backend.pagemap(pid, addr, addr + 20 * PG_SIZE)]
    backend.fork(pid)
    smaps = backend.view(pid, "smaps")
    block = smaps[smaps.index(f"{addr:08x}-"):].split("VmFlags")[0]
    out["smaps"] = [line for line in block.splitlines() if line.startswith(("Swap", "Rss", "Anonymous"))]
    return out


def test_pageout_read_back_and_fork_agree_with_the_kernel(host_swap: Path, program: Program,
                                                          tmp_path: Path) -> None:
    # Pinned: a stepper that moves to the other CPU while it writes leaves up to 30 pages in the first
    # CPU's lru_add batch, off every LRU list, and MADV_PAGEOUT (which drains only its own CPU's) skips
    # them (a run here paged out 239 of the 256; a probe moving the stepper half-way, 250).
    with on_cpu(0), HostBackend(timeout=30) as host:
        expected = _pageout_steps(host, host.start(program, Settings()))
        used_kb = int(Path("/proc/swaps").read_text().splitlines()[1].split()[3])
    shadow = host_sized_swapfile(tmp_path)
    model, pid = model_with_swap(shadow, host_disk=True)
    got = _pageout_steps(model, pid)
    check_machine(model)
    print("kernel:", expected)
    assert got == expected
    # /proc/swaps while both processes lived: 960 kB still swapped (the fork shares the slots)
    # plus 64 kB of slots the swap cache keeps for the 16 pages read back.
    assert used_kb == model.mem.swap.active()[0].inuse_pages * 4 == 1024


def test_memcg_limit_swaps_out_and_accounting_holds(host_swap: Path, program: Program,
                                                    memcgs: Memcgs) -> None:
    cg = memcgs.make("swap", "8M")
    (cg / "memory.swappiness").write_text("60")
    with HostBackend(timeout=60) as host:
        pid = host.start(program, Settings())
        (cg / "cgroup.procs").write_text(str(pid))
        pages = 4096  # 16 MiB against an 8 MiB limit, with 16 MiB of swap
        addr = host.syscall(pid, "mmap", (0, pages * PG_SIZE, RW, PRIVATE_ANON, -1, 0))
        assert host.access(pid, addr, pages * PG_SIZE, True) is None
        counters = host.counters(pid)
        entries = host.pagemap(pid, addr, addr + pages * PG_SIZE)
    swapped = [e for e in entries if e & PM_SWAP]
    present = [e for e in entries if e & PM_PRESENT]
    print(f"kernel: VmSwap {counters.vm_swap_kb} kB, {len(swapped)} swap entries, {len(present)} present")
    assert counters.vm_swap_kb >= 6 << 10  # at least 6 of the 16 MiB went to swap
    assert counters.vm_swap_kb == 4 * len(swapped)  # MM_SWAPENTS = swap PTEs
    assert len(swapped) + len(present) == pages  # every written page is resident or swapped
    assert {e & 0x1F for e in swapped} == {0}  # one area: type 0
    offsets = [(e & PFN_MASK) >> 5 for e in swapped]
    assert len(set(offsets)) == len(offsets) and min(offsets) > 0 and max(offsets) < SWAP_SIZE // PG_SIZE


#: The /proc/vmstat events of a writer swapped out by its memcg: the pages written, those whose
#: writes completed (every folio's, in nr_written), and those whose write's end found them still
#: wanted by reclaim and moved them to the inactive tail.
ROTATION_EVENTS = ("pswpout", "nr_written", "pgrotated")
#: How far the model's swap writes may be from the kernel's (a fraction of the kernel's): the kernel's
#: count depends on when its requests complete against the writer's faults (measured here: 2,405 to
#: 2,559 in 39 runs of 40, once 2,147), the model's on its own Costs.swap_io_ns and scan_ns (2,450).
WRITES_TOLERANCE = 0.15


def _writer_in_a_memcg(backend: Backend, pid: int, settle: Callable[[], None]) -> dict[str, int]:
    """The vmstat events of ROTATION_EVENTS while `pid` (in an 8 MiB memcg) writes 16 MiB, counted
    once `settle` has let the last writes complete, and its VmSwap in pages."""
    addr = backend.syscall(pid, "mmap", (0, 16 << 20, RW, PRIVATE_ANON, -1, 0))
    before = _vmstat(backend, ROTATION_EVENTS)
    assert backend.access(pid, addr, 16 << 20, True) is None
    settle()
    after = _vmstat(backend, ROTATION_EVENTS)
    swapped = backend.counters(pid).vm_swap_kb // 4
    return {**{k: after[k] - before[k] for k in ROTATION_EVENTS}, "swapped": swapped}


def test_swap_writes_are_merged_and_their_folios_rotated_as_on_the_kernel(
        host_swap: Path, program: Program, memcgs: Memcgs, tmp_path: Path) -> None:
    """A 16 MiB writer in an 8 MiB v1 memcg: memcg reclaim writes a pass's pages under one block plug
    (shrink_lruvec), merged into requests of consecutive slots, and each write's end moves its folio,
    clean, to the inactive tail (folio_rotate_reclaimable), where the next pass frees it first; so
    reclaim writes about as many pages as it must free (measured: 2,405-2,559 of the 4,096 written,
    nearly all rotated: 2,387-2,573). The model wrote 4,064 before its writes were plugged: one 100 us request
    each, one after another, so most were still in flight when reclaim came back and it wrote more.
    Both sides rotate nearly every page they write, and write within WRITES_TOLERANCE of each other."""
    kernel, got = in_a_memcg_on_both(_writer_in_a_memcg, program, memcgs, tmp_path, "rotate")
    for run in (kernel, got):
        assert run["pgrotated"] >= 0.9 * run["pswpout"] and run["swapped"] == run["pswpout"]
    # Every write completed; the host's nr_written is machine-wide (others' file writes count too).
    assert got["nr_written"] == got["pswpout"] and kernel["nr_written"] >= kernel["pswpout"]
    assert abs(got["pswpout"] - kernel["pswpout"]) <= WRITES_TOLERANCE * kernel["pswpout"]


#: What one memsw run shows: (swapped bytes by memory.stat, memsw - memory usage, killed by the OOM
#: killer, memory.memsw.failcnt, memsw max usage in bytes, memsw - memory usage after the run).
MemswRun = tuple[int, int, bool, int, int, int]


def _host_memsw_run(program: Program, memcgs: Memcgs, memsw: str | None) -> MemswRun:
    """A process writing 16 MiB of private anon memory in a v1 memcg of 8 MiB (memsw limit `memsw`)."""
    cg = memcgs.make(f"memsw{memsw or ''}", "8M")
    (cg / "memory.swappiness").write_text("60")
    if memsw is not None:
        (cg / "memory.memsw.limit_in_bytes").write_text(memsw)

    def read(name: str) -> int:
        return int((cg / name).read_text())

    with HostBackend(timeout=60) as host:
        pid = host.start(program, Settings())
        (cg / "cgroup.procs").write_text(str(pid))
        addr = host.syscall(pid, "mmap", (0, 16 << 20, RW, PRIVATE_ANON, -1, 0))
        killed = host.access(pid, addr, 16 << 20, True) == "SIGKILL"
        stat = dict(line.split() for line in (cg / "memory.stat").read_text().splitlines())
        during = read("memory.memsw.usage_in_bytes") - read("memory.usage_in_bytes")
        swapped = int(stat["swap"])
    return (swapped, during, killed, read("memory.memsw.failcnt"),
            read("memory.memsw.max_usage_in_bytes"),
            read("memory.memsw.usage_in_bytes") - read("memory.usage_in_bytes"))


def _model_memsw_run(swapfile: Path, memsw: str | None) -> MemswRun:
    """The same run on the model, with a swap area as large as the host's."""
    model, _ = model_with_swap(swapfile, host_disk=True)
    assert model.memcg_create("/t", 8 << 20) == 0
    if memsw is not None:
        assert model.memcg_set("/t", "memsw.limit_in_bytes", int(memsw[:-1]) << 20) == 0
    proc = model.spawn("proc")
    assert model.memcg_attach(proc, "/t") == 0
    memcg = model.memcgs.lookup("/t")
    assert memcg is not None
    addr = model.syscall(proc, "mmap", (0, 16 << 20, RW, PRIVATE_ANON, -1, 0))
    killed = model.access(proc, addr, 16 << 20, True) == "SIGKILL"
    check_machine(model)
    swapped = int(dict(line.split() for line in memcg.memory_stat_v1())["swap"])
    during = (memcg.memsw.usage - memcg.memory.usage) * PG_SIZE
    if not killed:
        model.exit(proc)
    return (swapped, during, killed, memcg.memsw.failcnt, memcg.memsw.watermark * PG_SIZE,
            (memcg.memsw.usage - memcg.memory.usage) * PG_SIZE)


@pytest.mark.parametrize("memsw", [None, "12M"])
def test_memsw_counts_swap_and_its_limit_bounds_memory_plus_swap(host_swap: Path, program: Program,
                                                                 memcgs: Memcgs, tmp_path: Path,
                                                                 memsw: str | None) -> None:
    """v1 memory.memsw on the kernel and the model, for a process writing 16 MiB in an 8 MiB memcg:
    - no memsw limit: memsw usage - usage is exactly memory.stat's swap on both, and both swapped
      out 6 to 10 MiB, the model within 1 MiB of the kernel;
    - a 12 MiB memsw limit: both OOM-kill the process once memory + swap reaches it (swapping cannot
      lower it), and max usage stays within 12 MiB. memory.memsw.failcnt stays 0 on 6.18 (only v1's
      memory counter tracks failures: page_counter's track_failcnt), in the model too.
    Either way the victim's or the exited process's swap goes back to zero once its slots are freed."""
    shadow = host_sized_swapfile(tmp_path)
    host = _host_memsw_run(program, memcgs, memsw)
    model = _model_memsw_run(shadow, memsw)
    print(f"kernel {host}\nmodel  {model}")
    for run in (host, model):
        swapped, during, killed, failcnt, max_usage, after = run
        assert (killed, failcnt) == (memsw is not None, 0)
        if memsw is None:
            assert during == swapped and 6 << 20 <= swapped <= 10 << 20
            assert max_usage <= 18 << 20
        else:
            assert max_usage <= 12 << 20
        assert after == 0
    assert model[2:4] == host[2:4]
    # How much went to swap and the peak: within 1 MiB of the kernel's (measured 8.54 vs 8.59 MB swapped;
    # 17.08 MB peak on both since page tables are charged, 17.04 in the model before; equal at the
    # memsw limit): reclaim frees SWAP_CLUSTER_MAX batches and the charge stock holds up to
    # MEMCG_CHARGE_BATCH pages, so the split is not page exact.
    assert abs(model[0] - host[0]) <= 1 << 20 and abs(model[4] - host[4]) <= 1 << 20


def _stime(pid: int) -> int:
    """Clock ticks `pid` has spent in the kernel (/proc/PID/stat field 15)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[12])


def test_swap_in_charged_to_a_memcg_its_task_left_loops_in_the_fault(host_swap: Path, program: Program,
                                                                   memcgs: Memcgs) -> None:
    """The kernel's side of the seed-11 finding (test_pressure_invariants: the machine's _access). A
    process writes 4 MiB in memcg A (limit 2 MiB: memcg reclaim swaps the rest out, the memsw charges
    staying with the entries, charged to A), moves to memcg B, and A's memsw limit is set 32 pages above
    its usage (A's charge stock drained first). Reading the pages back charges each swap-in to A (the
    memcg recorded for the entry): the batch try (64 pages) fails on memsw, which clears
    MEMCG_RECLAIM_MAY_SWAP for the whole charge (6.18; "reclaim_options" is reset per retry only by a
    later fix of Bing Jiao's), so once A's memory is full the exact charge fails on memory and its
    reclaim may not swap; the OOM killer has no task in A to kill. The read does not finish, the
    process spins in the kernel (its system time grows) and is not killed, A's oom_kill stays 0, memsw
    stays below its limit, and the log says "Out of memory and no killable processes...". Raising A's
    memsw limit lets the same read finish: it was the fault retried, not a process stopped. The model
    does the same: test_memcg.py's test_a_batch_that_fails_on_memsw_leaves_the_whole_charge_without_swap."""
    left = memcgs.make("left", "2M")
    new = memcgs.make("new", "64M")
    (left / "memory.swappiness").write_text("60")
    size = 4 << 20

    def oom_kills() -> int:
        return int(dict(line.split() for line in (left / "memory.oom_control").read_text().splitlines())
                   ["oom_kill"])

    with HostBackend(timeout=60) as host:
        pid = host.start(program, Settings())
        (left / "cgroup.procs").write_text(str(pid))
        addr = host.syscall(pid, "mmap", (0, size, RW, PRIVATE_ANON, -1, 0))
        assert host.access(pid, addr, size, True) is None
        (new / "cgroup.procs").write_text(str(pid))
        memsw = left / "memory.memsw.limit_in_bytes"
        usage = int((left / "memory.memsw.usage_in_bytes").read_text())
        with contextlib.suppress(OSError):  # below the usage: drains the stock, then -EBUSY
            memsw.write_text(str(usage - PG_SIZE))
        memsw.write_text(str(int((left / "memory.memsw.usage_in_bytes").read_text()) + 32 * PG_SIZE))
        stat = dict(line.split() for line in (left / "memory.stat").read_text().splitlines())
        assert int(stat["swap"]) >= 1 << 20, stat  # at least 1 MiB of A's charge is in swap
        before = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.count(
            "Out of memory and no killable processes...")
        result: list[str | None] = []
        reader = threading.Thread(target=lambda: result.append(host.access(pid, addr, size, False)),
                                  daemon=True)
        reader.start()
        time.sleep(0.3)
        spent = _stime(pid)
        time.sleep(0.5)
        stuck = reader.is_alive()
        spinning = _stime(pid) > spent
        kills = oom_kills()
        room = int(memsw.read_text()) - int((left / "memory.memsw.usage_in_bytes").read_text())
        log = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
        memsw.write_text("-1")
        reader.join(30)
        print(f"kernel: stuck {stuck}, spinning {spinning}, oom_kill {kills}, swap {stat['swap']}, "
              f"memsw room {room}")
        assert stuck and spinning and kills == 0
        assert 0 < room < 64 * PG_SIZE  # memsw had room for the page, not for the batch
        assert log.count("Out of memory and no killable processes...") > before
        assert result == [None]  # once A has room, the same read finishes; the process was never killed
