"""Hypothesis strategies for random page-cache workloads on one host file, shared by
test_diff_pagecache_random (reads only) and test_diff_pagecache_write_random (reads mixed with writes,
truncation, write-back and stores through a shared mapping). Each module's docstring says which host
nondeterminism its scenarios avoid; the rules that serve it are applied here, where the lines are made.

A Workload holds what the steps so far have made (the file's size and position, the mappings, whether
write-back I/O may still be in flight) so that later steps stay meaningful: loads and stores only touch
pages that hold file data (past EOF is SIGBUS, which would end the scenario).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st

PAGE = 4096
#: The anonymous buffer read() fills and write() takes its bytes from: as large as the largest I/O.
MAX_IO = 2 << 20
#: A written file stays below this size (writes far past EOF are clipped to it).
MAX_FILE = 12 << 20
#: Pages of a mapping in a writing workload: under 2 MiB, so that no mapping holds a whole 2 MiB-aligned
#: range, which 6.18 maps with one PMD over an order-9 folio where the model maps 512 PTEs (a known,
#: accepted divergence).
MAX_MAP_PAGES = 511

FADVS = ["POSIX_FADV_NORMAL", "POSIX_FADV_RANDOM", "POSIX_FADV_SEQUENTIAL", "POSIX_FADV_WILLNEED",
         "POSIX_FADV_DONTNEED", "POSIX_FADV_NOREUSE"]
#: (Not MADV_PAGEOUT: it drops exactly the pages mapped, and which pages a fault maps around it is the
#: disk's timing, fault-around passing over the readahead pages still being read: explore found the
#: kernel keeping 11 pages beyond a mapped read that the model, its reads done at once, had mapped and
#: dropped. tests/test_host_file_madvise.py holds MADV_PAGEOUT on settled mappings.)
MADVS = ["MADV_NORMAL", "MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_WILLNEED", "MADV_COLD", "MADV_DONTNEED"]
#: Step kinds and their weights (repeats); the mapping kinds only once a mapping exists.
FILE_KINDS = ["read", "read", "read", "pread", "pread", "pread_run", "lseek", "fadvise", "fadvise", "show",
              "mmap"]
MAP_KINDS = ["load", "load", "load", "madvise", "madvise"]
#: The writing workload's further kinds (a store or msync only once a shared writable mapping exists).
WRITE_KINDS = ["pwrite", "pwrite", "pwrite", "write", "write", "ftruncate", "fsync", "sync_file_range",
               "sync_file_range", "folios", "cachestat"]
STORE_KINDS = ["store", "store", "msync", "remove"]
SFR_FLAGS = ["SYNC_FILE_RANGE_WAIT_BEFORE", "SYNC_FILE_RANGE_WRITE", "SYNC_FILE_RANGE_WAIT_AFTER"]
MSYNC_FLAGS = ["MS_SYNC", "MS_ASYNC", "MS_SYNC|MS_INVALIDATE", "MS_ASYNC|MS_INVALIDATE"]


@dataclass(frozen=True)
class Mapping:
    """A mapping of the file: its first file page, its pages, and whether it is MAP_SHARED and writable
    (stores reach the page cache)."""

    first: int
    pages: int
    shared_rw: bool = False


@dataclass
class Workload:
    """The file `path` as the steps so far left it: size, file position (read/write/lseek move it),
    mappings (name -> Mapping); `writes`: the workload writes; `inflight`: write-back I/O may still be
    in flight (started by a write-back that did not wait for it)."""

    path: str
    size: int
    writes: bool = False
    pos: int = 0
    maps: dict[str, Mapping] = field(default_factory=dict)
    inflight: bool = False
    #: Pages that may hold no block (a hole: a growing truncate or a write past EOF passed them by).
    holes: set[int] = field(default_factory=set)

    def grow(self, size: int) -> None:
        """The file grows to `size` without data: its new pages after the EOF page are holes."""
        self.holes |= set(range(self.pages, (size + PAGE - 1) // PAGE))
        self.size = size

    def shrink(self, size: int) -> None:
        """The file shrinks to `size`: its holes beyond it go."""
        self.size = size
        self.holes = {p for p in self.holes if p < self.pages}

    @property
    def pages(self) -> int:
        """Pages of the file, the partial last one included."""
        return (self.size + PAGE - 1) // PAGE

    def show(self, view: str = "residency") -> str:
        """The line `show VIEW PATH` of this file."""
        return f"show {view} {self.path}"

    def settle(self) -> list[str]:
        """Lines that wait for write-back I/O in flight (none when nothing may be): the host completes
        it on the disk's time, the model on its clock, so only its end is comparable."""
        if not self.inflight:
            return []
        self.inflight = False
        return ["sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE)"]


def read_size(draw: st.DrawFn) -> int:
    """An I/O length, 1 byte .. 2 MiB: mostly page multiples, small ones likelier, some odd."""
    kind = draw(st.sampled_from(["pages", "pages", "small", "odd"]))
    if kind == "pages":
        return PAGE << draw(st.integers(0, 9))  # 4 KiB .. 2 MiB
    if kind == "small":
        return draw(st.integers(1, 4 * PAGE))
    return draw(st.integers(1, MAX_IO))


def offset(draw: st.DrawFn, w: Workload) -> int:
    """A file offset: page-aligned or not, within the file or a little past its end."""
    page = draw(st.integers(0, w.pages + 2))
    return page * PAGE + draw(st.sampled_from([0, 0, 0, 1, 100, PAGE - 1]))


def write_offset(draw: st.DrawFn, w: Workload) -> int:
    """A write's offset: inside the file, just below its end (the write spans EOF), or past it
    (leaving a hole)."""
    where = draw(st.sampled_from(["inside", "inside", "eof", "past"]))
    if where == "inside":
        return offset(draw, w)
    if where == "eof":
        return max(0, w.size - draw(st.sampled_from([1, 100, PAGE, PAGE + 1, 10 * PAGE])))
    return w.size + draw(st.sampled_from([1, PAGE, 3 * PAGE + 5, 1 << 20])) + draw(st.integers(0, 64)) * PAGE


def fadvise(draw: st.DrawFn, w: Workload) -> list[str]:
    """fadvise64() over a random range. A DONTNEED is preceded by a residency view, which waits for
    the reads in flight, and by the end of any write-back in flight (its invalidation skips folios under
    write-back). In a workload that writes, the range's dirty pages are also written and waited for
    first (sync_file_range WRITE_AND_WAIT of the same bytes): DONTNEED starts their write-back itself
    and its first invalidation passes them by, but when that one fails it drains every CPU's LRU
    batches (lru_add_drain_all) and invalidates again, and whether the I/O has ended by then is the
    disk's timing (seen both ways: tests/test_diff_folio_write.py's dontneed_writes_back keeps 8
    written pages, a random scenario saw the kernel drop 5 dirty pages at EOF that the model kept)."""
    advice = draw(st.sampled_from(FADVS))
    length = draw(st.sampled_from([0, 0, PAGE, 1, None]))
    if length is None:
        length = draw(st.integers(1, max(1, w.size)))
    start = offset(draw, w)
    line = f"fadvise64(fd, {start}, {length}, {advice})"
    if advice != "POSIX_FADV_DONTNEED":
        return [line]
    lines = [*w.settle(), w.show()]
    if w.writes:
        lines.append(f"sync_file_range(fd, {start}, {length}, SYNC_FILE_RANGE_WRITE_AND_WAIT)")
    return [*lines, line]


def mapping(draw: st.DrawFn, w: Workload) -> list[str]:
    """A mapping of the whole file or a part of it: read-only shared or private, or (writing workloads)
    shared and writable; at most MAX_MAP_PAGES pages in a writing workload."""
    name = f"m{len(w.maps) + 1}"
    limit = MAX_MAP_PAGES if w.writes else 1 << 30
    pages_now = max(1, w.pages)
    if draw(st.booleans()):
        first, pages = 0, min(pages_now, limit)
    else:
        first = draw(st.integers(0, pages_now - 1))
        pages = draw(st.integers(1, min(pages_now - first, limit)))
    kinds = ["MAP_SHARED", "MAP_PRIVATE"] + (["rw", "rw"] if w.writes else [])
    share = draw(st.sampled_from(kinds))
    w.maps[name] = Mapping(first, pages, share == "rw")
    prot, share = ("PROT_READ|PROT_WRITE", "MAP_SHARED") if share == "rw" else ("PROT_READ", share)
    return [f"{name} = mmap(0, {pages * PAGE}, {prot}, {share}, fd, {first * PAGE})"]


def in_mapping(draw: st.DrawFn, w: Workload, names: list[str]) -> tuple[str, int, int]:
    """One of the mappings `names` and a page range [start, start+n) inside it (n >= 1)."""
    name = draw(st.sampled_from(names))
    pages = w.maps[name].pages
    start = draw(st.integers(0, pages - 1))
    n = draw(st.integers(1, min(pages - start, 600)))
    return name, start, n


def access(draw: st.DrawFn, w: Workload, verb: str, names: list[str]) -> list[str]:
    """`read`/`write` NAME + OFF, LEN over pages of one of the mappings `names` that hold file data
    (none when the file ends before the range)."""
    name, start, n = in_mapping(draw, w, names)
    n = min(n, w.pages - w.maps[name].first - start)
    if n <= 0:
        return []
    return [f"{verb} {name} + {start * PAGE + draw(st.integers(0, PAGE - 1))}, {(n - 1) * PAGE + 1}"]


def read_step(draw: st.DrawFn, w: Workload, kind: str) -> list[str]:
    """The lines of one reading step of kind `kind`."""
    if kind == "read":
        size = read_size(draw)
        w.pos += max(0, min(size, w.size - w.pos))
        return [f"read(fd, buf, {size})"]
    if kind == "pread":
        return [f"pread64(fd, buf, {read_size(draw)}, {offset(draw, w)})"]
    if kind == "pread_run":
        pos, size = offset(draw, w), read_size(draw)
        return [f"pread64(fd, buf, {size}, {pos + i * size})" for i in range(draw(st.integers(2, 8)))]
    if kind == "lseek":
        whence = draw(st.sampled_from([0, 0, 1]))
        moves = st.sampled_from([1, 100, PAGE, 16 * PAGE, 1 << 20])
        pos = offset(draw, w) if whence == 0 else draw(moves)
        w.pos = pos if whence == 0 else w.pos + pos
        return [f"lseek(fd, {pos}, {whence})"]
    if kind == "fadvise":
        return fadvise(draw, w)
    if kind == "show":
        return [w.show()]
    if kind == "mmap":
        return mapping(draw, w)
    if kind == "load":  # fault-around passes over a PG_readahead folio, a bit its write-back's end
        return [*w.settle(), *access(draw, w, "read", sorted(w.maps))]  # clears (PG_reclaim's)
    name, start, n = in_mapping(draw, w, sorted(w.maps))
    advice = draw(st.sampled_from(MADVS))
    return [f"madvise({name} + {start * PAGE}, {n * PAGE}, {advice})"]


def sync_file_range(draw: st.DrawFn, w: Workload) -> list[str]:
    """sync_file_range() with one of the eight flag combinations over a random range (length 0: to
    EOF). A WRITE that does not wait first for write-back in flight is preceded by its end (WB_SYNC_NONE
    passes over a folio still under write-back: what it writes depends on the disk's speed)."""
    flags = [f for f in SFR_FLAGS if draw(st.booleans())]
    whole = draw(st.booleans())
    off, length = (0, 0) if whole else (offset(draw, w), draw(st.sampled_from([0, 1, PAGE, None])))
    if length is None:
        length = draw(st.integers(1, MAX_IO))
    lines = []
    if "SYNC_FILE_RANGE_WRITE" in flags and "SYNC_FILE_RANGE_WAIT_BEFORE" not in flags:
        lines = w.settle()
    lines.append(f"sync_file_range(fd, {off}, {length}, {'|'.join(flags) or 0})")
    if "SYNC_FILE_RANGE_WAIT_AFTER" in flags and whole:
        w.inflight = False
    elif "SYNC_FILE_RANGE_WRITE" in flags and "SYNC_FILE_RANGE_WAIT_AFTER" not in flags:
        w.inflight = True
    elif flags == ["SYNC_FILE_RANGE_WAIT_BEFORE"] and whole:
        w.inflight = False
    return lines


def zeroed_block(w: Workload, size: int) -> list[str] | None:
    """Before a step that zeroes the rest of the block holding byte `size` (a write starting past EOF
    or a growing ftruncate: ext4_block_zero_eof; a truncation to `size`: ext4_block_truncate_page), a
    read that caches that page, when `size` is inside a page. The zeroing caches and dirties the page;
    one not cached before stays not uptodate (read as a buffer, not a folio: cachestat counts it,
    mincore does not; measured: size 255.5 pages, a 4 KiB pwrite at page 258 leaves pages 255, 258,
    259 cached and dirty, mincore shows 258, 259). The model has no !uptodate cached pages: a known
    divergence, not modelled. None when that page may be a hole: ext4 then zeroes nothing
    (__ext4_block_zero_page_range: the buffer stays unmapped) and the model does not know holes (the
    step is left out)."""
    if not size % PAGE:
        return []
    if size // PAGE in w.holes:
        return None
    return [f"pread64(fd, buf, 1, {size // PAGE * PAGE})"]


def write_step(draw: st.DrawFn, w: Workload, kind: str) -> list[str]:
    """The lines of one writing step of kind `kind`."""
    if kind in ("pwrite", "write"):
        pos = write_offset(draw, w) if kind == "pwrite" else w.pos
        size = min(read_size(draw), max(1, MAX_FILE - pos))
        if kind == "write":
            if pos + size > MAX_FILE:
                return []
            w.pos += size
        first = zeroed_block(w, w.size) if pos > w.size else []
        if first is None:
            return []
        if pos > w.size:
            w.grow(pos)
        w.holes -= set(range(pos // PAGE, (pos + size + PAGE - 1) // PAGE))
        w.size = max(w.size, pos + size)
        call = f"pwrite64(fd, buf, {size}, {pos})" if kind == "pwrite" else f"write(fd, buf, {size})"
        return [*first, call]
    if kind == "ftruncate":
        # Never to 0: ext4 then sets EXT4_STATE_DA_ALLOC_CLOSE (auto_da_alloc, ext4_truncate) and the
        # next release of any open file of the inode starts write-back of its dirty pages
        # (ext4_release_file -> ext4_alloc_da_blocks), and the host's views open and close the file.
        if draw(st.booleans()):
            size = draw(st.integers(0, w.pages)) * PAGE - draw(st.sampled_from([0, 0, 1, 100, PAGE - 1]))
        else:
            size = w.size + draw(st.sampled_from([1, 100, PAGE, 5 * PAGE + 3, 1 << 20]))
        size = max(1, size)
        first = zeroed_block(w, min(size, w.size)) if size != w.size else []
        if first is None:
            return []
        if size > w.size:
            w.grow(size)
        else:
            w.shrink(size)
        return [*first, f"ftruncate(fd, {size})"]
    if kind == "fsync":
        w.inflight = False
        return [f"{draw(st.sampled_from(['fsync', 'fdatasync']))}(fd)"]
    if kind == "sync_file_range":
        return sync_file_range(draw, w)
    if kind == "folios":
        return [w.show("folios")]
    if kind == "cachestat":
        return [*w.settle(), w.show("cachestat")]
    shared = sorted(n for n, m in w.maps.items() if m.shared_rw)
    if kind == "store":
        return access(draw, w, "write", shared)  # (a hole stored to stays in w.holes: conservative)
    name, start, n = in_mapping(draw, w, shared)
    if kind == "remove":  # a hole punched in the file (ext4_punch_hole): its blocks are gone
        first = w.maps[name].first + start
        w.holes |= set(range(first, min(first + n, w.pages)))
        return [f"madvise({name} + {start * PAGE}, {n * PAGE}, MADV_REMOVE)"]
    flags = draw(st.sampled_from(MSYNC_FLAGS))
    return [f"msync({name} + {start * PAGE}, {n * PAGE}, {flags})"]


@st.composite
def step(draw: st.DrawFn, w: Workload) -> list[str]:
    """The lines of one random step on the workload's file (`w` is updated)."""
    kinds = FILE_KINDS + (MAP_KINDS if w.maps else [])
    if w.writes:
        kinds += WRITE_KINDS + (STORE_KINDS if any(m.shared_rw for m in w.maps.values()) else [])
    if len(w.maps) >= 2:
        kinds = [k for k in kinds if k != "mmap"]
    kind = draw(st.sampled_from(kinds))
    if kind in WRITE_KINDS or kind in STORE_KINDS:
        return write_step(draw, w, kind)
    return read_step(draw, w, kind)


def head(w: Workload) -> list[str]:
    """The file, the buffer, the open (read-write for a writing workload) and the drop from the cache."""
    mode = "O_RDWR" if w.writes else "O_RDONLY"
    return [f"file {w.path} {w.size}",
            f"buf = mmap(0, {MAX_IO}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0)",
            f'fd = openat(AT_FDCWD, "{w.path}", {mode})',
            "fadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)", w.show()]


@st.composite
def scenario_text(draw: st.DrawFn, path: str, writes: bool = False, steps: tuple[int, int] = (8, 30)) -> str:
    """A whole scenario on a file of 1-4 MiB (sometimes a partial last page): the head, `steps` random
    steps, and the final views (a writing workload's: its folios and cache counts too)."""
    size = draw(st.integers(256, 1024)) * PAGE - draw(st.sampled_from([0, 0, 0, 1, 2000, PAGE - 1]))
    w = Workload(path, size, writes)
    lines = head(w)
    for _ in range(draw(st.integers(*steps))):
        lines += draw(step(w))
    lines.append(w.show())
    if writes:
        lines += [w.show("folios"), *w.settle(), w.show("cachestat")]
    return "\n".join(lines) + "\n"


#: Examples per run in the `ci` profile (~0.2-0.3 s each: a module of them takes ~35-45 s); other
#: profiles (`explore`, `dev`) keep their own.
EXAMPLES = 150 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else settings.default.max_examples


def host_data_file(path: str, *, needs_root: bool = False) -> Iterator[None]:
    """The body of a module fixture for random scenarios on the host file `path`: skip (saying why)
    where the host cannot run them (no stepper; not root when `needs_root`: show folios needs frame
    numbers; less than 64 MiB free in /tmp), and remove the file at the end, even when a test fails."""
    from hostutil import program_or_skip

    program_or_skip()
    if needs_root and os.geteuid() != 0:
        pytest.skip("show folios on the host needs root (frame numbers in /proc/self/pagemap)")
    st_ = os.statvfs("/tmp")
    if st_.f_bavail * st_.f_frsize < 64 << 20:
        pytest.skip("less than 64 MiB free in /tmp")
    try:
        yield
    finally:
        if os.path.exists(path):
            os.unlink(path)
