"""The paging views of a scenario: `show counters` (fault and RSS deltas) and `show pagemap` (one letter
per page, with frames numbered so that sharing is visible but physical addresses never are).

Both are rendered from the Backend's raw numbers (`counters`, `pagemap`, `kpageflags`), so the model
and the kernel are held to the same text. Page letters (pagemap bits: reference §4 F3):

    -  not present            z  the shared zero page        Z  the huge zero page
    a  anon, mapped once      A  anon, mapped more than once (e.g. after fork, before COW)
    f  file/shmem, once       F  file/shmem, more than once
    s  swapped (or a PTE marker other than a guard)           g  guard region (MADV_GUARD_INSTALL)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from vmlab.backend import Counters
from vmlab.host.procfs import (
    PM_EXCLUSIVE,
    PM_FILE,
    PM_GUARD,
    PM_PFN_MASK,
    PM_PRESENT,
    PM_SOFT_DIRTY,
    PM_SWAP,
    PM_UFFD_WP,
)
from vmlab.kernel.page_flags import KPF
from vmlab.linux import CacheStat

PAGE = 4096
KPF_ZERO_PAGE = 1 << KPF.ZERO_PAGE
KPF_THP = 1 << KPF.THP

#: Counters fields printed by `show counters`, with the label /proc uses and the unit.
COUNTER_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("minflt", "minflt", ""), ("majflt", "majflt", ""), ("rss_anon_kb", "RssAnon", " kB"),
    ("rss_file_kb", "RssFile", " kB"), ("rss_shmem_kb", "RssShmem", " kB"), ("vm_pte_kb", "VmPTE", " kB"),
    ("vm_swap_kb", "VmSwap", " kB"),
)
#: The named pagemap bits `show pagemap ... verbose` lists, high bit first.
PM_BITS: tuple[tuple[str, int], ...] = (
    ("present", PM_PRESENT), ("swapped", PM_SWAP), ("file", PM_FILE), ("guard", PM_GUARD),
    ("uffd-wp", PM_UFFD_WP), ("exclusive", PM_EXCLUSIVE), ("soft-dirty", PM_SOFT_DIRTY),
)
#: Letters that stand for a frame of their own (numbered); z and Z are one well-known frame each.
NUMBERED = frozenset("aAfF")
#: Runs of at least this many equal letters are written `x{n}`.
RUN = 5
#: The largest range one `show pagemap` may cover.
MAX_RANGE = 1 << 30


def format_counters(now: Counters, base: Counters) -> str:
    """`counters: minflt +1 majflt +0 RssAnon +4 kB ...`: the change from `base` to `now`."""
    parts = [f"{label} {getattr(now, name) - getattr(base, name):+d}{unit}"
             for name, label, unit in COUNTER_FIELDS]
    return "counters: " + " ".join(parts)


def counter_values(line: str) -> dict[str, int]:
    """The `LABEL VALUE [kB]` pairs of a counters line (`counters: ` prefix optional) as label -> int.

    ValueError names the first word that is not a known label or a signed number."""
    words = line.removeprefix("counters:").split()
    labels = {label for _, label, _ in COUNTER_FIELDS}
    out: dict[str, int] = {}
    i = 0
    while i < len(words):
        label = words[i]
        if label not in labels:
            raise ValueError(f"'{label}' is not a counter (known: {', '.join(sorted(labels))})")
        if i + 1 == len(words) or not words[i + 1].lstrip("+-").isdigit():
            raise ValueError(f"'{label}' needs a number after it, like +4")
        out[label] = int(words[i + 1])
        i += 3 if i + 2 < len(words) and words[i + 2] == "kB" else 2
    return out


def counters_match(expected: str, actual: str) -> bool:
    """Whether every counter named in the `expected` line has its value in the `actual` line."""
    want, got = counter_values(expected), counter_values(actual)
    return all(got.get(label) == value for label, value in want.items())


def page_letter(raw: int, kpageflags: Callable[[int], int]) -> str:
    """The letter of one pagemap entry; kpageflags(pfn) is asked only for present pages mapped more
    than once (the zero pages are never exclusive)."""
    if raw & PM_PRESENT:
        shared = not raw & PM_EXCLUSIVE
        if shared:
            kpf = kpageflags(raw & PM_PFN_MASK)
            if kpf & KPF_ZERO_PAGE:
                return "Z" if kpf & KPF_THP else "z"
        letter = "f" if raw & PM_FILE else "a"
        return letter.upper() if shared else letter
    if raw & PM_GUARD:
        return "g"
    if raw & PM_SWAP:
        return "s"
    return "-"


class FrameNumbers:
    """Frame numbers for one `show pagemap`: the frames of the range in every live process, numbered
    #1, #2, ... in the order process start, then address, first meets them. The numbers depend only on
    which pages share a frame now, never on the PFNs themselves or on the history."""

    def __init__(self) -> None:
        self.numbers: dict[int, int] = {}

    def scan(self, entries: Sequence[int], letters: Sequence[str]) -> None:
        """Number the frames of one process's pages not numbered yet."""
        for raw, letter in zip(entries, letters, strict=True):
            if letter in NUMBERED:
                self.numbers.setdefault(raw & PM_PFN_MASK, len(self.numbers) + 1)

    def of(self, raw: int, letter: str) -> int | None:
        """The number of the frame of a page, None if it has none (absent, zero page, swapped)."""
        return self.numbers.get(raw & PM_PFN_MASK) if letter in NUMBERED else None


def runs(text: str) -> str:
    """`text` with each run of RUN or more equal letters written as `x{n}`."""
    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and text[j] == text[i]:
            j += 1
        out.append(f"{text[i]}{{{j - i}}}" if j - i >= RUN else text[i:j])
        i = j
    return "".join(out)


def number_ranges(numbers: Sequence[int]) -> str:
    """`#1-16 #20 #17-19`: the numbers in order, ascending steps of one joined as ranges."""
    out: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(f"#{numbers[i]}" if i == j else f"#{numbers[i]}-{numbers[j]}")
        i = j + 1
    return " ".join(out)


def render_pagemap(start: int, entries: Sequence[int], letters: Sequence[str], frames: FrameNumbers,
                   verbose: bool) -> str:
    """The pagemap view of the pages from `start` (page aligned): one compact line, or with `verbose`
    a header and one line per page with its bits."""
    end = start + len(entries) * PAGE
    head = f"pagemap {start:#x}-{end:#x}:"
    numbers = [frames.of(raw, letter) for raw, letter in zip(entries, letters, strict=True)]
    if not verbose:
        known = [n for n in numbers if n is not None]
        return f"{head} {runs(''.join(letters))}" + (f" frames {number_ranges(known)}" if known else "")
    lines = [head]
    for i, (raw, letter, number) in enumerate(zip(entries, letters, numbers, strict=True)):
        bits = [name for name, bit in PM_BITS if raw & bit]
        if letter in "zZ":
            bits.append("huge-zero-page" if letter == "Z" else "zero-page")
        if number is not None:
            bits.append(f"frame #{number}")
        lines.append(f"  {start + i * PAGE:#x} {letter} {' '.join(bits)}".rstrip())
    return "\n".join(lines)


def format_residency(path: str, pages: list[int], total: int) -> str:
    """The `show residency` view: `PATH: N/M pages cached: a-b,c,...` (runs of cached page indices,
    `-` for none), as fincore would summarise mincore()."""
    runs: list[list[int]] = []
    for i in pages:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs) or "-"
    return f"{path}: {len(pages)}/{total} pages cached: {text}"


def format_folios(path: str, folios: list[tuple[int, int]], total: int) -> str:
    """The `show folios` view: `PATH: N/M pages cached in K folios: ...`, each large folio as
    `first+pages`, runs of single-page folios as `a-b` (or `a`), `-` for none."""
    parts: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
            run.clear()

    for first, pages in folios:
        if pages == 1 and (not run or run[-1] == first - 1):
            run.append(first)
            continue
        flush()
        if pages == 1:
            run.append(first)
        else:
            parts.append(f"{first}+{pages}")
    flush()
    cached = sum(pages for _, pages in folios)
    return f"{path}: {cached}/{total} pages cached in {len(folios)} folios: {' '.join(parts) or '-'}"


def format_cachestat(path: str, stat: CacheStat, total: int) -> str:
    """The `show cachestat` view: `PATH: N/M pages cached, D dirty, W under write-back` (cachestat(2)
    of the whole file: nr_cache, nr_dirty, nr_writeback)."""
    return (f"{path}: {stat.nr_cache}/{total} pages cached, {stat.nr_dirty} dirty, "
            f"{stat.nr_writeback} under write-back")
