"""What the experiments run on: a model machine of a given RAM size running the built-in program, its
files the model's own (the simulated file system: nothing of them is cached at first, every page not
in the page cache is read from the model's default device with its default 128 KiB readahead, so runs
do not depend on the host's disks), and the program's page references — `pread()` of one page at a
time through the page cache, or loads from a shared file mapping replayed as an access trace.

The program's own time per reference (Costs.hit_ns) is charged here for mapped loads, which no kernel
path sees; faults, I/O, reclaim and write-back charge their own time in the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.filemap import replay_reads
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.meminfo import si_mem_available
from vmlab.kernel.uapi import PAGE_SIZE
from vmlab.kernel.vmstat import node_page_state

AT_FDCWD = -100
O_RDONLY, O_RDWR, O_CREAT = 0, 2, 0o100
PROT_READ, PROT_WRITE = 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS = 1, 2, 0x20
BUF_ADDR = 0x10000000
FILE_BASE = 0x100000000
#: Where the experiments' files live in the model's own namespace.
FILE_DIR = "/vmlab-experiment"


@dataclass
class Lab:
    """One model machine and its program; its files are the model's own."""

    ram: int
    model: ModelBackend = field(init=False)
    pid: int = field(init=False)
    _next_map: int = FILE_BASE

    def __post_init__(self) -> None:
        self.model = ModelBackend(self.ram)
        self.pid = self.model.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=self.ram))
        buf = self.model.syscall(self.pid, "mmap", (BUF_ADDR, PAGE_SIZE, PROT_READ | PROT_WRITE,
                                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        assert buf == BUF_ADDR and self.model.access(self.pid, buf, PAGE_SIZE, True) is None

    def close(self) -> None:
        """End the program (the machine and its files go with it)."""
        self.model.close()

    @property
    def mem(self):  # type: ignore[no-untyped-def]
        """The machine's PhysMem (clock, events, psi, lruvec)."""
        return self.model.mem

    def file(self, name: str, pages: int) -> str:
        """A file of the model's own of `pages` pages, none of it cached; its path."""
        path = f"{FILE_DIR}/{name}"
        self.model.create_file(path, pages * PAGE_SIZE)
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

    def replay_reads(self, fd: int, indexes: np.ndarray | range) -> None:
        """What pread_pages() does, through the page cache's lean replay path (filemap.replay_reads):
        the first read is a real pread64 (it touches the buffer, as every one does), the rest copy into
        the same buffer page, already present and young, whose PTE nothing else changes while only
        file pages are reclaimed (no swap area)."""
        if len(indexes) == 0:
            return
        self.model.syscall(self.pid, "pread64", (fd, BUF_ADDR, PAGE_SIZE, int(indexes[0]) * PAGE_SIZE))
        rest = indexes[1:]
        replay_reads(self.mem, self.model.tasks[self.pid].files[fd],
                     rest.tolist() if isinstance(rest, np.ndarray) else rest)

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

    def sleep(self, seconds: float) -> None:
        """nanosleep() in the program: simulated time passes and the kernel's timers run meanwhile (the
        flusher, the memcg statistics flush that reclaim and the refault test read)."""
        self.model.sleep(self.pid, int(seconds * 1e9))

    def available_pages(self) -> int:
        """MemAvailable of the machine now, in pages (si_mem_available: free pages above the zones'
        reserves, plus the reclaimable part of the page cache): what a workload started now can hold."""
        return si_mem_available(self.mem, node_page_state(self.mem))

    def resident(self, path: str) -> int:
        """Pages of the file in the model's page cache."""
        return len(self.model._inode(path).i_pages)


#: The smallest machine the model boots with room for a program, and the step of RAM sizes tried.
MIN_RAM = 4 << 20
RAM_STEP = 64 << 10


def lab_with_available(pages: int, tries: int = 16) -> Lab:
    """A Lab whose MemAvailable, with its program running, is the closest to `pages` that RAM sizes
    in RAM_STEP steps give.

    RAM size is a poor handle on a small machine: the first MiB, the kernel image (16 MiB up to about
    46 MiB on this machine's layout) and the memmap are reserved at boot, and the watermarks keep a
    share free, so 32 MiB and 48 MiB of RAM leave the same 15 MiB to user space. MemAvailable never
    falls as RAM grows, so the size is bracketed: each step tries the secant guess (available grows
    one for one with RAM outside that hole) when it lies inside the bracket, else the bracket's middle.
    """
    def snap(ram: int) -> int:
        return max(MIN_RAM, ram - ram % RAM_STEP)

    labs: dict[int, tuple[int, Lab]] = {}

    def measure(ram: int) -> int:
        if ram not in labs:
            lab = Lab(ram)
            labs[ram] = (lab.available_pages(), lab)
        return labs[ram][0]

    lo, hi = MIN_RAM, snap(pages * PAGE_SIZE + (64 << 20))
    while measure(hi) < pages:
        lo, hi = hi, hi * 2
    guess = snap(pages * PAGE_SIZE + (2 << 20))
    try:
        for _ in range(tries):
            if hi - lo <= RAM_STEP:
                break
            ram = guess if lo < guess < hi else snap((lo + hi) // 2)
            got = measure(ram)
            if got == pages:
                lo = hi = ram
                break
            lo, hi = (ram, hi) if got < pages else (lo, ram)
            guess = snap(ram + (pages - got) * PAGE_SIZE)
        best = min((r for r in (lo, hi) if r in labs), key=lambda r: abs(labs[r][0] - pages), default=hi)
        measure(best)
        return labs.pop(best)[1]
    finally:
        for _, lab in labs.values():
            lab.close()
