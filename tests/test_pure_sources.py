"""The tests marked `pure` patch the model's internals (a module's function, a PhysMem method), which
compiled modules call directly, past the patch. With a compiled vmlab under test (setup.py), they run
here instead, in a child pytest against the Python sources of this checkout (src/, ahead of the
installed package on the path); with the sources under test, they ran in place."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import COMPILED

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def test_pure_tests_pass_on_the_python_sources() -> None:
    if not COMPILED:
        pytest.skip("the vmlab under test is the Python sources: the pure tests ran in place")
    if not (SRC / "vmlab" / "kernel" / "vmscan.py").is_file():
        pytest.skip(f"no Python sources at {SRC} to run them on")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "pure", "-p", "no:cacheprovider",
                            str(TESTS)], env=env, capture_output=True, text=True, timeout=1200, check=False)
    summary = child.stdout.strip().splitlines()[-1] if child.stdout.strip() else child.stderr[-2000:]
    assert child.returncode == 0, child.stdout[-6000:] + child.stderr[-2000:]
    # The child ran them all on the sources: none skipped (as they would be on a compiled vmlab).
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
