"""fork and exec in a memory cgroup against the running kernel. What a new process charges to the memcg
of the task that forks it (copy_process: the task_struct, a 16 KiB kernel stack, cred, files, fs, sighand,
signal, pid, the child's mm_struct and rss_stat, its PGD and the page tables, VMAs and anon_vma
chains dup_mmap copies; vmlab.kernel.fork).

The program is tests/progs/forker.c: no libc, raw syscalls, so its address space is the exec's and
what it touched before it first waits (read from /proc/PID/pagemap and replayed in the model as its
startup accesses). Each command byte it reads lands in its bss (a fault the first time, then a COW
fault after each fork), each 'f' forks a child that pauses for ever and each 'd' dups its stdin (past
64 descriptors, a descriptor table: vmlab.kernel.file). The host's forker runs on CPU 0 in a v1
memcg; the model's, the same ELF, in a memcg of the same limit. Compared exactly: the memcg's usage,
kmem and memsw after the commands, less before (COMMANDS; before the model had the task objects,
their stacks and the mm_structs, its kmem was 8 and 76 pages after 1 and 10 forks, against 15 and
145).

An exec charges the exec'ing task's memcg for the new image (exec_phases: the stepper exec'ing
itself, as the differential tests' programs do), and frees the old one's charges.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from memcgkit import (
    Counters,
    drain_cpu_batches,
    drained_host_counters,
    drained_model_counters,
    phases_on_both,
    settled_host_counters,
)
from vmlab.backend import Program, Settings
from vmlab.host.oracle import HostBackend
from vmlab.host.procfs import read_pagemap
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.fork import THREAD_SIZE_PAGES
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.swap import lru_add_drain
from vmlab.kernel.uapi import ADDR_NO_RANDOMIZE, PAGE_SIZE

from hostkit import Memcgs

pytestmark = pytest.mark.host

SOURCE = Path(__file__).parent / "progs" / "forker.c"
LIMIT = 256 << 20
#: Mappings whose pages the program does not fault itself (the kernel's special mappings).
SPECIAL = ("[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]")


@pytest.fixture(scope="module")
def forker(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/progs/forker.c built static, without libc, at its link address."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc: cannot build the forker")
    out = tmp_path_factory.mktemp("forker") / "forker"
    subprocess.run([gcc, "-O2", "-static", "-nostdlib", "-fno-pie", "-no-pie", "-o", str(out), str(SOURCE)],
                   check=True, capture_output=True)
    return str(out)


def _command_byte(path: str) -> int:
    """The address of the forker's `cmd`, the bss byte each read() of a command writes."""
    with open(path, "rb") as f:
        symbols = ELFFile(f).get_section_by_name(".symtab")
        return next(sym.entry.st_value for sym in symbols.iter_symbols() if sym.name == "cmd")


def _resident(pid: int) -> tuple[tuple[int, int, bool], ...]:
    """The pages `pid` has present, as accesses (address, one page, a write where the page is private
    anonymous), the kernel's special mappings left out."""
    accesses: list[tuple[int, int, bool]] = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if fields[-1] in SPECIAL:
                continue
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            entries = read_pagemap(pid, lo, hi)
            assert entries is not None, f"pid {pid} is gone"
            accesses += [(lo + i * PAGE_SIZE, PAGE_SIZE, not entry.file)
                         for i, entry in enumerate(entries) if entry.present]
    return tuple(accesses)


def _no_aslr_on_cpu0() -> None:
    """In the forked child before exec: ASLR off (the model's layout), CPU 0 only, and the soft
    RLIMIT_NOFILE the model has (1024)."""
    ctypes.CDLL(None).personality(ADDR_NO_RANDOMIZE)
    os.sched_setaffinity(0, {0})
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def on_host(path: str, cg: Path, commands: bytes) -> tuple[Counters, tuple[tuple[int, int, bool], ...]]:
    """The forker started (ASLR off, CPU 0), moved into `cg` once it waits for its first command, then
    given `commands`: the memcg's counters after them less before (stocks drained, RCU-freed objects
    freed), and the pages it had present when it moved. Every process in `cg` is killed afterwards."""
    proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={},
                            preexec_fn=_no_aslr_on_cpu0)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.read(1) == b"r"
        startup = _resident(proc.pid)
        (cg / "cgroup.procs").write_text(str(proc.pid))
        before = drained_host_counters(cg)
        for command in commands:
            proc.stdin.write(bytes([command]))
            proc.stdin.flush()
            assert proc.stdout.read(1) == b"o"
        settled_host_counters(cg)
        return drained_host_counters(cg) - before, startup
    finally:
        proc.kill()
        for pid in (cg / "cgroup.procs").read_text().split():
            os.kill(int(pid), 9)
        proc.wait()
        time.sleep(0.1)


def on_model(path: str, startup: tuple[tuple[int, int, bool], ...], commands: bytes) -> Counters:
    """The same in the model: the forker exec'd with the host's present pages as its startup, moved into
    a memcg, then each command's bss write and fork or dup; the counters after less before. The
    children and the forker then exit, and every charge must go with them."""
    model = ModelBackend(LIMIT)
    pid = model.start(Program(path, (path,), (), startup=startup), Settings(ram=LIMIT))
    assert model.memcg_create("/forker", LIMIT) == 0 and model.memcg_attach(pid, "/forker") == 0
    memcg = model.memcgs.lookup("/forker")
    assert memcg is not None
    before = drained_model_counters(model, memcg)
    cmd = _command_byte(path)
    children = []
    for command in commands:
        assert model.access(pid, cmd, 1, True) is None  # read() of the command
        if command == ord("f"):
            children.append(model.fork(pid))
        else:
            assert model.syscall(pid, "dup", (0,)) > 0
    assert min(children, default=1) > 0 and memcg.kernel_stack == len(children) * THREAD_SIZE_PAGES
    after = drained_model_counters(model, memcg)
    check_machine(model)
    for child in children:
        model.exit(child)
    model.exit(pid)
    lru_add_drain(model.mem)  # pages the exits unmapped may wait in the CPU's lru_add batch
    assert drained_model_counters(model, memcg) == Counters(0, 0, 0) and memcg.kernel_stack == 0
    check_machine(model)
    return after - before


#: Command strings: forks; dups to descriptor 902 (tables of 128, 256, 512 then 1024 descriptors, each
#: replacing the one before: the last one's 8 KiB pointer array shows); those dups and a fork (the
#: child's table sized by the parent's highest open descriptor: 1024 again); 200 dups and a fork (256).
COMMANDS = {"fork": b"f", "10 forks": b"f" * 10, "900 dups": b"d" * 900, "900 dups, fork": b"d" * 900 + b"f",
            "200 dups, fork": b"d" * 200 + b"f"}


@pytest.mark.parametrize("case", COMMANDS)
def test_fork_charges_the_kernels_pages(forker: str, memcgs: Memcgs, case: str) -> None:
    """usage, kmem and memsw after the commands, less before: the kernel's, page for page (measured:
    16, 15, 16 after a fork; 155, 145, 155 after 10; 4, 3, 4 after 900 dups; 20, 19, 20 with a fork
    after them; 17, 16, 17 after 200 dups and a fork)."""
    commands = COMMANDS[case]
    kernel, startup = on_host(forker, memcgs.make("forker", str(LIMIT)), commands)
    model = on_model(forker, startup, commands)
    print(f"{case}: kernel {kernel}, model {model}")
    assert kernel.kmem > commands.count(b"f") * THREAD_SIZE_PAGES  # stacks and more
    assert model == kernel


def exec_phases(backend: HostBackend | ModelBackend, pid: int, program: Program,
                counters: Callable[[], Counters]) -> list[Counters]:
    """The counters before, after the stepper exec'd itself once and after a second time; in the model,
    each exec followed by the accesses the new image makes before it answers (its startup). Before
    each reading, madvise(MADV_WILLNEED) of the top stack page runs lru_add_drain() on the stepper's
    CPU: the old image's last pages may still be referenced by that CPU's lru_add batch, which frees
    and uncharges them only when it drains (seen: 4 or 9 pages more usage, now and then)."""
    out = [counters()]
    for _ in range(2):
        assert backend.syscall(pid, "execve", (program.path, program.argv, program.envp)) == 0
        if isinstance(backend, ModelBackend):
            for addr, length, write in program.startup:
                assert backend.access(pid, addr, length, write) is None
        drain_cpu_batches(backend, pid)
        out.append(counters())
    return out


def test_exec_charges_the_kernels_pages(program: Program, memcgs: Memcgs) -> None:
    """execve of the stepper by itself in a memcg: the new image's struct file, mm_struct, PGD,
    rss_stat, cred, VMAs, anon_vmas, page tables and the pages the exec and the image's warm-up
    write are charged to it, and a second exec gives the first image's back (measured: usage 18,
    kmem 9 after either; the model's kmem was 8 before it charged the exec's struct file and cred)."""
    cg = memcgs.make("exec", str(LIMIT))
    kernel, model = phases_on_both(program, cg, lambda b, pid, read: exec_phases(b, pid, program, read),
                                   settle=True, model_program=program)
    print(f"kernel {kernel}\nmodel  {model}")
    assert kernel[1].kmem > 0 and kernel[2] == kernel[1]
    assert model == kernel
