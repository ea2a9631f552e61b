"""Random page-cache workloads that write, run on the model and on the running kernel: every call
result, `show residency`, `show folios` and `show cachestat` must agree.

The scenarios (pagecachegen.scenario_text with writes=True) start as test_diff_pagecache_random's (one
file of 1-4 MiB on ext4 /tmp, opened O_RDWR and dropped from the cache) and mix its reads, fadvise64s,
mappings, madvises and loads with:
- pwrite64()/write() of 1 byte .. 2 MiB, aligned or not, inside the file, spanning EOF or past it
  (a hole between); the file stays under 12 MiB;
- ftruncate() smaller (to a page boundary or into a page) or larger;
- fsync()/fdatasync(), sync_file_range() with each of the eight flag combinations over a random range;
- shared writable mappings, stores through them (`write m + OFF, LEN`) and msync() with
  MS_SYNC/MS_ASYNC (and MS_INVALIDATE), MADV_REMOVE through them (a hole punched: its pages are
  holes for the rules below);
- `show folios` and `show cachestat` now and then, and `show residency`, `show folios`, `show cachestat`
  at the end.

Host nondeterminism the generator avoids, and why (besides the read-side rules of
test_diff_pagecache_random: every POSIX_FADV_DONTNEED follows a `show residency`):
- Write-back I/O completes on the disk's time, the model's on its clock. Right after a write-back
  that does not wait (sync_file_range WRITE without WAIT_AFTER, POSIX_FADV_DONTNEED's
  __filemap_fdatawrite_range(WB_SYNC_NONE)) cachestat's nr_writeback is anything between 0 and the
  pages written (measured: a 256-page write then DONTNEED showed nr_writeback 256 in 4 of 8 runs, 0 in
  the others). What depends on it later: a WB_SYNC_NONE pass (sync_file_range WRITE without
  WAIT_BEFORE, fadvise DONTNEED) passes over a folio still under write-back (writeback_iter), and
  DONTNEED's invalidation skips it. So while such I/O may be in flight (Workload.inflight) those
  steps and every `show cachestat` are preceded by `sync_file_range(fd, 0, 0,
  SYNC_FILE_RANGE_WAIT_BEFORE)` (file_fdatawait_range: wait, write nothing). So are loads through a
  mapping: PG_readahead is PG_reclaim's bit, which the end of a folio's write-back clears, and
  fault-around passes over a folio marked PG_readahead (next_uptodate_folio), so whether a fault maps
  a written folio marked for readahead depends on whether its write has ended (explore found it: the
  kernel mapped a 16-page folio the model, its write still in flight, left out). DONTNEED's own
  write-back is started and then invalidated at once: the folios it submitted are still under
  write-back then (measured 30 of 30 runs of 1..256 dirty pages: all stayed cached), in the model too.
- ext4 zeroes the rest of the block holding EOF before the file grows (ext4_block_zero_eof) and
  when it is truncated into a page (ext4_block_truncate_page): an uncached page is then cached but not
  uptodate (cachestat counts it, mincore does not), which the model cannot represent, and a page that
  is a hole is not touched at all, which the model does not know. So such a step is preceded by a
  read of that page, and left out when the page may be a hole (pagecachegen.zeroed_block).
- Never ftruncate to 0 (ext4's auto_da_alloc: the host views' close of the file would start
  write-back).
- Mappings stay under 2 MiB (pagecachegen.MAX_MAP_PAGES): a 2 MiB-aligned range over an order-9
  folio is mapped with one PMD by the kernel, with 512 PTEs by the model (accepted divergence).
- No memory pressure: the scenarios dirty at most ~12 MiB (far below the dirty thresholds) and take
  well under dirty_expire_centisecs (30 s), so neither the flusher nor reclaim acts (reclaim of large
  folios under a memcg's limit: test_lru_host_random). Outside reclaim, drop_caches or compaction
  (DAMON runs on this host) is caught by test_diff_random.check_agreement, which runs a disagreeing
  scenario again when such an event happened during it.

To rerun a failing scenario by hand: put its text in x.vml, then `PYTHONPATH=src python -m vmlab diff x.vml`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import example, given, settings

from pagecachegen import EXAMPLES, host_data_file, scenario_text
from test_diff_random import check_agreement

pytestmark = pytest.mark.host

#: Per test process, so that concurrent runs (several worktrees) do not share the file.
DATA = f"/tmp/vmlab-pagecache-write-random-{os.getpid()}.dat"


@pytest.fixture(scope="module", autouse=True)
def _data_file() -> Iterator[None]:
    """The scenarios' host file: skips where the host cannot run them, removed at the end."""
    yield from host_data_file(DATA, needs_root=True)


#: Found by the explore profile: a growing ftruncate dirties the last folio (ext4 zeroes the EOF
#: block's tail), a shrinking one splits it, and the page kept carries a stale dirty tag (cachestat
#: counted it dirty after fsync on the kernel; the model had cleaned it).
STALE_DIRTY_TAG = f"""file {DATA} 4194303
buf = mmap(0, 2097152, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)
fd = openat(AT_FDCWD, "{DATA}", O_RDWR)
fadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)
show residency {DATA}
""" + "read(fd, buf, 4096)\n" * 4 + f"""read(fd, buf, 2097152)
pread64(fd, buf, 1, 4190208)
ftruncate(fd, 4194304)
ftruncate(fd, 3149824)
fsync(fd)
show residency {DATA}
show folios {DATA}
show cachestat {DATA}
"""


@settings(max_examples=EXAMPLES)
@given(scenario_text(DATA, writes=True))
@example(STALE_DIRTY_TAG)
def test_written_cache_agrees_with_kernel(text: str) -> None:
    """Every call result and cache view of a random workload that writes is the kernel's."""
    check_agreement(text)
