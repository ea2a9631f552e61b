"""Random scenarios run on the model and on the running kernel, compared byte for byte (shmem inodes masked).

A hypothesis strategy writes 20+ steps of mmap/munmap/mprotect/mremap/brk/madvise/fork/writes, mostly at
MAP_FIXED and hinted addresses inside [0x10000000, 0x10100000) plus some unhinted ones, as scenario
text; `vmlab diff`'s machinery runs it on both backends. Run with HYPOTHESIS_PROFILE=ci (>= 200 examples).
"""

from __future__ import annotations

import importlib.util
import platform

import pytest
from hypothesis import given
from hypothesis import strategies as st

LOW, HIGH = 0x10000000, 0x10100000
PAGES = (HIGH - LOW) // 4096

_missing = [m for m in ("vmlab.kernel.machine", "vmlab.host.oracle", "vmlab.host.stepper_build")
            if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.host,
    pytest.mark.skipif(bool(_missing), reason=f"not merged yet: {', '.join(_missing)}"),
    pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                       reason="the host oracle needs Linux x86_64"),
]

PROTS = ["PROT_NONE", "PROT_READ", "PROT_READ|PROT_WRITE", "PROT_READ|PROT_EXEC"]
MADVS = ["MADV_DONTNEED", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_DONTFORK", "MADV_DOFORK",
         "MADV_FREE", "MADV_WILLNEED"]

addr = st.integers(0, PAGES - 1).map(lambda p: f"{LOW + p * 4096:#x}")
npages = st.integers(1, 64).map(lambda n: f"{n * 4096}")


@st.composite
def step(draw: st.DrawFn) -> str:
    """One scenario line."""
    kind = draw(st.sampled_from(["fixed", "fixed", "hint", "plain", "munmap", "mprotect", "mremap", "brk",
                                 "madvise", "write", "shared"]))
    a, n, prot = draw(addr), draw(npages), draw(st.sampled_from(PROTS))
    anon = "MAP_PRIVATE|MAP_ANONYMOUS"
    if kind == "fixed":
        return f"mmap({a}, {n}, {prot}, {anon}|MAP_FIXED, -1, 0)"
    if kind == "shared":
        return f"mmap({a}, {n}, {prot}, MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED, -1, 0)"
    if kind == "hint":
        return f"mmap({a}, {n}, {prot}, {anon}, -1, 0)"
    if kind == "plain":
        return f"mmap(NULL, {n}, {prot}, {anon}, -1, 0)"
    if kind == "munmap":
        return f"munmap({a}, {n})"
    if kind == "mprotect":
        return f"mprotect({a}, {n}, {prot})"
    if kind == "mremap":
        flags = draw(st.sampled_from(["0", "MREMAP_MAYMOVE"]))
        return f"mremap({a}, {n}, {draw(npages)}, {flags})"
    if kind == "brk":
        return f"brk({draw(st.sampled_from(['NULL', '0x10000000', '0x4d0000', '0x4f0000']))})"
    if kind == "madvise":
        return f"madvise({a}, {n}, {draw(st.sampled_from(MADVS))})"
    return f"write {a}, {draw(st.integers(1, 8)) * 4096}"


@st.composite
def scenario_text(draw: st.DrawFn) -> str:
    """20-40 steps, with at most one fork in the middle, ending with the maps of every process."""
    steps = draw(st.lists(step(), min_size=20, max_size=40))
    fork_at = draw(st.one_of(st.none(), st.integers(1, len(steps) - 1)))
    lines = list(steps)
    if fork_at is not None:
        lines.insert(fork_at, "child = fork()")
        lines.insert(fork_at + 1, "show maps")
        lines.append("@child show maps")
    lines.append("show maps")
    return "\n".join(lines) + "\n"


@given(scenario_text())
def test_model_agrees_with_kernel(text: str) -> None:
    from vmlab.lab.backends import make_backend
    from vmlab.lab.diff import diff_scenario
    from vmlab.lab.scenario import parse

    scn = parse(text, "<random>")
    diffs = diff_scenario(scn, make_backend("model"), make_backend("host"))
    report = "\n".join(f"line {d.line}: {d.source}\n{d.diff}" for d in diffs)
    assert not diffs, f"scenario:\n{text}\n{report}"
