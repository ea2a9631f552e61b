"""unlink() of a file with pages in the page cache, on this host's kernel and on the model.

The name goes at once; the inode, and its page cache, stay while a descriptor or a mapping holds
them, and the last reference evicts the inode (iput -> evict -> truncate_inode_pages_final): the
pages are freed, dirty ones without being written. A stepper pinned to CPU 0 in a v1 memcg the test
makes reads a 1 MiB file through a shared mapping (its pages charged to the memcg), unmaps it,
unlinks it with the descriptor still open (nothing freed), closes it (everything freed, the
XArray's nodes too, after an RCU grace period: the counters are read once settled); then dirties
64 KiB of a second file with pwrite(), closes and unlinks it. After each phase the memcg's
counters, every stock drained, are compared with the model's running the same steps. Both sides
start with the files freshly written and dropped from the host's cache, so every page is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from memcgkit import Counters, phases_on_both
from vmlab.backend import Program
from vmlab.host.oracle import HostBackend
from vmlab.kernel.machine import ModelBackend

from hostkit import Memcgs

pytestmark = pytest.mark.host

AT_FDCWD, O_RDONLY, O_RDWR = -100, 0, 2
PROT_READ, PROT_RW, MAP_SHARED, MAP_PRIVATE_ANON = 1, 3, 1, 0x22
READ_SIZE = 1 << 20
DIRTY_SIZE = 64 << 10


def _fresh(path: str, size: int) -> None:
    """Write `path` with `size` bytes, on disk and out of the host's page cache."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"v" * size)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def phases(backend: HostBackend | ModelBackend, pid: int, paths: list[str],
           counters: Callable[[], Counters]) -> list[Counters]:
    """The counters before, after reading the first file through a mapping, after unmapping and
    unlinking it (still open), after closing it, after dirtying and closing the second file, and
    after unlinking it."""
    read_path, dirty_path = paths
    _fresh(read_path, READ_SIZE)
    _fresh(dirty_path, DIRTY_SIZE)
    buf = backend.syscall(pid, "mmap", (0, DIRTY_SIZE, PROT_RW, MAP_PRIVATE_ANON, -1, 0))
    assert buf > 0 and backend.access(pid, buf, DIRTY_SIZE, True) is None
    out = [counters()]
    fd = backend.syscall(pid, "openat", (AT_FDCWD, read_path, O_RDONLY, 0))
    addr = backend.syscall(pid, "mmap", (0, READ_SIZE, PROT_READ, MAP_SHARED, fd, 0))
    assert fd >= 0 and addr > 0 and backend.access(pid, addr, READ_SIZE, False) is None
    out.append(counters())
    assert backend.syscall(pid, "munmap", (addr, READ_SIZE)) == 0
    assert backend.syscall(pid, "unlink", (read_path,)) == 0
    out.append(counters())
    assert backend.syscall(pid, "close", (fd,)) == 0
    out.append(counters())
    fd = backend.syscall(pid, "openat", (AT_FDCWD, dirty_path, O_RDWR, 0))
    assert backend.syscall(pid, "pwrite64", (fd, buf, DIRTY_SIZE, 0)) == DIRTY_SIZE
    assert backend.syscall(pid, "close", (fd,)) == 0
    out.append(counters())
    assert backend.syscall(pid, "unlink", (dirty_path,)) == 0
    assert backend.syscall(pid, "unlink", (dirty_path,)) == -2  # -ENOENT: the name is gone
    out.append(counters())
    return out


def test_unlink_frees_the_page_cache_with_the_last_reference(program: Program, memcgs: Memcgs,
                                                             files: list[str]) -> None:
    """usage and kmem after each phase, less their values before, are the kernel's: the 256 pages
    read stay charged until the close after the unlink; the 16 dirty pages go with the unlink."""
    paths = [f"/tmp/vmlab-unlink-{os.getpid()}-{name}.dat" for name in ("read", "dirty")]
    files.extend(paths)
    cg = memcgs.make("unlink", "64M")
    kernel_d, model_d = phases_on_both(program, cg, lambda b, pid, counters: phases(b, pid, paths, counters),
                                       settle=True)
    print(f"kernel {kernel_d}\nmodel  {model_d}")
    assert all(Path(p).exists() for p in paths)  # the model unlinks in its own namespace only
    assert model_d[1].usage >= READ_SIZE // 4096 and model_d[2].usage >= READ_SIZE // 4096
    assert model_d[3].usage < model_d[2].usage - READ_SIZE // 4096 + 8
    assert kernel_d == model_d
