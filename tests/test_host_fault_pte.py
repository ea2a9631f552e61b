"""File-backed faults charge their PTE table to the memory cgroup, on this host's kernel and on the
model; and a refused table charge fails mlock() the same way on both.

A stepper moved into a cgroup-v1 memcg the test makes (and removes: the `memcgs` fixture), pinned to
CPU 0, maps a file MAP_PRIVATE read-only at a fresh 512 GiB-aligned address and reads one byte every
2 MiB. The file's pages are either cached beforehand by this (root-memcg) process, so that the faults
charge nothing but their tables, or dropped (POSIX_FADV_DONTNEED) and read under MADV_RANDOM, so that
each fault charges its table and exactly one page-cache page (no readahead).

The faults that read the file in also allocate the page cache's XArray nodes (a leaf per 2 MiB, the
interior nodes), slab objects the kernel charges as kmem to the faulting task's memcg, and so does
the model (xarray.XaNodes), and so is the struct file of the open (FILP_SIZE bytes). The kernel also
charges the VMA, which the model does not: its 200 bytes share the file's slab page, so kmem and
usage are the kernel's exactly. Counters are compared with every CPU's charge stock drained (the
memory.limit_in_bytes trick of memcgkit.drained_host_counters).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memcgkit import (
    Counters,
    drained_host_counters,
    drained_model_counters,
    host_counters,
    memcg_machine,
    model_to_the_limit,
    start_host_stepper,
)
from vmlab.backend import Program
from vmlab.host.oracle import HostBackend
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.uapi import (
    EAGAIN,
    MADV_RANDOM,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    PROT_READ,
    PROT_WRITE,
)

from hostkit import Memcgs

PG = 4096
STRIDE = 2 << 20
#: A 512 GiB-aligned address no mapping of the stepper is near: its first fault allocates a PUD table.
BASE = 0x600000000000
#: 2 MiB blocks of the sparse file, one read fault each.
BLOCKS = 32

Backend = HostBackend | ModelBackend


def make_file(path: Path, cached: bool) -> None:
    """A sparse file of BLOCKS * 2 MiB whose first 16 pages of every 2 MiB are in the page cache (read
    by this process, charged to the root memcg), or none of its pages."""
    with open(path, "wb") as f:
        f.truncate(BLOCKS * STRIDE)
    set_cached(path, cached)


def set_cached(path: Path, cached: bool) -> None:
    """Bring the first 16 pages of every 2 MiB of the file into the page cache (or leave them there),
    or drop the whole file from there."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if cached:  # page by page without readahead: order-0 folios (no PMD-mappable one)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            for block in range(BLOCKS):
                for page in range(16):
                    os.pread(fd, 1, block * STRIDE + page * PG)
        else:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def map_file(backend: Backend, pid: int, path: Path, addr: int, length: int, advice: int | None) -> int:
    """Open `path` in `pid` and map `length` bytes of it at `addr`, MAP_PRIVATE read-only."""
    fd = backend.syscall(pid, "openat", (-100, str(path), os.O_RDONLY, 0))
    assert fd >= 0
    got = backend.syscall(pid, "mmap", (addr, length, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0))
    assert got == addr
    if advice is not None:
        assert backend.syscall(pid, "madvise", (addr, length, advice)) == 0
    return got


def sparse_reads(backend: Backend, pid: int, addr: int) -> None:
    """One read every 2 MiB of the mapping."""
    for block in range(BLOCKS):
        assert backend.access(pid, addr + block * STRIDE, 1, False) is None


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "uncached-random"])
def test_sparse_file_reads_charge_their_tables(program: Program, memcgs: Memcgs, tmp_path: Path,
                                               cached: bool) -> None:
    """One read every 2 MiB of a file: BLOCKS PTE tables (+ the PMD and PUD tables) as kmem on both,
    plus one page-cache page a fault and the XArray nodes those need when the file was not cached.
    The open charges a struct file (FILP_SIZE bytes: a slab page of its own when the file was cached).
    Measured (kernel / model, pages, drained): cached: kmem +35 / +35, usage +35 / +35 (the kernel's
    VMA shares the file's page; before the model had struct file: 34); uncached: kmem +40 / +40, usage
    +72 / +72 (37 nodes of 592 charged bytes and the file: 6 pages, which the kernel's VMA shares).
    Before the model had the nodes: kmem +34, usage +66."""
    path = tmp_path / "sparse"
    make_file(path, cached)
    advice = None if cached else MADV_RANDOM
    tables = BLOCKS + 2
    for attempt in range(3):  # a drop_caches elsewhere (load tests) may evict the cached pages
        cg = memcgs.make(f"fpte{attempt}", "64M")
        with HostBackend(timeout=60) as host:
            pid = start_host_stepper(host, program, cg)
            k0 = drained_host_counters(cg)
            addr = map_file(host, pid, path, BASE, BLOCKS * STRIDE, advice)
            sparse_reads(host, pid, addr)
            k1 = drained_host_counters(cg)
        if not cached or (k1 - k0).usage == (k1 - k0).kmem:
            break
        print(f"attempt {attempt}: the file's pages were read again, {k1 - k0}: evicted meanwhile")
        # Dropped whole first: the faults read them back by readahead, in large folios that 6.18
        # maps by PMD (no PTE table), and set_cached must make order-0 folios again.
        set_cached(path, False)
        set_cached(path, cached)
    set_cached(path, cached)  # the model sees the host's cache as it is when it opens the file

    model, mpid, memcg = memcg_machine(64 << 20)
    m0 = drained_model_counters(model, memcg)
    addr = map_file(model, mpid, path, BASE, BLOCKS * STRIDE, advice)
    sparse_reads(model, mpid, addr)
    m1 = drained_model_counters(model, memcg)
    check_machine(model)
    dk, dm = k1 - k0, m1 - m0
    print(f"kernel {k0} -> {k1}: {dk}\nmodel  {m0} -> {m1}: {dm}")

    pages = 0 if cached else BLOCKS
    assert dm.usage - dm.kmem == pages and dm.memsw == dm.usage
    assert dm.kmem == tables + 1 if cached else dm.kmem > tables + 1  # cached: the nodes are the root's
    assert dk == dm


def at_limit_with_a_file_mapping(backend: Backend, pid: int, path: Path) -> int:
    """The stepper's state before the refused charge: a written anon page at BASE (its PUD, PMD and
    PTE tables and the page charged, nothing reclaimable: no swap) and the file mapped 2 MiB above,
    where no PTE table is; the mapping's address."""
    got = backend.syscall(pid, "mmap", (BASE, PG, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0))
    assert got == BASE and backend.access(pid, BASE, 1, True) is None
    return map_file(backend, pid, path, BASE + STRIDE, STRIDE, None)


def fill_to_the_limit(host: HostBackend, pid: int, cg: Path) -> None:
    """Leave the memcg at its limit with its page stocks empty, while the stepper can still answer:
    its reply to each command is a socket buffer charged to it by bytes, through the per-CPU object
    stock, which takes a whole page from the memcg when it runs dry and keeps the rest. So: drain
    every stock (the limit trick), set the limit one page above the usage, and let the stepper answer
    until a reply took that page (its remainder then serves the replies after the refused charge)."""
    drained = drained_host_counters(cg)
    (cg / "memory.limit_in_bytes").write_text(str((drained.usage + 1) * PG))
    for _ in range(200):
        if host_counters(cg).usage == drained.usage + 1:
            return
        host.nop(pid)
    raise AssertionError(f"{cg}: the stepper's replies never took the last page: {host_counters(cg)}")


def vm_kb(backend: Backend, pid: int) -> tuple[int, int]:
    """(VmLck, VmPTE) of the process in kB, from its status."""
    fields = dict(line.split(":", 1) for line in backend.view(pid, "status").splitlines() if ":" in line)
    return int(fields["VmLck"].split()[0]), int(fields["VmPTE"].split()[0])


def test_refused_table_charge_fails_mlock(program: Program, memcgs: Memcgs, tmp_path: Path) -> None:
    """The memcg at its limit (stocks drained, limit = usage), its OOM killer disabled, nothing in it
    reclaimable: mlock() of a file mapping in a 2 MiB without a PTE table. The first charge is the
    table's (do_fault_around's prealloc) and it is refused, so nothing is read in: EAGAIN (GUP's
    -ENOMEM) on both, no page-cache page read for the memcg, usage and kmem as before, nothing
    locked or mapped, no OOM kill and no task left waiting (a GUP fault is no user fault)."""
    path = tmp_path / "file"
    cached = False  # the file's pages would be the first charge; the refused table must come first
    make_file(path, cached)
    cg = memcgs.make("fptelim", "64M")
    with HostBackend(timeout=60) as host:
        pid = start_host_stepper(host, program, cg)
        addr = at_limit_with_a_file_mapping(host, pid, path)
        (cg / "memory.oom_control").write_text("1")
        fill_to_the_limit(host, pid, cg)
        before = host_counters(cg)
        k_vm0 = vm_kb(host, pid)
        k_ret = host.syscall(pid, "mlock", (addr, STRIDE))
        k_after = host_counters(cg)
        k_vm = vm_kb(host, pid)
        k_oom = (cg / "memory.oom_control").read_text()
        k_cached = int((cg / "memory.stat").read_text().split("cache ", 1)[1].split()[0])
    set_cached(path, cached)

    model, mpid, memcg = memcg_machine(64 << 20)
    addr = at_limit_with_a_file_mapping(model, mpid, path)
    assert model.memcg_set("/t", "oom_kill_disable", 1) == 0
    model_to_the_limit(model, memcg)
    m_before = Counters(memcg.memory.usage, memcg.kmem.usage, memcg.memsw.usage)
    m_vm0 = vm_kb(model, mpid)
    m_ret = model.syscall(mpid, "mlock", (addr, STRIDE))
    m_after = Counters(memcg.memory.usage, memcg.kmem.usage, memcg.memsw.usage)
    m_vm = vm_kb(model, mpid)
    check_machine(model)
    print(f"kernel: mlock {k_ret}, {before} -> {k_after}, VmLck/VmPTE {k_vm}, oom_control {k_oom.split()}, "
          f"cache {k_cached}\nmodel:  mlock {m_ret}, {m_before} -> {m_after}, VmLck/VmPTE {m_vm}, "
          f"oom_control {memcg.oom_control().split()}")

    assert k_ret == m_ret == -EAGAIN
    assert k_after == before and m_after == m_before
    assert k_vm[0] == m_vm[0] == STRIDE >> 10  # VM_LOCKED stays set on the VMA: mlock does not undo it
    assert k_vm[1] - k_vm0[1] == m_vm[1] - m_vm0[1] == 0  # no table was added
    # Nobody waits: a GUP fault is no user fault (memcg1_oom_prepare: current->in_user_fault).
    assert k_oom == memcg.oom_control() == "oom_kill_disable 1\nunder_oom 0\noom_kill 0\n"
    assert k_cached == 0 and memcg.page_state()["cache"] == 0
