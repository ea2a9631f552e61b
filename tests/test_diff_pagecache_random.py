"""Random page-cache workloads on one file (reads only; the generator is pagecachegen's), run on the
model and on the running kernel: every call result and every `show residency` (mincore) must agree page
for page.

A hypothesis strategy writes a scenario over ONE file of 1-4 MiB (sometimes with a partial last page),
made on ext4 /tmp by the scenario's `file` statement and dropped from the cache with
POSIX_FADV_DONTNEED (never the global drop_caches), then 8-30 steps of:

- read() of 1 byte .. 2 MiB at the file position, lseek() (SEEK_SET/SEEK_CUR), pread64() at a random
  offset or a run of pread64()s each starting where the previous one ended;
- fadvise64() NORMAL/RANDOM/SEQUENTIAL/WILLNEED/DONTNEED/NOREUSE over a random range (length 0 = to EOF);
- up to two read-only mappings of the file (MAP_SHARED or MAP_PRIVATE, whole or part), madvise()
  NORMAL/RANDOM/SEQUENTIAL/WILLNEED/COLD/DONTNEED over part of one (not PAGEOUT: see pagecachegen's
  MADVS), and loads (`read m + OFF, LEN`:
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

import pytest
from hypothesis import given, settings

from pagecachegen import EXAMPLES, host_data_file, scenario_text

pytestmark = pytest.mark.host

#: Per test process, so that concurrent runs (several worktrees) do not share the file.
DATA = f"/tmp/vmlab-pagecache-random-{os.getpid()}.dat"


@pytest.fixture(scope="module", autouse=True)
def _data_file() -> Iterator[None]:
    """The scenarios' host file: skips where the host cannot run them, removed at the end."""
    yield from host_data_file(DATA)


def check_agreement(text: str) -> None:
    """Run the scenario text on both backends; fail with the scenario and the differences."""
    from vmlab.lab.backends import make_backend
    from vmlab.lab.diff import diff_scenario
    from vmlab.lab.scenario import parse

    diffs = diff_scenario(parse(text, "<random>"), make_backend("model"), make_backend("host"))
    report = "\n".join(f"line {d.line}: {d.source}\n{d.diff}" for d in diffs)
    assert not diffs, f"scenario:\n{text}\n{report}"


@settings(max_examples=EXAMPLES)
@given(scenario_text(DATA))
def test_residency_agrees_with_kernel(text: str) -> None:
    """Every call result and residency view of a random page-cache workload is the kernel's."""
    check_agreement(text)
