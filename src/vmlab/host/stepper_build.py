"""Build the stepper (stepper.c, shipped with the package) with the system C compiler, once, into a cache.

The binary is keyed by a hash of the source, the compiler's identity and the flags, so a new source or
compiler gives a new file and an old binary is never reused by mistake. Builds are atomic: the compiler
writes a temporary file in the cache directory that is renamed into place.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from elftools.elf.elffile import ELFFile

from vmlab.backend import Program

#: The flags the task fixes, plus those that keep gcc from calling libc (memset/memcpy) or adding
#: unwind tables, and a non-executable stack.
CFLAGS: tuple[str, ...] = (
    "-static", "-nostdlib", "-fno-pie", "-no-pie", "-fno-stack-protector", "-O2",
    "-ffreestanding", "-fno-builtin", "-fno-asynchronous-unwind-tables",
    "-fno-tree-loop-distribute-patterns", "-Wl,-z,noexecstack",
)


class StepperBuildError(RuntimeError):
    """The stepper cannot be built here (no compiler, or the compiler failed)."""


def stepper_source() -> bytes:
    """The text of stepper.c as shipped in the package."""
    return resources.files("vmlab.host").joinpath("stepper.c").read_bytes()


def find_compiler(env: dict[str, str] | None = None) -> str:
    """The C compiler to use: $CC if set, else `cc` or `gcc` on $PATH; StepperBuildError if none."""
    env = dict(os.environ) if env is None else env
    path = env.get("PATH", "")
    wanted = env.get("CC")
    if wanted:
        found = shutil.which(wanted, path=path)
        if not found:
            raise StepperBuildError(f"the C compiler CC={wanted!r} was not found; it is needed to "
                                    "build the vmlab host stepper")
        return found
    for name in ("cc", "gcc"):
        found = shutil.which(name, path=path)
        if found:
            return found
    raise StepperBuildError("no C compiler found (tried $CC, cc, gcc on $PATH); install gcc to build "
                            "the vmlab host stepper")


def cache_dir(env: dict[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME/vmlab, or ~/.cache/vmlab."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmlab"


@functools.cache
def _compiler_identity(cc: str) -> bytes:
    """What distinguishes one compiler from another for the cache key: its path and `--version`."""
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, timeout=60, check=False).stdout
    except OSError as err:
        raise StepperBuildError(f"cannot run the C compiler {cc}: {err}") from err
    return cc.encode() + b"\0" + out


def _check_elf(path: Path) -> None:
    """The stepper must be a static non-PIE executable: ET_EXEC, no PT_INTERP, no PT_DYNAMIC."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        kinds = {seg["p_type"] for seg in elf.iter_segments()}
        if elf["e_type"] != "ET_EXEC" or elf["e_machine"] != "EM_X86_64" or kinds & {"PT_INTERP",
                                                                                     "PT_DYNAMIC"}:
            raise StepperBuildError(f"{path}: the compiler did not produce a static non-PIE x86_64 "
                                    "executable")


def build_stepper(cache: Path | None = None, env: dict[str, str] | None = None) -> Path:
    """Path of the stepper binary, compiling it into `cache` (default cache_dir()) on first use."""
    source = stepper_source()
    cc = find_compiler(env)
    key = hashlib.sha256(source + b"\0" + _compiler_identity(cc) + b"\0" + " ".join(CFLAGS).encode())
    cache = cache_dir(env) if cache is None else cache
    target = cache / f"stepper-{key.hexdigest()[:16]}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        workdir = tempfile.TemporaryDirectory(dir=cache, prefix=".build-")
    except OSError as err:
        raise StepperBuildError(f"cannot use the cache directory {cache} for the vmlab host stepper: "
                                f"{err.strerror}") from err
    with workdir as tmp:
        src = Path(tmp) / "stepper.c"
        src.write_bytes(source)
        out = Path(tmp) / "stepper"
        try:
            done = subprocess.run([cc, *CFLAGS, "-o", str(out), str(src)], capture_output=True,
                                  text=True, timeout=120, check=False)
        except OSError as err:
            raise StepperBuildError(f"cannot run the C compiler {cc}: {err}") from err
        if done.returncode != 0 or not out.is_file():
            raise StepperBuildError(f"{cc} failed to build the vmlab host stepper:\n{done.stderr.strip()}")
        _check_elf(out)
        os.chmod(out, 0o755)
        os.replace(out, target)
    return target


def stepper_program() -> Program:
    """The Program both backends run: the stepper binary, argv = [its absolute path], envp = [], with
    the accesses of its warm_up() (read the whole image, write its bss pages) and the stack pages it
    has written by its first checkpoint as its startup."""
    path = str(build_stepper().resolve())
    child, parent = _fork_accesses(path)
    return Program(path=path, argv=(path,), envp=(),
                   startup=_warm_up_accesses(path) + _stack_accesses(path),
                   fork_child=child, fork_parent=parent)


Accesses = tuple[tuple[int, int, bool], ...]


def _fork_accesses(path: str) -> tuple[Accesses, Accesses]:
    """What the stepper's own code touches after fork(), measured once by forking it and kept beside
    the binary: in each process, the pages of its own VMAs it wrote (its frame differs from the one
    shared at fork: it copied) and the file pages it read in anew."""
    sidecar = Path(path + ".fork")
    if not sidecar.is_file():
        from vmlab.backend import Settings
        from vmlab.host.oracle import HostBackend

        host = HostBackend()
        try:
            parent = host.start(Program(path=path, argv=(path,), envp=()), Settings())
            own = [tuple(int(x, 16) for x in line.split()[0].split("-"))
                   for line in host.view(parent, "maps").splitlines()
                   if not line.endswith(("[vvar]", "[vvar_vclock]", "[vsyscall]"))]
            before = {lo: host.pagemap(parent, lo, hi) for lo, hi in own}
            child = host.fork(parent)
            lines = []
            for who, pid in (("child", child), ("parent", parent)):
                for lo, hi in own:
                    for i, (old, new) in enumerate(zip(before[lo], host.pagemap(pid, lo, hi), strict=True)):
                        if not new >> 63:
                            continue
                        file = bool(new >> 61 & 1)
                        wrote = not file and (new ^ old) & ((1 << 55) - 1) != 0
                        # fork copies no file PTEs of VMAs without an anon_vma: the child maps anew
                        if wrote or not old >> 63 or (who == "child" and file):
                            lines.append(f"{who} {lo + i * 4096:x} {int(not file)}")
        finally:
            host.close()
        tmp = sidecar.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text("\n".join(lines))
        os.replace(tmp, sidecar)
    out: dict[str, list[tuple[int, int, bool]]] = {"child": [], "parent": []}
    for line in sidecar.read_text().splitlines():
        who, addr, write = line.split()
        out[who].append((int(addr, 16), 1, write == "1"))
    return tuple(out["child"]), tuple(out["parent"])


def _stack_accesses(path: str) -> tuple[tuple[int, int, bool], ...]:
    """The stack pages the stepper has written when it first waits for a command (the strings exec
    copied, its frames, its warm-up pad), measured once by running it and kept beside the binary. They
    depend on the compiled code, which only the real run can tell."""
    sidecar = Path(path + ".stack")
    if sidecar.is_file():
        pages = [int(x, 16) for x in sidecar.read_text().split()]
    else:
        from vmlab.backend import Settings
        from vmlab.host.oracle import HostBackend

        host = HostBackend()
        try:
            pid = host.start(Program(path=path, argv=(path,), envp=()), Settings())
            stack = next(line for line in host.view(pid, "maps").splitlines() if line.endswith("[stack]"))
            lo, hi = (int(x, 16) for x in stack.split()[0].split("-"))
            entries = host.pagemap(pid, lo, hi)
        finally:
            host.close()
        pages = [lo + i * 4096 for i, e in enumerate(entries) if e >> 63]
        tmp = sidecar.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(" ".join(f"{p:x}" for p in pages))
        os.replace(tmp, sidecar)
    return tuple((p, 4096, True) for p in pages)


def _warm_up_accesses(path: str) -> tuple[tuple[int, int, bool], ...]:
    """stepper.c:warm_up() as accesses: reads of [__executable_start, _end), then writes of the bss
    pages. (Its stack pad is left out: stack presence is not compared, reference §6 N6.)"""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        sym = {name: symtab.get_symbol_by_name(name)[0]["st_value"]
               for name in ("__executable_start", "__bss_start", "_end")}
    start, bss, end = sym["__executable_start"], sym["__bss_start"] & ~0xFFF, sym["_end"]
    return ((start, end - start, False), (bss, end - bss, True))
