"""The model's invariants (vmlab.kernel.debug_vm.check_machine) under random syscall sequences.

A hypothesis RuleBasedStateMachine drives a ModelBackend running the built-in program through mmap
(anon/file, private/shared, hinted/fixed, THP-capable 2 MiB-aligned ranges), munmap, mprotect, mremap,
madvise, mlock, brk, touches, fork, exit and execve, and checks the whole machine after every step;
at teardown every process exits and every frame but the boot reservations and the page cache must be
free again. Unit tests show the checker catches corruption, and the xfail tests reproduce the model
bugs it found (all fixed now; the stateful run explores their areas too).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.debug_vm import WAIVE_ORPHAN_SHMEM, check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.mm_types import MmStruct
from vmlab.kernel.page_flags import PG
from vmlab.kernel.pgtable import pte_huge
from vmlab.kernel.swap import lru_add_drain
from vmlab.kernel.uapi import (
    MADV_DONTNEED,
    MADV_FREE,
    MADV_GUARD_INSTALL,
    MADV_GUARD_REMOVE,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    MREMAP_DONTUNMAP,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    O_RDWR,
    PAGE_SIZE,
)

MiB = 1 << 20
THP = 2 * MiB
RAM = 256 * MiB
FILE_PAGES = 24  # the temp file: 24 pages, so mappings reach past EOF too
PROGRAM = Program(BUILTIN_PROGRAM, ("minimal",))
#: Waivers (debug_vm.WAIVE_*) for model bugs still open; none now.
KNOWN_BUGS: frozenset[str] = frozenset()
ADVICE = (MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_FREE,
          MADV_GUARD_INSTALL, MADV_GUARD_REMOVE)


def new_machine() -> tuple[ModelBackend, int]:
    """A 256 MiB model machine running the built-in program. The built-in program's inode is a module
    global whose page cache would carry frames of earlier machines (see
    test_builtin_program_cache_is_per_machine), so it starts empty here."""
    backend = ModelBackend(RAM)
    return backend, backend.start(PROGRAM, Settings(ram=RAM))


def assert_no_leaks(backend: ModelBackend, waive: frozenset[str] = frozenset()) -> None:
    """After every process exited: frames are free except boot reservations and the page cache (the
    huge zero folio is given back to the shrinker first, as memory pressure would, and the CPU's
    batches are drained, as the CPU's next lru_add_drain() would: a locked page unmapped by the exit
    waits in the mlock batch, which holds its last reference)."""
    assert not backend.tasks
    mem = backend.mem
    mem.shrink_huge_zero_folio()
    lru_add_drain(mem)
    check_machine(backend, waive)
    mm = mem.mem_map
    in_use = mm._refcount != 0
    reserved = ((mm.flags >> np.uint64(PG.reserved)) & np.uint64(1)).astype(bool)
    cached = np.zeros(mem.max_pfn, dtype=bool)
    from vmlab.kernel.debug_vm import enumerate_inodes

    for inode in enumerate_inodes(backend):
        cached[list(inode.i_pages.values())] = True
    if WAIVE_ORPHAN_SHMEM in waive:
        cached |= ((mm.flags >> np.uint64(PG.swapbacked)) & np.uint64(1)).astype(bool) & (mm.mapping != 0)
    leaked = np.flatnonzero(in_use & ~reserved & ~cached)
    assert leaked.size == 0, f"{leaked.size} frames still allocated, first {mm[int(leaked[0])]!r}"
    assert mem.nr_free_pages + int(np.count_nonzero(cached & in_use)) == mem.totalram_pages


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small file on a disk filesystem for file mappings (removed afterwards)."""
    path = tmp_path_factory.mktemp("inv") / "data"
    path.write_bytes(bytes(range(256)) * (FILE_PAGES * PAGE_SIZE // 256))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


class ModelMachine(RuleBasedStateMachine):
    """Random syscalls against one ModelBackend; check_machine after each step."""

    path: Path = Path("/nonexistent")

    def __init__(self) -> None:
        super().__init__()
        self.backend, root = new_machine()
        self.pids = [root]
        self.fd = self.backend.syscall(root, "open", (str(self.path), O_RDWR))
        assert self.fd >= 0
        #: Ranges mapped so far (stale ones stay: operating on holes is part of the test).
        self.regions: list[tuple[int, int]] = [(0x400000, 0x14000)]

    # --- helpers -----------------------------------------------------------------------------------

    def _pid(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from(self.pids), label="pid")

    def _range(self, data: st.DataObject) -> tuple[int, int]:
        """A page-aligned range inside or overlapping a known region."""
        start, length = data.draw(st.sampled_from(self.regions), label="region")
        pages = length // PAGE_SIZE
        first = data.draw(st.integers(0, max(0, pages - 1)), label="first page")
        count = data.draw(st.integers(1, max(1, pages - first + 2)), label="pages")
        return start + first * PAGE_SIZE, count * PAGE_SIZE

    def _note(self, addr: int, length: int) -> None:
        if addr >= 0 and len(self.regions) < 40:
            self.regions.append((addr, length))

    def _mm(self, pid: int) -> MmStruct:
        return self.backend.tasks[pid].mm


    def _alive(self) -> None:
        """Forget processes a signal ended; restart the machine's first process if none is left."""
        self.pids = [p for p in self.pids if p in self.backend.tasks]
        if not self.pids:
            pid = self.backend.start(PROGRAM, Settings(ram=RAM))
            self.pids = [pid]
            self.fd = self.backend.syscall(pid, "open", (str(self.path), O_RDWR))

    # --- rules -------------------------------------------------------------------------------------

    @initialize()
    def first_check(self) -> None:
        check_machine(self.backend, KNOWN_BUGS)

    @rule(data=st.data(), kind=st.sampled_from(["anon", "shared-anon", "file", "shared-file"]),
          pages=st.sampled_from([1, 3, 16, 512, 700, 1024]), thp=st.booleans(), fixed=st.booleans(),
          populate=st.booleans())
    def mmap(self, data: st.DataObject, kind: str, pages: int, thp: bool, fixed: bool,
             populate: bool) -> None:
        pid = self._pid(data)
        length = pages * PAGE_SIZE
        flags = (MAP_SHARED if kind.startswith("shared") else MAP_PRIVATE) | (MAP_POPULATE if populate else 0)
        fd, prot = -1, data.draw(st.sampled_from([1, 3, 0, 5]), label="prot")
        if "anon" in kind:
            flags |= MAP_ANONYMOUS
        else:
            fd = self.fd
        addr = 0
        if fixed:
            addr = data.draw(st.sampled_from([0x7F0000000000, 0x7F0000200000, 0x7F0000001000, 0x10000000]),
                             label="fixed addr")
            flags |= MAP_FIXED
        result = self.backend.syscall(pid, "mmap", (addr, length, prot, flags, fd, 0))
        if result >= 0 and thp and "anon" in kind:
            self.backend.syscall(pid, "madvise", (result, length, MADV_HUGEPAGE))
        self._note(result, length)

    @rule(data=st.data())
    def thp_region(self, data: st.DataObject) -> None:
        """A 2 MiB-aligned, THP-capable anonymous range (4 MiB mapped, the aligned middle advised)."""
        pid = self._pid(data)
        base = self.backend.syscall(pid, "mmap", (0, 3 * THP, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        if base >= 0:
            aligned = (base + THP - 1) & ~(THP - 1)
            self.backend.syscall(pid, "madvise", (aligned, THP, MADV_HUGEPAGE))
            self._note(aligned, THP)

    @rule(data=st.data())
    def munmap(self, data: st.DataObject) -> None:
        addr, length = self._range(data)
        self.backend.syscall(self._pid(data), "munmap", (addr, length))

    @rule(data=st.data(), prot=st.sampled_from([0, 1, 3, 5]))
    def mprotect(self, data: st.DataObject, prot: int) -> None:
        addr, length = self._range(data)
        self.backend.syscall(self._pid(data), "mprotect", (addr, length, prot))

    @rule(data=st.data(), how=st.sampled_from(["grow", "shrink", "move", "fixed", "dontunmap"]))
    def mremap(self, data: st.DataObject, how: str) -> None:
        pid = self._pid(data)
        addr, length = self._range(data)
        new_len, flags, new_addr = length, MREMAP_MAYMOVE, 0
        if how == "grow":
            new_len = length + data.draw(st.sampled_from([PAGE_SIZE, THP]), label="grow by")
        elif how == "shrink":
            new_len = max(PAGE_SIZE, length // 2)
            flags = 0
        elif how == "move":
            new_len = length * 2
        else:
            flags |= MREMAP_FIXED if how == "fixed" else MREMAP_DONTUNMAP
            new_addr = data.draw(st.sampled_from([0x7E0000000000, 0x7E0000201000, 0x7E0000400000]),
                                 label="new addr")
        result = self.backend.syscall(pid, "mremap", (addr, length, new_len, flags, new_addr))
        self._note(result, new_len)

    @rule(data=st.data(), advice=st.sampled_from(ADVICE))
    def madvise(self, data: st.DataObject, advice: int) -> None:
        addr, length = self._range(data)
        pid = self._pid(data)
        self.backend.syscall(pid, "madvise", (addr, length, advice))

    @rule(data=st.data(), unlock=st.booleans())
    def mlock(self, data: st.DataObject, unlock: bool) -> None:
        addr, length = self._range(data)
        self.backend.syscall(self._pid(data), "munlock" if unlock else "mlock", (addr, length))

    @rule(data=st.data(), delta=st.sampled_from([-3 * PAGE_SIZE, PAGE_SIZE, 5 * PAGE_SIZE, THP]))
    def brk(self, data: st.DataObject, delta: int) -> None:
        pid = self._pid(data)
        cur = self.backend.syscall(pid, "brk", (0,))
        self.backend.syscall(pid, "brk", (cur + delta,))
        self._note(cur, max(delta, PAGE_SIZE))

    @rule(data=st.data(), write=st.booleans())
    def touch(self, data: st.DataObject, write: bool) -> None:
        addr, length = self._range(data)
        pid = self._pid(data)
        length = min(length, 64 * PAGE_SIZE)
        self.backend.access(pid, addr, length, write)
        self._alive()

    @rule(data=st.data())
    def fork(self, data: st.DataObject) -> None:
        pid = self._pid(data)
        if len(self.pids) < 4:
            self.pids.append(self.backend.fork(pid))

    @rule(data=st.data())
    def exit_child(self, data: st.DataObject) -> None:
        if len(self.pids) > 1:
            pid = data.draw(st.sampled_from(self.pids[1:]), label="child")
            self.backend.exit(pid)
            self.pids.remove(pid)

    @rule(data=st.data())
    def execve(self, data: st.DataObject) -> None:
        pid = self._pid(data)
        assert self.backend.syscall(pid, "execve", (PROGRAM.path, PROGRAM.argv, PROGRAM.envp)) == 0

    @invariant()
    def machine_consistent(self) -> None:
        check_machine(self.backend, KNOWN_BUGS)

    def teardown(self) -> None:
        self.backend.close()
        assert_no_leaks(self.backend, KNOWN_BUGS)


def test_random_syscalls_keep_invariants(data_file: Path) -> None:
    """check_machine holds after every step of random syscall sequences, and nothing leaks at the end
    (>= 200 examples under the `ci` profile)."""
    ModelMachine.path = data_file
    run_state_machine_as_test(ModelMachine, settings=settings(settings(), stateful_step_count=20))


# --- the checker catches corruption --------------------------------------------------------------------


def busy_machine() -> tuple[ModelBackend, int, int]:
    """A machine whose process wrote 4 anon pages at `addr` (pure Python state: nothing to stop)."""
    backend, pid = new_machine()
    addr = backend.syscall(pid, "mmap", (0, 16 * PAGE_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
    assert backend.access(pid, addr, 4 * PAGE_SIZE, True) is None
    return backend, pid, addr


@pytest.fixture
def busy() -> Iterator[tuple[ModelBackend, int, int]]:
    """busy_machine(), its processes exited afterwards."""
    backend, pid, addr = busy_machine()
    try:
        yield backend, pid, addr
    finally:
        backend.close()


def _pfn(backend: ModelBackend, pid: int, addr: int) -> int:
    walk = backend.tasks[pid].mm.pt.walk(addr)  # type: ignore[union-attr]
    assert walk.pfn is not None
    return walk.pfn


def test_checker_passes_a_busy_machine(busy: tuple[ModelBackend, int, int]) -> None:
    backend, pid, _ = busy
    backend.fork(pid)
    check_machine(backend)


@pytest.mark.parametrize("corruption, message", [
    ("refcount", "_refcount"),
    ("mapcount", "mapcount"),
    ("rss", "rss"),
    ("pgtables_bytes", "pgtables_bytes"),
    ("total_vm", "total_vm"),
    ("leak", "leaked"),
    ("outside", "not inside a VMA"),
    ("cow", "writable in a private VMA but the page is shared"),
])
def test_checker_catches(corruption: str, message: str) -> None:
    """Each kind of corruption is reported by name (the corrupted machine is dropped, not closed)."""
    backend, pid, addr = busy_machine()
    mem, mm = backend.mem, backend.tasks[pid].mm
    pfn = _pfn(backend, pid, addr)
    if corruption == "refcount":
        mem.mem_map._refcount[pfn] += 1
    elif corruption == "mapcount":
        mem.mem_map._mapcount[pfn] += 1
    elif corruption == "rss":
        mm.rss[1] += 1
    elif corruption == "pgtables_bytes":
        mm.pt.pgtables_bytes += PAGE_SIZE  # type: ignore[union-attr]
    elif corruption == "total_vm":
        mm.total_vm -= 1
    elif corruption == "leak":
        assert mem.alloc_pages(0) is not None
    elif corruption == "outside":
        vma = mm.vma_lookup(addr)
        assert vma is not None
        mm.set_range(vma, addr + PAGE_SIZE, vma.vm_end)
        mm.total_vm -= 1
    elif corruption == "cow":
        child = backend.fork(pid)
        pt = backend.tasks[child].mm.pt
        assert pt is not None
        pt.set_pte(addr, pt.get_pte(addr) | 2)  # _PAGE_RW on a page the parent maps too
    with pytest.raises(AssertionError, match=message):
        check_machine(backend)


# --- model bugs the checker found ---------------------------------------------------------------------


def test_builtin_program_cache_is_per_machine() -> None:
    first, pid = new_machine()
    assert first.access(pid, 0x401000, 1, False) is None
    first.close()
    second = ModelBackend(RAM)
    pid = second.start(PROGRAM, Settings(ram=RAM))
    try:
        assert second.access(pid, 0x401000, 1, False) is None
        check_machine(second)
    finally:
        second.close()


def test_shmem_freed_with_last_mapping(busy: tuple[ModelBackend, int, int]) -> None:
    backend, pid, _ = busy
    addr = backend.syscall(pid, "mmap", (0, 8 * PAGE_SIZE, 3, MAP_SHARED | MAP_ANONYMOUS, -1, 0))
    assert backend.access(pid, addr, 8 * PAGE_SIZE, True) is None
    assert backend.syscall(pid, "munmap", (addr, 8 * PAGE_SIZE)) == 0
    check_machine(backend)


def test_shmem_leak_is_waivable(busy: tuple[ModelBackend, int, int]) -> None:
    """The waiver counts exactly those orphaned pages as cache (everything else still checked)."""
    backend, pid, _ = busy
    addr = backend.syscall(pid, "mmap", (0, 8 * PAGE_SIZE, 3, MAP_SHARED | MAP_ANONYMOUS, -1, 0))
    assert backend.access(pid, addr, 8 * PAGE_SIZE, True) is None
    assert backend.syscall(pid, "munmap", (addr, 8 * PAGE_SIZE)) == 0
    check_machine(backend, frozenset({WAIVE_ORPHAN_SHMEM}))
    assert backend.mem.alloc_pages(0) is not None
    with pytest.raises(AssertionError, match="leaked"):
        check_machine(backend, frozenset({WAIVE_ORPHAN_SHMEM}))


def test_huge_zero_reference_held_while_mapped(busy: tuple[ModelBackend, int, int]) -> None:
    backend, pid, _ = busy
    base = backend.syscall(pid, "mmap", (0, 4 * THP, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
    hz = (base + THP - 1) & ~(THP - 1)
    assert backend.syscall(pid, "madvise", (base, 4 * THP, MADV_HUGEPAGE)) == 0
    assert backend.access(pid, hz, 1, False) is None
    assert backend.access(pid, hz + THP, 1, False) is None
    check_machine(backend)
    assert backend.syscall(pid, "munmap", (hz, THP)) == 0
    check_machine(backend)


def _thp_written(backend: ModelBackend, pid: int) -> int:
    """A 2 MiB-aligned address where one write mapped a THP with a PMD."""
    base = backend.syscall(pid, "mmap", (0, 3 * THP, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
    addr = (base + THP - 1) & ~(THP - 1)
    assert backend.syscall(pid, "madvise", (addr, THP, MADV_HUGEPAGE)) == 0
    assert backend.access(pid, addr, 1, True) is None
    assert pte_huge(backend.tasks[pid].mm.pt.get_pmd(addr))  # type: ignore[union-attr]
    return addr


def test_fork_of_pte_mapped_thp() -> None:
    backend, pid = new_machine()
    addr = _thp_written(backend, pid)
    assert backend.syscall(pid, "munmap", (addr + THP // 2, THP // 2)) == 0  # split: 256 PTEs remain
    check_machine(backend)
    backend.fork(pid)
    check_machine(backend)


def test_guard_remove_inside_thp() -> None:
    backend, pid = new_machine()
    addr = _thp_written(backend, pid)
    assert backend.syscall(pid, "madvise", (addr + PAGE_SIZE, PAGE_SIZE, MADV_GUARD_REMOVE)) == 0
    check_machine(backend)


def test_fault_on_vdso() -> None:
    backend, pid = new_machine()
    vdso = next(v for v in backend.tasks[pid].mm if v.special_name == "[vdso]")
    assert backend.access(pid, vdso.vm_start, 1, False) is None
    check_machine(backend)


def test_exit_frees_everything() -> None:
    """A process that used anon, THP, file and page-table memory gives it all back at exit."""
    backend, pid = new_machine()
    base = backend.syscall(pid, "mmap", (0, 3 * THP, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
    assert backend.syscall(pid, "madvise", (base, 3 * THP, MADV_HUGEPAGE)) == 0
    assert backend.access(pid, base, 3 * THP, True) is None
    child = backend.fork(pid)
    assert backend.access(child, base, 8 * PAGE_SIZE, True) is None
    assert backend.access(pid, 0x401000, 1, False) is None
    check_machine(backend)
    backend.close()
    assert_no_leaks(backend)


def test_a_split_for_madv_cold_splits_the_folios_xarray_entry_too(tmp_path: Path) -> None:
    """MADV_COLD over part of a large page-cache folio splits it (split_folio: uniform, its i_pages entry
    into order-0 entries). The model forgot the folio's order but kept its multi-index entry; a
    POSIX_FADV_DONTNEED of some of its pages and a readahead of a new folio there then stored over the
    stale entry (AssertionError: xarray slot in use twice; the explore profile of
    test_diff_pagecache_random found it). check_machine now holds each multi-index entry of cached pages
    to their folio."""
    from vmlab.lab.run import run
    from vmlab.lab.scenario import parse

    path = f"/tmp/vmlab-cold-split-{tmp_path.name}.dat"
    text = (f"file {path} 2M\n"
            "buf = mmap(0, 1M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)\n"
            f'fd = openat(AT_FDCWD, "{path}", O_RDWR)\nfadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)\n'
            "pwrite64(fd, buf, 64*4096, 64*4096)\nfsync(fd)\n"
            "m = mmap(0, 2M, PROT_READ, MAP_SHARED, fd, 0)\nread m + 64*4096, 64*4096\n"
            "madvise(m + 70*4096, 100*4096, MADV_COLD)\n"
            f"show folios {path}\n"
            "fadvise64(fd, 96*4096, 32*4096, POSIX_FADV_DONTNEED)\n"
            "pread64(fd, buf, 32*4096, 96*4096)\n"
            f"show folios {path}\n")
    model = ModelBackend()
    try:
        transcript = run(parse(text, "<cold>"), model, check=lambda: check_machine(model))
    finally:
        Path(path).unlink(missing_ok=True)
    out = transcript.text()
    assert transcript.failures == 0, out
    assert f"{path}: 64/512 pages cached in 64 folios: 64-127" in out
