"""Page flags as /proc/kpageflags shows them, on this host's kernel and on the model, for the tests
that compare them page by page (test_host_mlock, test_host_lru_add): each page of a range read back
through /proc/PID/pagemap and written as four letters, M/m PG_mlocked, U/u PG_unevictable, L/l PG_lru,
A/a PG_active (`-` not present), runs compressed; and a workload run by a stepper pinned to CPU 0
(the per-CPU folio batches are CPU 0's) and by the model, whose lines must be equal."""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import groupby

from vmlab.backend import Backend, Program, Settings
from vmlab.host.oracle import HostBackend
from vmlab.host.procfs import PM_PFN_MASK, PM_PRESENT
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.page_flags import KPF

from hostkit import on_cpu
from interference import until_settled

PG = 4096


#: The page flags letters() shows, upper case when set.
FLAG_LETTERS = (("M", KPF.MLOCKED), ("U", KPF.UNEVICTABLE), ("L", KPF.LRU), ("A", KPF.ACTIVE))


def page_flags(backend: Backend, entry: int) -> str:
    """One pagemap entry as mlock/unevictable/LRU/active letters (its frame's kpageflags), `-` when
    not present."""
    if not entry & PM_PRESENT:
        return "-"
    f = backend.kpageflags(entry & PM_PFN_MASK)
    return "".join(c if f >> bit & 1 else c.lower() for c, bit in FLAG_LETTERS)


def letters(backend: Backend, pid: int, addr: int, pages: int) -> str:
    """The pages of [addr, addr + pages) as page_flags() letters, each run written `LETTERSxN`."""
    each = (page_flags(backend, e) for e in backend.pagemap(pid, addr, addr + pages * PG))
    return " ".join(f"{flags}x{len(list(run))}" for flags, run in groupby(each))


Work = Callable[[Backend, int], list[str]]


def run_on(make: Callable[[], Backend], program: Program, work: Work, pin: bool) -> list[str]:
    """`work` by a new process of `program` on a backend (pinned to CPU 0 when `pin`); the model's
    invariants checked after it."""
    backend = make()
    try:
        pid = backend.start(program, Settings())
        if pin:
            os.sched_setaffinity(pid, {0})
        seen = work(backend, pid)
        if isinstance(backend, ModelBackend):
            check_machine(backend)
        return seen
    finally:
        backend.close()


def kernel_and_model(program: Program, work: Work, before: Callable[[], None] = lambda: None) -> None:
    """`work` in the model, then on the kernel from CPU 1 with the stepper on CPU 0 (`before` ahead of
    each run): every line equal. The batch is CPU 0's, and any task there that drains its batches (an
    munmap does) between a step and its reading moves the waiting folios early, so a kernel run that
    differs is run again (3 tries)."""
    before()
    model = run_on(lambda: ModelBackend(256 << 20), program, work, False)

    def host() -> list[str]:
        before()
        return run_on(lambda: HostBackend(timeout=60), program, work, True)

    with on_cpu(min(1, (os.cpu_count() or 1) - 1)):
        kernel = until_settled(host, lambda seen: seen == model, "; ".join, tries=3, pause=0.5)
    print("\n".join(f"kernel {k}\nmodel  {m}" for k, m in zip(kernel, model, strict=True)))
    assert model == kernel


def cold_file(path: str, pages: int) -> Callable[[], None]:
    """A file of `pages` random pages written and synced at `path`; what takes it out of the page
    cache before each run (POSIX_FADV_DONTNEED: clean, so every page leaves)."""
    with open(path, "wb") as f:
        f.write(os.urandom(pages * PG))
        os.fsync(f.fileno())

    def out_of_cache() -> None:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)

    return out_of_cache
