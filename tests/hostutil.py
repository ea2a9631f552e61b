"""Shared fixtures and helpers for the host-oracle tests (tests/test_host_*.py).

They run on the real kernel; they skip, saying why, only where no stepper can run: not Linux x86_64,
or no C compiler. The stepper processes use a few pages each and are killed and reaped by the
backend fixture even when a test fails.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator

import pytest

from vmlab.backend import Program, Settings
from vmlab.host.oracle import HostBackend
from vmlab.host.stepper_build import StepperBuildError, stepper_program

PG = 4096
RW = 0x3
PRIVATE_ANON = 0x22  # MAP_PRIVATE | MAP_ANONYMOUS
FIXED = 0x10


def program_or_skip() -> Program:
    """The stepper Program, or a pytest skip with the reason it cannot run here."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip(f"host oracle needs Linux x86_64, this is {platform.system()} {platform.machine()}")
    try:
        return stepper_program()
    except StepperBuildError as err:
        pytest.skip(f"host oracle unavailable: {err}")


@pytest.fixture
def program() -> Program:
    """The stepper Program (built on first use)."""
    return program_or_skip()


@pytest.fixture
def host(program: Program) -> Iterator[HostBackend]:
    """A HostBackend whose processes are all killed and reaped at the end, pass or fail."""
    backend = HostBackend(timeout=30)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def proc(host: HostBackend, program: Program) -> int:
    """One stepper started with the default Settings."""
    return host.start(program, Settings())


def maps_lines(text: str, lo: int = 0, hi: int = 1 << 64) -> list[str]:
    """The maps lines of VMAs that overlap [lo, hi), as the kernel printed them."""
    out = []
    for line in text.splitlines():
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if end > lo and start < hi:
            out.append(line)
    return out


def mmap(host: HostBackend, pid: int, addr: int, length: int, prot: int = RW,
         flags: int = PRIVATE_ANON, fd: int = -1, off: int = 0) -> int:
    """mmap in `pid`, MAP_FIXED added when addr is given (as the reference experiments' mm())."""
    return host.syscall(pid, "mmap", (addr, length, prot, flags | (FIXED if addr else 0), fd, off))
