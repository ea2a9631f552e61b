"""The /proc readers on their own: parsing, and tolerance of processes that are gone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vmlab.host import procfs

# One line of /proc/<pid>/stat of a process named "a) (b c" (comm may hold ')' and spaces), from
# `cp /bin/sleep '/tmp/a) (b c'; '/tmp/a) (b c' 100 & sleep 0.3; cat /proc/$!/stat` on this machine.
STAT_LINE = ("8144 (a) (b c) S 8141 8141 2642 0 -1 4194304 140 0 0 0 0 0 0 0 20 0 1 0 84156 2990080 424 "
             "18446744073709551615 94146876203008 94146876220937 140733916205040 0 0 0 0 6 0 1 0 0 17 1 0 "
             "0 0 0 0 94146876235024 94146876236288 94147230707712 140733916211939 140733916211956 "
             "140733916211956 140733916213227 0\n")


def test_parse_stat_takes_fields_after_the_last_paren() -> None:
    stat = procfs.parse_stat(STAT_LINE)
    assert (stat.pid, stat.comm, stat.state) == (8144, "a) (b c", "S")
    assert (stat.minflt, stat.cminflt, stat.majflt, stat.cmajflt) == (140, 0, 0, 0)
    assert (stat.vsize, stat.rss) == (2990080, 424)


def test_readers_of_a_live_process() -> None:
    pid = os.getpid()
    assert "[stack]" in (procfs.read_text(pid, "maps") or "")
    stat = procfs.read_stat(pid)
    assert stat is not None and stat.pid == pid and stat.minflt > 0
    statm = procfs.read_statm(pid)
    assert statm is not None and statm.resident > 0
    status = procfs.read_text(pid, "status") or ""
    assert procfs.status_kb(status, "VmRSS") == sum(procfs.status_kb(status, f"Rss{k}")
                                                    for k in ("Anon", "File", "Shmem"))
    with pytest.raises(KeyError):
        procfs.status_kb(status, "NoSuchField")
    with pytest.raises(ValueError, match="not a /proc text view"):
        procfs.read_text(pid, "environ")


def test_pagemap_of_own_stack_page() -> None:
    here = procfs.read_text(os.getpid(), "maps") or ""
    line = next(x for x in here.splitlines() if x.endswith("[stack]"))
    start, end = (int(v, 16) for v in line.split()[0].split("-"))
    entries = procfs.read_pagemap(os.getpid(), end - 4096, end)
    assert entries is not None and len(entries) == 1 and entries[0].present
    assert procfs.read_pagemap(os.getpid(), start, start) == []


def test_a_reaped_process_reads_as_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    for name in procfs.TEXT_FILES:
        assert procfs.read_text(child.pid, name) is None
    assert procfs.read_stat(child.pid) is None
    assert procfs.read_statm(child.pid) is None
    assert procfs.read_pagemap(child.pid, 0, 4096) is None


def test_pagemap_entry_bits() -> None:
    guard = procfs.PagemapEntry(0x440000000000009F)  # F3: a guard page
    assert guard.guard and guard.swapped and not guard.present and guard.pfn == 0
    zero = procfs.PagemapEntry(0x8000000000003B34)  # F3: the zero page
    assert zero.present and not zero.exclusive and not zero.file and zero.pfn == 0x3B34
    huge_zero = procfs.PagemapEntry(0xA0000000001BCC00)
    assert huge_zero.present and huge_zero.file and not huge_zero.exclusive
    assert procfs.present_string([zero, guard, huge_zero]) == "101"
