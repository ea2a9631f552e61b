"""Helpers shared by the write-back tests: a model process with a file, and the same steps on the host."""

from __future__ import annotations

import ctypes
import mmap
import os

from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.uapi import MAP_SHARED, O_CREAT, O_RDWR, PROT_READ, PROT_WRITE

PROGRAM = Program(BUILTIN_PROGRAM, ("minimal",))
PAGE = 4096
RW = PROT_READ | PROT_WRITE


class ModelFile:
    """A model process (small RAM) with one open file of the model's own namespace."""

    def __init__(self, path: str = "/data/f", ram: int = 128 << 20) -> None:
        self.backend = ModelBackend(ram)
        self.pid = self.backend.start(PROGRAM, Settings(ram=ram))
        self.mem = self.backend.mem
        self.fd = self.call("openat", -100, path, O_CREAT | O_RDWR, 0o644)
        assert self.fd >= 0
        self.inode = self.backend.tasks[self.pid].files[self.fd].inode
        self.buf = self.call("mmap", 0, 64 * PAGE, RW, 0x22, -1, 0)  # an anon buffer for read/write

    def call(self, name: str, *args: int | str) -> int:
        return self.backend.syscall(self.pid, name, args)

    def pwrite(self, off: int, length: int) -> int:
        done = 0
        while done < length:
            n = min(length - done, 64 * PAGE)
            assert self.call("pwrite64", self.fd, self.buf, n, off + done) == n
            done += n
        return done

    def map_shared(self, length: int) -> int:
        addr = self.call("mmap", 0, length, RW, MAP_SHARED, self.fd, 0)
        assert addr > 0
        return addr

    def store(self, addr: int) -> str | None:
        return self.backend.access(self.pid, addr, 1, True)

    def load(self, addr: int) -> str | None:
        return self.backend.access(self.pid, addr, 1, False)

    def cachestat(self) -> tuple[int, ...]:
        cs = self.backend.cachestat(self.pid, self.fd)
        assert not isinstance(cs, int)
        return tuple(cs[:3])


_libc = ctypes.CDLL(None, use_errno=True)
_libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def host_msync(m: mmap.mmap, off: int, length: int, flags: int) -> int:
    """msync(2) of [off, off+length) of a Python mmap (mmap.flush always passes MS_SYNC)."""
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m)) + off
    return _libc.msync(addr, length, flags)


def host_sync_file_range(fd: int, off: int, length: int, flags: int) -> int:
    """sync_file_range(2) (Python's os module has no binding): 0, or -errno."""
    return 0 if _libc.sync_file_range(fd, off, length, flags) == 0 else -ctypes.get_errno()


def host_file(tmp_dir: str, name: str, pages: int) -> int:
    """A new file on the host of `pages` pages, written one page per write() and fsynced, so it is
    cached, clean, and in order-0 folios as the model's page cache is (ext4 on 6.18 makes a large folio
    for a larger write: one 64 KiB write() dirties, cleans and counts as one 16-page folio)."""
    path = os.path.join(tmp_dir, name)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    for i in range(pages):
        os.pwrite(fd, b"x" * PAGE, i * PAGE)
    os.fsync(fd)
    return fd
