"""struct file (and a pseudo file's inode and dentry) charged to the memcg, on this host's kernel and
on the model.

filp is SLAB_ACCOUNT: each open() charges its struct file (192 bytes and the obj_cgroup pointer:
FILP_SIZE) to the task's memcg through the per-CPU object stock, a page at a time, and the last
fput() gives the bytes back to that stock, which uncharges whole pages once it holds more than one.
A stepper pinned to CPU 0 in a v1 memcg the test makes (the `memcgs` fixture removes it) opens one
file OPENS times, then closes most of the descriptors, then the rest; after each phase the counters
(every stock drained) are compared with the model's running the same steps. The file exists and is
cached beforehand, so no dentry, inode or page-cache node is allocated: struct file is the only
object charged (no mapping is made).

A memfd_create() or a MAP_SHARED|MAP_ANONYMOUS mmap makes a shmem pseudo file: its inode (760 bytes
charged), dentry (200) and struct file, and for the mapping its VMA first (200); close() or munmap()
frees them (the inode after an RCU grace period: the counters are read once settled). Measured, the
pages charged by 20 and 41 of them: 6 and 12 (memfd), 7 and 14 (mappings) on both; 41 memfds would
take 13 if a 40-byte LSM blob of the inode were charged too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from memcgkit import (
    Counters,
    phases_on_both,
)
from vmlab.backend import Program
from vmlab.host.oracle import HostBackend
from vmlab.kernel.machine import ModelBackend

from hostkit import Memcgs

pytestmark = pytest.mark.host

AT_FDCWD, O_RDONLY = -100, 0
#: 60 files of 200 bytes: 12,000 bytes, three slab pages.
OPENS = 60
#: Closed first: the bytes of 45 files back in the stock, which uncharges two pages of them.
FIRST_CLOSES = 45


def phases(backend: HostBackend | ModelBackend, pid: int, path: str,
           counters: Callable[[], Counters]) -> list[Counters]:
    """The counters before, after the opens, after the first closes and after the last ones."""
    out = [counters()]
    fds = [backend.syscall(pid, "openat", (AT_FDCWD, path, O_RDONLY, 0)) for _ in range(OPENS)]
    assert min(fds) >= 0
    out.append(counters())
    for fd in fds[:FIRST_CLOSES]:
        assert backend.syscall(pid, "close", (fd,)) == 0
    out.append(counters())
    for fd in fds[FIRST_CLOSES:]:
        assert backend.syscall(pid, "close", (fd,)) == 0
    out.append(counters())
    return out


def test_opens_and_closes_charge_the_kernels_pages(program: Program, memcgs: Memcgs,
                                                   files: list[str]) -> None:
    """kmem and usage after each phase, less their values before, are the kernel's."""
    path = f"/tmp/vmlab-filp-{os.getpid()}.dat"
    files.append(path)
    Path(path).write_bytes(b"x" * 4096)
    os.stat(path)  # the dentry and inode exist before the stepper looks the path up
    cg = memcgs.make("filp", "64M")
    kernel_d, model_d = phases_on_both(program, cg, lambda b, pid, counters: phases(b, pid, path, counters))
    print(f"kernel {kernel_d}\nmodel  {model_d}")
    assert model_d[1].kmem == 3 and model_d[3].kmem <= 1  # what the phases are for
    assert kernel_d == model_d


def pseudo_files(backend: HostBackend | ModelBackend, pid: int, n: int,
                 counters: Callable[[], Counters]) -> list[Counters]:
    """The counters before, after `n` memfd_create(), after closing them, after `n` one-page shared
    anonymous mappings and after unmapping them."""
    out = [counters()]
    fds = [backend.syscall(pid, "memfd_create", ("vmlab", 0)) for _ in range(n)]
    assert min(fds) >= 0
    out.append(counters())
    for fd in fds:
        assert backend.syscall(pid, "close", (fd,)) == 0
    out.append(counters())
    addrs = [backend.syscall(pid, "mmap", (0, 4096, PROT_RW, MAP_SHARED_ANON, -1, 0)) for _ in range(n)]
    assert min(addrs) > 0
    out.append(counters())
    for addr in addrs:
        assert backend.syscall(pid, "munmap", (addr, 4096)) == 0
    out.append(counters())
    return out


PROT_RW, MAP_SHARED_ANON = 3, 0x21


@pytest.mark.parametrize("n", [20, 41])
def test_pseudo_files_charge_the_kernels_pages(program: Program, memcgs: Memcgs, n: int) -> None:
    """kmem and usage after each phase, less their values before, are the kernel's."""
    cg = memcgs.make("pseudo", "64M")
    kernel_d, model_d = phases_on_both(
        program, cg, lambda b, pid, counters: pseudo_files(b, pid, n, counters), settle=True)
    print(f"kernel {kernel_d}\nmodel  {model_d}")
    assert model_d[1].kmem > 0 and model_d[3].kmem > model_d[1].kmem and model_d[4].kmem == 0
    assert kernel_d == model_d
