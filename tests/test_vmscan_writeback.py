"""Reclaim meeting page-cache folios under write-back (shrink_folio_list's three cases, 6.18
mm/vmscan.c): a folio met for the first time is marked PG_reclaim and activated, out of the way
while the scan looks for clean folios; a cgroup-v1 memcg's reclaim meeting one it marked before waits
for its write to end (folio_wait_writeback: v1 has no dirty throttling, and could OOM with every
folio in flight), then reclaims it. The model had kept such folios on the inactive list instead, and
never waited. The expected outcomes are these rules of the kernel's source: when a write completes on
the host depends on its disk, so which folios reclaim meets in flight is not reproducible there.

Each test: a process in an 8 MiB v1 memcg writes 4 MiB to a new file, starts write-back of all of it
(sync_file_range SYNC_FILE_RANGE_WRITE: 1,024 pages in flight, ending ~100 ms later on the model's
device), then reads an 8 MiB sparse file, which makes the memcg reclaim.
"""

from __future__ import annotations

from pathlib import Path

from memcgkit import memcg_machine
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.mm_types import Inode
from vmlab.kernel.page_flags import F_ACTIVE, F_RECLAIM, F_WRITEBACK

MB = 1 << 20
O_RDONLY, O_RDWR_CREAT, AT_FDCWD, RW, PRIVATE_ANON = 0, 0o102, -100, 3, 0x22
SYNC_FILE_RANGE_WRITE = 2


def _written_in_flight(tmp_path: Path) -> tuple[ModelBackend, int, int, Inode]:
    """The process, its 1 MiB buffer, and the inode of 4 MiB it wrote and put under write-back."""
    model, pid, _ = memcg_machine(8 * MB)
    buf = model.syscall(pid, "mmap", (0, MB, RW, PRIVATE_ANON, -1, 0))
    assert model.access(pid, buf, MB, True) is None
    path = str(tmp_path / "written.dat")
    fd = model.syscall(pid, "openat", (AT_FDCWD, path, O_RDWR_CREAT, 0o644))
    for _ in range(4):
        assert model.syscall(pid, "write", (fd, buf, MB)) == MB
    assert model.syscall(pid, "sync_file_range", (fd, 0, 0, SYNC_FILE_RANGE_WRITE)) == 0
    inode = model._inode(path)
    assert len(inode.under_writeback) == 1024 and not inode.dirty
    return model, pid, buf, inode


def _read_sparse(model: ModelBackend, pid: int, buf: int, path: Path) -> None:
    """read() an 8 MiB sparse file through the buffer, 256 KiB at a time."""
    with open(path, "wb") as f:
        f.truncate(8 * MB)
    fd = model.syscall(pid, "openat", (AT_FDCWD, str(path), O_RDONLY))
    while model.syscall(pid, "read", (fd, buf, MB // 4)) > 0:
        pass


def test_folios_met_under_writeback_are_marked_and_activated(tmp_path: Path) -> None:
    """The memcg's reclaim meets the written folios at the tail of the inactive list, all still in
    flight: each is marked PG_reclaim and activated, none freed or waited for."""
    model, pid, buf, inode = _written_in_flight(tmp_path)
    done = max(inode.under_writeback.values())
    _read_sparse(model, pid, buf, tmp_path / "sparse.dat")
    flags = model.mem.mem_map.flags_a
    assert model.mem.clock.now_ns < done  # nobody waited for the writes
    assert len(inode.i_pages) == 1024
    assert all(flags[p] & (F_WRITEBACK | F_RECLAIM | F_ACTIVE) == F_WRITEBACK | F_RECLAIM | F_ACTIVE
               for p in inode.i_pages.values())
    check_machine(model)


def test_a_v1_memcg_waits_for_a_folio_it_marked_before(tmp_path: Path) -> None:
    """The same folios, already marked PG_reclaim by an earlier pass (as if met before) and still at
    the tail: the v1 memcg's reclaim waits for each one's write to end, then reclaims it; none is
    activated, and the clock has passed the writes it waited for."""
    model, pid, buf, inode = _written_in_flight(tmp_path)
    flags = model.mem.mem_map.flags_a
    first_done = min(inode.under_writeback.values())
    for pfn in inode.i_pages.values():
        flags[pfn] |= F_RECLAIM
    _read_sparse(model, pid, buf, tmp_path / "sparse.dat")
    assert model.mem.clock.now_ns >= first_done  # it waited
    assert len(inode.i_pages) < 1024  # and reclaimed what it waited for
    assert not any(flags[p] & F_ACTIVE for p in inode.i_pages.values())
    check_machine(model)
