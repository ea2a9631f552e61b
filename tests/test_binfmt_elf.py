"""execve in the model (vmlab.kernel.binfmt_elf) against the running kernel.

The host is the judge and is asked at test time, never from copied constants:
- programs are exec'd for real with ASLR off under PTRACE_TRACEME; at the exec SIGTRAP stop (the moment
  load_elf_binary has returned, before ld.so or the program runs) /proc/PID/maps, smaps, stat and status
  are read (vmlab.host.exec_stop) and compared with the model's views byte for byte;
- the static test program tests/progs/dumpself.c, which prints /proc/self/maps from its entry point
  with raw syscalls, is also compared untraced: with no libc and no ld.so, what it prints is the
  kernel's layout. For the PIE with an interpreter the self-printed maps are NOT comparable (ld.so has
  already mprotected RELRO and mapped its own pages), so only the exec stop is used for it.
"""

from __future__ import annotations

import errno
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vmlab.backend import Program, Settings
from vmlab.host.exec_stop import STAT_FIELDS, ExecFailed, ExecSnapshot, run_to_exit, snapshot_at_exec, spawn
from vmlab.host.procfs import status_kb_lines
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM, ELF_ET_DYN_BASE
from vmlab.kernel.exec import exec_mm
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.mm_types import MmStruct
from vmlab.kernel.mmap import VmSysctl, sys_brk
from vmlab.kernel.task_mmu import show_maps, show_smaps
from vmlab.kernel.uapi import PAGE_SIZE

PROGS = Path(__file__).parent / "progs"
LD_SO = "/lib64/ld-linux-x86-64.so.2"
SYSCTL = VmSysctl()
MiB = 1 << 20
#: RAM of the model machines that exec the programs for their resident pages.
MODEL_RAM = 64 * MiB

ON_LINUX_X86_64 = sys.platform == "linux" and platform.machine() == "x86_64"
host = pytest.mark.skipif(not ON_LINUX_X86_64, reason="needs the running Linux x86_64 kernel as oracle")


def _model(path: str, argv: list[str], envp: list[str], rlimit: int | None, legacy: bool = False) -> MmStruct:
    mm = exec_mm(path, argv, envp, rlimit, legacy, SYSCTL)
    assert not isinstance(mm, int), f"model execve({path}) failed: {errno.errorcode.get(-mm, mm)}"
    return mm


# --- the test programs, built once per session --------------------------------------------------------------

_ALIGN_2M = "-Wl,-z,max-page-size=0x200000"
#: name -> gcc flags: the same source as the three ELF kinds, with 2 MiB segment alignment (p_align
#: decides where ET_DYN images go), with an executable stack (PT_GNU_STACK PF_X) and with a big bss.
BUILDS = {
    "exec": ["-static", "-nostdlib", "-fno-pie", "-no-pie"],
    "static-pie": ["-static-pie", "-nostdlib", "-fpie"],
    "pie": ["-nostdlib", "-fpie", "-pie", f"-Wl,-dynamic-linker,{LD_SO}"],
    "exec-2M": ["-static", "-nostdlib", "-fno-pie", "-no-pie", _ALIGN_2M],
    "static-pie-2M": ["-static-pie", "-nostdlib", "-fpie", _ALIGN_2M],
    "pie-2M": ["-nostdlib", "-fpie", "-pie", _ALIGN_2M, f"-Wl,-dynamic-linker,{LD_SO}"],
    "exec-execstack": ["-static", "-nostdlib", "-fno-pie", "-no-pie", "-Wl,-z,execstack"],
    # A 5 MiB bss makes the image >= 2 MiB: a static PIE's image is then placed by the THP-aligning
    # search of its ext4 file (2 MiB aligned), a PIE's bss ends far above its file pages.
    "static-pie-bigbss": ["-static-pie", "-nostdlib", "-fpie", "-DBSS_SIZE=0x500000"],
    "pie-bigbss": ["-nostdlib", "-fpie", "-pie", "-DBSS_SIZE=0x500000", f"-Wl,-dynamic-linker,{LD_SO}"],
}


def _gcc(src: Path, out: Path, flags: list[str]) -> None:
    subprocess.run(["gcc", "-O2", *flags, "-o", str(out), str(src)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def progs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """dumpself built three ways; each must run and print maps (so the build really works here)."""
    if not ON_LINUX_X86_64:
        pytest.skip("needs Linux x86_64")
    if shutil.which("gcc") is None:
        pytest.skip("no gcc: cannot build the test programs")
    out = tmp_path_factory.mktemp("progs")
    built = {}
    for name, flags in BUILDS.items():
        binary = out / f"dumpself-{name}"
        _gcc(PROGS / "dumpself.c", binary, flags)
        run = subprocess.run([str(binary)], capture_output=True, check=False)
        assert run.returncode == 0 and b"[stack]" in run.stdout, f"{name} build does not run: {run}"
        built[name] = str(binary)
    return built


@pytest.fixture(scope="session")
def snapshot() -> Callable[..., ExecSnapshot]:
    """vmlab.host.exec_stop.snapshot_at_exec, skipping where ptrace is not allowed."""
    try:
        snapshot_at_exec("/bin/true", ["/bin/true"], [], 8 * MiB)
    except (ExecFailed, OSError) as e:
        pytest.skip(f"cannot stop a child at exec with ptrace here: {e}")
    return snapshot_at_exec


_SMAPS_KEPT = re.compile(r"^([0-9a-f]+-[0-9a-f]+ |Size:|KernelPageSize:|MMUPageSize:|VmFlags:)")


def smaps_subset(text: str) -> str:
    """The smaps lines the model renders: VMA headers, Size, KernelPageSize, MMUPageSize, VmFlags."""
    return "".join(line for line in text.splitlines(keepends=True) if _SMAPS_KEPT.match(line))


def mm_fields(mm: MmStruct) -> dict[str, int]:
    """The model's values of the mm fields /proc/PID/stat shows."""
    return {name: getattr(mm, name) for name in STAT_FIELDS}


# --- at the exec stop: every view equal ------------------------------------------------------------------

def _env(*sizes: int) -> list[str]:
    return [f"X{i}=" + "x" * n for i, n in enumerate(sizes)]


#: (rlimit_stack, legacy, envp, extra argv) combinations every program is exec'd with.
SETTINGS = {
    "default": (8 * MiB, False, [], []),
    "legacy": (8 * MiB, True, [], []),
    "unlimited": (None, False, ["A=1"], ["x"]),
    "rlimit-128M": (131072 << 10, False, [], []),
    "rlimit-100K": (100 << 10, False, ["HOME=/"], []),
    "env-5000": (8 * MiB, False, _env(5000), ["a", "bb"]),
}


def _check_at_exec(snapshot: Callable[..., ExecSnapshot], path: str, argv: list[str], envp: list[str],
                   rlimit: int | None, legacy: bool) -> None:
    """The layout (exec_mm alone: maps, the smaps lines of layout, the mm fields, VmPeak, VmSize and
    VmStk), then the same exec as a model machine's first process: its whole smaps, the kB lines
    of its status, its cmdline and comm, resident pages included (what the exec itself wrote: the
    strings' and tables' stack pages, the zeroed tail of each segment's last file page; their page
    tables in VmPTE)."""
    real = snapshot(path, argv, envp, rlimit, legacy)
    mm = _model(path, argv, envp, rlimit, legacy)
    assert show_maps(mm) == real.maps
    assert show_smaps(mm) == smaps_subset(real.smaps)
    assert {k: hex(v) for k, v in mm_fields(mm).items()} == {
        k: hex(v) for k, v in real.mm_fields.items()}
    vm_kb = {"VmPeak": max(mm.hiwater_vm, mm.total_vm), "VmSize": mm.total_vm, "VmStk": mm.stack_vm}
    assert {k: v * (PAGE_SIZE >> 10) for k, v in vm_kb.items()} == {k: real.status_kb[k] for k in vm_kb}
    machine = ModelBackend(MODEL_RAM)
    try:
        pid = machine.start(Program(path, tuple(argv), tuple(envp)),
                            Settings(rlimit_stack=rlimit, legacy_va_layout=legacy, ram=MODEL_RAM))
        assert machine.view(pid, "smaps") == real.smaps
        status = status_kb_lines(machine.view(pid, "status"))
        assert (machine.tasks[pid].cmdline, machine.tasks[pid].comm) == (real.cmdline, real.comm)
    finally:
        machine.close()
    assert {"VmSize", "VmStk", "VmRSS", "RssAnon", "RssFile", "VmPTE"} <= status.keys()
    assert status == {name: real.status_kb[name] for name in status}


@host
@pytest.mark.host
@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("kind", BUILDS)
def test_test_programs_at_exec(progs: dict[str, str], snapshot: Callable[..., ExecSnapshot], kind: str,
                               setting: str) -> None:
    """ET_EXEC, static PIE and PIE-with-interpreter builds of dumpself: maps, smaps, mm fields, VmSize."""
    rlimit, legacy, envp, extra = SETTINGS[setting]
    path = progs[kind]
    _check_at_exec(snapshot, path, [path, *extra], envp, rlimit, legacy)


SYSTEM_PROGRAMS = ["/bin/cat", "/usr/bin/python3", "/bin/dd", "/bin/ls", "/bin/sh", LD_SO]


@host
@pytest.mark.host
@pytest.mark.parametrize("setting", ["default", "legacy", "unlimited", "rlimit-100K"])
@pytest.mark.parametrize("path", SYSTEM_PROGRAMS)
def test_system_programs_at_exec(snapshot: Callable[..., ExecSnapshot], path: str, setting: str) -> None:
    """Dynamic PIEs (cat, dd, ls, sh), a dynamic ET_EXEC (python3 here) and ld.so run directly."""
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not on this host")
    rlimit, legacy, envp, extra = SETTINGS[setting]
    _check_at_exec(snapshot, path, [path, *extra], envp, rlimit, legacy)


# --- #! scripts (fs/binfmt_script.c): the interpreter's address space, the script's argv ------------------

def _script(path: Path, line: bytes) -> str:
    """An executable file of the bytes `line`."""
    path.write_bytes(line)
    path.chmod(0o755)
    return str(path)


def _chain(directory: Path, name: str, depth: int, last: str) -> str:
    """`depth` scripts, each the interpreter of the next, the first interpreted by `last`; the outermost."""
    for i in range(depth):
        last = _script(directory / f"{name}{i}", f"#!{last}\n".encode())
    return last


@pytest.fixture(scope="session")
def scripts(tmp_path_factory: pytest.TempPathFactory, progs: dict[str, str]) -> dict[str, str]:
    """Scripts whose interpreters are system programs, the test programs, other scripts."""
    d = tmp_path_factory.mktemp("scripts")
    made = {
        "sh-with-arg": _script(d / "sh-with-arg", b"#!/bin/sh -x\n"),
        "blanks-and-arg": _script(d / "blanks", f"#! \t{progs['exec']}  one  two \t\n".encode()),
        "no-newline": _script(d / "no-newline", f"#!{progs['static-pie']}".encode()),
        "nul-ends-name": _script(d / "nul", b"#!/bin/sh\0 -x\n"),
        "pie-interp": _script(d / "pie", f"#!{progs['pie']} arg\n".encode()),
    }
    made["nested"] = _script(d / "nested", f"#!{made['sh-with-arg']} -y\n".encode())
    made["five-deep"] = _chain(d, "deep", 5, "/bin/sh")
    if os.access("/usr/bin/env", os.X_OK):
        made["env"] = _script(d / "env", b"#!/usr/bin/env python3\n")
    return made


SCRIPT_CASES = ["sh-with-arg", "blanks-and-arg", "no-newline", "nul-ends-name", "pie-interp", "nested",
                "five-deep", "env"]
#: argv the script is run with: its path and two words; none at all (the kernel puts "" there); an
#: argv[0] of 5,000 bytes, so that removing it reads two stack pages.
SCRIPT_ARGVS = {"plain": lambda p: [p, "a", "bb"], "empty": lambda p: [],
                "long-argv0": lambda p: ["x" * 5000, "a"]}


@host
@pytest.mark.host
@pytest.mark.parametrize("setting", ["default", "env-5000", "rlimit-100K"])
@pytest.mark.parametrize("argv", SCRIPT_ARGVS)
@pytest.mark.parametrize("case", SCRIPT_CASES)
def test_scripts_at_exec(scripts: dict[str, str], snapshot: Callable[..., ExecSnapshot], case: str, argv: str,
                         setting: str) -> None:
    """A script's exec: the interpreter's address space, the argv it gets (/proc/PID/cmdline:
    `interpreter [arg] script args...`), the script's comm, every view of _check_at_exec."""
    if case not in scripts:
        pytest.skip(f"{case}: its interpreter is not on this host")
    rlimit, legacy, envp, extra = SETTINGS[setting]
    path = scripts[case]
    _check_at_exec(snapshot, path, [*SCRIPT_ARGVS[argv](path), *extra], envp, rlimit, legacy)


# --- the stack (L3): strings size it, RLIMIT_STACK caps it ------------------------------------------------

STACK_CASES = {
    "env-i": ([], [], 8 * MiB),
    "env-3000": (_env(3000), [], 8 * MiB),
    "env-5000": (_env(5000), [], 8 * MiB),
    "env-9000": (_env(9000), [], 8 * MiB),
    "many-args": ([], ["/proc/self/maps", *(f"arg{i}" for i in range(2000))], 8 * MiB),
    "page-edge": (_env(4096 - 8 - 200), [], 8 * MiB),
    "ulimit-100K": ([], [], 100 << 10),
    "ulimit-1K": ([], [], 1 << 10),
    "ulimit-4K": ([], [], 4 << 10),
    "ulimit-8K-env-3900": (_env(3900), [], 8 << 10),
    "ulimit-100K-env-9000": (_env(9000), [], 100 << 10),
    "ulimit-16K-env-9000": (_env(9000), [], 16 << 10),
    "ulimit-200000K": ([], [], 200000 << 10),
    "unlimited": ([], [], None),
}


@host
@pytest.mark.host
@pytest.mark.parametrize("case", STACK_CASES)
def test_static_program_prints_model_maps(progs: dict[str, str], case: str) -> None:
    """Untraced: what the static non-PIE program prints from _start is the model's maps, byte for byte."""
    envp, extra, rlimit = STACK_CASES[case]
    path = progs["exec"]
    status, out = run_to_exit(path, [path, *extra], envp, rlimit)
    assert status == 0
    assert show_maps(_model(path, [path, *extra], envp, rlimit)) == out.decode()



@host
@pytest.mark.host
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(env_sizes=st.lists(st.integers(0, 9000), max_size=6),
       arg_sizes=st.lists(st.integers(0, 3000), max_size=6),
       rlimit_kb=st.sampled_from([1, 4, 8, 12, 16, 64, 132, 136, 1024, 8192, None]),
       name_pad=st.integers(0, 40))
def test_stack_layout_property(progs: dict[str, str], snapshot: Callable[..., ExecSnapshot],
                               tmp_path_factory: pytest.TempPathFactory, env_sizes: list[int],
                               arg_sizes: list[int], rlimit_kb: int | None, name_pad: int) -> None:
    """Any argv/envp sizes, exec path length and stack limit: execve fails alike (E2BIG before the point
    of no return; SIGSEGV after it, when the tables do not fit under RLIMIT_STACK, where the model
    returns -EFAULT), or succeeds with equal maps and arg/env/stack fields."""
    path = progs["exec"]
    if name_pad:  # a longer exec filename (the AT_EXECFN string) through a symlink
        link = tmp_path_factory.getbasetemp() / ("l" * name_pad)
        if not link.exists():
            link.symlink_to(path)
        path = str(link)
    argv = [path, *("a" * n for n in arg_sizes)]
    envp = [f"E{i}=" + "e" * n for i, n in enumerate(env_sizes)]
    rlimit = None if rlimit_kb is None else rlimit_kb << 10
    mm = exec_mm(path, argv, envp, rlimit, False, SYSCTL)
    try:
        real = snapshot(path, argv, envp, rlimit)
    except ExecFailed as e:
        event(f"execve failed: {errno.errorcode.get(e.errno, 'killed')}")
        if e.errno:
            assert mm == -e.errno
        else:
            assert os.WIFSTOPPED(e.status) and os.WSTOPSIG(e.status) == signal.SIGSEGV
            assert mm == -errno.EFAULT
        return
    event("execve succeeded")
    assert not isinstance(mm, int)
    assert show_maps(mm) == real.maps
    assert mm_fields(mm) == real.mm_fields


@host
@pytest.mark.host
def test_tables_that_do_not_fit_kill_like_the_kernel(progs: dict[str, str],
                                                    snapshot: Callable[..., ExecSnapshot]) -> None:
    """RLIMIT_STACK = 1 page: the strings fit, but create_elf_tables() must grow the stack for auxv and
    the pointers; past the limit the kernel kills the process (SIGSEGV after the point of no return) and
    the model returns -EFAULT. Walk the env size across that edge in 8-byte steps."""
    path = progs["exec"]
    outcomes = set()
    for n in range(3400, 3800, 8):
        envp = ["E=" + "e" * n]
        mm = exec_mm(path, [path], envp, PAGE_SIZE, False, SYSCTL)
        try:
            real = snapshot(path, [path], envp, PAGE_SIZE)
        except ExecFailed as e:
            assert e.errno == 0 and os.WIFSTOPPED(e.status) and os.WSTOPSIG(e.status) == signal.SIGSEGV
            assert mm == -errno.EFAULT, n
            outcomes.add("killed")
            continue
        assert not isinstance(mm, int), n
        assert show_maps(mm) == real.maps
        outcomes.add("ok")
    assert outcomes == {"ok", "killed"}


@host
@pytest.mark.host
@pytest.mark.parametrize("legacy", [False, True], ids=["topdown", "legacy"])
@pytest.mark.parametrize("kind", ["exec", "static-pie"])
def test_static_programs_print_model_smaps(progs: dict[str, str], kind: str, legacy: bool) -> None:
    """Untraced smaps from _start (static PIE too: no ld.so runs) agree on headers, sizes and VmFlags."""
    path = progs[kind]
    argv = [path, "/proc/self/smaps"]
    status, out = run_to_exit(path, argv, [], 8 * MiB, legacy)
    assert status == 0
    assert show_smaps(_model(path, argv, [], 8 * MiB, legacy)) == smaps_subset(out.decode())


# --- errors: the same errno as the real execve ---------------------------------------------------------

@pytest.fixture
def bad_files(tmp_path: Path, progs: dict[str, str]) -> Iterator[dict[str, str]]:
    """Files execve must refuse, one per errno."""
    text = tmp_path / "text"
    text.write_text("just text, no #! line\n")
    text.chmod(0o755)
    noexec = tmp_path / "noexec"
    shutil.copy(progs["exec"], noexec)
    noexec.chmod(0o644)
    interps = {}
    for name, content in (("short", "not ELF\n"), ("long", "not an ELF interpreter, but long enough\n" * 4)):
        fake_ld = tmp_path / f"fake-ld-{name}.so"
        fake_ld.write_text(content)
        fake_ld.chmod(0o755)
        interps[name] = tmp_path / f"interp-{name}"
        _gcc(PROGS / "dumpself.c", interps[name], [*BUILDS["pie"][:-1], f"-Wl,-dynamic-linker,{fake_ld}"])
    missing_interp = tmp_path / "missing-interp"
    _gcc(PROGS / "dumpself.c", missing_interp,
         [*BUILDS["pie"][:-1], f"-Wl,-dynamic-linker,{tmp_path / 'no-such-ld.so'}"])
    self_script = tmp_path / "self-script"
    _script(self_script, f"#!{self_script}\n".encode())
    yield {
        "missing": str(tmp_path / "no-such-file"),
        "directory": str(tmp_path),
        "not-executable": str(noexec),
        "not-elf": str(text),
        "interp-short": str(interps["short"]),
        "interp-not-elf": str(interps["long"]),
        "interp-missing": str(missing_interp),
        "script-blank": _script(tmp_path / "blank", b"#!  \t \nexit\n"),
        "script-missing": _script(tmp_path / "missing-sh", b"#!/no/such/interpreter\n"),
        "script-text": _script(tmp_path / "text-sh", f"#!{text}\n".encode()),
        "script-noexec": _script(tmp_path / "noexec-sh", f"#!{noexec} -a\n".encode()),
        "script-six-deep": _chain(tmp_path, "deep", 6, "/bin/sh"),
        "script-self": str(self_script),
        "script-cut": _script(tmp_path / "cut", b"#!" + b"/a" * 200),
    }


ERROR_CASES = {
    "missing": ("missing", [], 8 * MiB, errno.ENOENT),
    "directory": ("directory", [], 8 * MiB, errno.EACCES),
    "not-executable": ("not-executable", [], 8 * MiB, errno.EACCES),
    "not-elf": ("not-elf", [], 8 * MiB, errno.ENOEXEC),
    "interp-short": ("interp-short", [], 8 * MiB, errno.EIO),
    "interp-not-elf": ("interp-not-elf", [], 8 * MiB, errno.ELIBBAD),
    "interp-missing": ("interp-missing", [], 8 * MiB, errno.ENOENT),
    "string-too-long": ("not-elf", ["X=" + "x" * (32 * PAGE_SIZE)], 8 * MiB, errno.E2BIG),
    "strings-over-limit": ("not-elf", _env(*[4000] * 40), 100 << 10, errno.E2BIG),
    "strings-over-rlimit": ("not-elf", _env(30000), 16 << 10, errno.E2BIG),
    "script-blank": ("script-blank", [], 8 * MiB, errno.ENOEXEC),
    "script-missing": ("script-missing", [], 8 * MiB, errno.ENOENT),
    "script-text": ("script-text", [], 8 * MiB, errno.ENOEXEC),
    "script-noexec": ("script-noexec", [], 8 * MiB, errno.EACCES),
    "script-six-deep": ("script-six-deep", [], 8 * MiB, errno.ELOOP),
    "script-self": ("script-self", [], 8 * MiB, errno.ELOOP),
    "script-cut": ("script-cut", [], 8 * MiB, errno.ENOEXEC),
}


@host
@pytest.mark.host
@pytest.mark.parametrize("case", ERROR_CASES)
def test_exec_errors_match_host(bad_files: dict[str, str], case: str) -> None:
    """ENOENT, EACCES, ENOEXEC, EIO, ELIBBAD, E2BIG, ELOOP: the model returns what the real execve
    returns."""
    key, envp, rlimit, expected = ERROR_CASES[case]
    path = bad_files[key]
    with pytest.raises(ExecFailed) as real:
        spawn(path, [path], envp, rlimit, legacy=False, trace=False)
    assert real.value.errno == expected
    assert exec_mm(path, [path], envp, rlimit, False, SYSCTL) == -expected


# --- model-only properties (with the reference measurements they restate) ----------------------------------

def test_builtin_program_needs_no_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """BUILTIN_PROGRAM is laid out from its built-in headers: no stat, no open."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the built-in program touched the disk")

    monkeypatch.setattr(os, "stat", refuse)
    monkeypatch.setattr("builtins.open", refuse)
    mm = _model(BUILTIN_PROGRAM, ["minimal"], [], 8 * MiB)
    assert show_maps(mm).splitlines()[:5] == [
        "00400000-00401000 r--p 00000000 fe:00 4242                               /vmlab/minimal",
        "00401000-00402000 r-xp 00001000 fe:00 4242                               /vmlab/minimal",
        "00402000-00403000 r--p 00002000 fe:00 4242                               /vmlab/minimal",
        "00403000-00404000 rw-p 00003000 fe:00 4242                               /vmlab/minimal",
        "00404000-00414000 rw-p 00000000 00:00 0 ",
    ]
    # L10's static layout: vdso block just under mmap_base, a 33-page stack for a 1-page argument area.
    assert [(v.vm_start, v.special_name) for v in mm if v.special_name] == [
        (0x7FFFF7FF7000, "[vvar]"), (0x7FFFF7FFB000, "[vvar_vclock]"), (0x7FFFF7FFD000, "[vdso]")]
    stack = mm.find_vma(0x7FFFFFFFE000)
    assert stack is not None and (stack.vm_start, stack.vm_end) == (0x7FFFFFFDE000, 0x7FFFFFFFF000)


def test_one_file_per_open() -> None:
    """The executable's PT_LOAD VMAs share one struct file, the interpreter's another."""
    if not os.access("/bin/cat", os.X_OK) or not os.access(LD_SO, os.X_OK):
        pytest.skip("needs /bin/cat and ld.so")
    mm = _model("/bin/cat", ["cat"], [], 8 * MiB)
    files = {}
    for vma in mm:
        if vma.vm_file is not None:
            files.setdefault(vma.vm_file.path, set()).add(id(vma.vm_file))
    assert len(files) == 2 and all(len(ids) == 1 for ids in files.values())


def test_heap_never_merges_with_bss() -> None:
    """L7: the first brk() after exec makes a separate [heap] VMA next to the bss, same flags or not."""
    mm = _model(BUILTIN_PROGRAM, ["minimal"], [], 8 * MiB)
    start = mm.start_brk
    assert sys_brk(mm, start + PAGE_SIZE, SYSCTL) == start + PAGE_SIZE
    lines = show_maps(mm).splitlines()
    assert f"{start - 0x10000:08x}-{start:08x} rw-p 00000000 00:00 0 " in lines
    assert any(line.startswith(f"{start:08x}-{start + PAGE_SIZE:08x} ") and line.endswith("[heap]")
               for line in lines)


def test_static_pie_brk_at_et_dyn_base(progs: dict[str, str]) -> None:
    """L7 (6.15+): a static PIE's brk starts at PAGE_ALIGN(ELF_ET_DYN_BASE), far from its image."""
    mm = _model(progs["static-pie"], ["p"], [], 8 * MiB)
    assert mm.start_brk == mm.brk == 0x555555555000 == (ELF_ET_DYN_BASE + PAGE_SIZE - 1) & -PAGE_SIZE


def test_empty_argv_gets_one_empty_string() -> None:
    """execve with argc 0 copies one "" as argv[0]: argv occupies 1 byte on the stack."""
    mm = _model(BUILTIN_PROGRAM, [], [], 8 * MiB)
    assert mm.arg_end - mm.arg_start == 1
