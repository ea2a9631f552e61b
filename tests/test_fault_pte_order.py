"""The order in which file-backed faults charge their PTE table and their page (mm/memory.c, 6.18).

do_fault_around() and __do_fault() preallocate the PTE table (vmf->prealloc_pte, pte_alloc_one: a
__GFP_ACCOUNT charge) as soon as the fault's PMD entry is none, before ->fault reads the page in;
do_cow_fault() allocates and charges its anon copy before that (folio_prealloc); filemap_map_pages()
and finish_fault() install the table (pmd_install) and do_fault() frees it (pte_free) when unused. A
fault that read its page from disk returns VM_FAULT_RETRY and is taken again, so its table is freed
and allocated again. These tests record every memcg charge and uncharge of the model in order and
compare the sequence with that one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from memcgkit import memcg_machine
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.memcontrol import MemCgroupTree
from vmlab.kernel.uapi import (
    EAGAIN,
    MADV_RANDOM,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
)

#: record_charges() wraps MemCgroupTree's charge methods: on the Python sources only.
pytestmark = pytest.mark.pure

#: A 1 GiB-aligned region no mapping of the machine's process is near.
BASE = 0x500000000000
PMD = 2 << 20
#: 2 MiB of file: more than one readahead window.
FILE_PAGES = 512


@dataclass
class Charges:
    """Every charge committed to a memcg and every uncharge, in order: (what, pfn) with `what` one of
    table+ table- anon+ file+ shmem+ page-."""

    events: list[tuple[str, int]] = field(default_factory=list)

    def kinds(self) -> list[str]:
        """The events' kinds, runs of one kind of page charge folded to one `kind*`."""
        out: list[str] = []
        for what, _ in self.events:
            folded = what + "*" if what in ("file+", "shmem+") else what
            if not (out and out[-1] == folded and folded.endswith("*")):
                out.append(folded)
        return out

    def clear(self) -> None:
        self.events.clear()


def record_charges(model: ModelBackend) -> Charges:
    """Wrap the memcg tree's commit and uncharge points (and the allocator's uncharge hook) so that
    they log into a Charges."""
    log = Charges()
    tree: MemCgroupTree = model.memcgs
    commit, charge_kmem = tree.commit_charge, tree.charge_kmem
    uncharge_kmem, uncharge = tree.uncharge_kmem, tree.uncharge

    def commit_charge(memcg, pfn, nr, kind, event=True):  # type: ignore[no-untyped-def]
        log.events.append((f"{kind}+", pfn))
        commit(memcg, pfn, nr, kind, event)

    def charge_kmem_(memcg, pfn):  # type: ignore[no-untyped-def]
        err = charge_kmem(memcg, pfn)
        if not err:
            log.events.append(("table+", pfn))
        return err

    def uncharge_kmem_(pfn):  # type: ignore[no-untyped-def]
        if pfn in tree.kmem_memcg:
            log.events.append(("table-", pfn))
        uncharge_kmem(pfn)

    def uncharge_(pfn, order):  # type: ignore[no-untyped-def]
        if pfn in tree.page_memcg:
            log.events.append(("page-", pfn))
        uncharge(pfn, order)

    tree.commit_charge = commit_charge  # type: ignore[method-assign]
    tree.charge_kmem = charge_kmem_  # type: ignore[method-assign]
    tree.uncharge_kmem = uncharge_kmem_  # type: ignore[method-assign]
    tree.uncharge = uncharge_  # type: ignore[method-assign]
    model.mem.uncharge_hook = uncharge_
    return log


@dataclass
class Lab:
    """A model machine whose process runs in memcg /t, a file it has open, and the charge log."""

    model: ModelBackend
    pid: int
    fd: int
    charges: Charges

    def mmap(self, addr: int, pages: int, prot: int, flags: int) -> int:
        args = (addr, pages * PAGE_SIZE, prot, flags | MAP_FIXED, self.fd, 0)
        got = self.model.syscall(self.pid, "mmap", args)
        assert got == addr
        return got

    def upper_tables(self) -> None:
        """A written anon page at BASE: the PUD and PMD tables of BASE's 1 GiB exist, charged with
        nothing reclaimable (no swap), and the file mappings at BASE + 2 MiB on have no PTE table."""
        got = self.model.syscall(self.pid, "mmap", (BASE, PAGE_SIZE, PROT_READ | PROT_WRITE,
                                                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0))
        assert got == BASE and self.model.access(self.pid, BASE, 1, True) is None

    def pte_table(self, addr: int) -> int | None:
        """The frame of the PTE table mapping addr (None: no table)."""
        mm = self.model.tasks[self.pid].mm
        assert mm.pt is not None
        walk = mm.pt.walk(addr)
        return walk.steps[3].table_pfn if len(walk.steps) == 4 else None


def make_lab(path: Path, cached: bool, limit: int = 64 << 20) -> Lab:
    """The lab over a FILE_PAGES-page file at `path`, whose pages the host had cached (`cached`: the
    model brings them in uncharged) or not (the model reads them from disk, charging the memcg)."""
    path.write_bytes(b"v" * FILE_PAGES * PAGE_SIZE)
    model, pid, _ = memcg_machine(limit)
    fd = model.syscall(pid, "openat", (-100, str(path), os.O_RDWR, 0))
    assert fd >= 0
    inode = model.tasks[pid].files[fd].inode
    inode.host_cached = None if cached else frozenset()
    return Lab(model, pid, fd, record_charges(model))


@pytest.fixture
def lab_uncached(tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(tmp_path / "data", cached=False)
    yield lab
    lab.model.close()


@pytest.fixture
def lab_cached(tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(tmp_path / "data", cached=True)
    yield lab
    lab.model.close()


def test_read_fault_takes_its_table_before_reading_the_page(lab_uncached: Lab) -> None:
    """A read fault in a fresh 1 GiB on an uncached file: the PUD and PMD tables (pud_alloc,
    pmd_alloc), the PTE table (do_fault_around's prealloc, kept for __do_fault), then the readahead's
    page-cache pages; the read dropped the mmap lock (VM_FAULT_RETRY), so the unused table is freed
    and the retry's fault-around takes a new one, installs it and maps the page."""
    lab = lab_uncached
    addr = lab.mmap(BASE, FILE_PAGES, PROT_READ, MAP_PRIVATE)
    lab.charges.clear()
    assert lab.model.access(lab.pid, addr + 5 * PAGE_SIZE, 1, False) is None
    assert lab.charges.kinds() == ["table+", "table+", "table+", "file+*", "table-", "table+"]
    first, freed, last = lab.charges.events[2], lab.charges.events[-2], lab.charges.events[-1]
    assert freed == ("table-", first[1])
    assert lab.pte_table(addr) == last[1]
    assert lab.model.tasks[lab.pid].stats.maj_flt == 1
    check_machine(lab.model)


def test_read_fault_under_an_existing_table_charges_no_table(lab_uncached: Lab) -> None:
    """A second read fault in the same 2 MiB, outside the pages the first brought in (MADV_RANDOM:
    no readahead): only the page-cache page (the PMD entry is not none, nothing is preallocated)."""
    lab = lab_uncached
    addr = lab.mmap(BASE, FILE_PAGES, PROT_READ, MAP_PRIVATE)
    assert lab.model.syscall(lab.pid, "madvise", (addr, FILE_PAGES * PAGE_SIZE, MADV_RANDOM)) == 0
    assert lab.model.access(lab.pid, addr, 1, False) is None
    lab.charges.clear()
    assert lab.model.access(lab.pid, addr + 400 * PAGE_SIZE, 1, False) is None
    assert lab.charges.kinds() == ["file+*"] and len(lab.charges.events) == 1


def test_cow_fault_charges_its_copy_then_the_table(lab_cached: Lab) -> None:
    """A private write to a cached file page where the PMD entry is none: the anon copy
    (folio_prealloc) is charged before the PTE table (__do_fault's prealloc), and the copy is what
    the PTE maps. The upper tables exist (a read fault 2 MiB below made them)."""
    lab = lab_cached
    lab.upper_tables()
    addr = lab.mmap(BASE + PMD, FILE_PAGES, PROT_READ | PROT_WRITE, MAP_PRIVATE)
    lab.charges.clear()
    assert lab.model.access(lab.pid, addr + 3 * PAGE_SIZE, 1, True) is None
    assert lab.charges.kinds() == ["anon+", "table+"]
    (_, anon), (_, table) = lab.charges.events
    assert lab.pte_table(addr) == table
    mm = lab.model.tasks[lab.pid].mm
    assert mm.pt is not None and mm.pt.walk(addr + 3 * PAGE_SIZE).pfn == anon
    check_machine(lab.model)


def test_cow_fault_on_an_uncached_page_retries_with_a_new_copy(lab_uncached: Lab) -> None:
    """The same on an uncached file: copy, table, the read (page-cache pages), then the copy and the
    table go back (do_cow_fault's uncharge_out, do_fault's pte_free, in that order) and the retry
    charges a new copy and a new table."""
    lab = lab_uncached
    lab.upper_tables()
    addr = lab.mmap(BASE + PMD, FILE_PAGES, PROT_READ | PROT_WRITE, MAP_PRIVATE)
    lab.charges.clear()
    assert lab.model.access(lab.pid, addr + 3 * PAGE_SIZE, 1, True) is None
    assert lab.charges.kinds() == ["anon+", "table+", "file+*", "page-", "table-", "anon+", "table+"]
    ev = lab.charges.events
    assert ev[-4] == ("page-", ev[0][1]) and ev[-3] == ("table-", ev[1][1])
    assert lab.model.tasks[lab.pid].stats.maj_flt == 1
    check_machine(lab.model)


def test_shared_write_fault_takes_its_table_before_the_page(lab_uncached: Lab) -> None:
    """A shared write: the table (__do_fault), the page-cache pages; retried after the read."""
    lab = lab_uncached
    lab.upper_tables()
    addr = lab.mmap(BASE + PMD, FILE_PAGES, PROT_READ | PROT_WRITE, MAP_SHARED)
    lab.charges.clear()
    assert lab.model.access(lab.pid, addr, 1, True) is None
    assert lab.charges.kinds() == ["table+", "file+*", "table-", "table+"]
    check_machine(lab.model)


def test_fault_beyond_eof_frees_its_table(lab_cached: Lab) -> None:
    """A read past EOF (SIGBUS from filemap_fault) still preallocated the table; do_fault frees it."""
    lab = lab_cached
    lab.upper_tables()
    addr = lab.mmap(BASE + PMD, FILE_PAGES + 4, PROT_READ, MAP_PRIVATE)
    lab.charges.clear()
    assert lab.model.access(lab.pid, addr + (FILE_PAGES + 1) * PAGE_SIZE, 1, False) == "SIGBUS"
    ev = lab.charges.events
    assert lab.charges.kinds()[:2] == ["table+", "table-"] and ev[1][1] == ev[0][1]
    # (the killed process's exit frees its other tables after that)


def test_one_page_of_room_goes_to_the_table_not_the_page(tmp_path: Path) -> None:
    """The memcg one page below its limit, the OOM killer disabled, nothing reclaimable: mlock() of
    an uncached file mapping. The table is charged first and takes the page; the page-cache page is
    then refused (readahead's and the fault's own charge), the fault fails (EAGAIN) and its unused
    table is freed: nothing read in, nothing left charged. (With the page charged first, as the model
    did before, the page took the room, the table was refused and the page stayed charged.)"""
    lab = make_lab(tmp_path / "data", cached=False)
    try:
        lab.upper_tables()
        addr = lab.mmap(BASE + PMD, FILE_PAGES, PROT_READ, MAP_PRIVATE)
        memcg = lab.model.memcgs.lookup("/t")
        assert memcg is not None
        lab.model.memcgs.drain_local_stock()
        assert lab.model.memcg_set("/t", "oom_kill_disable", 1) == 0
        assert lab.model.memcg_set("/t", "limit_in_bytes", (memcg.memory.usage + 1) * PAGE_SIZE) == 0
        before = (memcg.memory.usage, memcg.kmem.usage)
        inode = lab.model.tasks[lab.pid].files[lab.fd].inode
        cached = len(inode.i_pages)
        lab.charges.clear()
        assert lab.model.syscall(lab.pid, "mlock", (addr, FILE_PAGES * PAGE_SIZE)) == -EAGAIN
        ev = lab.charges.events
        assert lab.charges.kinds() == ["table+", "table-"] and ev[1][1] == ev[0][1]
        lab.model.memcgs.drain_local_stock()
        assert (memcg.memory.usage, memcg.kmem.usage) == before
        assert len(inode.i_pages) == cached and lab.pte_table(addr) is None
        check_machine(lab.model)
    finally:
        lab.model.close()
