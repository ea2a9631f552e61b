"""Readahead and page-cache residency: the same reads, faults and hints on the running kernel and in the
model, and `show residency` (mincore) after each must agree page for page.

Each scenario makes its file on the ext4 root (/tmp here is ext4, not tmpfs), drops the file's cache
with POSIX_FADV_DONTNEED (never the global drop_caches), then reads. The host's residency is taken
once its readahead I/O has completed (mincore's uptodate count equals cachestat's nr_cache, see
vmlab.host.pagecache): an asynchronous window is in the cache at once but its pages become uptodate,
and visible to mincore, only when the disk answers; that was the one nondeterminism seen (a read of
pages 0, 1, 2 showed 0-3,12-19 at once and 0-19 a moment later).

Windows depend on the device: this host's vda has read_ahead_kb 8192 (ra_pages 2048) and
max_sectors_kb 4096 (io_pages 1024); the model reads both from sysfs for host files. The tests do
not change them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmlab.lab.backends import make_backend
from vmlab.lab.diff import diff_scenario
from vmlab.lab.scenario import parse

pytestmark = pytest.mark.host

DATA = "/tmp/vmlab-readahead.dat"
SHOW = f"show residency {DATA}"
HEAD = f"""file {DATA} 16M
buf = mmap(0, 16M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)
fd = openat(AT_FDCWD, "{DATA}", O_RDONLY)
fadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)
{SHOW}
"""


def reads(call: str, n: int, show_at: tuple[int, ...]) -> str:
    """`n` copies of `call` ({i} is the step number), with a residency view after the listed ones."""
    out = []
    for i in range(1, n + 1):
        out.append(call.format(i=i - 1))
        if i in show_at:
            out.append(SHOW)
    return "\n".join(out)


#: A fixed scatter of page indices in a 16 MiB file (4096 pages), for random reads and faults.
SCATTER = (1000, 17, 3000, 2047, 2048, 512, 4095, 77, 1500, 1501, 1502, 1503, 3999, 260)

CASES: dict[str, str] = {
    # read(): the initial window is 4x / 2x the request, then each mark moves it on and grows it.
    "seq_read_4k": reads("read(fd, buf, 4096)", 40, (1, 2, 3, 4, 5, 20, 21, 40)),
    "seq_read_16k": reads("read(fd, buf, 16384)", 24, (1, 2, 5, 6, 24)),
    "seq_read_64k": reads("read(fd, buf, 65536)", 20, (1, 2, 3, 8, 20)),
    "seq_read_1m": reads("read(fd, buf, 1M)", 12, (1, 2, 8, 9, 12)),
    "read_4m_once": "read(fd, buf, 4M)\n" + SHOW + "\nread(fd, buf, 4096)\n" + SHOW,
    "read_12m_once": "read(fd, buf, 12M)\n" + SHOW,
    "unaligned_reads": reads("read(fd, buf, 3000)", 30, (1, 2, 10, 30)),
    # pread(): a lone read at a random place reads just itself; its neighbour starts a window.
    "random_pread": "\n".join(f"pread64(fd, buf, 4096, {p * 4096})\n{SHOW}" for p in SCATTER),
    "pread_then_neighbours": "\n".join(f"pread64(fd, buf, 4096, {p * 4096})\n{SHOW}"
                                       for p in (100, 101, 102, 300, 200, 201, 600, 601)),
    "pread_context": f"pread64(fd, buf, 64K, 0)\n{SHOW}\npread64(fd, buf, 4096, {2000 * 4096})\n{SHOW}\n"
                     f"pread64(fd, buf, 4096, {20 * 4096})\n{SHOW}\npread64(fd, buf, 4096, {70 * 4096})\n"
                     f"{SHOW}",
    "reread_after_lseek": reads("read(fd, buf, 4096)", 6, (6,)) + "\nlseek(fd, 0, 0)\n"
                          + reads("read(fd, buf, 8192)", 6, (1, 6)),
    # Two streams on one file through two opens (their own f_ra) meet each other's marks.
    "two_streams": f"fd2 = openat(AT_FDCWD, \"{DATA}\", O_RDONLY)\nlseek(fd2, 8M, 0)\n"
                   + "\n".join(f"read(fd, buf, 16384)\nread(fd2, buf, 16384)\n{SHOW if i % 4 == 3 else ''}"
                               for i in range(16)),
    # fadvise hints.
    "fadv_random": "fadvise64(fd, 0, 0, POSIX_FADV_RANDOM)\n" + reads("read(fd, buf, 8192)", 10, (1, 10))
                   + "\nfadvise64(fd, 0, 0, POSIX_FADV_NORMAL)\n" + reads("read(fd, buf, 4096)", 3, (1, 3)),
    "fadv_sequential": "fadvise64(fd, 0, 0, POSIX_FADV_SEQUENTIAL)\n"
                       + reads("read(fd, buf, 64K)", 20, (1, 2, 3, 20)),
    "fadv_willneed_all": f"fadvise64(fd, 0, 0, POSIX_FADV_WILLNEED)\n{SHOW}",
    # WILLNEED only submits I/O: a DONTNEED right after it finds the pages locked under read and
    # keeps them (seen once on the host). A residency view in between waits for the reads.
    "fadv_willneed_range": f"fadvise64(fd, 5M, 1M, POSIX_FADV_WILLNEED)\n{SHOW}\n"
                           f"fadvise64(fd, 100, 5000, POSIX_FADV_WILLNEED)\n{SHOW}\n"
                           f"fadvise64(fd, 5M, 3M, POSIX_FADV_DONTNEED)\n{SHOW}\n"
                           f"fadvise64(fd, 12345, 0, POSIX_FADV_WILLNEED)\n{SHOW}",
    "fadv_dontneed_partial": f"fadvise64(fd, 0, 0, POSIX_FADV_WILLNEED)\n{SHOW}\n"
                             f"fadvise64(fd, 1000, 20000, POSIX_FADV_DONTNEED)\n{SHOW}\n"
                             f"fadvise64(fd, 4096, 4097, POSIX_FADV_DONTNEED)\n{SHOW}",
    # A DONTNEED whose last byte is one past EOF: its partial last page is the one past EOF, so the
    # file's last page goes too (end_index is decremented before any clipping to the file).
    # Found by test_diff_pagecache_random.
    "fadv_dontneed_past_eof": f"fadvise64(fd, 12M, 0, POSIX_FADV_WILLNEED)\n{SHOW}\n"
                              f"fadvise64(fd, 12M + 4096, 4M - 4096 + 1, POSIX_FADV_DONTNEED)\n{SHOW}\n"
                              f"fadvise64(fd, 12M, 0, POSIX_FADV_WILLNEED)\n{SHOW}\n"
                              f"fadvise64(fd, 12M, 4M + 5000, POSIX_FADV_DONTNEED)\n{SHOW}",
    # The XArray walks of page_cache_next_miss/prev_miss start inside a large folio (a multi-index
    # entry) and then look at slots behind the index they report (vmlab.kernel.xarray): after 4 KiB
    # reads of pages 0-3 (pages 4-19 come in order-2 folios), a pread of 20-23 finds its context at
    # prev_miss(19) = 2, not below 0 (window 20-40, not 20-63), and the next read reaching the mark on
    # folio 4 starts its window at next_miss(5) = 42 (41 stays out). Found by test_diff_pagecache_random.
    "prev_miss_in_large_folio": reads("read(fd, buf, 4096)", 4, (4,))
                                + f"\npread64(fd, buf, 16384, 81920)\n{SHOW}\nread(fd, buf, 4096)\n{SHOW}",
    "next_miss_in_large_folio": reads("read(fd, buf, 4096)", 4, ())
                                + "".join(f"\npread64(fd, buf, 16384, {p * 4096})" for p in (8, 12, 16, 20))
                                + f"\n{SHOW}\nread(fd, buf, 4096)\n{SHOW}",
}


def mmap_case(advice: str | None, pages: tuple[int, ...]) -> str:
    """Faults (one-byte reads) at file `pages` of a shared read-only mapping of the whole file, after
    `advice` on the mapping, with a residency view after each."""
    lines = ["m = mmap(0, 16M, PROT_READ, MAP_SHARED, fd, 0)"]
    if advice:
        lines.append(f"madvise(m, 16M, {advice})")
    for p in pages:
        lines += [f"read m + {p * 4096}", SHOW]
    return "\n".join(lines)


SEQ_FAULTS = (*range(0, 1600, 97), 1536, 1537, 2560, 3584)
CASES.update({
    "mmap_seq_faults": mmap_case(None, SEQ_FAULTS),
    "mmap_random_faults": mmap_case(None, SCATTER),
    "madv_random_faults": mmap_case("MADV_RANDOM", SCATTER[:6]),
    "madv_sequential_faults": mmap_case("MADV_SEQUENTIAL", (0, 1, 2, 100, 3000)),
    "madv_willneed": "m = mmap(0, 16M, PROT_READ, MAP_SHARED, fd, 0)\nmadvise(m + 1M, 2M, MADV_WILLNEED)\n"
                     + SHOW + "\nread m + 1M\n" + SHOW,
})


@pytest.fixture(autouse=True)
def _data_file() -> object:
    """The scenario's file is removed afterwards, even when the test fails."""
    yield
    Path(DATA).unlink(missing_ok=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_residency_agrees_with_kernel(name: str) -> None:
    """Every residency view (and call result) of the case is the same on the model and the kernel."""
    from hostutil import program_or_skip

    program_or_skip()
    if os.statvfs("/tmp").f_bavail * os.statvfs("/tmp").f_frsize < 64 << 20:
        pytest.skip("less than 64 MiB free in /tmp")
    scenario = parse(HEAD + CASES[name] + "\n", f"<{name}>")
    out: list[str] = []
    diffs = diff_scenario(scenario, make_backend("model"), make_backend("host"), out=out.append)
    assert not diffs, "\n".join(out)
