"""MADV_PAGEOUT and MADV_REMOVE of file-backed mappings, against this host's kernel (6.18, ext4, as root).

madvise_cold_or_pageout_pte_range() takes every folio of the range that is on the LRU and mapped only
there, file folios too (can_do_file_pageout: the caller owns the file or may write it), and
reclaim_pages() runs shrink_folio_list() on them with references ignored, as a task that is not
kswapd. Measured here (vmlab diff of the scenario below, and the page flags through kpageflags):
- a clean file page is unmapped and dropped from the page cache (RssFile and the residency fall);
- a dirty one (written through the shared mapping) is unmapped too, but only kswapd writes file
  pages: it stays cached and dirty, marked PG_reclaim and activated (nr_vmscan_immediate_reclaim);
- what is kept goes back through folio_putback_lru(), the CPU's lru_add batch: 32 dirty pages put
  back leave the last one waiting there (PG_lru clear), active;
- a private read-only mapping's clean pages go the same way;
- a large folio (write() makes them) the range maps whole goes whole, dropped or kept.
The model left every file page where it was. A stepper that migrates between CPUs may leave new pages
in the other CPU's batch, off the LRU, which MADV_PAGEOUT passes over (seen once: 4 pages of 256 kept
mapped); so the stepper runs pinned to one CPU here.

MADV_REMOVE of a shared writable file mapping punches a hole in the file (vfs_fallocate(PUNCH_HOLE |
KEEP_SIZE), ext4_punch_hole: truncate_pagecache_range): every mapping's PTEs of the range go (a private
mapping's copies on write stay), its pages leave the cache with their dirty data (nothing written), and
a read there is a major fault. The model only zapped the caller's PTEs: the pages stayed cached, dirty.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vmlab.backend import Backend, Program
from vmlab.lab.backends import make_backend
from vmlab.lab.diff import diff_scenario
from vmlab.lab.scenario import parse

from hostkit import on_cpu
from kpagekit import PG, cold_file, kernel_and_model, letters

pytestmark = pytest.mark.host

DATA, PRIVATE = "/tmp/vmlab-pageout.dat", "/tmp/vmlab-pageout-ro.dat"
SHOW = f"show counters\nshow residency {DATA}\nshow cachestat {DATA}\n"

SCENARIOS: dict[str, str] = {
    # The file cached whole in 4 KiB folios (the `file` statement), mapped and read; half of it paged
    # out clean; the other half written through the mapping, then all of it paged out; the first half
    # read back (its major fault and readahead); then written back and paged out clean; and a private
    # mapping of a second file, read and paged out.
    "small_folios": f"file {DATA} 1M\nfile {PRIVATE} 512K\n"
    f'fd = openat(AT_FDCWD, "{DATA}", O_RDWR)\n'
    "m = mmap(NULL, 1M, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)\n"
    "read m, 1M\n" + SHOW
    + "madvise(m, 512K, MADV_PAGEOUT)\n" + SHOW + "show pagemap m, 1M\n"
    + "write m + 512K, 512K\n" + SHOW
    + "madvise(m, 1M, MADV_PAGEOUT)\n" + SHOW + "show pagemap m, 1M\n"
    + "read m, 512K\n" + SHOW
    + "fsync(fd)\n" + "madvise(m, 1M, MADV_PAGEOUT)\n" + SHOW
    + f'fd2 = openat(AT_FDCWD, "{PRIVATE}", O_RDONLY)\n'
    + "p = mmap(NULL, 512K, PROT_READ, MAP_PRIVATE, fd2, 0)\n" + "read p, 512K\n"
    + "madvise(p, 512K, MADV_PAGEOUT)\n" + f"show counters\nshow residency {PRIVATE}\n",
    # Large folios (6.18's write() makes them: 64 + 64 + 16 pages), mapped whole: the range takes each
    # folio whole. Written, the first is unmapped and kept (dirty, active); after fsync the next
    # page-out drops the two still mapped, whole, and leaves the first (no longer mapped).
    "large_folios": f"file {DATA} 0\n"
    "buf = mmap(0, 1M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)\n"
    f'fd = openat(AT_FDCWD, "{DATA}", O_RDWR)\n'
    "pwrite64(fd, buf, 64*4096, 0)\npwrite64(fd, buf, 64*4096, 64*4096)\n"
    "pwrite64(fd, buf, 16*4096, 128*4096)\n"
    f"show folios {DATA}\n"
    "m = mmap(0x600000000000, 144*4096, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, fd, 0)\n"
    "read m, 144*4096\n" + SHOW + "madvise(m, 64*4096, MADV_PAGEOUT)\n" + SHOW + f"show folios {DATA}\n"
    + "fsync(fd)\nmadvise(m, 144*4096, MADV_PAGEOUT)\n" + SHOW + f"show folios {DATA}\n"
    + "show pagemap m, 144*4096\nread m, 144*4096\n" + SHOW + f"show folios {DATA}\n",
    # MADV_REMOVE: a hole in the middle (clean pages), then one over the written start; a private
    # mapping's copy on write of page 1 stays, its mapped file pages in the hole go.
    "remove_punches_hole": f"file {DATA} 1M\n"
    f'fd = openat(AT_FDCWD, "{DATA}", O_RDWR)\n'
    "m = mmap(NULL, 1M, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)\n"
    "p = mmap(NULL, 1M, PROT_READ|PROT_WRITE, MAP_PRIVATE, fd, 0)\n"
    "read m, 1M\nwrite m, 64K\nread p, 1M\nwrite p + 4K, 4K\n" + SHOW
    + "madvise(m + 256K, 256K, MADV_REMOVE)\n" + SHOW + "show pagemap p, 1M\n"
    + "madvise(m, 128K, MADV_REMOVE)\n" + SHOW + "show pagemap p, 128K\n"
    + "read m, 1M\n" + SHOW,
    # MADV_REMOVE inside large folios (write() makes them): a dirty 2-page folio punched at its first
    # page stays whole (ext4 cannot release its other, dirty block to split it: the page stays cached,
    # zeroed); a clean 16-page folio is split around the hole (16 19 20+4 24+8); a dirty one stays.
    # The model split every folio and dropped the punched pages (a random scenario found it).
    "remove_in_large_folios": f"file {DATA} 1M\n"
    "buf = mmap(0, 1M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)\n"
    f'fd = openat(AT_FDCWD, "{DATA}", O_RDWR)\nfadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)\n'
    "write(fd, buf, 8192)\nm = mmap(0, 1M, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)\n"
    "madvise(m, 4096, MADV_REMOVE)\n" + SHOW + f"show folios {DATA}\n"
    "pwrite64(fd, buf, 64K, 64K)\nfsync(fd)\nmadvise(m + 68K, 8K, MADV_REMOVE)\n" + f"show folios {DATA}\n"
    "pwrite64(fd, buf, 64K, 128K)\nmadvise(m + 132K, 4K, MADV_REMOVE)\n" + SHOW + f"show folios {DATA}\n"
    "read m, 256K\n" + SHOW + f"show folios {DATA}\n",
    # A dirty 2-page folio truncated to 1 byte stays whole (its first block dirty), its second page past
    # EOF; a hole punched at page 0 splits it, and the split drops the page past EOF (__folio_split):
    # nothing is left cached. The model kept that page (the random write diff, explore profile).
    "remove_splits_past_eof": f"file {DATA} 1M\n"
    "buf = mmap(0, 1M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)\n"
    f'fd = openat(AT_FDCWD, "{DATA}", O_RDWR)\nfadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)\n'
    "write(fd, buf, 8192)\nftruncate(fd, 1)\n" + f"show folios {DATA}\nshow cachestat {DATA}\n"
    "m = mmap(0, 4096, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)\nmadvise(m, 4096, MADV_REMOVE)\n"
    + f"show folios {DATA}\nshow cachestat {DATA}\n",
}


@pytest.fixture
def files() -> object:
    """The scenario's files are removed afterwards, even when the test fails."""
    yield
    for path in (DATA, PRIVATE):
        Path(path).unlink(missing_ok=True)


@pytest.mark.usefixtures("files")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_file_madvise_agrees_with_kernel(name: str) -> None:
    """Every view of the scenario is the same on the model and the kernel: paged out, clean pages
    dropped, dirty ones unmapped and kept dirty; removed, the pages gone; read back by the same
    faults."""
    from hostutil import program_or_skip

    program_or_skip()
    out: list[str] = []
    with on_cpu(0):
        diffs = diff_scenario(parse(SCENARIOS[name], f"<{name}>"), make_backend("model"),
                              make_backend("host"), out=out.append)
    print("\n".join(out))
    assert diffs == []


PROT_RW, MAP_SHARED = 3, 0x01
O_RDWR = 2
MADV_RANDOM, MADV_WILLNEED, MADV_PAGEOUT = 1, 3, 21
NR = 64


def pageout_steps(b: Backend, pid: int, path: str) -> list[str]:
    """A file of NR pages read one page a fault (MADV_RANDOM), the second half written, all paged out;
    then the dirty half mapped again (a second mapping, MADV_RANDOM) to read its flags."""
    seen: list[str] = []
    spare = b.syscall(pid, "mmap", (0, PG, PROT_RW, 0x22, -1, 0))
    assert spare > 0 and b.access(pid, spare, PG, True) is None

    def drain() -> None:
        assert b.syscall(pid, "madvise", (spare, PG, MADV_WILLNEED)) == 0

    def mapped() -> int:
        addr = b.syscall(pid, "mmap", (0, NR * PG, PROT_RW, MAP_SHARED, fd, 0))
        assert addr > 0 and b.syscall(pid, "madvise", (addr, NR * PG, MADV_RANDOM)) == 0
        return addr

    fd = b.syscall(pid, "openat", (-100, path, O_RDWR, 0))
    assert fd >= 0
    m = mapped()
    assert b.access(pid, m, NR * PG, False) is None
    half = NR // 2 * PG
    assert b.access(pid, m + half, half, True) is None
    drain()
    seen.append(f"read, half written: {letters(b, pid, m, NR)}")
    assert b.syscall(pid, "madvise", (m, NR * PG, MADV_PAGEOUT)) == 0
    seen.append(f"paged out: {letters(b, pid, m, NR)}")
    again = mapped()
    assert b.access(pid, again + half, half, False) is None
    seen.append(f"the written half mapped again: {letters(b, pid, again + half, NR // 2)}")
    drain()
    seen.append(f"then drained: {letters(b, pid, again + half, NR // 2)}")
    return seen


def test_dirty_pages_kept_active_through_the_lru_add_batch(program: Program, tmp_path: Path) -> None:
    """kpageflags of the dirty pages MADV_PAGEOUT kept, page by page, equal on the kernel and the
    model: active, the last one put back still waiting in the CPU's lru_add batch (PG_lru clear) until
    a drain."""
    path = str(Path("/var/tmp") / f"vmlab-pageout-{tmp_path.name}.dat")
    try:
        kernel_and_model(program, lambda b, pid: pageout_steps(b, pid, path), cold_file(path, NR))
    finally:
        Path(path).unlink(missing_ok=True)

