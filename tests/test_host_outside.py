"""vmlab.host.damon: the running DAMOS schemes it reports, and its pause, which turns off exactly the
kdamonds that were on and turns them on again, even when the test inside fails; vmlab.host.outside:
the notes a host transcript gets for them and for user-space OOM killers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmlab.host import damon, outside


def _kdamonds(root: Path, states: list[str]) -> list[Path]:
    """A stand-in for the sysfs tree: one kdamond per state, each with a paddr context over
    [4 GiB, 8 GiB) and one pageout scheme."""
    files = []
    for i, state in enumerate(states):
        context = root / str(i) / "contexts" / "0"
        region = context / "targets" / "0" / "regions" / "0"
        (context / "schemes" / "0").mkdir(parents=True)
        region.mkdir(parents=True)
        (context / "operations").write_text("paddr\n")
        (region / "start").write_text(f"{4 << 30}\n")
        (region / "end").write_text(f"{8 << 30}\n")
        (context / "schemes" / "0" / "action").write_text("pageout\n")
        files.append(root / str(i) / "state")
        files[-1].write_text(state + "\n")
    return files


def test_reports_the_schemes_of_the_kdamonds_that_are_on(tmp_path: Path) -> None:
    """Only kdamond 1 is on: its scheme is the one line, with its range and action."""
    _kdamonds(tmp_path, ["off", "on"])
    assert damon.running_schemes(tmp_path) == ["kdamond 1 (paddr 0x100000000-0x200000000): pageout"]
    assert damon.running_schemes(tmp_path / "absent") == []


def test_pauses_the_running_kdamonds_and_restarts_them(tmp_path: Path) -> None:
    """Inside: every kdamond off and nothing reported; after: the ones that were on are on again,
    the others still off."""
    files = _kdamonds(tmp_path / "k", ["on", "off", "on"])
    with damon.paused(tmp_path / "k", tmp_path / "holders") as stopped:
        assert stopped == ["0", "2"]
        assert [f.read_text().strip() for f in files] == ["off", "off", "off"]
        assert damon.running_schemes(tmp_path / "k") == []
    assert [f.read_text().strip() for f in files] == ["on", "off", "on"]


def test_restarts_them_when_the_test_fails(tmp_path: Path) -> None:
    """An exception inside still turns the paused kdamonds on again, and propagates."""
    files = _kdamonds(tmp_path / "k", ["on"])
    with pytest.raises(RuntimeError), damon.paused(tmp_path / "k", tmp_path / "holders"):
        raise RuntimeError("test failed")
    assert files[0].read_text().strip() == "on"


@pytest.mark.host
def test_the_tests_run_with_no_kdamond_on() -> None:
    """On a machine that runs a kdamond (this one does): during the test session none is on."""
    states = list(damon.KDAMONDS.glob("*/state"))
    if not states:
        pytest.skip(f"no kdamond on this machine ({damon.KDAMONDS})")
    if not all(os.access(p, os.W_OK) for p in states):
        pytest.skip(f"the kdamonds' state files cannot be written here (not root): {damon.KDAMONDS}")
    assert damon.running_schemes() == []
    assert "on" not in {p.read_text().strip() for p in states}


def test_the_last_of_several_holders_restarts_them(tmp_path: Path) -> None:
    """Another live process holds the pause (it stopped kdamond 0): this one stops nothing more and,
    leaving first, restarts nothing. Once the other has died without leaving, the next holder, now
    the last, restarts what the dead one stopped as well as its own."""
    kdamonds, holders = tmp_path / "k", tmp_path / "holders"
    files = _kdamonds(kdamonds, ["off", "on"])
    holders.mkdir()
    other = holders / str(os.getppid())
    other.touch()
    (holders / "stopped").write_text("0\n")
    with damon.paused(kdamonds, holders) as stopped:
        assert stopped == ["0"]  # what the first holder stopped; kdamond 1 stays on meanwhile
    assert [f.read_text().strip() for f in files] == ["off", "on"] and other.exists()
    other.rename(holders / "999999999")  # it died: a pid that runs no process
    with damon.paused(kdamonds, holders) as stopped:
        assert stopped == ["0", "1"] and [f.read_text().strip() for f in files] == ["off", "off"]
    assert [f.read_text().strip() for f in files] == ["on", "on"]
    assert sorted(p.name for p in holders.iterdir()) == ["lock"]


def test_notes_name_each_scheme_and_each_oom_daemon(tmp_path: Path) -> None:
    """A fake /proc with earlyoom (pid 812), systemd-oomd (pid 90) and a shell, a kdamond on: one
    note for the scheme, then one per daemon by pid; nothing for the shell or a vanished pid."""
    proc = tmp_path / "proc"
    for pid, comm in ((812, "earlyoom"), (90, "systemd-oomd"), (5, "bash")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
    (proc / "77").mkdir()  # exited: no comm any more
    (proc / "self").mkdir()
    _kdamonds(tmp_path / "kdamonds", ["on"])
    notes = outside.notes(proc, tmp_path / "kdamonds")
    assert notes[0].startswith("kdamond 0 (paddr 0x100000000-0x200000000): pageout: DAMON")
    assert [n.split(":")[0] for n in notes[1:]] == ["systemd-oomd runs (pid 90)", "earlyoom runs (pid 812)"]
    assert outside.notes(proc, tmp_path / "none") == notes[1:]
