"""The benchmark scripts under bench/ load: each is imported (not run: their rates are measured by
hand, not in CI) with bench/ on the path, as `python bench/<name>.py` runs it. A script left behind by
a refactoring (a name moved to another module) fails here instead of at its next manual run
(host_roundtrip.py imported stepper_program from the oracle for a while after it had moved)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


def test_there_are_benchmarks() -> None:
    """The glob found the directory (a moved bench/ would otherwise pass the test below vacuously)."""
    assert {"bench_reclaim.py", "bench_pagecache.py"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_imports(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the script (its module body, not its main) raises nothing."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"_bench_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
