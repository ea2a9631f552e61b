"""Random scenarios run on the model and on the running kernel, compared byte for byte (shmem inodes masked).

A hypothesis strategy writes 20+ steps of mmap (anonymous, of a file, of /dev/zero)/munmap/mprotect/
mremap/brk/madvise/mbind/fork/writes, mostly at MAP_FIXED and hinted addresses inside [0x10000000, 0x10100000)
plus some unhinted ones, as scenario text; `vmlab diff`'s machinery runs it on both backends. Run with
HYPOTHESIS_PROFILE=ci (>= 200 examples).
"""

from __future__ import annotations

import importlib.util
import os
import platform
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmlab.lab.run import make_file
from vmlab.lab.scenario import FileSpec

from hostkit import on_cpu
from interference import outside_events, undisturbed

LOW, HIGH = 0x10000000, 0x10100000
#: A file both backends map: created once per test session, FILE_PAGES long.
#: Per test process, so that concurrent runs (several worktrees) do not remove each other's file.
DATA_FILE = f"/tmp/vmlab-diff-random-{os.getpid()}.dat"
PAGES = (HIGH - LOW) // 4096

_missing = [m for m in ("vmlab.kernel.machine", "vmlab.host.oracle", "vmlab.host.stepper_build")
            if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.host,
    pytest.mark.skipif(bool(_missing), reason=f"not merged yet: {', '.join(_missing)}"),
    pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                       reason="the host oracle needs Linux x86_64"),
]

PROTS = ["PROT_NONE", "PROT_READ", "PROT_READ|PROT_WRITE", "PROT_READ|PROT_EXEC", "PROT_WRITE"]
MADVS = ["MADV_DONTNEED", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_DONTFORK", "MADV_DOFORK",
         "MADV_FREE", "MADV_WILLNEED", "MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_NORMAL", "MADV_DONTDUMP",
         "MADV_DODUMP", "MADV_WIPEONFORK", "MADV_KEEPONFORK", "MADV_MERGEABLE", "MADV_UNMERGEABLE",
         "MADV_POPULATE_READ", "MADV_POPULATE_WRITE", "MADV_GUARD_INSTALL", "MADV_COLD", "MADV_PAGEOUT"]
EXTRA = ["", "", "", "|MAP_NORESERVE", "|MAP_GROWSDOWN", "|MAP_POPULATE", "|MAP_STACK", "|MAP_LOCKED",
         "|MAP_FIXED_NOREPLACE"]
FILE_PAGES = 64  # the scenario's file, opened as `fd`

addr = st.integers(0, PAGES - 1).map(lambda p: f"{LOW + p * 4096:#x}")
npages = st.integers(1, 64).map(lambda n: f"{n * 4096}")


KINDS = ["fixed", "fixed", "fixed", "hint", "plain", "munmap", "mprotect", "mprotect", "mremap",
         "mremap_fixed", "brk", "madvise", "madvise", "write", "read", "shared", "file", "zero", "mlock",
         "munlock", "mbind", "show"]
#: With the paging views: touches, and the window's counters and pagemap.
PAGING_KINDS = [*KINDS, "touch", "touch", "counters", "pagemap"]


@st.composite
def step(draw: st.DrawFn, paging: bool = False) -> str:
    """One scenario line acting on the window [LOW, HIGH) (plus unhinted mmaps and brk)."""
    kind = draw(st.sampled_from(PAGING_KINDS if paging else KINDS))
    a, n, prot = draw(addr), draw(npages), draw(st.sampled_from(PROTS))
    anon = "MAP_PRIVATE|MAP_ANONYMOUS"
    if kind == "fixed":
        return f"mmap({a}, {n}, {prot}, {anon}|MAP_FIXED{draw(st.sampled_from(EXTRA))}, -1, 0)"
    if kind == "shared":
        return f"mmap({a}, {n}, {prot}, MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED, -1, 0)"
    if kind == "file":
        share = draw(st.sampled_from(["MAP_PRIVATE", "MAP_SHARED"]))
        off = draw(st.integers(0, FILE_PAGES + 2)) * 4096
        return f"mmap({a}, {n}, {prot}, {share}|MAP_FIXED, fd, {off})"
    if kind == "zero":  # /dev/zero: private is anonymous memory, shared a shmem object
        share = draw(st.sampled_from(["MAP_PRIVATE", "MAP_SHARED"]))
        return f"mmap({a}, {n}, {prot}, {share}|MAP_FIXED, z, {draw(st.integers(0, 8)) * 4096})"
    if kind == "hint":
        return f"mmap({a}, {n}, {prot}, {anon}, -1, 0)"
    if kind == "plain":
        size = draw(st.sampled_from([n, "2M", "4M", "1M"]))
        return f"mmap(NULL, {size}, {prot}, {anon}, -1, 0)"
    if kind == "munmap":
        return f"munmap({a}, {n})"
    if kind == "mprotect":
        return f"mprotect({a}, {n}, {prot})"
    if kind == "mremap":
        flags = draw(st.sampled_from(["0", "MREMAP_MAYMOVE"]))
        return f"mremap({a}, {n}, {draw(npages)}, {flags})"
    if kind == "mremap_fixed":
        flags = draw(st.sampled_from(["MREMAP_MAYMOVE|MREMAP_FIXED",
                                      "MREMAP_MAYMOVE|MREMAP_FIXED|MREMAP_DONTUNMAP"]))
        return f"mremap({a}, {n}, {n}, {flags}, {draw(addr)})"
    if kind == "brk":
        return f"brk({draw(st.sampled_from(['NULL', '0x10000000', '0x4d0000', '0x4f0000', '0x40c123']))})"
    if kind == "madvise":
        return f"madvise({a}, {n}, {draw(st.sampled_from(MADVS))})"
    if kind == "mlock":
        return f"mlock({a}, {n})"
    if kind == "mbind":  # a NUMA policy splits and merges VMAs (MPOL_BIND without nodes: -EINVAL)
        mode = draw(st.sampled_from(["MPOL_DEFAULT", "MPOL_PREFERRED", "MPOL_LOCAL", "MPOL_BIND"]))
        return f"mbind({a}, {n}, {mode}, NULL, 0, {draw(st.sampled_from(['0', 'MPOL_MF_MOVE']))})"
    if kind == "munlock":
        return f"munlock({a}, {n})"
    if kind == "show":
        return "show maps"
    if kind == "counters":
        return "show counters"
    if kind == "pagemap":
        return f"show pagemap {LOW:#x}, {HIGH - LOW:#x}"
    if kind == "touch":
        return f"touch {a}, {n}"
    verb = "write" if kind == "write" else "read"
    return f"{verb} {a}, {draw(st.integers(1, 8)) * 4096}"


@st.composite
def scenario_text(draw: st.DrawFn, paging: bool = False) -> str:
    """20-40 steps on a file and anonymous memory, at most one fork in the middle after which steps run
    in either process; ends with the smaps of every process (maps headers plus VmFlags), and with
    `paging` also each process's counters and pagemap of the window."""
    steps = draw(st.lists(step(paging), min_size=20, max_size=40))
    fork_at = draw(st.one_of(st.none(), st.integers(1, len(steps) - 1)))
    lines = [f'fd = openat(AT_FDCWD, "{DATA_FILE}", O_RDWR)', 'z = openat(AT_FDCWD, "/dev/zero", O_RDWR)']
    for i, line in enumerate(steps):
        if fork_at is not None and i == fork_at:
            lines += ["child = fork()", "show maps"]
        in_child = fork_at is not None and i > fork_at and draw(st.booleans())
        lines.append(("@child " if in_child else "") + line)
    tail = ["show smaps"] + (["show counters", f"show pagemap {LOW:#x}, {HIGH - LOW:#x}"] if paging else [])
    if fork_at is not None:
        lines += [f"@child {line}" for line in tail]
    lines += tail
    return "\n".join(lines) + "\n"


def _write_data_file() -> None:
    """The scenarios' file, written page by page, synced and read back: clean, wholly cached and in
    4 KiB folios, as the model assumes (one big write() makes ext4 cache large folios; see
    test_first_file_fault_in_an_empty_page_table_agrees_with_kernel)."""
    make_file(FileSpec(DATA_FILE, FILE_PAGES * 4096))


@pytest.fixture(scope="module", autouse=True)
def _data_file() -> Iterator[None]:
    _write_data_file()
    yield
    os.unlink(DATA_FILE)


def _ensure_data_file_cached() -> None:
    """Write the file again when any of its pages has left the host's page cache (another process's
    drop_caches or global reclaim; seen: a file mapping's Rss 4 kB on the kernel, 12 kB in the model,
    fault-around finding no neighbours cached), and write back what an earlier scenario dirtied
    through a shared mapping: the model starts each scenario with the file clean (seen, explore seed
    310: a private mapping's smaps with Private_Dirty 4 kB on the kernel, the page still dirty from
    the scenario before, and 0 in the model)."""
    from vmlab.linux import mincore_residency

    if len(mincore_residency(DATA_FILE)) != FILE_PAGES:
        _write_data_file()
    fd = os.open(DATA_FILE, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _outside_evidence() -> dict[str, int]:
    """The page-cache events of interference.outside_events, and the host vm sysctls the host
    backend requires to equal the scenario's (another test flips vm.overcommit_memory for a while)."""
    from vmlab.host.oracle import HOST_SYSCTLS

    sysctls = {}
    for name in HOST_SYSCTLS:
        with open(f"/proc/sys/vm/{name}") as f:
            sysctls[f"vm.{name}"] = int(f.read())
    return outside_events() | sysctls


def check_agreement(text: str) -> None:
    """Run the scenario text on both backends; fail with the differences. The host's part starts
    from the state the model assumes (the data file cached whole); a run that disagrees is run again
    only when an outside event (page cache dropped or reclaimed, a vm sysctl changed) happened during
    it (interference.undisturbed, each discarded run reported)."""
    from vmlab.errors import InputError
    from vmlab.lab.backends import make_backend
    from vmlab.lab.diff import diff_scenario
    from vmlab.lab.scenario import parse

    scn = parse(text, "<random>")

    def once() -> str:
        if DATA_FILE in text:  # (other modules' scenarios use files of their own)
            _ensure_data_file_cached()
        try:
            with on_cpu(0):  # the stepper's folio batches on one CPU (MADV_PAGEOUT drains only its own)
                diffs = diff_scenario(scn, make_backend("model"), make_backend("host"))
        except InputError as err:  # the host's vm sysctls are not the scenario's
            return f"host refused the scenario: {err}"
        return "\n".join(f"line {d.line}: {d.source}\n{d.diff}" for d in diffs)

    report = undisturbed(once, attempts=3, accept=lambda r: not r, evidence=_outside_evidence)
    assert not report, f"scenario:\n{text}\n{report}"


@given(scenario_text())
def test_model_agrees_with_kernel(text: str) -> None:
    check_agreement(text)


@pytest.fixture(scope="module")
def _model_pages() -> None:
    from pagingkit import model_paging_missing

    reason = model_paging_missing()
    if reason:
        pytest.skip(reason)


@pytest.mark.usefixtures("_model_pages")
@settings(max_examples=100)
@given(scenario_text(paging=True))
def test_model_agrees_with_kernel_on_paging(text: str) -> None:
    """The same workloads with touches, `show counters` and `show pagemap` of the window."""
    check_agreement(text)


@settings(max_examples=10)
@given(scenario_text(paging=True))
def test_paging_scenarios_run_on_the_kernel(text: str) -> None:
    """The paging workloads are valid on the kernel alone: every shown counters/pagemap renders."""
    from vmlab.lab.backends import make_backend
    from vmlab.lab.run import run
    from vmlab.lab.scenario import parse

    transcript = run(parse(text, "<random>"), make_backend("host"))
    paging = [r.text for r in transcript.records if r.kind == "paging"]
    assert not [t for t in paging if "(unavailable)" in t]  # (a killed process shows nothing)
    assert all(t.split("\n")[1].startswith(("counters: ", "pagemap 0x10000000-0x10100000: ")) for t in paging)


def test_first_file_fault_in_an_empty_page_table_agrees_with_kernel() -> None:
    """Seed 23 (explore profile): the first fault of the window [0x10000000, 0x10200000) was a read of
    a 2-page private map of the data file. The host mapped 1 page, the model 2 (fault-around), because
    the fixture wrote the file with one write(): ext4 then caches it as one 64-page folio, and 6.18's
    filemap_map_pages() (can_map_large false for a folio that holds the file's last page) skips
    filemap_map_pmd(), so with no PTE table yet fault-around maps nothing and finish_fault() maps the
    one page. The model holds host-cached pages as 4 KiB folios (vmlab.lab.run.make_file writes files
    page by page for that reason); the fixture must do the same."""
    check_agreement(f'fd = openat(AT_FDCWD, "{DATA_FILE}", O_RDWR)\n'
                    "mmap(0x10090000, 8192, PROT_READ, MAP_PRIVATE|MAP_FIXED, fd, 0)\n"
                    "read 0x10090000, 4096\nshow smaps\n")


def test_negative_and_huge_arguments_agree_with_kernel() -> None:
    """Numbers reach a syscall as the C type of its parameter: -4096 as a length is 2^64 - 4096. The
    model took Python's signed ints, so munmap(a + 60K, -4096) split a VMA into overlapping halves
    (AssertionError), mprotect(a, -4096) walked on and changed the vdso before failing, pread64 at
    -1 raised OverflowError, and mlock/munlock/mremap/mmap-offset/dup2 gave other errnos than the
    kernel (found by fuzzing scenarios). Every call here must agree with the kernel, and the maps too."""
    path = f"/tmp/vmlab-diff-neg-{os.getpid()}.dat"
    calls = ["munmap(a + 60K, -4096)", "mprotect(a, -4096, PROT_READ)", "madvise(a, -4096, MADV_DONTNEED)",
             "mlock(a, -4096)", "munlock(a, -4096)", "mremap(a, 4096, -4096, MREMAP_MAYMOVE)",
             "mremap(a, -4096, 4096, MREMAP_MAYMOVE)", "read(fd, a, -1)", "pread64(fd, a, 4096, -1)",
             "pread64(fd, a, -4096, 0)", "lseek(fd, -1, 0)", "lseek(fd, 0, -1)",
             "fadvise64(fd, -1, 4096, POSIX_FADV_DONTNEED)", "fadvise64(fd, 0, -4096, POSIX_FADV_WILLNEED)",
             "fadvise64(fd, 0, 4096, -1)",
             "mmap(-4096, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)",
             "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, -4096)",
             "mmap(NULL, 4096, -1, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)",
             "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, -5, 0)", "madvise(a, 4096, -1)", "mlock2(a, 4096, -1)",
             "mlockall(-1)", "close(-1)", "dup(-1)", "dup2(fd, -1)", "dup3(fd, 100, -1)",
             "fcntl(-1, F_GETFD)",
             'openat(-1, "x", O_RDONLY)', "brk(-1)", "brk(-4096)", "munmap(0xffffffffffff0000, 4096)",
             "munmap(1 << 63, 4096)", "mprotect(0x7ffffffff000, 8192, PROT_READ)"]
    try:
        check_agreement(f"file {path} 64K\n"
                        "a = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                        f'fd = openat(AT_FDCWD, "{path}", O_RDWR)\n' + "\n".join(calls) + "\nshow maps\n")
    finally:
        if os.path.exists(path):
            os.unlink(path)
