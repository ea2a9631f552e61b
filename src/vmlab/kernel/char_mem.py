"""drivers/char/mem.c: the memory character devices, as a program sees them through read(), write(),
lseek() and mmap(): /dev/null, /dev/zero, /dev/full, /dev/random and /dev/urandom (major 1).

/dev/zero is the one that matters to memory: a MAP_PRIVATE mapping of it is anonymous memory with
/dev/zero as its file (mmap_zero() calls vma_set_anonymous(), so maps names /dev/zero and smaps
counts its pages as Anonymous), and a MAP_SHARED one is a new shmem object, `/dev/zero (deleted)`
(shmem_zero_setup(), keeping the mmap offset). No other character device can be mapped (-ENODEV:
no f_op->mmap; /dev/mem and device drivers are not modelled). Other character devices read as empty
and take writes whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmlab.kernel.uapi import ENOSPC

if TYPE_CHECKING:
    from vmlab.kernel.mm_types import Inode

MEM_MAJOR = 1
DEV_NULL = (MEM_MAJOR, 3)
DEV_ZERO = (MEM_MAJOR, 5)
DEV_FULL = (MEM_MAJOR, 7)
DEV_RANDOM = (MEM_MAJOR, 8)
DEV_URANDOM = (MEM_MAJOR, 9)

#: Devices whose read() fills the whole buffer (read_iter_zero, get_random_bytes_user).
_FILLS = frozenset({DEV_ZERO, DEV_FULL, DEV_RANDOM, DEV_URANDOM})
#: Devices whose llseek puts the position back to 0 and returns 0 (null_lseek); the others keep it
#: (noop_llseek).
_SEEK_ZERO = frozenset({DEV_NULL, DEV_ZERO, DEV_FULL})


def is_chrdev(inode: Inode) -> bool:
    """S_ISCHR(inode->i_mode)."""
    return inode.rdev is not None


def is_dev_zero(inode: Inode) -> bool:
    """The inode is /dev/zero (whatever path named it)."""
    return inode.rdev == DEV_ZERO


def can_mmap(inode: Inode) -> bool:
    """can_mmap_file(): the file has an mmap operation (not a directory, not a character device other
    than /dev/zero)."""
    return not inode.directory and (inode.rdev is None or is_dev_zero(inode))


def read_length(inode: Inode, count: int) -> int:
    """How many bytes read() of `count` bytes of character device `inode` returns (the buffer is
    written that far): all of them for the devices that fill, 0 (end of file) for the others."""
    return count if inode.rdev in _FILLS else 0


def write_result(inode: Inode, count: int) -> int:
    """What write() of `count` bytes to character device `inode` returns without touching the
    buffer: all of them, or -ENOSPC for /dev/full (write_full)."""
    return -ENOSPC if inode.rdev == DEV_FULL else count


def llseek(inode: Inode, pos: int) -> int:
    """The position after lseek() on character device `inode` (which also returns it), whatever was
    asked: 0 for null/zero/full (null_lseek), unchanged for the others (noop_llseek)."""
    return 0 if inode.rdev in _SEEK_ZERO else pos
