"""unlink() on the model alone: what the host comparison (test_host_unlink) does not reach — hard
links, a swap file in use, directories, a name made again, and the model's own files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.uapi import AT_FDCWD, AT_REMOVEDIR, EINVAL, EISDIR, ENOENT, EPERM, O_CREAT, O_RDONLY, O_RDWR

RAM = 64 << 20
PROT_READ, MAP_SHARED = 1, 1


@pytest.fixture
def machine() -> tuple[ModelBackend, int]:
    m = ModelBackend(RAM)
    return m, m.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=RAM))


def _map_and_read(m: ModelBackend, pid: int, path: str, size: int) -> tuple[int, int]:
    fd = m.syscall(pid, "openat", (AT_FDCWD, path, O_RDONLY, 0))
    addr = m.syscall(pid, "mmap", (0, size, PROT_READ, MAP_SHARED, fd, 0))
    assert fd >= 0 and addr > 0 and m.access(pid, addr, size, False) is None
    return fd, addr


def test_a_hard_link_keeps_the_file(machine: tuple[ModelBackend, int], tmp_path: Path) -> None:
    """With a second name (st_nlink 2 on the host) unlink removes a name, not the file: its pages
    stay cached after the last close, and the other name still opens it."""
    m, pid = machine
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 65536)
    os.link(a, b)
    fd, addr = _map_and_read(m, pid, str(a), 65536)
    inode = m.tasks[pid].files[fd].inode
    assert m.syscall(pid, "unlink", (str(a),)) == 0
    assert m.syscall(pid, "munmap", (addr, 65536)) == 0 and m.syscall(pid, "close", (fd,)) == 0
    assert len(inode.i_pages) == 16 and not inode.deleted
    assert m.syscall(pid, "openat", (AT_FDCWD, str(a), O_RDONLY, 0)) == -ENOENT
    assert m.syscall(pid, "openat", (AT_FDCWD, str(b), O_RDONLY, 0)) >= 0
    assert a.exists()  # the host's file is the host's
    check_machine(m)


def test_the_last_name_deletes_the_file(machine: tuple[ModelBackend, int], tmp_path: Path) -> None:
    """A mapped file unlinked shows `(deleted)` and keeps its pages until munmap; the path can be
    made again (O_CREAT: a new, empty file of the model's own)."""
    m, pid = machine
    path = tmp_path / "f"
    path.write_bytes(b"y" * 65536)
    fd, addr = _map_and_read(m, pid, str(path), 65536)
    inode = m.tasks[pid].files[fd].inode
    assert m.syscall(pid, "close", (fd,)) == 0
    assert m.syscall(pid, "unlink", (str(path),)) == 0
    assert f"{path} (deleted)" in m.view(pid, "maps") and len(inode.i_pages) == 16
    check_machine(m)
    assert m.syscall(pid, "munmap", (addr, 65536)) == 0
    assert not inode.i_pages and not inode.shadows
    fd = m.syscall(pid, "openat", (AT_FDCWD, str(path), O_RDWR | O_CREAT, 0o600))
    assert fd >= 0 and m.tasks[pid].files[fd].inode.size == 0
    assert m.syscall(pid, "unlink", (str(path),)) == 0 and m.simfs.lookup(str(path)) is None
    check_machine(m)


def test_what_unlink_refuses(machine: tuple[ModelBackend, int], tmp_path: Path) -> None:
    """-ENOENT (no such name, an empty path), -EISDIR (a directory), -EPERM (a swap file in use),
    -EINVAL (an unknown unlinkat flag); rmdir is not modelled."""
    m, pid = machine
    swap = tmp_path / "swap"
    swap.write_bytes(b"\0" * (1 << 20))
    assert m.syscall(pid, "swapon", (str(swap), 0)) == 0
    assert m.syscall(pid, "unlink", (str(swap),)) == -EPERM
    assert m.syscall(pid, "unlink", (str(tmp_path / "none"),)) == -ENOENT
    assert m.syscall(pid, "unlink", ("",)) == -ENOENT
    assert m.syscall(pid, "unlink", (str(tmp_path),)) == -EISDIR
    assert m.syscall(pid, "unlinkat", (AT_FDCWD, str(swap), 0x100)) == -EINVAL
    with pytest.raises(NotImplementedError):
        m.syscall(pid, "unlinkat", (AT_FDCWD, str(tmp_path), AT_REMOVEDIR))
    assert m.syscall(pid, "swapoff", (str(swap),)) == 0
    assert m.syscall(pid, "unlinkat", (AT_FDCWD, str(swap), 0)) == 0
