"""Write-back against the running kernel: the dirty limits from the host's own memory figures, and a
file's cached/dirty/write-back page counts (cachestat(2)) through write(), stores to a shared mapping,
fsync/fdatasync/msync and ftruncate, run step by step on the host (a file on the ext4 root) and in the
model; both must give the same counts, and the same SIGBUS beyond the new end of file."""

from __future__ import annotations

import faulthandler
import mmap
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmlab.kernel.page_writeback import (
    DirtySysctl,
    calculate_totalreserve_pages,
    domain_dirty_limits,
    global_dirtyable_memory,
)
from vmlab.kernel.uapi import MS_ASYNC, MS_SYNC

from wbkit import PAGE, ModelFile, host_file, host_msync

pytestmark = pytest.mark.host

try:
    from vmlab.host.writeback import read_dirty_sysctls, read_vmstat, read_zone_reserves
    from vmlab.linux import cachestat

    cachestat(os.open("/proc/self/exe", os.O_RDONLY))
    HOST_OK, WHY = True, ""
except OSError as err:  # not Linux >= 6.5, or cachestat not allowed
    HOST_OK, WHY = False, f"cachestat(2) unavailable: {err}"

needs_host = pytest.mark.skipif(not HOST_OK, reason=WHY)


@pytest.fixture
def ext4_dir() -> Iterator[Path]:
    """A scratch directory on a disk filesystem (/var/tmp), removed afterwards; skips on tmpfs."""
    base = Path("/var/tmp")
    fstype = subprocess.run(["findmnt", "-no", "FSTYPE", "-T", str(base)], capture_output=True,
                            text=True, check=False).stdout.strip()
    if fstype in ("tmpfs", "ramfs", ""):
        pytest.skip(f"/var/tmp is on {fstype or 'an unknown filesystem'}: no write-back to see")
    d = base / f"vmlab-wb-{os.getpid()}"
    d.mkdir(exist_ok=True)
    try:
        yield d
    finally:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


#: The /proc/vmstat fields global_dirty_limits() reads or writes: the free pages (the same counter as
#: MemFree), the file LRU sizes, and its two outputs.
THRESHOLD_INPUTS = ("nr_free_pages", "nr_inactive_file", "nr_active_file", "nr_dirty_threshold",
                    "nr_dirty_background_threshold")
#: Samples whose inputs held still that the comparison needs, and the most attempts it makes for them
#: (10 ms apart: 3 s at most).
STILL_SAMPLES, MAX_ATTEMPTS = 5, 300


def _memfree_pages() -> int:
    """MemFree of /proc/meminfo in pages."""
    with open("/proc/meminfo") as f:
        return int(re.search(r"MemFree:\s+(\d+)", f.read()).group(1)) // 4  # type: ignore[union-attr]


@needs_host
def test_dirty_thresholds_are_the_kernels_for_the_hosts_memory() -> None:
    """The model's global_dirtyable_memory + domain_dirty_limits, fed the host's free pages, file LRU
    sizes, zone reserves and dirty sysctls, give exactly /proc/vmstat's nr_dirty_threshold and
    nr_dirty_background_threshold (the kernel's global_dirty_limits() output), in every sample taken
    while those inputs held still, and there are STILL_SAMPLES such samples.

    Measured: the thresholds follow MemFree (si_meminfo's global NR_FREE_PAGES), not /proc/vmstat's
    nr_free_pages (13 pages above it here, 0 agreements in 200 samples; ~3M pages apart when the test
    was written). A sample is MemFree read between two /proc/vmstat readings, with the sysctls and zone
    reserves read before and after; it counts only when the THRESHOLD_INPUTS of both readings, the
    sysctls and the reserves are equal: free memory and the file LRU move with other work on the host,
    and a disagreement is then the outside world's, not the model's. (The whole table is not required to
    hold still: vm events such as pgfault move with every fault anywhere, and with another process
    faulting continuously no two readings 100 us apart were equal in 20 tries: 5 failures in 300 runs
    under bench/hostload.py.)"""
    still: list[tuple[int, int]] = []
    moved = 0
    for _ in range(MAX_ATTEMPTS):
        if len(still) == STILL_SAMPLES:
            break
        sysctls, zones = read_dirty_sysctls(), read_zone_reserves()
        before = read_vmstat()
        memfree = _memfree_pages()
        after = read_vmstat()
        if (any(before[k] != after[k] for k in THRESHOLD_INPUTS)
                or (sysctls, zones) != (read_dirty_sysctls(), read_zone_reserves())):
            moved += 1
            time.sleep(0.01)
            continue
        reserve = calculate_totalreserve_pages(zones)
        avail = global_dirtyable_memory(memfree, reserve, after["nr_inactive_file"], after["nr_active_file"])
        model = domain_dirty_limits(avail, DirtySysctl(**sysctls))
        host = (after["nr_dirty_background_threshold"], after["nr_dirty_threshold"])
        assert model == host, (f"model {model} vs host {host} (background, dirty) with MemFree {memfree} "
                               f"pages, reserve {reserve}, file LRU {after['nr_inactive_file']} + "
                               f"{after['nr_active_file']}, {sysctls}")
        still.append(host)
        time.sleep(0.01)
    assert len(still) == STILL_SAMPLES, (
        f"only {len(still)} of {STILL_SAMPLES} samples with the inputs still in {MAX_ATTEMPTS} attempts "
        f"({moved} moved): the host is too busy to compare")


@needs_host
def test_default_dirty_sysctls_are_the_models() -> None:
    """The host's vm.dirty_* are the kernel defaults the model starts with."""
    assert read_dirty_sysctls() == DirtySysctl().__dict__


def _host_steps(d: Path) -> list[object]:
    """The step sequence on the host: cachestat (cached, dirty, writeback) after each step."""
    fd = host_file(str(d), "f", 16)
    out: list[object] = [cachestat(fd)[:3]]
    for i in range(4):
        os.pwrite(fd, b"y" * PAGE, i * PAGE)
    out.append(cachestat(fd)[:3])
    os.fdatasync(fd)
    out.append(cachestat(fd)[:3])
    m = mmap.mmap(fd, 16 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        for i in range(16):
            _ = m[i * PAGE]
        out.append(cachestat(fd)[:3])
        for i in (1, 3, 5, 9):
            m[i * PAGE] = 1
        out.append(cachestat(fd)[:3])
        out.append((host_msync(m, PAGE, PAGE, MS_SYNC), cachestat(fd)[:3]))
        m[PAGE] = 2  # write-protected by the write-back: faults and dirties the page again
        out.append(cachestat(fd)[:3])
        out.append((host_msync(m, 0, 16 * PAGE, MS_ASYNC), cachestat(fd)[:3]))
        os.ftruncate(fd, 5 * PAGE + 100)
        out.append(cachestat(fd)[:3])
        for page in (10, 5):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                faulthandler.disable()  # the SIGBUS is the expected outcome, not a crash to report
                m[page * PAGE + 200] = 1
                os._exit(0)
            status = os.waitpid(pid, 0)[1]
            out.append((page, os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0))
        os.fsync(fd)
        out.append(cachestat(fd)[:3])
        os.ftruncate(fd, 3 * PAGE + 100)
        out.append(cachestat(fd)[:3])
        os.fsync(fd)
        os.ftruncate(fd, 2 * PAGE)
        out.append(cachestat(fd)[:3])
    finally:
        m.close()
        os.close(fd)
    return out


def _model_steps() -> list[object]:
    """The same steps in the model (a file of its own namespace; stores by the simulated process)."""
    f = ModelFile()
    for i in range(16):
        f.pwrite(i * PAGE, PAGE)
    assert f.call("fsync", f.fd) == 0
    out: list[object] = [f.cachestat()]
    for i in range(4):
        f.pwrite(i * PAGE, PAGE)
    out.append(f.cachestat())
    assert f.call("fdatasync", f.fd) == 0
    out.append(f.cachestat())
    addr = f.map_shared(16 * PAGE)
    for i in range(16):
        assert f.load(addr + i * PAGE) is None
    out.append(f.cachestat())
    for i in (1, 3, 5, 9):
        assert f.store(addr + i * PAGE) is None
    out.append(f.cachestat())
    out.append((f.call("msync", addr + PAGE, PAGE, MS_SYNC), f.cachestat()))
    assert f.store(addr + PAGE) is None
    out.append(f.cachestat())
    out.append((f.call("msync", addr, 16 * PAGE, MS_ASYNC), f.cachestat()))
    assert f.call("ftruncate", f.fd, 5 * PAGE + 100) == 0
    out.append(f.cachestat())
    for page in (10, 5):
        sig = _store_in_child(f, addr + page * PAGE + 200)
        out.append((page, signal.SIGBUS if sig == "SIGBUS" else 0))
    assert f.call("fsync", f.fd) == 0
    out.append(f.cachestat())
    assert f.call("ftruncate", f.fd, 3 * PAGE + 100) == 0
    out.append(f.cachestat())
    assert f.call("fsync", f.fd) == 0
    assert f.call("ftruncate", f.fd, 2 * PAGE) == 0
    out.append(f.cachestat())
    return out


def _store_in_child(f: ModelFile, addr: int) -> str | None:
    """A store made by a forked child (the host test's child), which then exits."""
    child = f.backend.fork(f.pid)
    sig = f.backend.access(child, addr, 1, True)
    if child in f.backend.tasks:
        f.backend.exit(child)
    return sig


@needs_host
def test_cachestat_through_write_fsync_stores_msync_and_truncate_agree(ext4_dir: Path) -> None:
    """write() dirties each page written; fdatasync cleans them; loads through a shared mapping dirty
    nothing, stores dirty the page stored to; msync(MS_SYNC) of one page cleans just that page, and a
    store to it afterwards dirties it again (write-back write-protected it); MS_ASYNC does nothing;
    ftruncate drops the pages beyond the new end, dirty ones included, a store beyond it is SIGBUS;
    truncating into the middle of a page dirties that page (ext4 zeroes the block's tail)."""
    host = _host_steps(ext4_dir)
    model = _model_steps()
    assert model == host
    # The expectations the kernel showed, spelled out (so a change in both is noticed too).
    assert host[4] == (16, 4, 0) and host[5] == (0, (16, 3, 0)) and host[6] == (16, 4, 0)
    assert host[8] == (6, 3, 0) and host[9] == (10, signal.SIGBUS) and host[10] == (5, 0)
    assert host[12] == (4, 1, 0) and host[13] == (2, 0, 0)


def _model_clean_after() -> float:
    """Seconds from a 4-page write until the model's flusher has written it (no fsync)."""
    f = ModelFile()
    start = f.mem.clock.now_ns
    f.pwrite(0, 4 * PAGE)
    step = 100_000_000
    while f.cachestat()[1:] != (0, 0):
        f.mem.clock.advance(step)
    return (f.mem.clock.now_ns - start) / 1e9


@needs_host
def test_flusher_writes_dirty_pages_after_dirty_expire(ext4_dir: Path) -> None:
    """Pages written and left alone become clean when the flusher's periodic (kupdate) pass finds their
    inode older than dirty_expire_centisecs (30 s); the passes come every dirty_writeback_centisecs
    (5 s). Tolerance: the host's flusher runs on a phase set by other dirty data on the machine, so the
    kernel writes the inode at some pass 30-35 s after the write (+1 s for the I/O and the 0.25 s
    polling); the model, whose flusher is armed by this write, at its sixth pass, exactly 30 s after
    (an inode dirtied exactly dirty_expire ago counts as expired, as with the kernel's
    !time_after(dirtied_when, oldest_jif))."""
    model = _model_clean_after()
    assert 30.0 <= model <= 30.2
    fd = os.open(ext4_dir / "expire", os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    try:
        start = time.monotonic()
        for i in range(4):
            os.pwrite(fd, b"w" * PAGE, i * PAGE)
        assert cachestat(fd)[:3] == (4, 4, 0)
        while cachestat(fd)[1:3] != (0, 0) and time.monotonic() - start < 45:
            time.sleep(0.25)
        host = time.monotonic() - start
    finally:
        os.close(fd)
    assert 30.0 <= host <= 36.5, f"host wrote the pages after {host:.1f} s"
