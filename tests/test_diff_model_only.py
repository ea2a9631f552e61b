"""`vmlab diff` refuses, before running anything, a scenario with a step only the model may run: earlyoom
(on the host it would kill the machine's own processes), swapon/swapoff (the host's swap is the whole
machine's), a memory hog outside the scenario's memory cgroups (it would take the host's memory). One
line naming the file and the step's line, exit status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmlab.cli import main
from vmlab.lab.diff import model_only
from vmlab.lab.scenario import parse

HOG_IN_MEMCG = """\
memcg /lab 32M
child = fork()
@child join /lab
@child hog 1M
"""


@pytest.mark.parametrize(("text", "line", "says"), [
    ("earlyoom -m 10\n", 1, "earlyoom runs on the model only"),
    ('file /tmp/vmlab-model-only.swap 1M\nswapon("/tmp/vmlab-model-only.swap")\n', 2,
     "swapon runs on the model"),
    ("hog 1M\n", 1, "the memory hog runs on the kernel only inside a memory cgroup"),
    # back in the root cgroup: the machine's
    ("memcg /a 8M\njoin /a\njoin /\nhog 1M\n", 4, "the memory hog"),
    # the child forked before the parent joined stays outside
    ("c = fork()\nmemcg /a 8M\njoin /a\n@c hog 1M\n", 4, "c: the memory hog"),
])
def test_steps_only_the_model_may_run(text: str, line: int, says: str) -> None:
    blocked = model_only(parse(text, "s.vml"))
    assert blocked is not None
    assert blocked[0] == line and says in blocked[1]


@pytest.mark.parametrize("text", [
    HOG_IN_MEMCG,
    "memcg /a 64M\nmemcg /a/b 32M\njoin /a/b\nhog 1M\n",  # its own cgroup
    "memcg /a 64M\njoin /a\nc = fork()\n@c hog 1M\n",  # a child of a process in it
    "memcg /a/b 16M\njoin /a/b\nhog 1M\n",  # parents made with it
])
def test_hogs_inside_the_scenarios_memory_cgroups_may_run_on_the_kernel(text: str) -> None:
    assert model_only(parse(text, "s.vml")) is None


def test_diff_of_a_model_only_scenario_exits_2_with_one_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hog.vml"
    path.write_text("m = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nhog 1M\n")
    assert main(["diff", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"{path}:2: error: the memory hog runs on the kernel only")
    assert "Traceback" not in err
