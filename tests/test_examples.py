"""Every example scenario, run in the model and on the running kernel, agrees step for step, and its own
`expect` blocks hold on both (they were written from the reference's kernel measurements)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmlab.lab.backends import make_backend
from vmlab.lab.diff import diff_scenario, model_only
from vmlab.lab.run import run
from vmlab.lab.scenario import load

from pagingkit import model_paging_missing, uses_paging

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.vml"))

pytestmark = pytest.mark.host


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 6


def skip_if_model_only(path: Path) -> None:
    """Examples with a step only the model may run (vmlab.lab.diff.model_only: earlyoom, swapon, a
    hog outside the scenario's memory cgroups) run on the model alone."""
    blocked = model_only(load(str(path)))
    if blocked is not None:
        pytest.skip(f"{path.name}:{blocked[0]}: {blocked[1]}")


def skip_unless_model_pages(path: Path) -> None:
    """Skip, saying why, when the example uses paging views the model cannot render yet."""
    reason = model_paging_missing() if uses_paging(path) else None
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_model_agrees_with_kernel(path: Path) -> None:
    skip_unless_model_pages(path)
    skip_if_model_only(path)
    scenario = load(str(path))
    diffs = diff_scenario(scenario, make_backend("model"), make_backend("host"))
    assert not diffs, "\n".join(d.diff for d in diffs)


@pytest.mark.parametrize("backend", ["model", "host"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_expectations_hold(path: Path, backend: str) -> None:
    if backend == "model":
        skip_unless_model_pages(path)
    else:
        skip_if_model_only(path)
    transcript = run(load(str(path)), make_backend(backend))
    assert transcript.failures == 0
