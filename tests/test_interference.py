"""The host tests' guard against DAMON (interference.damon_paused): it turns off exactly the kdamonds
that were on and turns them on again, even when the test fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from interference import KDAMONDS, damon_paused


def _kdamonds(root: Path, states: list[str]) -> list[Path]:
    """A stand-in for the sysfs tree: one kdamond directory per state."""
    files = []
    for i, state in enumerate(states):
        (root / str(i)).mkdir()
        files.append(root / str(i) / "state")
        files[-1].write_text(state + "\n")
    return files


def test_pauses_the_running_kdamonds_and_restarts_them(tmp_path: Path) -> None:
    """Inside: every kdamond off; after: the ones that were on are on, the others still off."""
    files = _kdamonds(tmp_path, ["on", "off", "on"])
    with damon_paused(tmp_path) as paused:
        assert paused == ["0", "2"]
        assert [f.read_text().strip() for f in files] == ["off", "off", "off"]
    assert [f.read_text().strip() for f in files] == ["on", "off", "on"]


def test_restarts_them_when_the_test_fails(tmp_path: Path) -> None:
    """An exception inside still turns the paused kdamonds on again, and propagates."""
    files = _kdamonds(tmp_path, ["on"])
    with pytest.raises(RuntimeError), damon_paused(tmp_path):
        raise RuntimeError("test failed")
    assert files[0].read_text().strip() == "on"


@pytest.mark.host
def test_a_host_test_runs_with_no_kdamond_on() -> None:
    """On this machine (which runs one): inside a test marked host, no kdamond is on."""
    states = [p.read_text().strip() for p in KDAMONDS.glob("*/state")]
    if not states:
        pytest.skip(f"no kdamond on this machine ({KDAMONDS})")
    if not all(os.access(p, os.W_OK) for p in KDAMONDS.glob("*/state")):
        pytest.skip(f"the kdamonds' state files cannot be written here (not root): {KDAMONDS}")
    assert "on" not in states
