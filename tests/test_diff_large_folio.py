"""Read and write faults on files cached in large folios (6.18's mm/filemap.c filemap_map_pages and
mm/memory.c finish_fault): the same steps on the running kernel and in the model, and every result,
`show counters` (minflt, majflt, RssFile, VmPTE), `show pagemap` (which pages are mapped), `show
residency` and `show smaps` must agree.

How the large folios come about, the same on both sides: the file is dropped from the cache
(POSIX_FADV_DONTNEED), then read cold with 4 KiB read()s. Readahead's first window is order 0, each
later one asks for 2 more orders (page_cache_ra_order). Measured on this host (as root: write the file,
fsync, POSIX_FADV_DONTNEED, 64 os.read(fd, 4096); then map it, touch each cached page, take each PFN
from /proc/self/pagemap and its COMPOUND_HEAD (bit 15) / COMPOUND_TAIL (bit 16) from /proc/kpageflags),
64 reads of a 1 MiB file leave folios (first index, pages):
    0-3 order 0, (4,4) (8,4) (12,4) (16,4) (20,4) (24,8) (32,16) (48,16) (64,16) (80,16) (96,32)
    (128,64) (192,64)
and the model's readahead makes the same ones (test_diff_readahead holds the residency to the host's;
the pagemap views here hold the mapped ranges to it).

The rules these steps exercise (the kernel source's wording in the model's docstrings):
- fault-around maps a large folio whole when it ends before the file's last page and lies inside the
  VMA and inside one PTE table; otherwise only the window's part of it;
- when the PMD entry is none and the first folio the fault-around window finds holds the file's last
  page, fault-around maps nothing; the fault reads the page (__do_fault) and finish_fault maps its
  whole folio when that ends at or before EOF and lies inside the VMA and the PTE table;
- a shared write fault (do_shared_fault -> finish_fault) maps the whole folio writable and dirty.

Known divergence, tested as such (test_pmd_sized_folios_differ_only_in_the_pmd): a PMD-sized (order 9)
folio in a 2 MiB-aligned VMA is mapped by one PMD entry on the host (do_set_pmd, FilePmdMapped; the
host's THP setting "madvise" does not stop it), by 512 PTEs in the model: Rss, fault counts and
pagemap agree, VmPTE and FilePmdMapped do not. smaps' dirty split (case dirty_split_in_smaps): every
mapped page of a dirty large folio counts as dirty (smaps_page_accumulate looks at the folio's
PG_dirty), whether a pwrite() or a store through the mapping dirtied it, and clean again after fsync.

To rerun one case by hand: `PYTHONPATH=src python tests/test_diff_large_folio.py NAME > x.vml`, then
`PYTHONPATH=src python -m vmlab diff x.vml` (NAME from CASES, or `pmd`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vmlab.kernel.filemap import folio_ends_in_file, folio_within_file
from vmlab.kernel.mm_types import Inode
from vmlab.lab.backends import make_backend
from vmlab.lab.diff import Difference, diff_scenario
from vmlab.lab.paging import counter_values
from vmlab.lab.scenario import parse

DATA = "/tmp/vmlab-lfolio.dat"
#: A 2 MiB-aligned address no mapping of the stepper is near: PTE-table boundaries fall on file pages
#: the cases choose.
BASE = 0x600000000000


def head(size: str = "1M", reads: int = 64, mode: str = "O_RDWR") -> str:
    """The scenario's start: the file, a buffer, the file opened, dropped from the cache and read cold
    with `reads` 4 KiB read()s (the large folios), and its residency."""
    return (f"file {DATA} {size}\n"
            "buf = mmap(0, 1M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)\n"
            f'fd = openat(AT_FDCWD, "{DATA}", {mode})\n'
            "fadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)\n"
            + "read(fd, buf, 4096)\n" * reads
            + f"show residency {DATA}\n")


def faults(mmap: str, accesses: tuple[str, ...], span: str = "1M", smaps: bool = True) -> str:
    """`m = mmap`, then each access followed by the fault counters and the mapping's pagemap; smaps
    at the end."""
    lines = [f"m = {mmap}", "show counters"]
    for access in accesses:
        lines += [access, "show counters", f"show pagemap m, {span}"]
    if smaps:
        lines.append("show smaps")
    return "\n".join(lines) + "\n"


def rd(page: int) -> str:
    """A one-byte read of file page `page` through the mapping `m` (mapped from file page 0)."""
    return f"read m + {page}*4096"


def wr(page: int) -> str:
    """A one-byte write of page `page` of the mapping `m`."""
    return f"write m + {page}*4096"


SHARED_RO = f"mmap({BASE:#x}, 1M, PROT_READ, MAP_SHARED|MAP_FIXED, fd, 0)"
SHARED_RW = f"mmap({BASE:#x}, 1M, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, fd, 0)"

CASES: dict[str, str] = {
    # No PTE table yet, the window [192, 207] starts in folio 192-255, which holds the last page:
    # fault-around maps nothing, finish_fault maps the whole folio (it ends at EOF). Then the table
    # is there: the window [128, 143] maps folio 128-191 whole; [16, 31] maps 16-23 and folio 24-31.
    "eof_folio_without_table": head() + faults(SHARED_RO, (rd(200), rd(130), rd(20))),
    # The same read first through a table that exists (page 0's fault made it): fault-around maps
    # the window's part of the last folio only (192-207), as it holds the file's last page.
    "eof_folio_with_table": head() + faults(SHARED_RO, (rd(0), rd(200), rd(250))),
    # Fault-around over small and large folios alike, a fault per step, some pages already mapped.
    "seq_faults": head(reads=40) + faults(SHARED_RO, tuple(rd(p) for p in (0, 17, 33, 50, 70, 90, 110,
                                                                           140, 170, 190, 230, 255))),
    # The VMA starts 310 pages into a PTE table, so file page 202 starts the next table: folio
    # 128-191 fits in the first table and is mapped whole, folio 192-255 straddles the boundary and
    # only the window's part (186-201, clipped to the table) is mapped, then 202-217 in the next.
    "pte_table_boundary": head() + faults(f"mmap({BASE + 310 * 4096:#x}, 1M, PROT_READ, "
                                          "MAP_SHARED|MAP_FIXED, fd, 0)", (rd(200), rd(205), rd(100))),
    # A VMA from file page 100: folio 96-127 starts before it (mapped by the window only), folio
    # 192-255 sticks out past its end at file page 228 (window only, and finish_fault one page).
    "vma_cuts_folios": head() + faults(f"mmap({BASE:#x}, 512K, PROT_READ, MAP_SHARED|MAP_FIXED, fd, "
                                       "100*4096)", (rd(0), rd(30), rd(120)), span="512K"),
    # EOF inside the last page: the last folios are smaller (readahead clips orders at EOF) and the
    # rules count the partial page as the file's last.
    "partial_last_page": head("1M - 100") + faults(SHARED_RO, (rd(250), rd(150), rd(255))),
    # Shared write faults map the whole folio writable and dirty (a second write to it: no fault).
    "shared_write": head() + faults(SHARED_RW, (wr(100), wr(101), wr(250), wr(200), rd(60))),
    # Private mappings: a write is a COW fault of one page (no fault-around, no folio mapping); a
    # read next to it maps the rest of the folio around the anon page.
    "private_cow": head() + faults(f"mmap({BASE:#x}, 1M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED, fd, 0)",
                                   (wr(100), rd(101), wr(200), rd(201), rd(199))),
    # MADV_RANDOM stops readahead, not fault-around (should_fault_around() looks only at uffd).
    "madv_random": head() + faults(SHARED_RO, ("madvise(m, 1M, MADV_RANDOM)", rd(200), rd(100), rd(10))),
    # Dirty large folios in smaps: a pwrite() to one page of a mapped 32-page folio, a store to one
    # page of a 16-page one (a write fault), then fsync.
    "dirty_split_in_smaps": head() + faults(SHARED_RW, (rd(100), rd(10), "pwrite64(fd, buf, 1, 100*4096)",
                                                        "show smaps", wr(40), "show smaps", "fsync(fd)",
                                                        rd(200))),
    # munmap of part of a fully mapped large folio, then a fault in what is left of it.
    "munmap_part_of_folio": head() + faults(SHARED_RO, (rd(130), "munmap(m + 160*4096, 8*4096)",
                                                        rd(150), rd(170))),
}


def test_eof_tests_differ_by_one_page() -> None:
    """The two EOF tests of 6.18 (model-only): fault-around wants the folio to end before the file's
    last page, finish_fault at or before EOF. A 256-page file: folio 192-255 passes only the second,
    folio 128-191 both; shmem passes both always."""
    inode = Inode("/tmp/x", 1, 256 * 4096)
    assert not folio_within_file(inode, 192, 6) and folio_ends_in_file(inode, 192, 6)
    assert folio_within_file(inode, 128, 6) and folio_ends_in_file(inode, 128, 6)
    inode.size -= 100  # the last page partial: still page 255
    assert not folio_within_file(inode, 192, 6) and folio_ends_in_file(inode, 192, 6)
    assert not folio_ends_in_file(inode, 224, 6)  # sticks out past EOF
    inode.shmem = True
    assert folio_within_file(inode, 224, 6) and folio_ends_in_file(inode, 224, 6)


@pytest.fixture
def _data_file() -> object:
    """The scenario's file is removed afterwards, even when the test fails."""
    yield
    Path(DATA).unlink(missing_ok=True)


def _diff(name: str, text: str) -> tuple[list[Difference], list[str]]:
    """The differences of scenario `text` between the model and the kernel, and the printed report."""
    from hostutil import program_or_skip

    program_or_skip()
    if os.statvfs("/tmp").f_bavail * os.statvfs("/tmp").f_frsize < 64 << 20:
        pytest.skip("less than 64 MiB free in /tmp")
    out: list[str] = []
    diffs = diff_scenario(parse(text, f"<{name}>"), make_backend("model"), make_backend("host"),
                          out=out.append)
    return diffs, out


@pytest.mark.host
@pytest.mark.usefixtures("_data_file")
@pytest.mark.parametrize("name", sorted(CASES))
def test_large_folio_faults_agree_with_kernel(name: str) -> None:
    """Every result and view of the case is the same on the model and the kernel."""
    diffs, out = _diff(name, CASES[name])
    assert not diffs, "\n".join(out)


#: An 8 MiB file read with 1800 4 KiB reads: its cache ends in two order-9 folios, 1024-1535 and
#: 1536-2047 (measured with kpageflags as above), PMD-mapped on the host.
PMD_CASE = head("8M", 1800, "O_RDONLY") + faults(f"mmap({BASE:#x}, 8M, PROT_READ, MAP_SHARED|MAP_FIXED, "
                                                 "fd, 0)", (rd(1100), rd(1600), rd(10)), span="8M")


def _changed_fields(diff: str) -> set[str]:
    """The field names (`RssFile`, `VmPTE`, `FilePmdMapped`...) on which the -model/+kernel lines of a
    unified diff differ: smaps lines give their field, counters lines the counters that differ."""
    minus = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    plus = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    fields: set[str] = set()
    for a, b in zip(minus, plus, strict=True):
        if a.startswith("counters:"):
            va, vb = counter_values(a), counter_values(b)
            fields |= {label for label in va if va[label] != vb.get(label)}
        else:
            fields.add(a.split(":", 1)[0].strip())
    return fields


@pytest.mark.host
@pytest.mark.usefixtures("_data_file")
def test_pmd_sized_folios_differ_only_in_the_pmd() -> None:
    """The known divergence: the host maps an order-9 folio by PMD (do_set_pmd), the model by PTEs.
    Rss, fault counts, pagemap and residency agree; only VmPTE (the model's extra tables) and
    smaps' FilePmdMapped differ. Should the model learn file PMD mappings, this test says so."""
    diffs, out = _diff("pmd", PMD_CASE)
    fields = set().union(*(_changed_fields(d.diff) for d in diffs))
    assert fields == {"VmPTE", "FilePmdMapped"}, "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(CASES.get(sys.argv[1], PMD_CASE))
