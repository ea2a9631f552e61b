"""The stepper itself: its build, its initial address space (L3, L6, L8-L10) and that it perturbs nothing.

Reference: /work/shared/reference/kernel-6.18-x86_64.md, measured on this machine with
experiments/run_all.sh (the L3 table: `env -i setarch -R ./stack`, `ulimit -s 100`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from hostutil import mmap
from vmlab.backend import Program, Settings
from vmlab.host import procfs
from vmlab.host.oracle import HostBackend
from vmlab.host.stepper_build import StepperBuildError, build_stepper, find_compiler

PG = 4096
STACK_TOP = 0x7FFFFFFFF000


def expected_image_vmas(path: str) -> list[tuple[int, int, str, int]]:
    """(start, end, perms, offset) of the VMAs load_elf_binary makes from the PT_LOADs (L6):
    the file part of each segment, then an anonymous one for a bss beyond its last file page."""
    out = []
    with open(path, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] != "PT_LOAD":
                continue
            flags = seg["p_flags"]
            perms = ("r" if flags & 4 else "-") + ("w" if flags & 2 else "-") + ("x" if flags & 1 else "-")
            start = seg["p_vaddr"] & ~(PG - 1)
            file_end = (seg["p_vaddr"] + seg["p_filesz"] + PG - 1) & ~(PG - 1)
            mem_end = (seg["p_vaddr"] + seg["p_memsz"] + PG - 1) & ~(PG - 1)
            if seg["p_filesz"]:
                out.append((start, file_end, perms + "p", seg["p_offset"] & ~(PG - 1)))
            if mem_end > max(file_end, start) or not seg["p_filesz"]:
                out.append((file_end if seg["p_filesz"] else start, mem_end, perms + "p", -1))
    return out


def stack_pages(program: Program, rlimit: int) -> int:
    """L3: min(A pages + 128 KiB, RLIMIT_STACK) with A the pages the exec strings take."""
    strings = 8 + len(program.path) + 1 + sum(len(s) + 1 for s in program.envp + program.argv)
    a = -(-strings // PG)
    return min(a * PG + (128 << 10), rlimit & ~(PG - 1)) // PG


def test_build_is_cached_and_keyed(tmp_path: Path) -> None:
    first = build_stepper(cache=tmp_path)
    mtime = first.stat().st_mtime_ns
    again = build_stepper(cache=tmp_path)
    assert again == first and again.stat().st_mtime_ns == mtime
    assert first.name.startswith("stepper-") and os.access(first, os.X_OK)
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind


def test_missing_compiler_is_named() -> None:
    with pytest.raises(StepperBuildError, match="no C compiler found"):
        find_compiler({"PATH": "/nonexistent"})
    with pytest.raises(StepperBuildError, match="CC='no-such-cc' was not found"):
        find_compiler({"PATH": os.environ.get("PATH", ""), "CC": "no-such-cc"})


def test_initial_layout(host: HostBackend, program: Program, proc: int) -> None:
    lines = host.view(proc, "maps").splitlines()
    image = expected_image_vmas(program.path)
    dev_ino = os.stat(program.path)
    file_tail = f"{os.major(dev_ino.st_dev):02x}:{os.minor(dev_ino.st_dev):02x} {dev_ino.st_ino}"
    got_image = lines[: len(image)]
    for (start, end, perms, off), line in zip(image, got_image, strict=True):
        fields = line.split()
        assert fields[0] == f"{start:08x}-{end:08x}" and fields[1] == perms
        if off >= 0:
            assert f"{fields[3]} {fields[4]}" == file_tail and fields[5] == program.path
            assert int(fields[2], 16) == off
        else:
            assert fields[2:] == ["00000000", "00:00", "0"]
    assert 4 <= sum(off >= 0 for *_, off in image) <= 6
    # No [heap] (brk never grew), no other mappings: vdso block below mmap_base (L5, L8), stack, vsyscall.
    pages = stack_pages(program, 8 << 20)
    assert lines[len(image):] == [
        "7ffff7ff7000-7ffff7ffb000 r--p 00000000 00:00 0                          [vvar]",
        "7ffff7ffb000-7ffff7ffd000 r--p 00000000 00:00 0                          [vvar_vclock]",
        "7ffff7ffd000-7ffff7fff000 r-xp 00000000 00:00 0                          [vdso]",
        f"{STACK_TOP - pages * PG:x}-{STACK_TOP:x} rw-p 00000000 00:00 0                          [stack]",
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
    ]
    assert pages == 33


@pytest.mark.parametrize(("rlimit", "env_len", "pages"), [
    (8 << 20, 5000, 34),  # L3 table: X=<5000 chars> -> A = 2
    (100 << 10, 0, 25),  # L3 table: ulimit -s 100
])
def test_stack_size_follows_l3(host: HostBackend, program: Program, rlimit: int, env_len: int,
                               pages: int) -> None:
    prog = Program(program.path, program.argv, ("X=" + "a" * env_len,) if env_len else ())
    pid = host.start(prog, Settings(rlimit_stack=rlimit))
    stack = [line for line in host.view(pid, "maps").splitlines() if line.endswith("[stack]")]
    assert stack_pages(prog, rlimit) == pages
    assert stack == [f"{STACK_TOP - pages * PG:x}-{STACK_TOP:x} rw-p 00000000 00:00 0"
                     "                          [stack]"]


def test_no_perturbation(host: HostBackend, proc: int) -> None:
    """After the warm-up, commands cost no faults and change no VMA and no RSS."""
    page = mmap(host, proc, 0, PG)
    assert host.access(proc, page, PG, True) is None
    before = (host.stat(proc), host.view(proc, "maps"), host.view(proc, "smaps"))
    for _ in range(20):
        host.nop(proc)
    for _ in range(5):
        assert host.syscall(proc, "getpid", ()) == proc
        assert host.access(proc, page, PG, True) is None  # present already: no fault
    after = (host.stat(proc), host.view(proc, "maps"), host.view(proc, "smaps"))
    assert before == after


def test_fds_start_at_3_and_strings_pass(host: HostBackend, proc: int, tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_bytes(b"x" * 100)
    assert host.syscall(proc, "openat", (-100, str(f), 0, 0)) == 3
    assert host.syscall(proc, "open", (str(f), 0, 0)) == 4
    assert host.syscall(proc, "openat", (-100, str(tmp_path / "missing"), 0, 0)) == -2  # -ENOENT
    assert host.syscall(proc, "memfd_create", ("vmlab", 0)) == 5
    assert os.readlink(f"/proc/{proc}/fd/5") == "/memfd:vmlab (deleted)"
    assert host.syscall(proc, "close", (4,)) == 0
    assert host.syscall(proc, "dup", (3,)) == 4


def test_execve_restarts_the_image(host: HostBackend, program: Program, proc: int) -> None:
    initial = host.view(proc, "maps")
    mmap(host, proc, 0x10000000, PG)
    assert host.view(proc, "maps") != initial
    assert host.syscall(proc, "execve", (program.path, program.argv, program.envp)) == 0
    assert host.syscall(proc, "getpid", ()) == proc
    assert host.view(proc, "maps") == initial
    assert host.syscall(proc, "execve", ("/nonexistent", ("x",), ())) == -2


def test_bad_requests_are_input_errors(host: HostBackend, proc: int) -> None:
    from vmlab.errors import InputError

    for name, args, msg in [
        ("frobnicate", (), "unknown syscall 'frobnicate'"),
        ("close", (1000,), "fd 1000 is reserved"),
        ("dup2", (0, 1001), "fd 1001 is reserved"),
        ("fork", (), "fork and exit steps"),
        ("mmap", (0, 1.5), "not a 64-bit integer"),
        ("mmap", (0, 1 << 64), "not a 64-bit integer"),
        ("openat", (-100, "x" * 20000), "more than"),
    ]:
        with pytest.raises(InputError, match=msg):
            host.syscall(proc, name, args)
    with pytest.raises(InputError, match="unknown view 'mapz'"):
        host.view(proc, "mapz")
    with pytest.raises(InputError, match="mmap_min_addr 0 differs"):
        host.start(Program("/bin/true", ("/bin/true",)), Settings(mmap_min_addr=0))
    with pytest.raises(ProcessLookupError):
        host.syscall(1, "getpid", ())
    assert host.syscall(proc, "getpid", ()) == proc  # still alive and in step


def test_close_kills_everything_even_on_error(program: Program) -> None:
    pids = []
    with pytest.raises(ZeroDivisionError), HostBackend() as backend:
        pids.append(backend.start(program, Settings()))
        pids.append(backend.fork(pids[0]))
        _ = 1 / 0
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped
        assert procfs.read_text(pid, "maps") is None


def test_unwritable_cache_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StepperBuildError, match="cannot use the cache directory"):
        build_stepper(cache=blocker / "vmlab")


def test_host_backend_matches_the_backend_protocol() -> None:
    """Same methods with the same parameters as vmlab.backend.Backend."""
    import inspect

    from vmlab.backend import Backend

    for name, member in vars(Backend).items():
        if callable(member) and not name.startswith("_"):
            assert list(inspect.signature(getattr(HostBackend, name)).parameters) == list(
                inspect.signature(member).parameters), name
    assert HostBackend.name == "host"
