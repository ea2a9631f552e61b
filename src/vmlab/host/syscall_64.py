"""x86_64 syscall numbers by the kernel's names (arch/x86/entry/syscalls/syscall_64.tbl).

Only the calls a memory scenario needs; checked against /usr/include/x86_64-linux-gnu/asm/unistd_64.h.
"""

from __future__ import annotations

SYSCALL_NR: dict[str, int] = {
    "read": 0, "write": 1, "open": 2, "close": 3, "fstat": 5, "lseek": 8,
    "mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12,
    "pread64": 17, "pwrite64": 18, "pipe": 22,
    "mremap": 25, "msync": 26, "mincore": 27, "madvise": 28,
    "dup": 32, "dup2": 33, "getpid": 39,
    "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "exit": 60, "wait4": 61, "kill": 62,
    "fcntl": 72, "fsync": 74, "fdatasync": 75, "truncate": 76, "ftruncate": 77,
    "mkdir": 83, "unlink": 87, "getrusage": 98, "getppid": 110, "personality": 135,
    "mlock": 149, "munlock": 150, "mlockall": 151, "munlockall": 152, "prctl": 157,
    "readahead": 187, "fadvise64": 221, "exit_group": 231,
    "mbind": 237, "set_mempolicy": 238, "get_mempolicy": 239, "migrate_pages": 256,
    "openat": 257, "unlinkat": 263, "sync_file_range": 277, "move_pages": 279, "fallocate": 285,
    "dup3": 292, "pipe2": 293, "prlimit64": 302, "memfd_create": 319, "userfaultfd": 323,
    "mlock2": 325, "pidfd_open": 434, "clone3": 435, "process_madvise": 440,
    "memfd_secret": 447, "process_mrelease": 448,
}

#: Calls that create or end processes: a scenario uses the backend's fork() and exit() instead,
#: which keep the command channel of every process.
PROCESS_CALLS = frozenset({"clone", "clone3", "fork", "vfork", "exit", "exit_group"})
