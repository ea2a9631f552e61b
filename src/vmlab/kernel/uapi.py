"""Constants of the user ABI (include/uapi/asm-generic/mman*.h, errno.h) for x86_64.

Shared by the model, the host oracle and the scenario language, so every side spells a flag the same way.
"""

from __future__ import annotations

import errno as _errno
from typing import Final

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
PAGE_MASK: Final = ~(PAGE_SIZE - 1)
PMD_SIZE: Final = 1 << 21
PUD_SIZE: Final = 1 << 30

PROT_NONE: Final = 0x0
PROT_READ: Final = 0x1
PROT_WRITE: Final = 0x2
PROT_EXEC: Final = 0x4
PROT_SEM: Final = 0x8
PROT_GROWSDOWN: Final = 0x01000000
PROT_GROWSUP: Final = 0x02000000

MAP_SHARED: Final = 0x01
MAP_PRIVATE: Final = 0x02
MAP_SHARED_VALIDATE: Final = 0x03
MAP_DROPPABLE: Final = 0x08  # a mapping type (6.11+): private anonymous memory the kernel may zero at will
MAP_TYPE: Final = 0x0F
MAP_FIXED: Final = 0x10
MAP_ANONYMOUS: Final = 0x20
MAP_32BIT: Final = 0x40
MAP_GROWSDOWN: Final = 0x0100
MAP_DENYWRITE: Final = 0x0800
MAP_EXECUTABLE: Final = 0x1000
MAP_LOCKED: Final = 0x2000
MAP_NORESERVE: Final = 0x4000
MAP_POPULATE: Final = 0x8000
MAP_NONBLOCK: Final = 0x10000
MAP_STACK: Final = 0x20000
MAP_HUGETLB: Final = 0x40000
MAP_SYNC: Final = 0x80000
MAP_FIXED_NOREPLACE: Final = 0x100000
MAP_UNINITIALIZED: Final = 0x4000000
#: MAP_HUGETLB's page size, log2 of it in the 6 bits at HUGETLB_FLAG_ENCODE_SHIFT (0: the default).
HUGETLB_FLAG_ENCODE_SHIFT: Final = 26
HUGETLB_FLAG_ENCODE_MASK: Final = 0x3F
#: The flags every file mapping accepted before MAP_SHARED_VALIDATE (include/linux/mman.h): MAP_SHARED
#: drops the others, MAP_SHARED_VALIDATE refuses them unless the file takes them (-EOPNOTSUPP).
LEGACY_MAP_MASK: Final = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE
                          | MAP_EXECUTABLE | MAP_UNINITIALIZED | MAP_GROWSDOWN | MAP_LOCKED
                          | MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK | MAP_STACK | MAP_HUGETLB
                          | MAP_32BIT | 21 << HUGETLB_FLAG_ENCODE_SHIFT
                          | 30 << HUGETLB_FLAG_ENCODE_SHIFT)  # MAP_HUGE_2MB, _1GB

MREMAP_MAYMOVE: Final = 1
MREMAP_FIXED: Final = 2
MREMAP_DONTUNMAP: Final = 4

MLOCK_ONFAULT: Final = 0x01
MCL_CURRENT: Final = 1
MCL_FUTURE: Final = 2
MCL_ONFAULT: Final = 4

MADV_NORMAL: Final = 0
MADV_RANDOM: Final = 1
MADV_SEQUENTIAL: Final = 2
MADV_WILLNEED: Final = 3
MADV_DONTNEED: Final = 4
MADV_FREE: Final = 8
MADV_REMOVE: Final = 9
MADV_DONTFORK: Final = 10
MADV_DOFORK: Final = 11
MADV_MERGEABLE: Final = 12
MADV_UNMERGEABLE: Final = 13
MADV_HUGEPAGE: Final = 14
MADV_NOHUGEPAGE: Final = 15
MADV_DONTDUMP: Final = 16
MADV_DODUMP: Final = 17
MADV_WIPEONFORK: Final = 18
MADV_KEEPONFORK: Final = 19
MADV_COLD: Final = 20
MADV_PAGEOUT: Final = 21
MADV_POPULATE_READ: Final = 22
MADV_POPULATE_WRITE: Final = 23
MADV_DONTNEED_LOCKED: Final = 24
MADV_COLLAPSE: Final = 25
MADV_GUARD_INSTALL: Final = 102
MADV_GUARD_REMOVE: Final = 103

O_RDONLY: Final = 0o0
O_WRONLY: Final = 0o1
O_RDWR: Final = 0o2
O_ACCMODE: Final = 0o3
O_CREAT: Final = 0o100
O_EXCL: Final = 0o200
O_NOCTTY: Final = 0o400
O_TRUNC: Final = 0o1000
O_APPEND: Final = 0o2000
O_NONBLOCK: Final = 0o4000
O_DSYNC: Final = 0o10000
O_ASYNC: Final = 0o20000  # FASYNC
O_DIRECT: Final = 0o40000
O_LARGEFILE: Final = 0o100000
O_DIRECTORY: Final = 0o200000
O_NOFOLLOW: Final = 0o400000
O_NOATIME: Final = 0o1000000
O_CLOEXEC: Final = 0o2000000
O_PATH: Final = 0o10000000
AT_FDCWD: Final = -100
AT_REMOVEDIR: Final = 0x200
#: INR_OPEN_CUR: the RLIMIT_NOFILE soft limit a process starts with (include/uapi/linux/fs.h).
INR_OPEN_CUR: Final = 1024
# include/uapi/linux/mempolicy.h: mbind() modes, mode flags and flags
MPOL_DEFAULT: Final = 0
MPOL_PREFERRED: Final = 1
MPOL_BIND: Final = 2
MPOL_INTERLEAVE: Final = 3
MPOL_LOCAL: Final = 4
MPOL_PREFERRED_MANY: Final = 5
MPOL_WEIGHTED_INTERLEAVE: Final = 6
MPOL_F_NUMA_BALANCING: Final = 1 << 13
MPOL_F_RELATIVE_NODES: Final = 1 << 14
MPOL_F_STATIC_NODES: Final = 1 << 15
MPOL_MF_STRICT: Final = 1 << 0
MPOL_MF_MOVE: Final = 1 << 1
MPOL_MF_MOVE_ALL: Final = 1 << 2
# include/uapi/linux/memfd.h
MFD_CLOEXEC: Final = 0x1
MFD_ALLOW_SEALING: Final = 0x2
MFD_HUGETLB: Final = 0x4
MFD_NOEXEC_SEAL: Final = 0x8
MFD_EXEC: Final = 0x10

F_DUPFD: Final = 0
F_GETFD: Final = 1
F_SETFD: Final = 2
F_GETFL: Final = 3
F_SETFL: Final = 4
F_GETLK: Final = 5
F_SETLK: Final = 6
F_SETLKW: Final = 7
F_SETOWN: Final = 8
F_GETOWN: Final = 9
F_SETSIG: Final = 10
F_GETSIG: Final = 11
F_SETOWN_EX: Final = 15
F_GETOWN_EX: Final = 16
F_GETOWNER_UIDS: Final = 17
F_OFD_GETLK: Final = 36
F_OFD_SETLK: Final = 37
F_OFD_SETLKW: Final = 38
F_SETLEASE: Final = 1024
F_GETLEASE: Final = 1025
F_NOTIFY: Final = 1026
F_DUPFD_QUERY: Final = 1027
F_CREATED_QUERY: Final = 1028
F_CANCELLK: Final = 1029
F_DUPFD_CLOEXEC: Final = 1030
F_SETPIPE_SZ: Final = 1031
F_GETPIPE_SZ: Final = 1032
F_ADD_SEALS: Final = 1033
F_GET_SEALS: Final = 1034
F_GET_RW_HINT: Final = 1035
F_SET_RW_HINT: Final = 1036
F_GET_FILE_RW_HINT: Final = 1037
F_SET_FILE_RW_HINT: Final = 1038

# msync flags.
MS_ASYNC: Final = 1
MS_INVALIDATE: Final = 2
MS_SYNC: Final = 4

# sync_file_range flags.
SYNC_FILE_RANGE_WAIT_BEFORE: Final = 1
SYNC_FILE_RANGE_WRITE: Final = 2
SYNC_FILE_RANGE_WAIT_AFTER: Final = 4
SYNC_FILE_RANGE_WRITE_AND_WAIT: Final = 7  # WAIT_BEFORE | WRITE | WAIT_AFTER

ADDR_NO_RANDOMIZE: Final = 0x0040000
ADDR_COMPAT_LAYOUT: Final = 0x0200000

EPERM: Final = _errno.EPERM
EINTR: Final = _errno.EINTR
ENOENT: Final = _errno.ENOENT
ESRCH: Final = _errno.ESRCH
ESPIPE: Final = _errno.ESPIPE
EBADF: Final = _errno.EBADF
EAGAIN: Final = _errno.EAGAIN
ENOMEM: Final = _errno.ENOMEM
EACCES: Final = _errno.EACCES
EFAULT: Final = _errno.EFAULT
EEXIST: Final = _errno.EEXIST
ENODEV: Final = _errno.ENODEV
EINVAL: Final = _errno.EINVAL
EISDIR: Final = _errno.EISDIR
EMFILE: Final = _errno.EMFILE
EOVERFLOW: Final = _errno.EOVERFLOW
EBUSY: Final = _errno.EBUSY
ENOSPC: Final = _errno.ENOSPC
ENOTDIR: Final = _errno.ENOTDIR
EOPNOTSUPP: Final = _errno.EOPNOTSUPP

def _names(prefix: str) -> dict[str, int]:
    return {k: v for k, v in globals().items() if k.startswith(prefix) and isinstance(v, int)}


#: Symbolic names the scenario language and strace reader accept, by family.
PROT_NAMES: Final = _names("PROT_")
MAP_NAMES: Final = {k: v for k, v in _names("MAP_").items() if k != "MAP_TYPE"}
MREMAP_NAMES: Final = _names("MREMAP_")
MADV_NAMES: Final = _names("MADV_")
O_NAMES: Final = _names("O_")
MLOCK_NAMES: Final = {**_names("MLOCK_"), **_names("MCL_")}
ALL_NAMES: dict[str, int] = {
    **PROT_NAMES, **MAP_NAMES, **MREMAP_NAMES, **MADV_NAMES, **O_NAMES, **MLOCK_NAMES,
    **_names("F_"), **_names("MS_"), **_names("SYNC_FILE_RANGE_"), **_names("MFD_"), **_names("AT_"),
    **_names("MPOL_"), "NULL": 0,
}


def errno_name(err: int) -> str:
    """`ENOMEM` for 12: the symbolic name strace prints."""
    return _errno.errorcode.get(err, f"E{err}")


#: The largest unsigned long: C arithmetic on addresses, lengths and page indexes wraps modulo 2^64.
ULONG_MAX: Final = (1 << 64) - 1


def ul(x: int) -> int:
    """`x` as an unsigned long holds it (a sum past 2^64 wraps, as `start + len` does in C)."""
    return x & ULONG_MAX


def page_align(x: int) -> int:
    """PAGE_ALIGN(): round up to a page boundary (not wrapped: callers that need C's unsigned long
    wrap-around take ul() of the result)."""
    return (x + PAGE_SIZE - 1) & PAGE_MASK
