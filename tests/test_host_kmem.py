"""Page tables charged to the memory cgroup (__GFP_ACCOUNT), on this host's kernel and on the model.

A stepper moved into a cgroup-v1 memcg the test makes (and removes, killing what is left: the
`memcgs` fixture) maps 256 MiB at a fresh 512 GiB-aligned address (MAP_NORESERVE) and writes one byte
every 2 MiB: 128 data pages that need 128 PTE tables, one PMD table and one PUD table. It runs pinned
to CPU 0, so one per-CPU charge stock is involved, as in the model.

Slab objects are charged as kmem through the per-CPU object stock, a page at a time: the mmap's VMA
(VMA_SIZE bytes: 1 kmem page on both), and on the kernel the anon_vma and its chain at the first
write, which the model does not have: they fit in the VMA's page (measured on this host, 6.18: the
128 writes charge exactly the 130 tables). So the counters agree page for page.

The kernel frees page tables after an RCU grace period (tlb_remove_table), so after the munmap the
test waits until memory.kmem.usage_in_bytes stops falling; the model frees them at once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable

import pytest

from hostutil import PRIVATE_ANON, RW
from memcgkit import (
    PG,
    Counters,
    drain_cpu_batches,
    drained_host_counters,
    drained_model_counters,
    host_counters,
    memcg_machine,
    model_counters,
    phases_on_both,
    settled_host_counters,
    start_host_stepper,
    writes_until_killed,
)
from vmlab.backend import Program
from vmlab.host.oracle import HostBackend
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend

from hostkit import Memcgs
from interference import until_settled

MAP_FIXED, MAP_NORESERVE = 0x10, 0x4000
#: A 512 GiB-aligned address no mapping of the stepper is near: its first write allocates a PUD table.
BASE = 0x600000000000
STRIDE = 2 << 20
#: MEMCG_CHARGE_BATCH: the most pages one CPU's charge stock holds.
MEMCG_CHARGE_BATCH = 64


def sparse_map(backend: HostBackend | ModelBackend, pid: int, size: int) -> int:
    """The sparse mapping both sides make: `size` bytes at BASE, not committed."""
    addr = backend.syscall(pid, "mmap", (BASE, size, RW, PRIVATE_ANON | MAP_FIXED | MAP_NORESERVE, -1, 0))
    assert addr == BASE
    return addr


def test_sparse_writes_charge_their_page_tables_as_kmem(program: Program, memcgs: Memcgs) -> None:
    """memory.usage and memory.kmem.usage grow by the tables on both (130 tables, 128 data pages) and
    fall back when the munmap frees them; memsw follows usage (no swap); kmem.failcnt stays 0.
    Measured (kernel / model, pages): kmem +1 / +1 at the mmap (the VMA), +130 / +130 for the writes,
    -130 / -130 at the munmap; charged by the writes (usage after them with the per-CPU charge stocks
    drained, less the usage before the mmap) 259 / 259 (before the model had VMA objects: 258). After
    the munmap the RCU callbacks that uncharge the freed tables refill the stock of whichever CPU runs
    them (measured: 1 to 30 pages left there), so that usage is only bounded."""
    size = 256 << 20
    pages = size // STRIDE
    tables = pages + 2  # a PTE table per 2 MiB, the PMD table, the PUD table
    cg = memcgs.make("kmem", "64M")
    with HostBackend(timeout=60) as host:
        pid = start_host_stepper(host, program, cg)
        k0 = settled_host_counters(cg)
        addr = sparse_map(host, pid, size)
        k1 = host_counters(cg)
        assert writes_until_killed(host, pid, addr, size, STRIDE) == (pages, None)
        k2 = host_counters(cg)
        k2d = drained_host_counters(cg)
        assert host.syscall(pid, "munmap", (addr, size)) == 0
        drain_cpu_batches(host, pid)
        k3 = settled_host_counters(cg)
        k3d = drained_host_counters(cg)
        kmem_failcnt = int((cg / "memory.kmem.failcnt").read_text())

    model, mpid, memcg = memcg_machine(64 << 20)
    m0 = model_counters(memcg)
    addr = sparse_map(model, mpid, size)
    m1 = model_counters(memcg)
    assert writes_until_killed(model, mpid, addr, size, STRIDE) == (pages, None)
    m2 = model_counters(memcg)
    m2d = drained_model_counters(model, memcg)
    check_machine(model)
    assert model.syscall(mpid, "munmap", (addr, size)) == 0
    drain_cpu_batches(model, mpid)  # the last pages written wait in the lru_add batch, charged
    m3 = model_counters(memcg)
    m3d = drained_model_counters(model, memcg)
    check_machine(model)
    print(f"kernel {k0} {k1} {k2} {k3} drained {k2d} {k3d}\nmodel  {m0} {m1} {m2} {m3} drained {m2d} {m3d}")

    assert (m2 - m1).kmem == tables and (m1 - m0).kmem == 1  # the tables; the VMA's slab page
    assert [k - k0 for k in (k1, k2, k2d)] == [m - m0 for m in (m1, m2, m2d)]
    assert k2d.usage - k0.usage == pages + tables + 1
    # After the munmap everything is uncharged on both; what the kernel's usage still shows is the
    # remainder of the 130 table uncharges in the stock of the CPU whose RCU callback made them
    # (refill_stock: less than one charge batch), which the limit trick does not reliably drain.
    # The freed objects' bytes fill the object stock's page (4,096 bytes: not more than a page, so
    # not uncharged) until a drain, which the kernel's may have had meanwhile (measured: 0 or 1).
    assert m3d.usage == 0 and m3.kmem == 1 and k3.kmem <= 1 and k3d.usage < MEMCG_CHARGE_BATCH
    for k in (k0, k1, k2, k3):
        assert k.memsw == k.usage
    for m in (m0, m1, m2, m3):
        assert m.memsw == m.usage
    # The tables given back, and the slab page once drained.
    assert (m2 - m3).kmem == tables and k3d.kmem == m3d.kmem == 0
    assert kmem_failcnt == memcg.kmem.failcnt == 0


def host_oom_report(name: str) -> dict[str, str]:
    """oom_report() of the kernel's last memcg OOM for the cgroup `name`, from dmesg."""
    dmesg = shutil.which("dmesg")
    if dmesg is None:
        pytest.skip("no dmesg to read the kernel's OOM report")
    log = subprocess.run([dmesg], capture_output=True, text=True, check=True).stdout.splitlines()
    ends = [i for i, line in enumerate(log) if f"oom_memcg=/{name}," in line]
    assert ends, f"no memcg OOM report for {name} in dmesg"
    return oom_report(log[:ends[-1]])


def oom_report(log: list[str]) -> dict[str, str]:
    """The memory:, memory+swap: and kmem: lines (text after the colon) of the last OOM report that
    `log` (dmesg lines) holds."""
    out: dict[str, str] = {}
    for line in reversed(log):
        m = re.search(r"\] (memory|memory\+swap|kmem): (.*)$", line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2)
        if "invoked oom-killer" in line:
            break
    return out


def kb(field: str, line: str) -> int:
    """The number of kB of `field` in an OOM report line ("usage 520kB, limit ...")."""
    m = re.search(rf"{field} (\d+)kB", line)
    assert m, line
    return int(m.group(1))


def test_memcg_oom_point_of_a_sparse_toucher(program: Program, memcgs: Memcgs) -> None:
    """Under a 1 MiB limit each write to a new 2 MiB costs two pages (its PTE table and the page), so
    the memcg OOM kills the writer after 126 writes, the mmap's VMA having taken a slab page (without
    table charges the model went to 254; without VMA objects, 127). Measured: 126 writes on both, the
    OOM reports' memory lines agree (usage = limit = 1024 kB, failcnt 19 on both) and so does kmem,
    520 kB: 129 tables and the slab page."""
    limit = 1 << 20
    cg = memcgs.make("kmemoom", str(limit))
    with HostBackend(timeout=60) as host:
        pid = start_host_stepper(host, program, cg)
        addr = sparse_map(host, pid, 1 << 30)
        host_done, sig = writes_until_killed(host, pid, addr, 1 << 30, STRIDE)
    assert sig == "SIGKILL"
    kernel = host_oom_report(cg.name)

    model, mpid, memcg = memcg_machine(limit)
    addr = sparse_map(model, mpid, 1 << 30)
    model_done, sig = writes_until_killed(model, mpid, addr, 1 << 30, STRIDE)
    assert sig == "SIGKILL"
    check_machine(model)
    report = oom_report(model.dmesg().splitlines())
    print(f"kernel: {host_done} writes, {kernel}\nmodel:  {model_done} writes, {report}")

    assert host_done == model_done == (limit // PG - 3) // 2  # slab page, 2 upper tables, 2 a write
    assert kb("usage", kernel["memory"]) == kb("usage", report["memory"]) == limit >> 10
    assert kb("limit", kernel["kmem"]) == kb("limit", report["kmem"])
    # At the OOM: a table per write and the refused write's, the 2 upper tables, the slab page.
    assert kb("usage", kernel["kmem"]) == kb("usage", report["kmem"]) == (model_done + 4) * 4
    assert kernel["memory+swap"].split(",")[:2] == report["memory+swap"].split(",")[:2]
    # The victim's exit gave its tables back, and its VMA's bytes to the object stock, whose page
    # stays charged until a drain; memory.kmem.max_usage_in_bytes keeps the peak.
    assert memcg.kmem.usage == 1 and memcg.kmem.watermark == model_done + 4
    assert drained_model_counters(model, memcg).kmem == 0


#: Far from the stepper's mappings: one-page anonymous mappings a page apart (none merges).
ANON_BASE = 0x500000000000


def anon_mappings(backend: HostBackend | ModelBackend, pid: int, n: int,
                  counters: Callable[[], Counters]) -> list[Counters]:
    """The counters before, after `n` one-page anonymous mappings, after a write to each and after
    their munmap."""
    addrs = [ANON_BASE + i * 2 * PG for i in range(n)]
    out = [counters()]
    for addr in addrs:
        assert backend.syscall(pid, "mmap", (addr, PG, RW, PRIVATE_ANON | MAP_FIXED, -1, 0)) == addr
    out.append(counters())
    for addr in addrs:
        assert backend.access(pid, addr, 1, True) is None
    out.append(counters())
    for addr in addrs:
        assert backend.syscall(pid, "munmap", (addr, PG)) == 0
    drain_cpu_batches(backend, pid)  # the last pages written wait in the lru_add batch, charged
    out.append(counters())
    return out


@pytest.mark.parametrize("n", [20, 40])
def test_anon_vmas_and_their_chains_charge_the_kernels_pages(program: Program, memcgs: Memcgs,
                                                            n: int) -> None:
    """Each mapping charges its VMA (200 bytes), and its first write an anon_vma (112) and its
    anon_vma_chain (72) (__anon_vma_prepare) with the page and its tables; munmap frees them all.
    Measured (usage, kmem) after each phase: 20 mappings (1, 1), (25, 5), (0, 0); 40: (2, 2),
    (47, 7), (0, 0) on both (the kernel's usage after the munmap: see below); without the anon_vma
    objects the model had 1 and 2 kmem pages fewer after the writes."""
    def observe() -> tuple[list[Counters], list[Counters]]:
        cg = memcgs.make(f"anonvma{len(memcgs.made)}", "64M")
        return phases_on_both(program, cg, lambda b, pid, counters: anon_mappings(b, pid, n, counters))

    # One kmem page more on the kernel after the writes (26/6 against 25/5 for 20 mappings) was seen
    # once in five full test runs and never in 15 runs of this test alone, nor in 4 with a task of
    # another memcg on CPU 0 mapping and writing a page every 0.5 ms (which drains CPU 0's object
    # stock between steps). The cause is not known; a run that differs is run again, so a difference
    # of the model's own still fails every run.
    kernel, got = until_settled(observe, lambda r: r[0][:3] == r[1][:3], lambda r: f"kernel {r[0][:3]}",
                                tries=3, pause=0.5)
    print(f"kernel {kernel}\nmodel  {got}")
    assert got[2].kmem - got[1].kmem > 3  # the tables and the anon_vma objects' pages
    assert kernel[:3] == got[:3]
    # After the munmap: everything uncharged on both, but the kernel's usage may hold freed tables'
    # pages in the stock of the CPU whose RCU callback uncharged them (see the first test).
    assert kernel[3].kmem == got[3].kmem == got[3].usage == 0 and kernel[3].usage < MEMCG_CHARGE_BATCH
