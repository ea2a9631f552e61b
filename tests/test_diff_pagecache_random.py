"""Random page-cache workloads on one file, run on the model and on the running kernel: every call
result and every `show residency` (mincore) must agree page for page.

A hypothesis strategy writes a scenario over ONE file of 1-4 MiB (sometimes with a partial last page),
made on ext4 /tmp by the scenario's `file` statement and dropped from the cache with
POSIX_FADV_DONTNEED (never the global drop_caches), then 8-30 steps of:

- read() of 1 byte .. 2 MiB at the file position, lseek() (SEEK_SET/SEEK_CUR), pread64() at a random
  offset or a run of pread64()s each starting where the previous one ended;
- fadvise64() NORMAL/RANDOM/SEQUENTIAL/WILLNEED/DONTNEED/NOREUSE over a random range (length 0 = to EOF);
- up to two read-only mappings of the file (MAP_SHARED or MAP_PRIVATE, whole or part), madvise()
  NORMAL/RANDOM/SEQUENTIAL/WILLNEED/COLD/DONTNEED over part of one, and loads (`read m + OFF, LEN`:
  one byte per page, in order) inside the mapping and the file;
- `show residency` now and then and always at the end.

The comparison is vmlab diff's (diff_scenario), unchanged: call echoes with results and the residency
views, exactly. The host's residency is taken once its readahead I/O has completed
(vmlab.host.pagecache.settled_residency).

Host nondeterminism the generator avoids, and why:
- Readahead only submits its reads: an asynchronous window (a read or fault that met PG_readahead),
  a WILLNEED (fadvise64 or madvise) or a fault's read-around is in the cache at once but its folios
  stay locked until the disk answers, and a POSIX_FADV_DONTNEED meanwhile skips locked folios
  (mapping_try_invalidate -> find_lock_entries only takes folios it can trylock). What survives
  depends on the disk's speed, not on the kernel's rules: after 19 read()s of 4 KiB and one of 8 KiB
  from a cold 1 MiB file, a DONTNEED of the whole file left the window 80-255 in the cache every time
  on this host, and nothing once a `show residency` (which waits for the I/O) came between. The
  model's I/O is synchronous, so every POSIX_FADV_DONTNEED here is preceded by a `show residency`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.host

PAGE = 4096
#: Per test process, so that concurrent runs (several worktrees) do not share the file.
DATA = f"/tmp/vmlab-pagecache-random-{os.getpid()}.dat"
SHOW = f"show residency {DATA}"
#: The anonymous buffer read() fills: as large as the largest read.
MAX_READ = 2 << 20

#: Examples per run: ~0.2-0.3 s each, so the `ci` profile's 200 are cut to keep the module under ~45 s;
#: other profiles (`explore`, `dev`) keep their own.
EXAMPLES = 150 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else settings.default.max_examples

FADVS = ["POSIX_FADV_NORMAL", "POSIX_FADV_RANDOM", "POSIX_FADV_SEQUENTIAL", "POSIX_FADV_WILLNEED",
         "POSIX_FADV_DONTNEED", "POSIX_FADV_NOREUSE"]
MADVS = ["MADV_NORMAL", "MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_WILLNEED", "MADV_COLD", "MADV_DONTNEED"]
#: Step kinds and their weights (repeats); the mapping kinds only once a mapping exists.
FILE_KINDS = ["read", "read", "read", "pread", "pread", "pread_run", "lseek", "fadvise", "fadvise", "show",
              "mmap"]
MAP_KINDS = ["load", "load", "load", "madvise", "madvise"]


@dataclass
class Shape:
    """What the steps so far have made: the file's size and the mappings (name -> file page offset,
    pages)."""

    size: int
    maps: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        """Pages of the file, the partial last one included."""
        return (self.size + PAGE - 1) // PAGE


def read_size(draw: st.DrawFn) -> int:
    """A read's length, 1 byte .. 2 MiB: mostly page multiples, small ones likelier, some odd."""
    kind = draw(st.sampled_from(["pages", "pages", "small", "odd"]))
    if kind == "pages":
        return PAGE << draw(st.integers(0, 9))  # 4 KiB .. 2 MiB
    if kind == "small":
        return draw(st.integers(1, 4 * PAGE))
    return draw(st.integers(1, MAX_READ))


def offset(draw: st.DrawFn, shape: Shape) -> int:
    """A file offset: page-aligned or not, within the file or a little past its end."""
    page = draw(st.integers(0, shape.pages + 2))
    return page * PAGE + draw(st.sampled_from([0, 0, 0, 1, 100, PAGE - 1]))


def fadvise(draw: st.DrawFn, shape: Shape) -> list[str]:
    """fadvise64() over a random range; a DONTNEED is preceded by a residency view, which waits for
    the reads in flight (see the module docstring)."""
    advice = draw(st.sampled_from(FADVS))
    length = draw(st.sampled_from([0, 0, PAGE, 1, None]))
    if length is None:
        length = draw(st.integers(1, shape.size))
    line = f"fadvise64(fd, {offset(draw, shape)}, {length}, {advice})"
    return [SHOW, line] if advice == "POSIX_FADV_DONTNEED" else [line]


def mapping(draw: st.DrawFn, shape: Shape) -> list[str]:
    """A read-only mapping of the whole file or a part of it, shared or private."""
    name = f"m{len(shape.maps) + 1}"
    if draw(st.booleans()):
        first, pages = 0, shape.pages
    else:
        first = draw(st.integers(0, shape.pages - 1))
        pages = draw(st.integers(1, shape.pages - first))
    shape.maps[name] = (first, pages)
    share = draw(st.sampled_from(["MAP_SHARED", "MAP_PRIVATE"]))
    return [f"{name} = mmap(0, {pages * PAGE}, PROT_READ, {share}, fd, {first * PAGE})"]


def in_mapping(draw: st.DrawFn, shape: Shape) -> tuple[str, int, int]:
    """A mapping and a page range [start, start+n) inside it (n >= 1)."""
    name = draw(st.sampled_from(sorted(shape.maps)))
    pages = shape.maps[name][1]
    start = draw(st.integers(0, pages - 1))
    n = draw(st.integers(1, min(pages - start, 600)))
    return name, start, n


@st.composite
def step(draw: st.DrawFn, shape: Shape) -> list[str]:
    """The lines of one random step on the file `shape` describes (updated by mmap)."""
    kinds = FILE_KINDS + (MAP_KINDS if shape.maps else [])
    if len(shape.maps) >= 2:
        kinds = [k for k in kinds if k != "mmap"]
    kind = draw(st.sampled_from(kinds))
    if kind == "read":
        return [f"read(fd, buf, {read_size(draw)})"]
    if kind == "pread":
        return [f"pread64(fd, buf, {read_size(draw)}, {offset(draw, shape)})"]
    if kind == "pread_run":
        pos, size = offset(draw, shape), read_size(draw)
        return [f"pread64(fd, buf, {size}, {pos + i * size})" for i in range(draw(st.integers(2, 8)))]
    if kind == "lseek":
        whence = draw(st.sampled_from([0, 0, 1]))
        moves = st.sampled_from([1, 100, PAGE, 16 * PAGE, 1 << 20])
        pos = offset(draw, shape) if whence == 0 else draw(moves)
        return [f"lseek(fd, {pos}, {whence})"]
    if kind == "fadvise":
        return fadvise(draw, shape)
    if kind == "show":
        return [SHOW]
    if kind == "mmap":
        return mapping(draw, shape)
    name, start, n = in_mapping(draw, shape)
    first = shape.maps[name][0]
    if kind == "load":
        # Only pages that hold file data: a load past EOF is SIGBUS, which would end the scenario.
        n = min(n, shape.pages - first - start)
        return [f"read {name} + {start * PAGE + draw(st.integers(0, PAGE - 1))}, {(n - 1) * PAGE + 1}"]
    advice = draw(st.sampled_from(MADVS))
    return [f"madvise({name} + {start * PAGE}, {n * PAGE}, {advice})"]


@st.composite
def scenario_text(draw: st.DrawFn) -> str:
    """A whole scenario: the file, the buffer, the open and the drop, 8-30 steps, a final view."""
    size = draw(st.integers(256, 1024)) * PAGE - draw(st.sampled_from([0, 0, 0, 1, 2000, PAGE - 1]))
    shape = Shape(size)
    lines = [f"file {DATA} {size}",
             f"buf = mmap(0, {MAX_READ}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, "
             "-1, 0)",
             f'fd = openat(AT_FDCWD, "{DATA}", O_RDONLY)',
             "fadvise64(fd, 0, 0, POSIX_FADV_DONTNEED)", SHOW]
    for _ in range(draw(st.integers(8, 30))):
        lines += draw(step(shape))
    lines.append(SHOW)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module", autouse=True)
def _data_file() -> Iterator[None]:
    """The scenarios' file is removed at the end, even when a test fails."""
    from hostutil import program_or_skip

    program_or_skip()
    st_ = os.statvfs("/tmp")
    if st_.f_bavail * st_.f_frsize < 64 << 20:
        pytest.skip("less than 64 MiB free in /tmp")
    try:
        yield
    finally:
        if os.path.exists(DATA):
            os.unlink(DATA)


def check_agreement(text: str) -> None:
    """Run the scenario text on both backends; fail with the scenario and the differences."""
    from vmlab.lab.backends import make_backend
    from vmlab.lab.diff import diff_scenario
    from vmlab.lab.scenario import parse

    diffs = diff_scenario(parse(text, "<random>"), make_backend("model"), make_backend("host"))
    report = "\n".join(f"line {d.line}: {d.source}\n{d.diff}" for d in diffs)
    assert not diffs, f"scenario:\n{text}\n{report}"


@settings(max_examples=EXAMPLES)
@given(scenario_text())
def test_residency_agrees_with_kernel(text: str) -> None:
    """Every call result and residency view of a random page-cache workload is the kernel's."""
    check_agreement(text)
