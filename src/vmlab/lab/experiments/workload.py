"""What the experiments run on: a model machine of a given RAM size running the built-in program, its
disk made of sparse host files (nothing of them is in the host's page cache, so every first read in the
model is a read I/O), and the program's page references — `pread()` of one page at a time through the
page cache, or loads from a shared file mapping replayed as an access trace.

The program's own time per reference (Costs.hit_ns) is charged here for mapped loads, which no kernel
path sees; faults, I/O, reclaim and write-back charge their own time in the model.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.uapi import PAGE_SIZE

AT_FDCWD = -100
O_RDONLY, O_RDWR, O_CREAT = 0, 2, 0o100
PROT_READ, PROT_WRITE = 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS = 1, 2, 0x20
BUF_ADDR = 0x10000000
FILE_BASE = 0x100000000


class MissingSeam(Exception):
    """The model in this install lacks a part the experiment needs (reclaim, write-back)."""


def seam(module: str, attr: str, what: str) -> object:
    """`vmlab.kernel.<module>.<attr>`, or MissingSeam naming `what` is not in this model yet."""
    try:
        mod: ModuleType = importlib.import_module(f"vmlab.kernel.{module}")
        return getattr(mod, attr)
    except (ImportError, AttributeError):
        raise MissingSeam(f"{what} (vmlab.kernel.{module}.{attr}) is not in this model yet") from None


@dataclass
class Lab:
    """One model machine and its program; files live in a private temporary directory."""

    ram: int
    model: ModelBackend = field(init=False)
    pid: int = field(init=False)
    _tmp: tempfile.TemporaryDirectory[str] = field(init=False)
    _next_map: int = FILE_BASE

    def __post_init__(self) -> None:
        self.model = ModelBackend()
        self.pid = self.model.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=self.ram))
        self._tmp = tempfile.TemporaryDirectory(prefix="vmlab-exp-")
        buf = self.model.syscall(self.pid, "mmap", (BUF_ADDR, PAGE_SIZE, PROT_READ | PROT_WRITE,
                                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        assert buf == BUF_ADDR and self.model.access(self.pid, buf, PAGE_SIZE, True) is None

    def close(self) -> None:
        """End the program and remove the files."""
        self.model.close()
        self._tmp.cleanup()

    @property
    def mem(self):  # type: ignore[no-untyped-def]
        """The machine's PhysMem (clock, events, psi, lruvec)."""
        return self.model.mem

    def host_file(self, name: str, pages: int) -> str:
        """A sparse host file of `pages` pages (not in the host's page cache); its path."""
        path = os.path.join(self._tmp.name, name)
        with open(path, "wb") as f:
            f.truncate(pages * PAGE_SIZE)
        return path

    def open(self, path: str, flags: int = O_RDONLY) -> int:
        """openat() in the program; the descriptor."""
        fd = self.model.syscall(self.pid, "openat", (AT_FDCWD, path, flags, 0o644))
        if fd < 0:
            raise OSError(-fd, f"openat {path} in the model")
        return fd

    def pread_pages(self, fd: int, indexes: np.ndarray | range) -> None:
        """pread() one page at each index, in order (a page-cache reference each)."""
        call = self.model.syscall
        for index in indexes:
            call(self.pid, "pread64", (fd, BUF_ADDR, PAGE_SIZE, int(index) * PAGE_SIZE))

    def write_pages(self, fd: int, pages: int) -> None:
        """write() `pages` pages at the file position."""
        for _ in range(pages):
            self.model.syscall(self.pid, "write", (fd, BUF_ADDR, PAGE_SIZE))

    def map_file(self, fd: int, pages: int) -> int:
        """A MAP_SHARED read mapping of the file's first `pages` pages; its address."""
        addr = self._next_map
        self._next_map += (pages * PAGE_SIZE + (1 << 30)) & ~((1 << 30) - 1)
        got = self.model.syscall(self.pid, "mmap", (addr, pages * PAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0))
        if got != addr:
            raise OSError(-got, "mmap in the model")
        return addr

    def load_pages(self, addr: int, indexes: np.ndarray) -> None:
        """Loads from the pages `indexes` of a mapping at `addr`, in order (the program's time for each
        is charged at Costs.hit_ns)."""
        trace = np.uint64(addr) + indexes.astype(np.uint64) * np.uint64(PAGE_SIZE)
        sig = self.model.access_trace(self.pid, trace, False)
        if sig is not None:
            raise RuntimeError(f"the program was killed by {sig}")
        self.mem.clock.advance(len(indexes) * self.mem.clock.costs.hit_ns)

    def resident(self, path: str) -> int:
        """Pages of the file in the model's page cache."""
        return len(self.model._inode(path).i_pages)
