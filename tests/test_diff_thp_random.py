"""Random workloads of transparent huge pages, model against kernel: an 8 MiB window of anonymous
memory with MADV_HUGEPAGE, written and read in ranges that cover 2 MiB blocks in whole or in part, a
fork whose child writes and unmaps parts of the shared THPs, and the advice that splits or frees them
(MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_PAGEOUT: with no swap on this host, a THP paged out is
split and kept), munmap and mprotect of parts; each process's smaps (AnonHugePages, Rss, the dirty
and shared split, LazyFree) and its window's pagemap, compared line by line
(test_diff_random.check_agreement). THP faults need the host's `enabled` to be `madvise` or
`always`; the model follows `madvise`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from test_diff_random import check_agreement, pytestmark  # noqa: F401  (the host marks and skips)

LOW, SIZE = 0x40000000, 8 << 20
MB2 = 2 << 20
ADVICE = ["MADV_DONTNEED", "MADV_FREE", "MADV_COLD", "MADV_PAGEOUT", "MADV_NOHUGEPAGE", "MADV_HUGEPAGE"]

#: A range of the window: whole 2 MiB blocks, or a few pages somewhere inside one.
block_range = st.tuples(st.integers(0, 3), st.integers(1, 4)).map(
    lambda b: (LOW + b[0] * MB2, min(b[1], 4 - b[0]) * MB2))
page_range = st.tuples(st.integers(0, SIZE // 4096 - 1), st.integers(1, 16)).map(
    lambda p: (LOW + p[0] * 4096, min(p[1], SIZE // 4096 - p[0]) * 4096))
any_range = st.one_of(block_range, block_range, page_range)


@st.composite
def thp_step(draw: st.DrawFn) -> str:
    """One line acting on the window."""
    kind = draw(st.sampled_from(["write", "write", "read", "madvise", "madvise", "madvise", "munmap",
                                 "mprotect"]))
    start, length = draw(any_range)
    if kind in ("write", "read"):
        return f"{kind} {start:#x}, {length:#x}"
    if kind == "madvise":
        return f"madvise({start:#x}, {length:#x}, {draw(st.sampled_from(ADVICE))})"
    if kind == "munmap":
        return f"munmap({start:#x}, {length:#x})"
    prot = draw(st.sampled_from(["PROT_READ", "PROT_READ|PROT_WRITE"]))
    return f"mprotect({start:#x}, {length:#x}, {prot})"


@st.composite
def thp_scenario(draw: st.DrawFn) -> str:
    """The window mapped with MADV_HUGEPAGE and written whole, 6-16 steps, perhaps a fork after which
    steps run in either process, then each process's smaps and pagemap of the window."""
    steps = draw(st.lists(thp_step(), min_size=6, max_size=16))
    fork_at = draw(st.one_of(st.none(), st.integers(0, len(steps) - 1)))
    lines = [f"mmap({LOW:#x}, {SIZE:#x}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)",
             f"madvise({LOW:#x}, {SIZE:#x}, MADV_HUGEPAGE)", f"write {LOW:#x}, {SIZE:#x}"]
    for i, line in enumerate(steps):
        if fork_at is not None and i == fork_at:
            lines.append("child = fork()")
        in_child = fork_at is not None and i > fork_at and draw(st.booleans())
        lines.append(("@child " if in_child else "") + line)
    tail = ["show smaps", f"show pagemap {LOW:#x}, {SIZE:#x}"]
    if fork_at is not None:
        lines += [f"@child {line}" for line in tail]
    return "\n".join(lines + tail) + "\n"


@pytest.fixture(scope="module", autouse=True)
def _thp_enabled() -> None:
    enabled = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not enabled.exists() or "[never]" in enabled.read_text():
        pytest.skip("transparent huge pages are off on this host")
    if len(Path("/proc/swaps").read_text().splitlines()) > 1:
        pytest.skip("the host has a swap area on: MADV_PAGEOUT would swap where the model keeps")


def found(advice: str) -> str:
    """What the test found: `advice` over a THP whose PMD MADV_DONTNEED of its first page split (the
    model left the PTE-mapped THP alone; the kernel splits it, the range mapping it in part)."""
    return (f"mmap({LOW:#x}, {SIZE:#x}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
            f"madvise({LOW:#x}, {SIZE:#x}, MADV_HUGEPAGE)\nwrite {LOW:#x}, {SIZE:#x}\n"
            f"madvise({LOW:#x}, 0x1000, MADV_DONTNEED)\nmadvise({LOW:#x}, 0x200000, {advice})\n"
            f"show smaps\nshow pagemap {LOW:#x}, {SIZE:#x}\n")


@settings(max_examples=25, deadline=None)
@given(thp_scenario())
@example(found("MADV_FREE"))
@example(found("MADV_COLD"))
def test_thp_workloads_agree_with_the_kernel(text: str) -> None:
    check_agreement(text)
