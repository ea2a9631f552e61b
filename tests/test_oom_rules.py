"""The explainer's arithmetic and ranking against kernel-printed numbers; cgroup resolution; bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vmlab.cli import main
from vmlab.errors import InputError
from vmlab.host import memcg
from vmlab.host.oom import Candidate, rank
from vmlab.kernel.oom_score import c_div, oom_badness, proc_oom_score

FIXTURES = Path(__file__).parent / "fixtures" / "oom"
ROW = re.compile(r"\[\s*(\d+)\]\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s+\d+\s+\d+\s+\d+"
                 r"\s+(\d+)\s+(\d+)\s+(-?\d+) (\S+)$")
KILLED = re.compile(r"Killed process (\d+) \(")


REFERENCE_ROWS = """\
[   6960]     0  6960    11388    10613     8928     1685         0   131072        0             0 hogA
[   6961]     0  6961     7292     6455     4800     1655         0    94208        0           400 hogB
[   6962]     0  6962    10375     9558     7872     1686         0   126976        0           100 hogC
[   7134]     0  7134    11388    10615     8928     1687         0   139264        0             0 hogA
[   7135]     0  7135     7292     6519     4832     1687         0   102400        0             0 hogB
[   7136]     0  7136    10375     9610     7872     1738         0   122880        0             0 hogC
[   7233]     0  7233    11388    10631     8928     1703         0   131072        0             0 hogA
[   7234]     0  7234     5244     4487     2784     1703         0    81920        0          1000 hogD
[   7235]     0  7235    12427    11618     9920     1698         0   143360        0             0 hogC
"""


def _rows(lines: list[str], totalpages: int) -> list[Candidate]:
    """dump_tasks() rows as Candidates (scan order = row order, as dump_tasks walks the same list)."""
    out = []
    for i, m in enumerate(filter(None, (ROW.search(line) for line in lines))):
        pid, uid, rss, pgt, swap, adj, comm = (int(g) if j < 6 else g for j, g in enumerate(m.groups()))
        assert isinstance(comm, str)
        pts = oom_badness(int(rss), int(swap), int(pgt), int(adj), totalpages)
        out.append(Candidate(int(pid), comm, int(uid), "", i, int(rss), int(swap), int(pgt) // 4096, int(adj),
                             int(adj) * (totalpages // 1000), pts, 0, 0))
    return out


def test_c_division_truncates_toward_zero() -> None:
    """C's `/` on longs, not Python's floor."""
    assert (c_div(7, 2), c_div(-7, 2), c_div(7, -2), c_div(-7, -2)) == (3, -3, -3, 3)


def test_oom_score_formula() -> None:
    """proc_oom_score(): 0 for ineligible, 666 for tiny tasks, 1333 at adj 1000, truncating divisions."""
    total = 6171021
    assert proc_oom_score(-(1 << 63), total) == 0
    assert proc_oom_score(3000, total) == 666
    assert proc_oom_score(oom_badness(3000, 0, 0, 1000, total), total) == 1333
    # -998.99 truncates to -998, so (1000 - 998) * 2 / 3 = 1; Python's floor would give 0.
    assert proc_oom_score(oom_badness(0, 0, 0, -999, total), total) == 1
    assert oom_badness(100, 0, 8192, 1, 16384) == 100 + 2 + 16


def test_golden_capture_victim_is_the_top_of_the_kernels_own_table() -> None:
    """tests/fixtures/oom: ranking the kernel's dump_tasks rows gives the pid of its Killed line."""
    lines = (FIXTURES / "memcg_v1_adj400.dmesg").read_text().splitlines()
    report = json.loads((FIXTURES / "memcg_v1_adj400.report.json").read_text())
    total = report["domain"]["totalpages"]
    assert total == 16384
    ranked = rank(_rows(lines, total))
    killed = int(KILLED.search(lines[-1]).group(1))  # type: ignore[union-attr]
    assert ranked[0].pid == killed == report["candidates"][0]["pid"]
    explained = {c["pid"]: (c["rss"], c["pgtables"], c["oom_score_adj"]) for c in report["candidates"]}
    assert explained == {c.pid: (c.rss, c.pgtables, c.oom_score_adj) for c in ranked}


def test_reference_captures_s1_s2_s3() -> None:
    """oom-killer-6.x.md §1.10 s1-s3 (kernel dump rows, 64 MiB memcg): ranking picks the kernel's victim."""
    lines = REFERENCE_ROWS.splitlines()
    s1, s2, s3 = lines[0:3], lines[3:6], lines[6:9]
    for rows, victim, points in ((s1, 6961, 12878), (s2, 7134, 10649), (s3, 7234, 20507)):
        top = rank(_rows(rows, 16384))[0]
        assert (top.pid, top.points) == (victim, points)


def test_a_tie_goes_to_the_task_scanned_last() -> None:
    """select_bad_process(): `points < chosen` skips, so an equal later task replaces the choice."""
    a = Candidate(10, "a", 0, "", 0, 100, 0, 1, 0, 0, 101, 0, 0)
    b = Candidate(5, "b", 0, "", 1, 100, 0, 1, 0, 0, 101, 0, 0)
    assert rank([a, b])[0] is b and rank([b, a])[0] is b


def test_memcg_totalpages_adds_swap_headroom_only_with_swappiness(tmp_path: Path) -> None:
    """mem_cgroup_get_max() on v1: limit + min(memsw - limit, total swap) when swappiness != 0."""
    cg = tmp_path / "grp"
    (cg / "child").mkdir(parents=True)
    (cg / "memory.limit_in_bytes").write_text(str(64 << 20))
    (cg / "memory.memsw.limit_in_bytes").write_text(str(96 << 20))
    mountinfo = f"35 31 0:32 / {tmp_path} rw,relatime - cgroup cgroup rw,memory\n"
    (cg / "memory.swappiness").write_text("60")
    d = memcg.domain(str(cg), total_swap_pages=1000, mountinfo=mountinfo)
    assert (d.name, d.version, d.limit_pages, d.swap_pages, d.totalpages) == ("/grp", 1, 16384, 1000, 17384)
    assert d.cgroups == (str(cg), str(cg / "child"))
    (cg / "memory.swappiness").write_text("0")
    assert memcg.domain(str(cg), 1000, mountinfo).totalpages == 16384
    assert memcg.get_max(0, 0, None, 0, 0) == (0, 1)  # `mem_cgroup_get_max() ?: 1`


def test_v2_without_memory_controller_is_bad_input(tmp_path: Path) -> None:
    """A cgroup2 directory without memory.max is refused, naming --cgroup."""
    (tmp_path / "g").mkdir()
    (tmp_path / "cgroup.controllers").write_text("cpu io\n")
    mountinfo = f"41 31 0:38 / {tmp_path} rw,relatime - cgroup2 cgroup2 rw\n"
    for path in (tmp_path / "g", tmp_path):
        with pytest.raises(InputError, match="no memory controller") as err:
            memcg.domain(str(path), 0, mountinfo)
        assert str(err.value).startswith("--cgroup: error: ")


@pytest.mark.parametrize("path, message", [
    ("/nonexistent/vmlab", "no such cgroup directory"),
    ("/proc/self/status", "no such cgroup directory"),
    ("/tmp", "not inside a cgroup file system"),
    ("", "empty cgroup path"),
])
def test_cli_bad_cgroup_is_one_line_exit_2(path: str, message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown or non-cgroup paths: exit status 2, one line naming --cgroup, no traceback."""
    assert main(["oom", "--cgroup", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("--cgroup: error: ") and message in err


@pytest.mark.host
def test_cli_cgroup_without_memory_controller(capsys: pytest.CaptureFixture[str]) -> None:
    """The host's v1 cpu hierarchy (no memory controller): exit 2, one line."""
    cpu = Path("/sys/fs/cgroup/cpu")
    if not cpu.is_dir():
        pytest.skip("no /sys/fs/cgroup/cpu v1 hierarchy on this host")
    assert main(["oom", "--cgroup", str(cpu)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no memory controller" in err


def test_cli_bad_top(capsys: pytest.CaptureFixture[str]) -> None:
    """`--top -1`: argparse's one line, exit 2."""
    with pytest.raises(SystemExit) as ex:
        main(["oom", "--top", "-1"])
    assert ex.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
