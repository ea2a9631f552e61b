"""A model machine with one swap area, for the swap tests; and the anon step of shrink_inactive_list
in its simplest form (isolate, reclaim_anon_folio, free or put back), so that swap-out can be driven
folio by folio, independently of vmscan's scan balance."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from vmlab.backend import Backend, Program, Settings
from vmlab.host.oracle import HostBackend
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.blk_mq import BlockDevice
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.page_flags import PG
from vmlab.kernel.rmap import RmapIndex
from vmlab.kernel.swap import LRU_INACTIVE_ANON, lru_add_drain, put_page
from vmlab.kernel.swap_state import reclaim_anon_folio

from hostkit import Memcgs, on_cpu

#: The size of the host's swap file (host_swap) and of the model's area that stands for it.
SWAP_SIZE = 16 << 20
MADV_PAGEOUT = 21
PRIVATE_ANON = 0x22
RW = 3


def model_with_swap(swapfile: Path, ram: int = 64 << 20, host_disk: bool = False) -> tuple[ModelBackend, int]:
    """A model running the built-in program with `swapfile` (its size as the host has it) swapped on.
    Its device is taken as solid state (VMA swap readahead), whatever disk the file is on, so that a
    model test runs the same on every machine; `host_disk`: as the host's disk says (rotational:
    swap_cluster_readahead), for the comparisons with the host swapping to a file on that disk."""
    backend = ModelBackend(ram)
    pid = backend.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=ram))
    assert backend.syscall(pid, "swapon", (str(swapfile), 0)) == 0
    if not host_disk:
        solid_state(backend)
    return backend, pid


def host_sized_swapfile(tmp_path: Path) -> Path:
    """A sparse file as large as host_swap's, for the model's side of a comparison to swap on."""
    shadow = tmp_path / "swapfile"
    with shadow.open("wb") as f:
        f.truncate(SWAP_SIZE)
    return shadow


def model_in_a_memcg(tmp_path: Path, limit: int) -> tuple[ModelBackend, int]:
    """The model's side of a host run in a v1 memcg with host_swap on: a swap area as large as the
    host's (its disk taken as the host's), a memcg "/t" of `limit` bytes and a new process in it."""
    model, _ = model_with_swap(host_sized_swapfile(tmp_path), host_disk=True)
    assert model.memcg_create("/t", limit) == 0
    proc = model.spawn("proc")
    assert model.memcg_attach(proc, "/t") == 0
    return model, proc


T = TypeVar("T")
#: What a comparison runs on one side: (backend, pid, settle) -> what it saw.
SideSteps = Callable[[Backend, int, Callable[[], None]], T]


def in_a_memcg_on_both(steps: SideSteps[T], program: Program, memcgs: Memcgs, tmp_path: Path,
                       name: str) -> tuple[T, T]:
    """`steps` by a process in an 8 MiB v1 memcg (swappiness 60, named after `name`) on the kernel,
    with host_swap on and the process on CPU 0, then on the model (model_in_a_memcg; its machine
    checked after), each settling by 100 ms; (kernel's, model's), both printed."""
    cg = memcgs.make(name, "8M")
    (cg / "memory.swappiness").write_text("60")
    with on_cpu(0), HostBackend(timeout=60) as host:
        pid = host.start(program, Settings())
        (cg / "cgroup.procs").write_text(str(pid))
        kernel = steps(host, pid, lambda: time.sleep(0.1))
    model, proc = model_in_a_memcg(tmp_path, 8 << 20)
    got = steps(model, proc, lambda: model.sleep(proc, 100_000_000))
    check_machine(model)
    print(f"kernel {kernel}\nmodel  {got}")
    return kernel, got


def solid_state(backend: ModelBackend) -> None:
    """Take every active swap area of the model as on the model's own solid-state disk (SWP_SOLIDSTATE:
    VMA swap readahead; the block layer's default max_segments), whatever disk its host file is on: a
    model test's swap-in reads, and its swap-out merges its writes, the same on every machine."""
    for si in backend.mem.swap.active():
        si.solidstate = True
        si.bdev = BlockDevice()


@pytest.fixture
def swapfile(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB file (4095 swap slots after the header page) the model may swapon."""
    path = tmp_path / "swapfile"
    with path.open("wb") as f:
        f.truncate(16 << 20)
    yield path


def complete_swap_writes(backend: ModelBackend) -> None:
    """Let simulated time pass until every swap write under way has completed (each device's last
    request done): its folio is clean, off write-back and rotated to the inactive tail."""
    clock = backend.mem.clock
    due = max((si.bdev.busy_until for si in backend.mem.swap.active()), default=0)
    if due > clock.now_ns:
        clock.advance(due - clock.now_ns)


def shrink_inactive_anon(backend: ModelBackend, nr: int) -> tuple[int, int]:
    """What shrink_inactive_list does to anon folios, in the simplest form, some time after the swap
    writes started before it have completed (complete_swap_writes): drain the CPU's folio batches
    (lru_add_drain: the rotations of folios whose writes completed hold references there), isolate
    the `nr` oldest inactive anon folios, hand each to reclaim_anon_folio, put back those it keeps (a
    written one at the tail, an activated one on the active list). Returns (scanned, freed)."""
    mem = backend.mem
    complete_swap_writes(backend)
    lru_add_drain(mem)
    heads = mem.lruvec.oldest(LRU_INACTIVE_ANON, nr)
    return len(heads), _reclaim(backend, heads)


def free_unmapped_swap_cache(backend: ModelBackend) -> None:
    """What reclaim does in time with the swap-cache folios no process maps, which a run can leave
    behind: a folio whose write was in flight when its last mapping went stays in the cache
    (folio_free_swap leaves it) until reclaim, its write complete, frees it."""
    mem = backend.mem
    complete_swap_writes(backend)
    lru_add_drain(mem)
    _reclaim(backend, [h for h in mem.swap.cache.values() if mem.mem_map._mapcount_a[h] < 0])


def _reclaim(backend: ModelBackend, heads: list[int]) -> int:
    """Isolate each folio of `heads` (on an LRU list), hand it to reclaim_anon_folio, put back those
    it keeps (a written one at the inactive tail, an activated one on the active list); the number
    freed."""
    mem = backend.mem
    mm_map = mem.mem_map
    rmap = RmapIndex(t.mm for t in backend.tasks.values())
    freed = 0
    for head in heads:
        mem.lruvec.delete(mm_map, head)  # folio_isolate_lru(): off the list, one more reference
        mm_map._refcount[head] += 1
        if reclaim_anon_folio(mem, head, lambda pfn: rmap.walk(mem, pfn)):
            put_page(mem, head)
            freed += 1
        else:
            mem.lruvec.add(mm_map, head, tail=not mm_map.test(head, PG.active))
            mm_map._refcount[head] -= 1
    return freed


@pytest.fixture
def host_swap() -> Iterator[Path]:
    """A 16 MiB swap file swapped on on the host; swapped off and removed afterwards, pass or fail."""
    if os.geteuid() != 0:
        pytest.skip("swapon needs root")
    path = Path(f"/var/tmp/vmlab-swap-{os.getpid()}")
    try:
        subprocess.run(["fallocate", "-l", str(SWAP_SIZE), str(path)], check=True, capture_output=True)
        path.chmod(0o600)
        subprocess.run(["mkswap", "-q", str(path)], check=True, capture_output=True)
        on = subprocess.run(["swapon", str(path)], capture_output=True, text=True)
        if on.returncode:
            pytest.skip(f"swapon {path} refused: {on.stderr.strip()}")
        yield path
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot make a swap file on the root file system: {err}")
    finally:
        subprocess.run(["swapoff", str(path)], capture_output=True)
        path.unlink(missing_ok=True)
