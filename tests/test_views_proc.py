"""The machine-wide views against the kernel's text: /proc/meminfo, /proc/vmstat, /proc/pressure/memory
and `fincore --bytes`.

Format: the host's own values, re-rendered through the model's formatter, must give the host's text byte
for byte (so field names, order, padding and units are the kernel's); checked against the captured
fixtures and, where this is Linux, against the live files. Values: the model's counters after known
operations, and their cross-sums, as the kernel defines them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.meminfo import MEMINFO_FIELDS, format_meminfo
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.swap import FOLIO_BATCH_SIZE, lru_add_drain
from vmlab.kernel.vmstat import VMSTAT_FIELDS, format_vmstat, node_page_state

FIXTURES = Path(__file__).parent / "fixtures" / "host"
PRESSURE_LINE = re.compile(r"(some|full) avg10=\d+\.\d\d avg60=\d+\.\d\d avg300=\d+\.\d\d total=\d+")
PG = 4096


def _host_texts(name: str, live: str) -> list[tuple[str, str]]:
    """(where, text) of the captured fixture and, when readable, the live file."""
    out = [(f"fixture {name}", (FIXTURES / name).read_text())]
    if os.path.exists(live):
        out.append((live, Path(live).read_text()))
    return out


@pytest.mark.parametrize(("where", "text"), _host_texts("meminfo.txt", "/proc/meminfo"))
def test_meminfo_format_is_the_kernels(where: str, text: str) -> None:
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])
    assert tuple(values) == MEMINFO_FIELDS, where
    assert format_meminfo(values) == text, where


@pytest.mark.parametrize(("where", "text"), _host_texts("vmstat.txt", "/proc/vmstat"))
def test_vmstat_format_is_the_kernels(where: str, text: str) -> None:
    values = {name: int(v) for name, v in (line.split() for line in text.splitlines())}
    assert tuple(values) == VMSTAT_FIELDS, where
    assert format_vmstat(values) == text, where


@pytest.mark.parametrize(("where", "text"), _host_texts("pressure_memory.txt", "/proc/pressure/memory"))
def test_pressure_format_is_the_kernels(where: str, text: str) -> None:
    model = ModelBackend()
    model.mem.clock.advance(2_004_000_000, memstall=True)
    for ours, theirs in zip(model.machine_view("pressure").splitlines(), text.splitlines(), strict=True):
        assert PRESSURE_LINE.fullmatch(theirs), where
        assert PRESSURE_LINE.fullmatch(ours)
        assert ours.split()[0] == theirs.split()[0]


def _started(ram: int = 256 << 20) -> tuple[ModelBackend, int]:
    from vmlab.backend import Program, Settings
    from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM

    model = ModelBackend(ram)
    pid = model.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=ram))
    return model, pid


def _meminfo_kb(model: ModelBackend) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1]) for line in model.machine_view("meminfo").splitlines()}


def test_anon_writes_show_in_anonpages_and_inactive_anon() -> None:
    model, pid = _started()
    lru_add_drain(model.mem)  # new pages wait in the CPU's lru_add batch, off the lists, until it moves
    before = _meminfo_kb(model)
    addr = model.syscall(pid, "mmap", (0x40000000, 100 * PG, 3, 0x22, -1, 0))
    assert model.access(pid, addr, 100 * PG, True) is None
    waiting = len(model.mem.fbatches.lru_add)
    assert 0 < waiting < FOLIO_BATCH_SIZE
    assert _meminfo_kb(model)["Inactive(anon)"] - before["Inactive(anon)"] == 4 * (100 - waiting)
    lru_add_drain(model.mem)
    after = _meminfo_kb(model)
    assert after["AnonPages"] - before["AnonPages"] == 400
    assert after["Inactive(anon)"] - before["Inactive(anon)"] == 400  # new anon joins the inactive list
    assert after["Committed_AS"] - before["Committed_AS"] == 400  # private writable: VM_ACCOUNT
    assert after["MemFree"] < before["MemFree"] - 400  # and its page tables
    assert after["Active"] == after["Active(anon)"] + after["Active(file)"]
    assert after["Inactive"] == after["Inactive(anon)"] + after["Inactive(file)"]


def test_file_reads_show_in_cached_and_mapped(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"x" * (64 * PG))
    model, pid = _started()
    lru_add_drain(model.mem)
    before = _meminfo_kb(model)
    fd = model.syscall(pid, "openat", (-100, str(path), 0))
    buf = model.syscall(pid, "mmap", (0x50000000, 64 * PG, 3, 0x22, -1, 0))
    assert model.syscall(pid, "read", (fd, buf, 16 * PG)) == 16 * PG
    lru_add_drain(model.mem)
    after = _meminfo_kb(model)
    assert after["Cached"] - before["Cached"] == 64  # read() without readahead: 16 pages
    assert after["Inactive(file)"] - before["Inactive(file)"] == 64
    assert after["Mapped"] == before["Mapped"]  # read() maps nothing
    vm = node_page_state(model.mem)
    assert vm["nr_file_pages"] * 4 == after["Cached"]


def test_vmstat_counts_events_by_the_kernels_names() -> None:
    mem = PhysMem(64 << 20)
    mem.events["pgmajfault"] += 3
    mem.events["workingset_refault_file"] += 2
    text = format_vmstat(node_page_state(mem) | dict(mem.events))
    assert "\npgmajfault 3\n" in text and "\nworkingset_refault_file 2\n" in text
    from vmlab.kernel.vmstat import show_vmstat

    assert show_vmstat(mem) == text


def test_dirty_limits_follow_the_default_ratios() -> None:
    """global_dirty_limits() as /proc/vmstat prints it: the ratios 20 and 10 become 819 and 409 parts
    per 4096 (ratio * PAGE_SIZE / 100, integer) of free + file LRU - totalreserve_pages + 1 (the + 1 of
    global_dirtyable_memory(), "ensure that we never return 0")."""
    from vmlab.kernel.page_writeback import totalreserve_pages

    mem = PhysMem(128 << 20)
    vm = node_page_state(mem)
    dirtyable = vm["nr_free_pages"] - totalreserve_pages(mem) + 1
    assert vm["nr_dirty_threshold"] == dirtyable * 819 // 4096
    assert vm["nr_dirty_background_threshold"] == dirtyable * 409 // 4096


def test_fincore_matches_util_linux(tmp_path: Path) -> None:
    """A file fully in the host's page cache, read whole in the model: `fincore --bytes` agrees."""
    if shutil.which("fincore") is None:
        pytest.skip("util-linux fincore is not installed")
    path = tmp_path / "f"
    path.write_bytes(b"y" * (40 * PG + 123))
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        f.read()
    host = subprocess.run(["fincore", "--bytes", str(path)], capture_output=True, text=True,
                          check=True).stdout
    model, pid = _started()
    fd = model.syscall(pid, "openat", (-100, str(path), 0))
    buf = model.syscall(pid, "mmap", (0x50000000, 41 * PG, 3, 0x22, -1, 0))
    assert model.syscall(pid, "read", (fd, buf, 41 * PG)) == 40 * PG + 123
    assert model.machine_view("fincore", str(path)) == host
