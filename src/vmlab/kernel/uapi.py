"""Constants of the user ABI (include/uapi/asm-generic/mman*.h, errno.h) for x86_64.

Shared by the model, the host oracle and the scenario language, so every side spells a flag the same way.
"""

from __future__ import annotations

import errno as _errno

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)
PMD_SIZE = 1 << 21
PUD_SIZE = 1 << 30

PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_SEM = 0x8
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_SHARED_VALIDATE = 0x03
MAP_DROPPABLE = 0x08  # a mapping type (6.11+): private anonymous memory the kernel may zero at will
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_32BIT = 0x40
MAP_GROWSDOWN = 0x0100
MAP_DENYWRITE = 0x0800
MAP_EXECUTABLE = 0x1000
MAP_LOCKED = 0x2000
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
MAP_STACK = 0x20000
MAP_HUGETLB = 0x40000
MAP_SYNC = 0x80000
MAP_FIXED_NOREPLACE = 0x100000
MAP_UNINITIALIZED = 0x4000000
#: MAP_HUGETLB's page size, log2 of it in the 6 bits at HUGETLB_FLAG_ENCODE_SHIFT (0: the default).
HUGETLB_FLAG_ENCODE_SHIFT = 26
HUGETLB_FLAG_ENCODE_MASK = 0x3F
#: The flags every file mapping accepted before MAP_SHARED_VALIDATE (include/linux/mman.h): MAP_SHARED
#: drops the others, MAP_SHARED_VALIDATE refuses them unless the file takes them (-EOPNOTSUPP).
LEGACY_MAP_MASK = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE | MAP_EXECUTABLE
                   | MAP_UNINITIALIZED | MAP_GROWSDOWN | MAP_LOCKED | MAP_NORESERVE | MAP_POPULATE
                   | MAP_NONBLOCK | MAP_STACK | MAP_HUGETLB | MAP_32BIT
                   | 21 << HUGETLB_FLAG_ENCODE_SHIFT | 30 << HUGETLB_FLAG_ENCODE_SHIFT)  # MAP_HUGE_2MB, _1GB

MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

MLOCK_ONFAULT = 0x01
MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4

MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_FREE = 8
MADV_REMOVE = 9
MADV_DONTFORK = 10
MADV_DOFORK = 11
MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_DONTDUMP = 16
MADV_DODUMP = 17
MADV_WIPEONFORK = 18
MADV_KEEPONFORK = 19
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
MADV_DONTNEED_LOCKED = 24
MADV_COLLAPSE = 25
MADV_GUARD_INSTALL = 102
MADV_GUARD_REMOVE = 103

O_RDONLY = 0o0
O_WRONLY = 0o1
O_RDWR = 0o2
O_ACCMODE = 0o3
O_CREAT = 0o100
O_EXCL = 0o200
O_NOCTTY = 0o400
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_NONBLOCK = 0o4000
O_DSYNC = 0o10000
O_ASYNC = 0o20000  # FASYNC
O_DIRECT = 0o40000
O_LARGEFILE = 0o100000
O_DIRECTORY = 0o200000
O_NOFOLLOW = 0o400000
O_NOATIME = 0o1000000
O_CLOEXEC = 0o2000000
O_PATH = 0o10000000
AT_FDCWD = -100
AT_REMOVEDIR = 0x200
#: INR_OPEN_CUR: the RLIMIT_NOFILE soft limit a process starts with (include/uapi/linux/fs.h).
INR_OPEN_CUR = 1024
# include/uapi/linux/mempolicy.h: mbind() modes, mode flags and flags
MPOL_DEFAULT = 0
MPOL_PREFERRED = 1
MPOL_BIND = 2
MPOL_INTERLEAVE = 3
MPOL_LOCAL = 4
MPOL_PREFERRED_MANY = 5
MPOL_WEIGHTED_INTERLEAVE = 6
MPOL_F_NUMA_BALANCING = 1 << 13
MPOL_F_RELATIVE_NODES = 1 << 14
MPOL_F_STATIC_NODES = 1 << 15
MPOL_MF_STRICT = 1 << 0
MPOL_MF_MOVE = 1 << 1
MPOL_MF_MOVE_ALL = 1 << 2
# include/uapi/linux/memfd.h
MFD_CLOEXEC = 0x1
MFD_ALLOW_SEALING = 0x2
MFD_HUGETLB = 0x4
MFD_NOEXEC_SEAL = 0x8
MFD_EXEC = 0x10

F_DUPFD = 0
F_GETFD = 1
F_SETFD = 2
F_GETFL = 3
F_SETFL = 4
F_GETLK = 5
F_SETLK = 6
F_SETLKW = 7
F_SETOWN = 8
F_GETOWN = 9
F_SETSIG = 10
F_GETSIG = 11
F_SETOWN_EX = 15
F_GETOWN_EX = 16
F_GETOWNER_UIDS = 17
F_OFD_GETLK = 36
F_OFD_SETLK = 37
F_OFD_SETLKW = 38
F_SETLEASE = 1024
F_GETLEASE = 1025
F_NOTIFY = 1026
F_DUPFD_QUERY = 1027
F_CREATED_QUERY = 1028
F_CANCELLK = 1029
F_DUPFD_CLOEXEC = 1030
F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032
F_ADD_SEALS = 1033
F_GET_SEALS = 1034
F_GET_RW_HINT = 1035
F_SET_RW_HINT = 1036
F_GET_FILE_RW_HINT = 1037
F_SET_FILE_RW_HINT = 1038

# msync flags.
MS_ASYNC = 1
MS_INVALIDATE = 2
MS_SYNC = 4

# sync_file_range flags.
SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4
SYNC_FILE_RANGE_WRITE_AND_WAIT = 7  # WAIT_BEFORE | WRITE | WAIT_AFTER

ADDR_NO_RANDOMIZE = 0x0040000
ADDR_COMPAT_LAYOUT = 0x0200000

EPERM = _errno.EPERM
EINTR = _errno.EINTR
ENOENT = _errno.ENOENT
ESRCH = _errno.ESRCH
ESPIPE = _errno.ESPIPE
EBADF = _errno.EBADF
EAGAIN = _errno.EAGAIN
ENOMEM = _errno.ENOMEM
EACCES = _errno.EACCES
EFAULT = _errno.EFAULT
EEXIST = _errno.EEXIST
ENODEV = _errno.ENODEV
EINVAL = _errno.EINVAL
EISDIR = _errno.EISDIR
EMFILE = _errno.EMFILE
EOVERFLOW = _errno.EOVERFLOW
EBUSY = _errno.EBUSY
ENOSPC = _errno.ENOSPC
ENOTDIR = _errno.ENOTDIR
EOPNOTSUPP = _errno.EOPNOTSUPP

def _names(prefix: str) -> dict[str, int]:
    return {k: v for k, v in globals().items() if k.startswith(prefix) and isinstance(v, int)}


#: Symbolic names the scenario language and strace reader accept, by family.
PROT_NAMES = _names("PROT_")
MAP_NAMES = {k: v for k, v in _names("MAP_").items() if k != "MAP_TYPE"}
MREMAP_NAMES = _names("MREMAP_")
MADV_NAMES = _names("MADV_")
O_NAMES = _names("O_")
MLOCK_NAMES = {**_names("MLOCK_"), **_names("MCL_")}
ALL_NAMES: dict[str, int] = {
    **PROT_NAMES, **MAP_NAMES, **MREMAP_NAMES, **MADV_NAMES, **O_NAMES, **MLOCK_NAMES,
    **_names("F_"), **_names("MS_"), **_names("SYNC_FILE_RANGE_"), **_names("MFD_"), **_names("AT_"),
    **_names("MPOL_"), "NULL": 0,
}


def errno_name(err: int) -> str:
    """`ENOMEM` for 12: the symbolic name strace prints."""
    return _errno.errorcode.get(err, f"E{err}")


#: The largest unsigned long: C arithmetic on addresses, lengths and page indexes wraps modulo 2^64.
ULONG_MAX = (1 << 64) - 1


def ul(x: int) -> int:
    """`x` as an unsigned long holds it (a sum past 2^64 wraps, as `start + len` does in C)."""
    return x & ULONG_MAX


def page_align(x: int) -> int:
    """PAGE_ALIGN(): round up to a page boundary (not wrapped: callers that need C's unsigned long
    wrap-around take ul() of the result)."""
    return (x + PAGE_SIZE - 1) & PAGE_MASK
