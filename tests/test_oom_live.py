"""`vmlab oom` against the running kernel: every computed oom_score equals /proc/PID/oom_score."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest

from vmlab.cli import main
from vmlab.host.oom import global_totalpages, read_sample, scan
from vmlab.kernel.oom_score import oom_badness, proc_oom_score

from hostkit import Hogs

pytestmark = pytest.mark.host


def test_every_process_agrees_with_the_kernel(hogs: Hogs) -> None:
    """Hogs of different sizes and adj: each is a candidate whose oom_score is the kernel's."""
    specs = [(4, 0), (40, 0), (16, 1), (8, 250), (64, 500), (24, 999), (4, 1000)]
    started = {hogs.start(f"live{i}", adj, mib).pid: (mib, adj) for i, (mib, adj) in enumerate(specs)}
    report = scan()
    assert report.mismatches == ()
    assert report.checked >= len(started)
    by_pid = {c.pid: c for c in report.candidates}
    for pid, (mib, adj) in started.items():
        c = by_pid[pid]
        assert c.oom_score_adj == adj
        assert c.rss >= mib * 256  # the touched pages at least
        assert c.oom_score == c.kernel_oom_score
    scores = {by_pid[p].kernel_oom_score for p in started}
    assert len(scores) >= 5, scores  # the check covers several score values, not only the 666 plateau
    assert by_pid[max(started, key=lambda p: started[p][1])].kernel_oom_score == 1333
    assert report.victim is not None and report.victim.oom_score_adj == 1000


def test_cli_json_lists_the_hogs(hogs: Hogs, capsys: pytest.CaptureFixture[str]) -> None:
    """`vmlab oom --json`: the hogs with their adj, no mismatch, the victim the adj-1000 hog."""
    a = hogs.start("jsonA", 0, 8)
    b = hogs.start("jsonB", 1000, 4)
    assert main(["oom", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    pids = {c["pid"]: c for c in data["candidates"]}
    assert pids[a.pid]["oom_score_adj"] == 0 and pids[b.pid]["oom_score_adj"] == 1000
    assert data["victim"]["pid"] == b.pid
    assert data["mismatches"] == []


def test_cli_table_names_the_victim(hogs: Hogs, capsys: pytest.CaptureFixture[str]) -> None:
    """The plain table: a ranked row per candidate and a victim line naming the hog."""
    h = hogs.start("tableV", 1000, 4)
    assert main(["oom", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert f"victim: pid {h.pid} (tableV)" in out
    assert "oom_score check: all" in out


def test_adj_cannot_go_below_zero_without_cap_sys_resource(hogs: Hogs) -> None:
    """Root here lacks CAP_SYS_RESOURCE: lowering oom_score_adj fails with EACCES (else -1000 is skipped)."""
    h = hogs.start("adjlow", 0, 1)
    path = f"/proc/{h.pid}/oom_score_adj"
    try:
        with open(path, "w") as f:
            f.write("-1000")
    except PermissionError as err:
        assert err.errno == errno.EACCES
        with open(path) as f:
            assert f.read().strip() == "0"
        return
    report = scan()
    assert h.pid not in {c.pid for c in report.candidates}
    assert any(s.pid == h.pid and s.reason == "oom_score_adj -1000" for s in report.skipped)


def test_single_page_steps_across_a_score_boundary(hogs: Hogs) -> None:
    """Grow a hog page by page over an oom_score step: every step agrees, and the score does change."""
    h = hogs.start("stepper", 0, 4)
    s = read_sample(h.pid)
    assert not isinstance(s, str)
    total = scan().global_totalpages
    b0 = s.badness(total)
    target = b0
    while proc_oom_score(target, total) == proc_oom_score(b0, total):
        target += 1
    h.send(f"pages {max(target - b0 - 150, 0)}")
    h.expect("ok")
    seen = set()
    for _ in range(400):
        s = read_sample(h.pid)
        assert not isinstance(s, str)
        assert proc_oom_score(s.badness(total), total) == s.kernel_oom_score, s
        seen.add(s.kernel_oom_score)
        if len(seen) > 1 and s.badness(total) > target + 20:
            break
        h.send("pages 1")
        h.expect("ok")
    assert len(seen) == 2, seen


def test_process_changing_size_while_read(hogs: Hogs) -> None:
    """A hog mapping and unmapping 16 MiB in a loop: scans never report a false mismatch."""
    h = hogs.start("churner", 300, 1)
    h.send("churn 1000000")
    time.sleep(0.05)
    seen = 0
    for _ in range(30):
        report = scan()
        assert report.mismatches == ()
        seen += h.pid in {c.pid for c in report.candidates} | set(report.unstable)
    assert seen == 30
    assert h.proc.poll() is None  # still churning: the reads above raced a live process


def test_exited_and_foreign_pids_are_skipped_not_errors() -> None:
    """A pid that does not exist reads as 'exited while read'."""
    pid = (1 << 22) + 1  # above pid_max's ceiling: never a live process
    assert read_sample(pid) == "exited while read"
    assert os.path.exists("/proc/1/stat")


ZOMBIE_LEADER_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void *hold(void *arg) { (void)arg; for (;;) pause(); return NULL; }
int main(void) {
    size_t n = 16 << 20;
    volatile char *p = malloc(n);
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    pthread_t t;
    pthread_create(&t, NULL, hold, NULL);
    printf("ready\n");
    fflush(stdout);
    pthread_exit(NULL);  /* the leader becomes a zombie; the thread keeps the mm */
}
"""


def test_zombie_leader_is_read_through_its_threads(tmp_path: Path) -> None:
    """find_lock_task_mm(): a group leader that has exited while a thread lives has no mm of its own;
    its numbers come from the thread, and the score still agrees with the kernel's."""
    import shutil
    import subprocess

    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) to build the zombie-leader program")
    src, exe = tmp_path / "zl.c", tmp_path / "zl"
    src.write_text(ZOMBIE_LEADER_C)
    subprocess.run(["cc", "-O1", "-pthread", "-o", str(exe), str(src)], check=True)
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for _ in range(100):  # the leader's exit is asynchronous to our read of "ready"
            if b"State:\tZ" in Path(f"/proc/{proc.pid}/status").read_bytes():
                break
            time.sleep(0.01)
        else:
            pytest.fail("the group leader never became a zombie")
        sample = read_sample(proc.pid)
        assert not isinstance(sample, str)
        assert sample.mm and sample.rss >= (16 << 20) // 4096
        total, _ = global_totalpages()
        badness = oom_badness(sample.rss, sample.swapents, sample.pgtables_bytes, sample.oom_score_adj, total)
        assert proc_oom_score(badness, total) == sample.kernel_oom_score
    finally:
        proc.kill()
        proc.wait()
