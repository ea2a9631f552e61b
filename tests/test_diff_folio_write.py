"""write() makes large page-cache folios (6.18, ext4): the same writes on the running kernel and in the
model, and `show folios` (the folios that hold the file's cached pages: kpageflags on the host), `show
counters` and `show pagemap` after mapping what was written must agree.

The rule, from generic_perform_write() and __filemap_get_folio(FGP_WRITEBEGIN | fgf_set_order(len)):
the write goes in chunks that end at each 2 MiB boundary (mapping_max_folio_size); at each position
the folio is the cached one holding the page, whatever its order, or a new one of order
ilog2(bytes left in the chunk) - PAGE_SHIFT, at most 9, smaller when the index is not aligned to it
(__ffs(index)), and smaller again while its range holds a cached page. Measured on this host (ext4, as
root: pwrite()s to a new file, then each page's frame from /proc/self/pagemap and its COMPOUND_HEAD /
COMPOUND_TAIL bits from /proc/kpageflags; vmlab.host.pagecache.cached_folios does it): a write of 100
pages + 10 bytes at 0 then one of 64 pages right after it leave folios 0+64 64+32 96+4 100 101 102+2
104+8 112+16 128+32 160+4 164; 4 KiB writes leave single pages; a 1 MiB write one 256-page folio.
The model made single pages for every write before.

What follows from it, compared here too: fault-around maps a written large folio whole (the rules of
test_diff_large_folio), so touching one page of a file written by one 1 MiB write maps 256 pages.

To rerun one case by hand: `PYTHONPATH=src python tests/test_diff_folio_write.py NAME > x.vml`, then
`PYTHONPATH=src python -m vmlab diff x.vml`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vmlab.host.pagecache import cached_folios
from vmlab.lab.backends import make_backend
from vmlab.lab.diff import diff_scenario
from vmlab.lab.scenario import parse

DATA = "/tmp/vmlab-fwrite.dat"
#: A 2 MiB-aligned address no mapping of the stepper is near.
BASE = 0x600000000000


def head(size: str = "0") -> str:
    """The file (`size` bytes, uncached when not empty: dropped), a 4 MiB buffer and the file open."""
    return (f"file {DATA} {size}\n"
            "buf = mmap(0, 4M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)\n"
            f'fd = openat(AT_FDCWD, "{DATA}", O_RDWR)\n'
            "fadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)\n")


SHOW = f"show folios {DATA}\n"

CASES: dict[str, str] = {
    # The host's example above, then a write of 3 MiB from page 165: the chunk ends at the 2 MiB
    # boundary (page 512), so the folios grow to 256 pages there and start again after it.
    "orders_and_chunks": head() + "pwrite64(fd, buf, 100*4096 + 10, 0)\n" + SHOW
    + "pwrite64(fd, buf, 64*4096, 100*4096 + 10)\n" + SHOW + "write(fd, buf, 3M)\n" + SHOW,
    # Small writes make single pages; a write over them uses the cached ones and makes new folios
    # only where nothing is cached (the range of a larger order holds a cached page: smaller).
    "small_then_large": head() + "".join(f"pwrite64(fd, buf, 4096, {p}*4096)\n" for p in (0, 1, 2, 3, 9, 40))
    + SHOW + "pwrite64(fd, buf, 96*4096, 0)\n" + SHOW,
    # A write into a file that is not cached: the new folios are as large as the write allows, the
    # partly written page at each end read first; a write far past EOF (a hole between) likewise.
    "into_uncached_file": head("1M") + "pwrite64(fd, buf, 64*4096 + 100, 16*4096 + 100)\n" + SHOW
    + "pwrite64(fd, buf, 64K, 8M)\n" + SHOW,
    # A written large folio is mapped whole by fault-around (it ends before the file's last page and
    # fits the VMA and one PTE table), the last page alone.
    "write_then_map": head() + "pwrite64(fd, buf, 1M + 4096, 0)\n" + SHOW
    + f"m = mmap({BASE:#x}, 1M + 4096, PROT_READ, MAP_SHARED|MAP_FIXED, fd, 0)\n"
    + "show counters\nread m + 10*4096\nshow counters\nshow pagemap m, 1M + 4096\n"
    + "read m + 256*4096\nshow counters\n",
    # Truncation into a large folio: a dirty one cannot be split (its buffer heads cannot be released)
    # and stays whole, its pages past EOF cached (cachestat counts them, mincore does not; they are
    # seen again when the file grows back); a clean one is split non-uniformly at the new EOF
    # (truncate_inode_partial_folio -> try_folio_split), the page holding it zeroed and dirtied.
    "truncate_into_folios": head("1M") + "pwrite64(fd, buf, 128*4096, 64*4096)\n" + SHOW
    + "ftruncate(fd, 100*4096)\n" + SHOW + f"show cachestat {DATA}\n" + "ftruncate(fd, 120*4096)\n"
    + f"show residency {DATA}\n" + "fsync(fd)\n" + "ftruncate(fd, 90*4096 + 100)\n" + SHOW
    + f"show cachestat {DATA}\n",
    # Growing a file whose last page is partial zeroes the rest of that block first
    # (ext4_block_zero_eof): a write that starts past EOF and a growing ftruncate dirty the cached EOF
    # page; so does a truncation into a cached page (ext4_block_truncate_page).
    "zero_eof_block": head("1046576") + "pread64(fd, buf, 1, 255*4096)\n" + f"show cachestat {DATA}\n"
    + "pwrite64(fd, buf, 4096, 1058865)\n" + f"show cachestat {DATA}\n" + SHOW + "fsync(fd)\n"
    + "pread64(fd, buf, 1, 258*4096)\n" + "ftruncate(fd, 2M)\n" + f"show cachestat {DATA}\n"
    + "pread64(fd, buf, 1, 100*4096)\n" + "ftruncate(fd, 100*4096 + 10)\n" + f"show cachestat {DATA}\n",
    # POSIX_FADV_DONTNEED writes the range's dirty folios back (WB_SYNC_NONE) before invalidating: they
    # are still under write-back then and stay cached, clean once the I/O ends; a second DONTNEED drops
    # them.
    "dontneed_writes_back": head("1M") + "pwrite64(fd, buf, 8*4096, 4096)\n" + f"show cachestat {DATA}\n"
    + "fadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)\n" + f"show residency {DATA}\n"
    + "sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE)\n" + f"show cachestat {DATA}\n"
    + "fadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)\n" + f"show residency {DATA}\n",
    # A large folio that straddles EOF (a dirty one is not split by truncation; fsync cleans it) is
    # dropped by a POSIX_FADV_DONTNEED that runs to the end of the file (len 0: the range is not
    # clipped to EOF), not by one that ends at EOF (find_lock_entries passes over a folio that sticks
    # out of the range). The model clipped the range to EOF and kept the folio (write random test,
    # seed 5: 80 pages cached where the kernel had 16).
    "dontneed_past_eof": head("1M") + "pwrite64(fd, buf, 64*4096, 64*4096)\n"
    + "ftruncate(fd, 64*4096 + 100)\n" + "fsync(fd)\n" + SHOW + f"show cachestat {DATA}\n"
    + "fadvise64(fd, 0, 64*4096 + 100, POSIX_FADV_DONTNEED)\n" + f"show cachestat {DATA}\n"
    + "fadvise64(fd, 4096, 0, POSIX_FADV_DONTNEED)\n" + f"show cachestat {DATA}\n",
    # A read that reaches the PG_readahead mark of a folio under write-back starts no readahead
    # (page_cache_async_ra: the bit is PG_reclaim's then), and folio_end_writeback() clears it: the
    # next reads find no mark either. The model read ahead 64 more pages (write random test, seed 19).
    "readahead_mark_under_writeback": head("1M") + "read(fd, buf, 4*4096)\n" + f"show residency {DATA}\n"
    + "pwrite64(fd, buf, 1, 4*4096)\n" + "sync_file_range(fd, 4*4096, 1, SYNC_FILE_RANGE_WRITE)\n"
    + "read(fd, buf, 4096)\n" + f"show residency {DATA}\n" + "read(fd, buf, 4*4096)\n"
    + f"show residency {DATA}\n",
    # Splitting a mapped large folio unmaps it whole first (unmap_folio; a file folio is not mapped
    # back), so its pages fault in again: after MADV_COLD over part of one, and after truncation into
    # one (the pages before the new EOF too). A dirty folio that truncation cannot split is unmapped
    # all the same (try_folio_split_or_unmap). Measured: RssFile -256 kB for a 64-page folio each time;
    # the model kept the pages mapped (-0 kB, -112 kB).
    "split_unmaps": head() + "pwrite64(fd, buf, 64*4096, 0)\n" + "pwrite64(fd, buf, 64*4096, 64*4096)\n"
    + "pwrite64(fd, buf, 4096, 128*4096)\n" + "fsync(fd)\n" + SHOW
    + f"m = mmap({BASE:#x}, 129*4096, PROT_READ, MAP_SHARED|MAP_FIXED, fd, 0)\n" + "read m, 129*4096\n"
    + "show counters\n" + "madvise(m + 10*4096, 4*4096, MADV_COLD)\n" + SHOW + "show counters\n"
    + "show pagemap m, 129*4096\n" + "ftruncate(fd, 100*4096)\n" + SHOW + "show counters\n"
    + "show pagemap m, 100*4096\n",
    "truncate_unmaps_dirty_folio": head() + "pwrite64(fd, buf, 128*4096, 0)\n" + SHOW
    + f"m = mmap({BASE:#x}, 128*4096, PROT_READ, MAP_SHARED|MAP_FIXED, fd, 0)\n" + "read m, 100*4096\n"
    + "show counters\n" + "ftruncate(fd, 100*4096)\n" + SHOW + f"show cachestat {DATA}\n"
    + "show counters\n" + "show pagemap m, 100*4096\n",
    # Truncation splits a dirty large folio unless a block it keeps is dirty: ext4 invalidates the
    # blocks past the new EOF first (block_invalidate_folio), and the split needs the rest released
    # (buffer heads, which a dirty one refuses). Five 4 KiB reads leave a 4-page folio at 4; a pwrite()
    # of page 5 dirties that block alone, and truncation at page 5 (or into it) splits the folio: page
    # 4 stays, dirty by the folio's PG_dirty. With page 4 written instead the folio stays whole, its
    # pages past EOF cached. The model kept every dirty folio whole (explore seed 44: cachestat 8/5
    # pages cached, 4 dirty, for the kernel's 5/5, 1).
    "truncate_split_by_blocks": head("1M") + "read(fd, buf, 4096)\n" * 5 + SHOW
    + "pwrite64(fd, buf, 4096, 5*4096)\n" + "ftruncate(fd, 5*4096 + 100)\n" + SHOW
    + f"show cachestat {DATA}\n"
    + "ftruncate(fd, 5*4096)\n" + SHOW + f"show cachestat {DATA}\n",
    "truncate_keeps_folio_with_dirty_block": head("1M") + "read(fd, buf, 4096)\n" * 5
    + "pwrite64(fd, buf, 4096, 4*4096)\n" + "ftruncate(fd, 5*4096)\n" + SHOW + f"show cachestat {DATA}\n",
    # A dirty folio whose dirty blocks all lie past the new end is split: releasing its buffer heads
    # cleans it (folio_cancel_dirty) but leaves its dirty tag, which the pages kept go on carrying:
    # cachestat counts them dirty, fsync passes them by, until one is written again (explore found it:
    # a growing ftruncate dirtied the last folio through ext4's zeroing of the EOF block).
    "truncate_split_leaves_dirty_tags": head() + "pwrite64(fd, buf, 1M, 0)\nfsync(fd)\n" + SHOW
    + "pwrite64(fd, buf, 1, 200*4096)\n" + f"show cachestat {DATA}\n" + "ftruncate(fd, 100*4096)\n" + SHOW
    + f"show cachestat {DATA}\n" + "fsync(fd)\n" + f"show cachestat {DATA}\n"
    + "pwrite64(fd, buf, 1, 10*4096)\nfsync(fd)\n" + SHOW + f"show cachestat {DATA}\n",
    # MADV_COLD / MADV_PAGEOUT over part of a mapped large folio split it to small pages
    # (madvise_cold_or_pageout_pte_range) when it is clean; a dirty one cannot be split (ext4 keeps its
    # buffer heads), a folio the range maps whole stays, and one with a page unmapped is split too.
    "madvise_cold_splits": head()
    + "".join(f"pwrite64(fd, buf, 64*4096, {p}*4096)\n" for p in (0, 64, 128, 192))
    + "pwrite64(fd, buf, 4096, 256*4096)\n" + SHOW
    + f"m = mmap({BASE:#x}, 257*4096, PROT_READ, MAP_SHARED|MAP_FIXED, fd, 0)\n" + "read m, 257*4096\n"
    + "madvise(m + 10*4096, 4*4096, MADV_COLD)\n" + SHOW + "fsync(fd)\n"
    + "madvise(m + 10*4096, 4*4096, MADV_COLD)\n" + SHOW + "madvise(m + 64*4096, 64*4096, MADV_COLD)\n" + SHOW
    + "madvise(m + 120*4096, 16*4096, MADV_PAGEOUT)\n" + SHOW + "munmap(m + 200*4096, 4096)\n"
    + "madvise(m + 192*4096, 64*4096, MADV_COLD)\n" + SHOW,
}


#: Cases whose file ends with no large folio (the others check the kernel made one; these show the
#: ones they had with `show folios`).
SMALL_FOLIO_CASES = frozenset({"zero_eof_block", "dontneed_writes_back", "madvise_cold_splits",
                               "dontneed_past_eof", "readahead_mark_under_writeback",
                               "truncate_split_by_blocks", "truncate_keeps_folio_with_dirty_block",
                               "truncate_split_leaves_dirty_tags"})


@pytest.fixture
def _data_file() -> object:
    """The scenario's file is removed afterwards, even when the test fails."""
    yield
    Path(DATA).unlink(missing_ok=True)


@pytest.mark.host
@pytest.mark.usefixtures("_data_file")
@pytest.mark.parametrize("name", sorted(CASES))
def test_written_folios_agree_with_kernel(name: str) -> None:
    """Every result and view of the case is the same on the model and the kernel."""
    from hostutil import program_or_skip

    program_or_skip()
    if os.geteuid() != 0:
        pytest.skip("show folios on the host needs root (frame numbers in /proc/self/pagemap)")
    out: list[str] = []
    diffs = diff_scenario(parse(CASES[name], f"<{name}>"), make_backend("model"), make_backend("host"),
                          out=out.append)
    assert not diffs, "\n".join(out)
    if name not in SMALL_FOLIO_CASES:
        assert any(pages > 1 for _, pages in cached_folios(DATA)), "the kernel made no large folio"


if __name__ == "__main__":
    sys.stdout.write(CASES[sys.argv[1]])
