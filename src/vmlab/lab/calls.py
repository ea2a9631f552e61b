"""The syscalls vmlab drives, their arguments' kinds, and strace-style printing of calls and results.

One table serves the scenario checker (arity, which arguments are paths), the runner's echo, and the
strace replay (which calls touch the address space).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from vmlab.kernel import uapi
from vmlab.kernel.fcntl import UNMODELLED_COMMANDS
from vmlab.lab.syntax import Call, Expr, Seq, Source, Str, check_operands, evaluate, expr_names, parse_expr

#: Argument kinds: how a value is checked (path/argv are strings) and printed.
ADDR, LEN, PROT, MAPF, FD, OFF, MREMAPF, MADV = "addr", "len", "prot", "mapf", "fd", "off", "mremapf", "madv"
MLOCKF, MCL, DIRFD, PATH, OFLAGS, MODE, FCNTL, INT, ARGV, FADV = (
    "mlockf", "mcl", "dirfd", "path", "oflags", "mode", "fcntl", "int", "argv", "fadv")
MSF, SFRF, MPOL, MPOLMF = "msf", "sfrf", "mpol", "mpolmf"
#: unlink's path, directly in the temporary directory (the host backend removes the file for real);
#: mbind's nodemask, which must be NULL (the model keeps no user memory to read one from).
TMPPATH, NULLPTR = "tmppath", "nullptr"


@dataclass(frozen=True)
class Signature:
    """A syscall's argument kinds; the last `optional` of them may be left out."""

    kinds: tuple[str, ...]
    optional: int = 0
    returns_addr: bool = False

    @property
    def min_args(self) -> int:
        """The fewest arguments a call may have."""
        return len(self.kinds) - self.optional


#: Syscalls the backends execute through `Backend.syscall`.
SYSCALLS: dict[str, Signature] = {
    "mmap": Signature((ADDR, LEN, PROT, MAPF, FD, OFF), returns_addr=True),
    "munmap": Signature((ADDR, LEN)),
    "mprotect": Signature((ADDR, LEN, PROT)),
    "mremap": Signature((ADDR, LEN, LEN, MREMAPF, ADDR), optional=1, returns_addr=True),
    "brk": Signature((ADDR,), returns_addr=True),
    "madvise": Signature((ADDR, LEN, MADV)),
    "mlock": Signature((ADDR, LEN)),
    "mlock2": Signature((ADDR, LEN, MLOCKF)),
    "munlock": Signature((ADDR, LEN)),
    "mlockall": Signature((MCL,)),
    "munlockall": Signature(()),
    "openat": Signature((DIRFD, PATH, OFLAGS, MODE), optional=1),
    "open": Signature((PATH, OFLAGS, MODE), optional=1),
    "close": Signature((FD,)),
    "dup": Signature((FD,)),
    "dup2": Signature((FD, FD)),
    "dup3": Signature((FD, FD, OFLAGS)),
    "fcntl": Signature((FD, FCNTL, INT), optional=1),
    "execve": Signature((PATH, ARGV, ARGV)),
    # file I/O whose page faults and page-cache effects a scenario measures (reference P6, P13)
    "read": Signature((FD, ADDR, LEN)),
    "pread64": Signature((FD, ADDR, LEN, OFF)),
    "write": Signature((FD, ADDR, LEN)),
    "pwrite64": Signature((FD, ADDR, LEN, OFF)),
    "lseek": Signature((FD, OFF, INT)),
    "fadvise64": Signature((FD, OFF, LEN, FADV)),
    "ftruncate": Signature((FD, OFF)),
    "unlink": Signature((TMPPATH,)),
    # NUMA memory policy of a range (mempolicy); the nodemask must be NULL
    "mbind": Signature((ADDR, LEN, MPOL, NULLPTR, INT, MPOLMF)),
    # write-back of dirty pages (page_writeback)
    "fsync": Signature((FD,)),
    "fdatasync": Signature((FD,)),
    "msync": Signature((ADDR, LEN, MSF)),
    "sync_file_range": Signature((FD, OFF, LEN, SFRF)),
    # swap areas (the model only: the host's swap is the machine's, not a scenario's)
    "swapon": Signature((PATH, INT), optional=1),
    "swapoff": Signature((PATH,)),
}

#: Calls that create a process (the backend's `fork`); their arguments are not interpreted.
FORKS = frozenset({"fork", "vfork", "clone", "clone3"})
#: Calls that end the calling process (the backend's `exit`).
EXITS = frozenset({"exit", "exit_group"})

#: Memory syscalls: the ones that change an address space (strace-replay follows them).
MEMORY_CALLS = frozenset({
    "mmap", "munmap", "mprotect", "mremap", "brk", "madvise", "mlock", "mlock2", "munlock",
    "mlockall", "munlockall", "mbind",
})
#: File-descriptor syscalls strace-replay follows so that `mmap(..., fd, ...)` maps the right file.
FD_CALLS = frozenset({"openat", "open", "close", "dup", "dup2", "dup3", "fcntl"})

#: Syscalls that change an address space in ways the model does not follow (reported, never skipped).
UNMODELLED_MM_CALLS = frozenset({
    "shmat", "shmdt", "remap_file_pages", "pkey_mprotect", "io_setup", "io_destroy", "io_uring_setup",
    "process_madvise", "mseal", "map_shadow_stack", "migrate_pages", "move_pages",
    "userfaultfd", "memfd_secret", "execveat", "process_mrelease", "set_mempolicy_home_node",
})

#: Names strace prints that uapi does not define (values from include/uapi/ for x86_64).
STRACE_EXTRA_NAMES: dict[str, int] = {
    "FD_CLOEXEC": 1, "MAP_FILE": 0, "MAP_HUGE_2MB": 21 << 26,
    "MAP_HUGE_1GB": 30 << 26, "O_TMPFILE": 0o20200000, "MADV_HWPOISON": 100, "MADV_SOFT_OFFLINE": 101,
    "POSIX_FADV_NORMAL": 0, "POSIX_FADV_RANDOM": 1, "POSIX_FADV_SEQUENTIAL": 2, "POSIX_FADV_WILLNEED": 3,
    "POSIX_FADV_DONTNEED": 4, "POSIX_FADV_NOREUSE": 5,
}

#: Every name an expression may use besides variables.
CONSTANTS: dict[str, int] = {
    **uapi.ALL_NAMES, **STRACE_EXTRA_NAMES,
    "PAGE_SIZE": uapi.PAGE_SIZE, "PMD_SIZE": uapi.PMD_SIZE, "PUD_SIZE": uapi.PUD_SIZE,
}


def _bits(value: int, order: list[tuple[str, int]]) -> list[str]:
    """Names of the single bits of `value` in `order`, then the leftover as hex."""
    parts = [name for name, bit in order if bit and value & bit == bit]
    rest = value
    for name, bit in order:
        if name in parts:
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return parts


def _single_bits(names: dict[str, int]) -> list[tuple[str, int]]:
    """The (name, value) pairs of `names` that are one bit, by value."""
    return sorted(((n, v) for n, v in names.items() if v > 0 and v & (v - 1) == 0), key=lambda p: p[1])


_PROT_BITS = _single_bits(uapi.PROT_NAMES)
_MAP_BITS = [(n, v) for n, v in _single_bits(uapi.MAP_NAMES) if v > uapi.MAP_TYPE]
_MAP_TYPES = {uapi.MAP_SHARED: "MAP_SHARED", uapi.MAP_PRIVATE: "MAP_PRIVATE",
              uapi.MAP_SHARED_VALIDATE: "MAP_SHARED_VALIDATE", uapi.MAP_DROPPABLE: "MAP_DROPPABLE"}
_MREMAP_BITS = _single_bits(uapi.MREMAP_NAMES)
_MCL_BITS = _single_bits({k: v for k, v in uapi.MLOCK_NAMES.items() if k.startswith("MCL_")})
_O_BITS = [(n, v) for n, v in _single_bits(uapi.O_NAMES) if v > uapi.O_RDWR]
_O_ACC = {uapi.O_RDONLY: "O_RDONLY", uapi.O_WRONLY: "O_WRONLY", uapi.O_RDWR: "O_RDWR"}
_MADV = {v: n for n, v in sorted(uapi.MADV_NAMES.items(), reverse=True)}
_FCNTL = {v: n for n, v in uapi.ALL_NAMES.items() if n.startswith("F_")}
_FADV = {v: n for n, v in STRACE_EXTRA_NAMES.items() if n.startswith("POSIX_FADV_")}
_MS_BITS = _single_bits({n: v for n, v in uapi.ALL_NAMES.items() if n.startswith("MS_")})
_SFR_BITS = _single_bits({n: v for n, v in uapi.ALL_NAMES.items() if n.startswith("SYNC_FILE_RANGE_")})
_MPOL_MODES = {v: n for n, v in uapi.ALL_NAMES.items()
               if n.startswith("MPOL_") and not n.startswith(("MPOL_F_", "MPOL_MF_"))}
_MPOL_F_BITS = _single_bits({n: v for n, v in uapi.ALL_NAMES.items() if n.startswith("MPOL_F_")})
_MPOL_MF_BITS = _single_bits({n: v for n, v in uapi.ALL_NAMES.items() if n.startswith("MPOL_MF_")})


def format_arg(kind: str, value: int | str | tuple[str, ...]) -> str:
    """One argument as strace prints it: `NULL`, hex addresses, `PROT_READ|PROT_WRITE`, quoted paths."""
    if isinstance(value, tuple):
        return "[" + ", ".join(quote(v) for v in value) + "]"
    if isinstance(value, str):
        return quote(value)
    if kind in (ADDR, NULLPTR):
        return "NULL" if value == 0 else hex(value)
    if kind == OFF:
        return hex(value) if value else "0"
    if kind == PROT:
        return "|".join(_bits(value, _PROT_BITS)) if value else "PROT_NONE"
    if kind == MAPF:
        head = _MAP_TYPES.get(value & uapi.MAP_TYPE, hex(value & uapi.MAP_TYPE))
        return "|".join([head, *_bits(value & ~uapi.MAP_TYPE, _MAP_BITS)])
    if kind in (MREMAPF, MCL, MLOCKF, MSF, SFRF):
        table = {MREMAPF: _MREMAP_BITS, MCL: _MCL_BITS, MLOCKF: [("MLOCK_ONFAULT", uapi.MLOCK_ONFAULT)],
                 MSF: _MS_BITS, SFRF: _SFR_BITS}[kind]
        return "|".join(_bits(value, table)) if value else "0"
    if kind == MADV:
        return _MADV.get(value, str(value))
    if kind == OFLAGS:
        head = _O_ACC.get(value & 3, hex(value & 3))
        return "|".join([head, *_bits(value & ~3, _O_BITS)])
    if kind == MODE:
        return f"0{value:o}"
    if kind == FCNTL:
        return _FCNTL.get(value, str(value))
    if kind == FADV:
        return _FADV.get(value, str(value))
    if kind == MPOL and not 0 <= value <= 0xFFFF:
        return hex(value & 0xFFFFFFFFFFFFFFFF)
    if kind == MPOL:
        flag_mask = sum(bit for _, bit in _MPOL_F_BITS)
        return "|".join([_MPOL_MODES.get(value & ~flag_mask, str(value & ~flag_mask)),
                         *_bits(value & flag_mask, _MPOL_F_BITS)])
    if kind == MPOLMF:
        return "|".join(_bits(value, _MPOL_MF_BITS)) if value else "0"
    if kind == DIRFD and value == uapi.AT_FDCWD:
        return "AT_FDCWD"
    return str(value)


def quote(text: str) -> str:
    """`text` as a C string literal the way strace prints it."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:o}")
    return '"' + "".join(out) + '"'


def format_result(value: int, addr: bool) -> str:
    """`= 0x7ffff7ff6000`, `= 0` or `= -1 EEXIST (File exists)` as strace prints a return value."""
    if -4095 <= value < 0:
        err = -value
        return f"= -1 {uapi.errno_name(err)} ({os.strerror(err)})"
    return f"= {hex(value)}" if addr and value else f"= {value}"


def format_call(name: str, values: tuple[int | str | tuple[str, ...], ...]) -> str:
    """`name(arg, ...)` with each argument printed by its kind (unknown calls: decimal)."""
    sig = SYSCALLS.get(name)
    kinds = sig.kinds if sig else (INT,) * len(values)
    return f"{name}(" + ", ".join(format_arg(k, v) for k, v in zip(kinds, values, strict=False)) + ")"


def interpret_args(call: Call, src: Source, defined: Callable[[str], bool]) -> tuple[Expr, ...]:
    """The arguments of a SYSCALLS call as checked expressions.

    Raises InputError for an unknown syscall, a wrong number of arguments, a name that is neither a
    constant nor `defined`, a string where a number belongs (and the reverse), or an operation without
    a value (a division by zero, a bad shift count) on constants.
    """
    sig = SYSCALLS.get(call.name)
    if sig is None:
        raise src.error(f"unknown syscall '{call.name}'", call.col)
    n = len(call.args)
    if not sig.min_args <= n <= len(sig.kinds):
        want = str(len(sig.kinds)) if not sig.optional else f"{sig.min_args} to {len(sig.kinds)}"
        raise src.error(f"{call.name} takes {want} arguments, got {n}", call.col)
    exprs = []
    for kind, arg in zip(sig.kinds, call.args, strict=False):
        expr = parse_expr(list(arg.toks), src, arg.end_col)
        _check_kind(kind, expr, src)
        for name in expr_names(expr):
            if name.name not in CONSTANTS and not defined(name.name):
                raise src.error(f"undefined name '{name.name}'", name.col)
        check_operands(expr, src, CONSTANTS)
        if kind == FCNTL:
            _check_fcntl_command(expr, src)
        exprs.append(expr)
    return tuple(exprs)


def _check_fcntl_command(expr: Expr, src: Source) -> None:
    """Raise if `expr` is a constant fcntl command the model does not carry out (fcntl.UNMODELLED_COMMANDS:
    file locks, leases, hints, owner structs)."""
    if any(n.name not in CONSTANTS for n in expr_names(expr)):
        return  # a variable: known only when the step runs
    cmd = evaluate(expr, CONSTANTS)
    if isinstance(cmd, int) and cmd & 0xFFFFFFFF in UNMODELLED_COMMANDS:
        name = _FCNTL.get(cmd & 0xFFFFFFFF, str(cmd))
        raise src.error(f"fcntl {name} is not modelled (file locks, leases, hints and owner structs "
                        "are outside vmlab)", expr.col)


def check_c_string(value: bytes, col: int, src: Source) -> None:
    """Raise unless `value` (a quoted string at column `col`) can be a C string argument: a NUL byte
    (`\\0`) would end it early, which no strace line shows (and the host cannot pass it)."""
    if b"\0" in value:
        raise src.error("a path or argument cannot hold a NUL byte", col)


def _check_kind(kind: str, expr: Expr, src: Source) -> None:
    """Raise unless `expr` has the shape `kind` needs (a string, a string array, or a number)."""
    if kind in (PATH, TMPPATH):
        if not isinstance(expr, Str):
            raise src.error("expected a quoted path", expr.col)
        check_c_string(expr.value, expr.col, src)
        if kind == TMPPATH and os.path.dirname(os.path.normpath(expr.text())) != tempfile.gettempdir():
            raise src.error(f"unlink takes a file directly in {tempfile.gettempdir()} (the host backend "
                            "removes it for real)", expr.col)
    elif kind == NULLPTR:
        if any(n.name not in CONSTANTS for n in expr_names(expr)) or evaluate(expr, CONSTANTS) != 0:
            raise src.error("mbind's nodemask must be NULL (the model cannot read one from user memory): "
                            "MPOL_DEFAULT, MPOL_LOCAL and MPOL_PREFERRED take none", expr.col)
    elif kind == ARGV:
        if not isinstance(expr, Seq) or not all(isinstance(i, Str) for i in expr.items):
            raise src.error("expected an array of strings", expr.col)
        for item in expr.items:
            assert isinstance(item, Str)
            check_c_string(item.value, item.col, src)
    elif isinstance(expr, Str | Seq):
        raise src.error("expected a number, not a string", expr.col)

