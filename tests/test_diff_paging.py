"""The paging comparisons: one scenario step per row of the reference's P15 table (§5), in the example
scenarios faults, thp, fault-around, file-faults and cow.

Each row is an `expect counters ... # P15 row N` line; on the running kernel every one of them must
hold (so the scenarios are known-good before the model's paging lands), and each example run in the
model and on the kernel must agree on every `show counters` and `show pagemap` (skipped, saying why,
while the model has no counters()). Golden numbers: the P15 table of
/work/shared/reference/kernel-6.18-x86_64.md, measured by its experiments (`setarch -R ./faults`,
`./forkf`, `./misc`, `./stack2`, see its run_all.sh).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from vmlab.lab.backends import make_backend
from vmlab.lab.diff import diff_scenario
from vmlab.lab.run import Transcript, run
from vmlab.lab.scenario import load

from pagingkit import model_paging_missing

pytestmark = pytest.mark.host

EXAMPLES = Path(__file__).parent.parent / "examples"
PAGING_EXAMPLES = ("faults.vml", "thp.vml", "fault-around.vml", "file-faults.vml", "cow.vml")
#: Rows the stepper cannot express: 34 needs a pipe (write(pipe, fresh buf) reads zero pages).
NOT_EXPRESSIBLE = {34}
_ROW = re.compile(r"#\s*P15 row (\d+)")


def rows() -> list[tuple[int, str, int]]:
    """(row, example, line) of every `# P15 row N` annotation."""
    out = []
    for name in PAGING_EXAMPLES:
        for lineno, line in enumerate((EXAMPLES / name).read_text().splitlines(), 1):
            if m := _ROW.search(line):
                out.append((int(m.group(1)), name, lineno))
    return sorted(out)


@functools.cache
def host_transcript(name: str) -> Transcript:
    """The example run once on the kernel (shared by every row test of it)."""
    from hostutil import program_or_skip

    program_or_skip()
    return run(load(str(EXAMPLES / name)), make_backend("host"))


def test_every_expressible_row_has_a_scenario_step() -> None:
    assert {r for r, _, _ in rows()} == set(range(1, 49)) - NOT_EXPRESSIBLE


@pytest.mark.parametrize(("row", "name", "line"), rows(), ids=[f"row{r}" for r, _, _ in rows()])
def test_p15_row_holds_on_the_kernel(row: int, name: str, line: int) -> None:
    """The row's `expect counters` held on the running kernel (and so did its example's pagemaps)."""
    transcript = host_transcript(name)
    notes = {r.text for r in transcript.records if r.kind == "note"}
    failures = [r.text for r in transcript.records if r.kind == "fail"]
    assert f"# line {line}: expect counters: ok" in notes, "\n".join(failures) or transcript.text()
    assert not [f for f in failures if f.startswith(f"{EXAMPLES / name}:{line}:")]


@pytest.mark.parametrize("name", PAGING_EXAMPLES)
def test_example_holds_on_the_kernel(name: str) -> None:
    """Every expect of the example (counters and pagemaps) held on the kernel."""
    transcript = host_transcript(name)
    assert transcript.failures == 0, transcript.text()


@pytest.mark.parametrize("name", PAGING_EXAMPLES)
def test_model_agrees_with_kernel_on_paging(name: str) -> None:
    """The model's counters and pagemaps equal the kernel's, step by step."""
    reason = model_paging_missing()
    if reason:
        pytest.skip(reason)
    diffs = diff_scenario(load(str(EXAMPLES / name)), make_backend("model"), make_backend("host"))
    assert not diffs, "\n".join(f"line {d.line}: {d.source}\n{d.diff}" for d in diffs)
