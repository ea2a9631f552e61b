"""execve() from the top, after fs/exec.c:do_execveat_common, bprm_execve and exec_binprm (6.18,
x86_64, ADDR_NO_RANDOMIZE): open the file, build the new mm's stack with the filename, envp and argv,
then hand the file to the binary formats — a `#!` script (binfmt_script) names an interpreter and the
handlers start again with its file, at most 5 scripts deep; an ELF file (binfmt_elf) is loaded.

The struct files of the exec (the file run and each script's interpreter) stay referenced until the
exec is done, as the kernel's deferred fput() leaves them; each is charged to the exec'ing task's memcg.
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Sequence

from vmlab.kernel.binfmt_elf import BUILTIN_IMAGE, BUILTIN_PROGRAM, builtin_inode, load_elf_binary, read_elf
from vmlab.kernel.binfmt_script import BINPRM_BUF_SIZE, load_script
from vmlab.kernel.binfmts import (
    InodeLookup,
    LinuxBinprm,
    bprm_mm_init,
    bprm_stack_limits,
    copy_strings,
    exec_file,
    open_exec,
)
from vmlab.kernel.fault import FaultStats
from vmlab.kernel.fs import host_inode
from vmlab.kernel.mm_types import File, Inode, MmStruct
from vmlab.kernel.mmap import VmSysctl
from vmlab.kernel.uapi import ENOMEM

ELOOP = errno.ELOOP
#: exec_binprm(): handlers run at depths 0..5, so a sixth script in a row is -ELOOP.
MAX_DEPTH = 5


def do_execveat_strings(bprm: LinuxBinprm, argv: Sequence[str], envp: Sequence[str]) -> int:
    """do_execveat_common()'s copies: the filename (AT_EXECFN), envp, argv, and a lone "" for an empty
    argv; 0 or -E2BIG."""
    bprm.argc, bprm.envc = len(argv), len(envp)
    err = bprm_stack_limits(bprm)
    if err:
        return err
    copied = copy_strings(bprm, [bprm.filename])
    bprm.exec = bprm.p
    if copied >= 0:
        copied = bprm.env_bytes = copy_strings(bprm, envp)
    if copied >= 0:
        bprm.argv = list(argv) or [""]
        copied = bprm.arg_bytes = copy_strings(bprm, bprm.argv)
        bprm.argc = max(bprm.argc, 1)
    return min(copied, 0)


def _file_head(inode: Inode) -> bytes:
    """prepare_binprm(): the first BINPRM_BUF_SIZE bytes of the file (the built-in program: none)."""
    if inode.path == BUILTIN_PROGRAM:
        return b""
    try:
        with open(inode.path, "rb") as f:
            return f.read(BINPRM_BUF_SIZE)
    except OSError:
        return b""


def _load_elf(bprm: LinuxBinprm, inode: Inode, file: File, inode_for: InodeLookup, rlimit_stack: int | None,
              legacy: bool, sysctl: VmSysctl) -> int:
    """The ELF handler on `file`: its image (ENOEXEC if it is none), its PT_INTERP's (ENOENT, EACCES,
    ELIBBAD), then load_elf_binary(); 0 or -errno."""
    builtin = inode.path == BUILTIN_PROGRAM
    image = dataclasses.replace(BUILTIN_IMAGE, inode=inode) if builtin else read_elf(inode)
    if isinstance(image, int):
        return image
    if image.interp is None:
        return load_elf_binary(bprm, image, None, rlimit_stack, legacy, sysctl, file)
    interp_inode = open_exec(image.interp, inode_for)
    if isinstance(interp_inode, int):
        return interp_inode
    interp_file = exec_file(interp_inode, bprm.mm)
    if interp_file is None:
        return -ENOMEM
    try:
        interp = read_elf(interp_inode, interpreter=True)
        if isinstance(interp, int):
            return interp
        return load_elf_binary(bprm, image, (interp, interp_file), rlimit_stack, legacy, sysctl, file)
    finally:
        interp_file.put()


def do_execve(path: str, argv: Sequence[str], envp: Sequence[str], rlimit_stack: int | None, legacy: bool,
              sysctl: VmSysctl, inode_for: InodeLookup | None = None, mm: MmStruct | None = None,
              stats: FaultStats | None = None) -> LinuxBinprm | int:
    """execve(path, argv, envp) with ADDR_NO_RANDOMIZE: the finished exec's bprm (bprm.mm the new
    address space, bprm.argv the arguments it starts with), or -errno.

    `rlimit_stack` is RLIMIT_STACK's soft limit in bytes (None = unlimited); `legacy` is the
    ADDR_COMPAT_LAYOUT personality. BUILTIN_PROGRAM loads BUILTIN_IMAGE without touching the disk;
    any other path is read from the host. `inode_for` gives the machine's inode of a path (its page
    cache is the machine's: BUILTIN_PROGRAM included; default: a host file's own inode and the shared
    BUILTIN_IMAGE one). `mm` is the empty mm to build (the machine's: its page tables, so that mappings
    are charged to the machine's committed counter, and its credential; on failure the caller tears it
    down with exit_mmap). With page tables, the exec's own writes fault pages in as the kernel's do:
    the strings' stack pages (get_arg_page), the zeroed tail of each segment's last file page
    (padzero) and the tables below the strings; `stats` (the exec'ing task's) counts those faults.
    Errors come in the kernel's order: opening the file (ENOENT, EACCES, ...), copying the strings
    (E2BIG), each script's interpreter line (ENOEXEC) and file (ENOENT, EACCES, ...; ELOOP past 5
    scripts), the ELF checks (ENOEXEC), the ELF interpreter (ENOENT, EACCES, ELIBBAD), then mapping
    (ENOMEM, EEXIST, ...).
    """
    lookup = inode_for or host_inode
    if path == BUILTIN_PROGRAM:
        inode: Inode | int = inode_for(path) if inode_for is not None else builtin_inode()
    else:
        inode = open_exec(path, lookup)
    if isinstance(inode, int):
        return inode
    file = exec_file(inode, mm)
    if file is None:
        return -ENOMEM
    files = [file]
    try:
        bprm = bprm_mm_init(path, rlimit_stack, sysctl, mm, stats)
        if isinstance(bprm, int):
            return bprm
        err = do_execveat_strings(bprm, argv, envp)
        if err:
            return err
        for _depth in range(MAX_DEPTH + 1):  # exec_binprm()
            interp = load_script(bprm, _file_head(inode))
            if interp is None:
                break
            if isinstance(interp, int):
                return interp
            inode = open_exec(interp, lookup)
            if isinstance(inode, int):
                return inode
            file = exec_file(inode, bprm.mm)
            if file is None:
                return -ENOMEM
            files.append(file)
        else:
            return -ELOOP
        err = _load_elf(bprm, inode, file, lookup, rlimit_stack, legacy, sysctl)
        return err if err else bprm
    finally:
        for f in files:
            f.put()


def exec_mm(path: str, argv: Sequence[str], envp: Sequence[str], rlimit_stack: int | None, legacy: bool,
            sysctl: VmSysctl, inode_for: InodeLookup | None = None, mm: MmStruct | None = None,
            stats: FaultStats | None = None) -> MmStruct | int:
    """do_execve() for its address space alone: the new mm, or -errno."""
    bprm = do_execve(path, argv, envp, rlimit_stack, legacy, sysctl, inode_for, mm, stats)
    return bprm if isinstance(bprm, int) else bprm.mm
