"""The page cache's XArray nodes as kmem of the reader's memcg, on this host's kernel and on the model.

i_pages is XA_FLAGS_ACCOUNT, so each xa_node (a radix_tree_node slab object, 584 bytes and the
obj_cgroup pointer: 592 charged) that a read allocates is charged to the reader's memcg through the
per-CPU object stock, a page at a time, as memory.kmem.usage_in_bytes shows; the model keeps the
tree's shape (xarray.XaNodes) and charges the same way. A stepper pinned to CPU 0 in a v1 memcg the
test makes (the `memcgs` fixture removes it) reads a fresh sparse file (`files` removes it) in one of
these patterns, and the kmem and usage it charged (every stock drained) are compared with the model's
running the same steps:
- every page of a 16 MiB file, one pread() each under POSIX_FADV_RANDOM: order-0 pages fill 64
  leaves and their parent (65 nodes, 9 pages with the struct file's leftover bytes);
- one page in every 64 of a 256 MiB file (1,024 preads): a leaf for each, 16 parents and the top
  (1,041 nodes, 150 pages with the struct file's leftover bytes);
- the 16 MiB file read in 1 MiB read() calls: readahead's large folios, whose orders the model shares
  with the kernel (tests/test_diff_readahead.py), and a folio of order 6 or more needs no leaf;
- the first pattern, then POSIX_FADV_DONTNEED of the file: its pages and every node go, and so does
  the charge (the kernel frees nodes after an RCU grace period: its counters are read once settled).

The open() before the first reading charges a struct file (FILP_SIZE bytes) on both: the bytes it
leaves of its page in the object stock (drained into the memcg's nr_charged_bytes, taken up again by
the first node) serve the nodes. Before the model had struct file, its kmem and usage were one page
above the kernel's in every case that reads (10 / 9, 151 / 150, 9 / 8). Now they are the kernel's.
After the drop the kernel frees the nodes in RCU callbacks, which give their pages to the charge
stock of the CPU that runs them: the usage read then may hold up to a batch of them (measured: 9
pages, gone 3 s later), kmem does not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hostutil import PRIVATE_ANON, RW
from memcgkit import (
    Counters,
    drained_host_counters,
    drained_model_counters,
    memcg_machine,
    memcg_stat,
    start_host_stepper,
)
from vmlab.backend import Program
from vmlab.host.oracle import HostBackend
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.fadvise import POSIX_FADV_DONTNEED, POSIX_FADV_RANDOM
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.memcontrol import MEMCG_CHARGE_BATCH

from hostkit import Memcgs

pytestmark = pytest.mark.host

PG = 4096
MB = 1 << 20
O_RDONLY, O_RDWR = 0, 2
AT_FDCWD = -100
MAP_POPULATE = 0x8000

Backend = HostBackend | ModelBackend
#: A workload: (backend, pid, the file's descriptor, a populated 1 MiB buffer) -> None.
Work = Callable[[Backend, int, int, int], None]


def random_pages(size: int, stride: int) -> Work:
    """POSIX_FADV_RANDOM, then one pread() of a page every `stride` pages."""
    def work(backend: Backend, pid: int, fd: int, buf: int) -> None:
        assert backend.syscall(pid, "fadvise64", (fd, 0, 0, POSIX_FADV_RANDOM)) == 0
        for index in range(0, size // PG, stride):
            assert backend.syscall(pid, "pread64", (fd, buf, PG, index * PG)) == PG
    return work


def sequential(size: int) -> Work:
    """read() to EOF in 1 MiB calls."""
    def work(backend: Backend, pid: int, fd: int, buf: int) -> None:
        assert sum(iter(lambda: backend.syscall(pid, "read", (fd, buf, MB)), 0)) == size
    return work


def dropped(inner: Work) -> Work:
    """`inner`, then POSIX_FADV_DONTNEED of the whole file."""
    def work(backend: Backend, pid: int, fd: int, buf: int) -> None:
        inner(backend, pid, fd, buf)
        assert backend.syscall(pid, "fadvise64", (fd, 0, 0, POSIX_FADV_DONTNEED)) == 0
    return work


CASES = {
    "every_page": (16 * MB, random_pages(16 * MB, 1)),
    "one_in_64": (256 * MB, random_pages(256 * MB, 64)),
    "sequential": (16 * MB, sequential(16 * MB)),
    "dropped": (16 * MB, dropped(random_pages(16 * MB, 1))),
}


def charged(backend: Backend, pid: int, path: str, work: Work, counters: Callable[[], Counters]) -> Counters:
    """What `work` over the file at `path` charges: the counters (stocks drained) after it less before
    it; the buffer is mapped and populated and the file opened before the first reading."""
    buf = backend.syscall(pid, "mmap", (0, MB, RW, PRIVATE_ANON | MAP_POPULATE, -1, 0))
    fd = backend.syscall(pid, "openat", (AT_FDCWD, path, O_RDONLY, 0))
    assert buf > 0 and fd >= 0
    before = counters()
    work(backend, pid, fd, buf)
    return counters() - before


def fresh_sparse(path: str, size: int) -> None:
    """A new sparse file: nothing of it cached, no node."""
    Path(path).unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


@pytest.mark.parametrize("case", list(CASES))
def test_reads_charge_the_page_caches_nodes(program: Program, memcgs: Memcgs, files: list[str],
                                            case: str) -> None:
    """kmem and usage charged by the reads: the kernel's (after the drop, the kernel's usage holds up
    to a batch of RCU-freed nodes' pages in a charge stock)."""
    size, work = CASES[case]
    path = f"/tmp/vmlab-xa-{case}-{os.getpid()}.dat"
    files.append(path)
    fresh_sparse(path, size)
    cg = memcgs.make("xa", "512M")
    with HostBackend(timeout=120) as host:
        pid = start_host_stepper(host, program, cg)
        kernel = charged(host, pid, path, work, lambda: drained_host_counters(cg))
    fresh_sparse(path, size)
    model, mpid, memcg = memcg_machine(512 * MB, ram=1024 * MB)
    got = charged(model, mpid, path, work, lambda: drained_model_counters(model, memcg))
    check_machine(model)
    print(f"{case}: kernel {kernel}, model {got}, nodes {model._inode(path).xa_nodes.nr_nodes()}")
    assert kernel.kmem == got.kmem and kernel.memsw == kernel.usage
    if case == "dropped":
        assert got.kmem <= 0 and model._inode(path).xa_nodes.nr_nodes() == 0
        assert 0 <= kernel.usage - got.usage < MEMCG_CHARGE_BATCH
    else:
        assert got.kmem > 0 and kernel.usage == got.usage


def read_file(backend: Backend, pid: int, path: str, buf: int) -> None:
    """open, read() to EOF in 1 MiB calls, close."""
    fd = backend.syscall(pid, "openat", (AT_FDCWD, path, O_RDONLY, 0))
    assert fd >= 0
    while (n := backend.syscall(pid, "read", (fd, buf, MB))) > 0:
        pass
    assert n == 0 and backend.syscall(pid, "close", (fd,)) == 0


def drop(backend: Backend, pid: int, path: str, how: str) -> None:
    """Nothing, POSIX_FADV_DONTNEED of the whole file, or a truncation to 0 and back to its size."""
    if how == "kept":
        return
    fd = backend.syscall(pid, "openat", (AT_FDCWD, path, O_RDWR, 0))
    if how == "dontneed":
        assert backend.syscall(pid, "fadvise64", (fd, 0, 0, POSIX_FADV_DONTNEED)) == 0
    else:
        assert backend.syscall(pid, "ftruncate", (fd, 0)) == 0
        assert backend.syscall(pid, "ftruncate", (fd, SHADOW_SIZES[0])) == 0
    assert backend.syscall(pid, "close", (fd,)) == 0


#: A (read first, then evicted in part by B) and B, in a 64 MiB memcg.
SHADOW_SIZES = (32 * MB, 48 * MB)


@pytest.mark.parametrize("how", ["kept", "dontneed", "truncate"])
def test_invalidation_clears_the_shadows(program: Program, memcgs: Memcgs, files: list[str],
                                         how: str) -> None:
    """A and B read in a 64 MiB memcg evict A's head (shadow entries); A then dropped or truncated
    (or not) and read again. Its refaults (memory.stat workingset_refault_file) are the kernel's:
    every page of A when its shadows stayed (its head, and its tail evicted by the head's refaults:
    8,192 measured), none when the drop cleared them (clear_shadow_entries). A's pages cached at the
    end, and kmem (the shadows' nodes freed), the same on both."""
    paths = [f"/tmp/vmlab-xa-{name}-{os.getpid()}.dat" for name in ("a", "b")]
    files.extend(paths)

    def run(backend: Backend, pid: int, refaults: Callable[[], int],
            kmem: Callable[[], int]) -> tuple[int, ...]:
        buf = backend.syscall(pid, "mmap", (0, MB, RW, PRIVATE_ANON | MAP_POPULATE, -1, 0))
        for path in paths:
            read_file(backend, pid, path, buf)
        drop(backend, pid, paths[0], how)
        before, kmem_before = refaults(), kmem()
        read_file(backend, pid, paths[0], buf)
        return refaults() - before, len(backend.residency(paths[0])), kmem() - kmem_before

    for path, size in zip(paths, SHADOW_SIZES, strict=True):
        fresh_sparse(path, size)
    cg = memcgs.make("xa", "64M")
    with HostBackend(timeout=120) as host:
        pid = start_host_stepper(host, program, cg)
        kernel = run(host, pid, lambda: memcg_stat(cg)["workingset_refault_file"],
                     lambda: drained_host_counters(cg).kmem)
    for path, size in zip(paths, SHADOW_SIZES, strict=True):
        fresh_sparse(path, size)
    model, mpid, memcg = memcg_machine(64 * MB)
    got = run(model, mpid, lambda: memcg.stat["workingset_refault_file"],
              lambda: drained_model_counters(model, memcg).kmem)
    check_machine(model)
    print(f"{how}: (refaults, A cached, kmem change) kernel {kernel}, model {got}")
    assert got[:2] == kernel[:2] and (got[0] == 0) == (how != "kept")
    assert got[2] == kernel[2]
