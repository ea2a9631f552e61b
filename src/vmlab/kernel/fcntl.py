"""fs/fcntl.c and the open flags of fs/open.c: what an open file remembers of how it was opened
(f_flags) and the fcntl() commands on it.

Modelled: the descriptor commands (F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, F_DUPFD_QUERY), the
status flags (F_GETFL, F_SETFL), the signal and owner of asynchronous I/O (F_GETSIG, F_SETSIG,
F_GETOWN, F_SETOWN; the model never sends it), and the answers of the commands that find nothing to
act on in the model (no lease, no pipe, no seals, no directory notification). Not modelled: file
locks, leases being taken, read/write hints and the F_*OWN_EX and owner-uid commands, which all pass
a struct the model does not read (UNMODELLED_COMMANDS: the scenario language refuses them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmlab.kernel import uapi
from vmlab.kernel.char_mem import is_chrdev
from vmlab.kernel.uapi import (
    EBADF,
    EINVAL,
    ENOTDIR,
    EPERM,
    F_ADD_SEALS,
    F_CREATED_QUERY,
    F_DUPFD,
    F_DUPFD_CLOEXEC,
    F_DUPFD_QUERY,
    F_GET_SEALS,
    F_GETFD,
    F_GETFL,
    F_GETLEASE,
    F_GETOWN,
    F_GETPIPE_SZ,
    F_GETSIG,
    F_NOTIFY,
    F_SETFD,
    F_SETFL,
    F_SETOWN,
    F_SETPIPE_SZ,
    F_SETSIG,
    O_ACCMODE,
    O_APPEND,
    O_ASYNC,
    O_CLOEXEC,
    O_CREAT,
    O_DIRECT,
    O_DIRECTORY,
    O_DSYNC,
    O_EXCL,
    O_LARGEFILE,
    O_NOATIME,
    O_NOCTTY,
    O_NOFOLLOW,
    O_NONBLOCK,
    O_PATH,
    O_TRUNC,
)

if TYPE_CHECKING:
    from vmlab.kernel.machine import Task
    from vmlab.kernel.mm_types import File
    from vmlab.kernel.page_alloc import PhysMem

#: __O_SYNC (O_SYNC is __O_SYNC | O_DSYNC) and __O_TMPFILE, which uapi does not name on their own.
O_SYNC_BIT = 0o4000000
O_TMPFILE_BIT = 0o20000000
#: VALID_OPEN_FLAGS: every bit open() keeps; the others are dropped unseen.
VALID_OPEN_FLAGS = (O_ACCMODE | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_APPEND | O_NONBLOCK | O_SYNC_BIT
                    | O_DSYNC | O_ASYNC | O_DIRECT | O_LARGEFILE | O_DIRECTORY | O_NOFOLLOW | O_NOATIME
                    | O_CLOEXEC | O_PATH | O_TMPFILE_BIT)
#: SETFL_MASK: the status flags F_SETFL may change (O_NDELAY is O_NONBLOCK on x86).
SETFL_MASK = O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME
#: Signals valid_signal() accepts for F_SETSIG (_NSIG).
NSIG = 64
#: F_UNLCK: what F_GETLEASE answers for a file nobody holds a lease on.
F_UNLCK = 2
#: F_SEAL_SEAL: the seal every shmem file that is not a memfd is born with (no more seals).
F_SEAL_SEAL = 1
#: F_ALL_SEALS: SEAL, SHRINK, GROW, WRITE, FUTURE_WRITE and EXEC.
F_ALL_SEALS = 0x3F
#: fcntl commands the model does not carry out: each takes a struct (or sets up a lease) it does not read.
UNMODELLED_COMMANDS = frozenset({
    uapi.F_GETLK, uapi.F_SETLK, uapi.F_SETLKW, uapi.F_OFD_GETLK, uapi.F_OFD_SETLK, uapi.F_OFD_SETLKW,
    uapi.F_SETOWN_EX, uapi.F_GETOWN_EX, uapi.F_GETOWNER_UIDS, uapi.F_SETLEASE, uapi.F_CANCELLK,
    uapi.F_GET_RW_HINT, uapi.F_SET_RW_HINT, uapi.F_GET_FILE_RW_HINT, uapi.F_SET_FILE_RW_HINT,
})
#: check_fcntl_cmd(): the only commands an O_PATH descriptor takes (the others: -EBADF).
_O_PATH_COMMANDS = frozenset({F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, F_GETFL})


def open_f_flags(flags: int) -> int:
    """build_open_flags() and do_dentry_open(): the f_flags of a file opened with `flags` (unknown bits,
    the creation flags and O_CLOEXEC gone; O_LARGEFILE forced on 64-bit; an O_PATH file keeps only
    O_PATH, O_DIRECTORY and O_NOFOLLOW)."""
    flags = (flags | O_LARGEFILE) & VALID_OPEN_FLAGS
    if flags & O_PATH:
        flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW
    return flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC)


def do_fcntl(task: Task, fd: int, cmd: int, arg: int, nr_open: int, mem: PhysMem) -> int:
    """fcntl(fd, cmd, arg) in `task` (cmd an unsigned int, arg an unsigned long, as the kernel takes
    them; `mem` the machine's, for a descriptor table F_DUPFD enlarges); the result or -errno. Raises
    NotImplementedError for UNMODELLED_COMMANDS."""
    file = task.files.get(fd)
    if file is None:
        return -EBADF
    if file.f_flags & O_PATH and cmd not in _O_PATH_COMMANDS:
        return -EBADF
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):  # f_dupfd()
        if arg >= nr_open:
            return -EINVAL
        new = task.alloc_fd(mem, arg)
        if new >= 0:
            task.fd_install(new, file, cmd == F_DUPFD_CLOEXEC)
        return new
    if cmd == F_GETFD:
        return 1 if fd in task.cloexec else 0
    if cmd == F_SETFD:
        (task.cloexec.add if arg & 1 else task.cloexec.discard)(fd)
        return 0
    if cmd == F_GETFL:
        return file.f_flags
    if cmd == F_SETFL:
        return _setfl(file, arg)
    if cmd == F_DUPFD_QUERY:
        other = task.files.get(arg & 0xFFFFFFFF)
        return -EBADF if other is None else int(other is file)
    if cmd == F_CREATED_QUERY:
        return int(file.created)
    if cmd == F_GETSIG:
        return file.signum
    if cmd == F_SETSIG:
        if arg > NSIG:
            return -EINVAL
        file.signum = arg
        return 0
    if cmd == F_GETOWN:
        return file.owner
    if cmd == F_SETOWN:  # f_setown(): an int; a negative one is a process group
        who = arg & 0xFFFFFFFF
        who = who - (1 << 32) if who >> 31 else who
        if who == -(1 << 31):
            return -EINVAL
        file.owner = who
        return 0
    if cmd == F_GETLEASE:
        return F_UNLCK
    if cmd == F_NOTIFY:  # fcntl_dirnotify(): no events clears; the events themselves are not modelled
        return 0 if not arg or file.inode.directory else -ENOTDIR
    if cmd in (F_SETPIPE_SZ, F_GETPIPE_SZ):
        return -EBADF  # not a pipe
    if cmd == F_GET_SEALS:  # memfd_fcntl(): only shmem files have seals
        return F_SEAL_SEAL if file.inode.shmem else -EINVAL
    if cmd == F_ADD_SEALS:  # memfd_add_seals()
        if not file.writable:
            return -EPERM
        if arg & ~F_ALL_SEALS & 0xFFFFFFFF or not file.inode.shmem:
            return -EINVAL
        return -EPERM  # F_SEAL_SEAL: no more seals
    if cmd in UNMODELLED_COMMANDS:
        raise NotImplementedError(f"fcntl command {cmd}: file locks, leases, hints and owner structs "
                                  "are not modelled")
    return -EINVAL


def _setfl(file: File, arg: int) -> int:
    """setfl(): the SETFL_MASK bits of `arg` replace the file's; O_DIRECT needs a mapping with
    direct I/O (a character device has none: -EINVAL)."""
    if arg & O_DIRECT and is_chrdev(file.inode):
        return -EINVAL
    file.f_flags = (arg & SETFL_MASK) | (file.f_flags & ~SETFL_MASK)
    return 0
