"""execve of a `#!` script, after fs/binfmt_script.c:load_script (6.18).

The first BINPRM_BUF_SIZE bytes of the file name an interpreter and at most one argument. argv[0]
is taken off the new stack and replaced, in the kernel's order of copies, by the path the script was
run as (bprm->interp), the argument if any, and the interpreter's name, which becomes argv[0]: the
interpreter then runs, as exec_binprm() restarts the handlers with its file. /proc/PID/cmdline shows
`interp [arg] script args...`; comm and AT_EXECFN stay the script's.

Not modelled: the `${ORIGIN}/` interpreter prefix, BINPRM_FLAGS_PATH_INACCESSIBLE (execveat of an
O_CLOEXEC descriptor), and the read of the script's first page through the page cache (as for an ELF
file's header, the model reads the bytes from the host file).
"""

from __future__ import annotations

import errno
import os

from vmlab.kernel.binfmts import LinuxBinprm, copy_string_kernel, remove_arg_zero

#: sizeof(bprm->buf): how much of the file the handlers look at.
BINPRM_BUF_SIZE = 256
ENOEXEC = errno.ENOEXEC
_SPACETAB = b" \t"


def _next_non_spacetab(buf: bytes, first: int, last: int) -> int | None:
    """next_non_spacetab(): the first index in [first, last] that is not a space or tab."""
    for i in range(first, last + 1):
        if buf[i] not in _SPACETAB:
            return i
    return None


def _next_terminator(buf: bytes, first: int, last: int) -> int | None:
    """next_terminator(): the first index in [first, last] that is a space, tab or NUL."""
    for i in range(first, last + 1):
        if buf[i] in b" \t\0":
            return i
    return None


def parse_interpreter(head: bytes) -> tuple[bytes, bytes | None] | int:
    """load_script()'s reading of the `#!` line in the file's first bytes `head`: (interpreter,
    its argument or None), or -ENOEXEC — not a script, no interpreter named, or a name that may have
    been cut off by the buffer's end (no newline and no space, tab or NUL after it). The argument is
    the rest of the line after the blanks that follow the name (inner blanks kept, trailing ones
    dropped); either string ends at a NUL."""
    buf = head[:BINPRM_BUF_SIZE].ljust(BINPRM_BUF_SIZE, b"\0")
    if buf[:2] != b"#!":
        return -ENOEXEC
    buf_end = BINPRM_BUF_SIZE - 1
    i_end = buf.find(b"\n")
    if i_end < 0:
        first = _next_non_spacetab(buf, 2, buf_end)
        if first is None or _next_terminator(buf, first, buf_end) is None:
            return -ENOEXEC
        i_end = buf_end
    while buf[i_end - 1] in _SPACETAB:
        i_end -= 1
    i_name = _next_non_spacetab(buf, 2, i_end)
    if i_name is None or i_name == i_end:
        return -ENOEXEC
    i_sep = _next_terminator(buf, i_name, i_end)
    i_arg = None
    if i_sep is not None and buf[i_sep] != 0:
        i_arg = _next_non_spacetab(buf, i_sep, i_end)
    line = buf[:i_end] + b"\0"  # *i_end = '\0'
    if i_arg is None:
        return line[i_name:].split(b"\0", 1)[0], None
    return buf[i_name:i_sep], line[i_arg:].split(b"\0", 1)[0]


def load_script(bprm: LinuxBinprm, head: bytes) -> str | int | None:
    """load_script() on a file whose first bytes are `head`: None when it is not a `#!` script (the
    next handler's turn), else the interpreter to run next (bprm.interp, set) after rewriting argv
    on the stack, or -errno (ENOEXEC for a bad `#!` line, E2BIG, EFAULT). Opening the interpreter
    is the caller's (exec_binprm's)."""
    if head[:2] != b"#!":
        return None
    parsed = parse_interpreter(head)
    if isinstance(parsed, int):
        return parsed
    i_name, i_arg = (os.fsdecode(s) if s is not None else None for s in parsed)
    assert i_name is not None
    err = remove_arg_zero(bprm)
    if err:
        return err
    for arg in (bprm.interp, i_arg, i_name):
        if arg is None:
            continue
        err = copy_string_kernel(bprm, arg)
        if err:
            return err
        bprm.argc += 1
        bprm.argv.insert(0, arg)
    bprm.interp = i_name
    return i_name
