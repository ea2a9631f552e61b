"""HostBackend.counters/pagemap/kpageflags against known kernel behaviour (reference §4 F3-F4, §5 P2,
P3, P5), the fork handshake's own faults kept out of the counters, and the paging views' rendering.

Golden values: the reference's faults.txt / pm.txt (`setarch -R ./faults`, `./pm`), and for the large
folio case the measurement recorded in vmlab.lab.run.make_file's docstring (this machine, 6.18).
"""

from __future__ import annotations

import os
from pathlib import Path

from hostutil import PG, mmap
from vmlab.backend import Counters
from vmlab.host.oracle import HostBackend
from vmlab.host.procfs import PM_EXCLUSIVE, PM_FILE, PM_PFN_MASK, PM_PRESENT
from vmlab.lab import paging
from vmlab.lab.diff import keep_fields, view_fields

MADV_HUGEPAGE = 14


def delta(a: Counters, b: Counters) -> tuple[int, int, int, int]:
    """(minflt, majflt, RssAnon, RssFile) from a to b."""
    return (b.minflt - a.minflt, b.majflt - a.majflt, b.rss_anon_kb - a.rss_anon_kb,
            b.rss_file_kb - a.rss_file_kb)


def test_write_fault_counters_and_entry(host: HostBackend, proc: int) -> None:
    """P3: minflt +1, RssAnon +4 kB, the entry present + exclusive, not file (0x81...)."""
    a = mmap(host, proc, 0x10000000, 2 * PG)
    before = host.counters(proc)
    assert host.access(proc, a, 1, True) is None
    assert delta(before, host.counters(proc)) == (1, 0, 4, 0)
    page, untouched = host.pagemap(proc, a, a + 2 * PG)
    assert page & (PM_PRESENT | PM_EXCLUSIVE | PM_FILE) == PM_PRESENT | PM_EXCLUSIVE and page & PM_PFN_MASK
    assert untouched == 0
    assert not host.kpageflags(page & PM_PFN_MASK) & paging.KPF_ZERO_PAGE


def test_read_fault_maps_the_zero_page(host: HostBackend, proc: int) -> None:
    """P2: minflt +1, no RSS; the entry is present, not exclusive, and its frame has KPF_ZERO_PAGE."""
    a = mmap(host, proc, 0x10000000, 2 * PG)
    before = host.counters(proc)
    assert host.access(proc, a, 2 * PG, False) is None
    assert delta(before, host.counters(proc)) == (2, 0, 0, 0)
    first, second = host.pagemap(proc, a, a + 2 * PG)
    assert first == second and first & PM_PRESENT and not first & (PM_EXCLUSIVE | PM_FILE)
    kpf = host.kpageflags(first & PM_PFN_MASK)
    assert kpf & paging.KPF_ZERO_PAGE and not kpf & paging.KPF_THP
    assert paging.page_letter(first, host.kpageflags) == "z"


def test_thp_read_maps_the_huge_zero_page(host: HostBackend, proc: int) -> None:
    """P5: with MADV_HUGEPAGE a read maps the huge zero page: 512 entries, file bit set, not exclusive,
    KPF_ZERO_PAGE|KPF_THP."""
    h = mmap(host, proc, 0x40000000, 2 << 20)
    assert host.syscall(proc, "madvise", (h, 2 << 20, MADV_HUGEPAGE)) == 0
    assert host.access(proc, h, 1, False) is None
    entries = host.pagemap(proc, h, h + (2 << 20))
    assert len(entries) == 512 and all(e & (PM_PRESENT | PM_FILE | PM_EXCLUSIVE) == PM_PRESENT | PM_FILE
                                       for e in entries)
    assert {paging.page_letter(e, host.kpageflags) for e in entries} == {"Z"}


def test_counters_leave_out_the_fork_handshake(host: HostBackend, proc: int) -> None:
    """The stepper COW-faults its own pages in the parent during FORK; /proc/stat counts them, the
    backend's counters do not (the kernel's fork takes no fault in the parent)."""
    before, raw_before = host.counters(proc), host.stat(proc).minflt
    host.fork(proc)
    assert host.stat(proc).minflt > raw_before
    assert host.counters(proc) == before


def test_one_big_write_makes_fault_around_map_a_large_folio(host: HostBackend, proc: int,
                                                            tmp_path: Path) -> None:
    """6.18 maps a whole large folio on fault-around: a 64-page file written with one write() (ext4
    large folios) is mapped entirely by one read fault, not 16 pages as in P6. The `file` statement
    therefore writes page by page."""
    f = tmp_path / "big"
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * 64 * PG)
        os.fsync(fd)
    finally:
        os.close(fd)
    sfd = host.syscall(proc, "openat", (-100, str(f), os.O_RDONLY, 0))
    m = mmap(host, proc, 0x30000000, 64 * PG, 1, 0x02, sfd)
    before = host.counters(proc)
    assert host.access(proc, m + 20 * PG, 1, False) is None
    after = host.counters(proc)
    mapped = sum(1 for e in host.pagemap(proc, m, m + 64 * PG) if e & PM_PRESENT)
    assert (after.minflt - before.minflt, after.rss_file_kb - before.rss_file_kb) == (1, 4 * mapped)
    assert mapped > 16


def test_letters_runs_and_frames() -> None:
    """The compact pagemap line: letters, runs of five or more as x{n}, frames by first sight."""
    present = PM_PRESENT | PM_EXCLUSIVE
    entries = [0, present | 7, present | 8, PM_PRESENT | 7, 0, 0, 0, 0, 0]
    letters = [paging.page_letter(e, lambda _pfn: 0) for e in entries]
    assert letters == ["-", "a", "a", "A", "-", "-", "-", "-", "-"]
    frames = paging.FrameNumbers()
    frames.scan([PM_PRESENT | 8], ["A"])  # another process saw frame 8 first
    frames.scan(entries, letters)
    line = paging.render_pagemap(0x10000000, entries, letters, frames, verbose=False)
    assert line == "pagemap 0x10000000-0x10009000: -aaA-{5} frames #2 #1-2"
    verbose = paging.render_pagemap(0x10000000, entries[:2], letters[:2], frames, verbose=True)
    assert verbose.splitlines()[1:] == ["  0x10000000 -", "  0x10001000 a present exclusive frame #2"]
    assert paging.page_letter((1 << 62) | (1 << 58), lambda _pfn: 0) == "g"


def test_counters_line_and_partial_match() -> None:
    base = Counters(10, 0, 36, 12, 0, 24, 0, 200)
    now = Counters(11, 0, 40, 8, 0, 28, 0, 264)
    line = paging.format_counters(now, base)
    assert line == ("counters: minflt +1 majflt +0 RssAnon +4 kB RssFile -4 kB RssShmem +0 kB VmPTE +4 kB "
                    "VmSwap +0 kB")
    assert paging.counters_match("counters: minflt +1 RssFile -4 kB", line)
    assert not paging.counters_match("counters: minflt +2", line)


def test_diff_compares_status_on_the_model_fields() -> None:
    """One rule for every /proc text view: the kernel's status is cut to the fields the model printed."""
    model = "show status\nName:\tstepper\nRssAnon:\t      40 kB"
    kernel = "show status\nName:\tstepper\nUmask:\t0022\nRssAnon:\t      40 kB\nThreads:\t1"
    assert view_fields(model) == {"Name", "RssAnon"}
    assert keep_fields(kernel, view_fields(model), []) == model


def test_kpagecount_agrees_with_pagemap_sharing() -> None:
    """kpagecount on both backends: a written page mapped by one process counts 1; after fork, both
    processes map it (2); the zero page counts 0 in the model (special entry)."""
    from vmlab.backend import Settings
    from vmlab.host.stepper_build import stepper_program
    from vmlab.lab.backends import make_backend

    for name in ("model", "host"):
        b = make_backend(name)
        try:
            pid = b.start(stepper_program(), Settings())
            a = b.syscall(pid, "mmap", (0x10000000, 8192, 3, 0x32, -1, 0))
            assert b.access(pid, a, 4096, True) is None
            pfn = b.pagemap(pid, a, a + 4096)[0] & ((1 << 55) - 1)
            assert b.kpagecount(pfn) == 1, name
            b.fork(pid)
            assert b.kpagecount(pfn) == 2, name
        finally:
            b.close()
