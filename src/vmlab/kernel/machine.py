"""The model as a Backend: a machine with processes, their file tables and the syscalls a scenario makes.

Syscall arguments and results are the kernel's: the same numbers strace shows, -errno on failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vmlab.backend import MEMCG_OOM_WAIT, Arg, Counters, Program, Settings
from vmlab.kernel import signal, task_mmu, vmscan
from vmlab.kernel import sys as kernel_sys
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM, builtin_inode
from vmlab.kernel.char_mem import DEV_NULL, is_chrdev, llseek, read_length, write_result
from vmlab.kernel.exec import do_execve
from vmlab.kernel.fadvise import generic_fadvise
from vmlab.kernel.fault import FAULT_OOM, SIGKILL, FaultStats, mmu_permits, user_access
from vmlab.kernel.fcntl import do_fcntl, open_f_flags
from vmlab.kernel.filemap import (
    MAX_PAGECACHE_ORDER,
    cached_folios,
    filemap_read,
    read_folio,
    residency,
    write_begin_get_folio,
)
from vmlab.kernel.fincore import show_fincore
from vmlab.kernel.fork import PID_SIZE, TaskObjects, copy_process_objects, dup_mmap, mm_alloc
from vmlab.kernel.fs import (
    PSEUDO_FILE_CHARGED,
    PSEUDO_FILE_FREED,
    SHMEM_INTERNAL_DEV,
    ShmemMount,
    SimFs,
    host_inode,
)
from vmlab.kernel.gup import mm_populate
from vmlab.kernel.madvise import do_madvise
from vmlab.kernel.memcontrol import (
    MemCgroup,
    MemCgroupTree,
    MemcgTaskState,
    memcg_kmem_charge_obj,
    memcg_kmem_charge_obj_nofail,
    memcg_kmem_uncharge_obj,
)
from vmlab.kernel.meminfo import show_meminfo
from vmlab.kernel.memory import FaultTrace, exit_mmap, fault_in_fresh_anon, try_to_unuse
from vmlab.kernel.mempolicy import do_mbind
from vmlab.kernel.mlock import sys_mlock2, sys_mlockall, sys_munlock, sys_munlockall
from vmlab.kernel.mm_types import (
    FILP_SIZE,
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    VM_LOCKED,
    VM_SHARED,
    File,
    Inode,
    MmStruct,
)
from vmlab.kernel.mmap import (
    VmSysctl,
    arch_pick_mmap_layout,
    do_mmap,
    do_munmap,
    hugetlb_anon_mmap_error,
    sys_brk,
)
from vmlab.kernel.mprotect import do_mprotect
from vmlab.kernel.mremap import do_mremap
from vmlab.kernel.oom_kill import (
    GFP_HIGHUSER_MOVABLE_ZERO,
    GFP_KERNEL,
    MAX_OOM_RETRIES,
    MMF_OOM_SKIP,
    OOM_SCORE_ADJ_MAX,
    OOM_SCORE_ADJ_MIN,
    PAGE_ALLOC_COSTLY_ORDER,
    OomControl,
    OomKiller,
    OomPanic,
    OomSysctl,
)
from vmlab.kernel.page_alloc import PhysMem, gfp_zone
from vmlab.kernel.page_writeback import (
    BackingDev,
    balance_dirty_pages,
    filemap_cachestat,
    filemap_write_and_wait_range,
    folio_mark_dirty,
    ksys_sync,
    sync_file_range,
    sync_inodes,
)
from vmlab.kernel.pgtable import _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, TASK_SIZE_MAX, PageTables, pmd_leaf_pfns
from vmlab.kernel.printk import KERN_WARNING, Printk
from vmlab.kernel.shmem import shmem_free_swap, shmem_unacct_size
from vmlab.kernel.show_mem import show_mem
from vmlab.kernel.swap import lru_add_drain, lru_view, put_page
from vmlab.kernel.swapfile import (
    disable_area,
    find_area,
    reinsert_swap_info,
    remove_area,
    swaps_show,
    sys_swapon,
)
from vmlab.kernel.truncate import block_zero_eof, drop_pagecache, truncate_inode_pages, truncate_setsize
from vmlab.kernel.uapi import (
    AT_FDCWD,
    AT_REMOVEDIR,
    EACCES,
    EBADF,
    EBUSY,
    EEXIST,
    EFAULT,
    EINTR,
    EINVAL,
    EISDIR,
    EMFILE,
    ENOENT,
    ENOMEM,
    EPERM,
    ESPIPE,
    ESRCH,
    INR_OPEN_CUR,
    MAP_ANONYMOUS,
    MAP_HUGETLB,
    MAP_NONBLOCK,
    MAP_POPULATE,
    MFD_CLOEXEC,
    MS_ASYNC,
    MS_INVALIDATE,
    MS_SYNC,
    O_ACCMODE,
    O_CLOEXEC,
    O_CREAT,
    O_EXCL,
    O_PATH,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    SYNC_FILE_RANGE_WRITE_AND_WAIT,
    page_align,
)
from vmlab.kernel.vmstat import show_vmstat
from vmlab.kernel.xarray import xa_destroy
from vmlab.linux import CacheStat

#: The session of the first process: a login shell's, whose leader is outside the model.
LOGIN_SID = 1
#: The descriptors a process may have: its RLIMIT_NOFILE, the default soft limit (the host oracle sets it).
NR_OPEN = INR_OPEN_CUR
#: Pages a writer dirties between two balance_dirty_pages() checks (ratelimit_pages, 32 at least).
WRITE_RATELIMIT = 32
#: Signals after which the process is gone (the others leave it waiting, still holding its memory).
_FATAL = ("SIGSEGV", "SIGBUS")
#: Runs of first-touch writes at least this long are faulted in at once (see fault_in_fresh_anon).
BULK_MIN = 64 << 12
#: After reclaim unmapped pages during a batched replay, this many accesses go one by one (no snapshot
#: of the page tables to go stale) before the replay batches again.
STEPWISE_WINDOW = 4096


def _tlb_snapshot(pt: PageTables) -> tuple[np.ndarray, np.ndarray]:
    """The virtual page numbers the MMU would let a load / a store through now (sorted arrays)."""
    addrs, entries = pt.entries(0, 1 << 47)
    present = (entries & np.uint64(_PAGE_PRESENT)) != 0
    rw = (entries & np.uint64(_PAGE_RW)) != 0
    leaf = (entries & np.uint64(_PAGE_PSE)) != 0
    vpn = addrs >> np.uint64(12)
    huge = np.repeat(vpn[leaf], 512) + np.tile(np.arange(512, dtype=np.uint64), int(leaf.sum()))
    huge_rw = np.repeat(rw[leaf] & present[leaf], 512)
    huge_p = np.repeat(present[leaf], 512)
    small = ~leaf
    readable = np.concatenate((vpn[small & present], huge[huge_p]))
    writable = np.concatenate((vpn[small & present & rw], huge[huge_rw]))
    return np.sort(readable), np.sort(writable)


#: The most one read() or write() moves (include/linux/fs.h: INT_MAX & PAGE_MASK).
MAX_RW_COUNT = 0x7FFFF000
#: The C type of each parameter of SYSCALL_DEFINEn(name, ...) on x86_64, as the entry code hands the
#: registers over: "ul" unsigned long (and size_t), "l" long (off_t, loff_t), "i" int, "ui" unsigned
#: int, "" a string or string array (passed as is). A call not listed takes its numbers as they are.
#: (mmap's fd is an int in ksys_mmap_pgoff(); fadvise64's len a loff_t in ksys_fadvise64_64().)
SYSCALL_ARG_TYPES: dict[str, tuple[str, ...]] = {
    "mmap": ("ul", "ul", "ul", "ul", "i", "ul"),
    "munmap": ("ul", "ul"), "mprotect": ("ul", "ul", "ul"), "mremap": ("ul",) * 5, "brk": ("ul",),
    "madvise": ("ul", "ul", "i"), "mlock": ("ul", "ul"), "mlock2": ("ul", "ul", "i"),
    "munlock": ("ul", "ul"), "mlockall": ("i",), "msync": ("ul", "ul", "i"),
    "openat": ("i", "", "i", "ui"), "open": ("", "i", "ui"), "close": ("ui",), "dup": ("ui",),
    "dup2": ("ui", "ui"), "dup3": ("ui", "ui", "i"), "fcntl": ("ui", "ui", "ul"),
    "read": ("ui", "ul", "ul"), "write": ("ui", "ul", "ul"), "pread64": ("ui", "ul", "ul", "l"),
    "pwrite64": ("ui", "ul", "ul", "l"), "lseek": ("ui", "l", "ui"), "fadvise64": ("i", "l", "l", "i"),
    "ftruncate": ("ui", "l"), "truncate": ("", "l"), "fsync": ("ui",), "fdatasync": ("ui",),
    "sync_file_range": ("i", "l", "l", "ui"), "syncfs": ("i",), "swapon": ("", "i"),
    "memfd_create": ("", "ui"), "unlink": ("",), "unlinkat": ("i", "", "i"),
    "mbind": ("ul", "ul", "ul", "ul", "ul", "ui"),
}
_C_TYPES = {"ul": (64, False), "l": (64, True), "ui": (32, False), "i": (32, True)}


def syscall_args(name: str, args: tuple[Arg, ...]) -> tuple[Arg, ...]:
    """`args` as syscall `name` receives them: each number wrapped to its parameter's C type."""
    kinds = SYSCALL_ARG_TYPES.get(name)
    if kinds is None:
        return args
    out: list[Arg] = []
    for kind, arg in zip(kinds, args, strict=False):
        if isinstance(arg, int) and kind:
            bits, signed = _C_TYPES[kind]
            arg &= (1 << bits) - 1
            if signed and arg >> (bits - 1):
                arg -= 1 << bits
        out.append(arg)
    return (*out, *args[len(kinds):])


@dataclass(eq=False)
class Task:
    """A process: pid, address space and open files (fd -> File, with the close-on-exec set), and what
    the OOM killer reads of it (vmlab.kernel.oom_kill.OomTask). One thread per process: tgid = pid."""

    pid: int
    mm: MmStruct
    files: dict[int, File] = field(default_factory=dict)
    cloexec: set[int] = field(default_factory=set)
    stats: FaultStats = field(default_factory=FaultStats)
    comm: str = ""
    uid: int = 0
    flags: int = 0  # PF_*
    oom_score_adj: int = 0
    oom_score_adj_min: int = 0
    memcg: MemCgroup | None = None
    oom_mm: MmStruct | None = None
    sigkill: bool = False
    frozen: bool = False
    in_vfork: bool = False
    oom_origin: bool = False
    cap_sys_resource: bool = True
    ppid: int = 1
    #: argv as /proc/PID/cmdline shows it (set by exec, kept by fork).
    cmdline: tuple[str, ...] = ()
    #: The signal the process dies of once `sigkill` is set (a fatal SIGTERM is reported as SIGTERM).
    exit_signal: str = SIGKILL
    #: Signals whose disposition is SIG_IGN (kept across fork and exec).
    sig_ignored: set[str] = field(default_factory=set)
    #: in_user_fault and memcg_in_oom: a v1 memcg OOM (oom_kill_disable) met in a user fault.
    memcg_oom: MemcgTaskState = field(default_factory=MemcgTaskState)
    #: Process group and session (vmlab.kernel.sys; inherited on fork; 0 until the machine sets them).
    pgid: int = 0
    sid: int = 0
    #: Niceness, -20..19 (inherited on fork).
    nice: int = 0
    #: Its kernel objects (task_struct, stack, cred, ...) and the memcg they are charged to: a forked
    #: process's (vmlab.kernel.fork.TaskObjects); a process the machine made itself has none charged.
    objects: TaskObjects = field(default_factory=TaskObjects)

    @property
    def tgid(self) -> int:
        """The thread-group id: the process's pid (the model runs one thread per process)."""
        return self.pid

    def fget(self, fd: int) -> File | None:
        """fget(): the open file at `fd` to read, write, map, seek or sync through; None when there is
        none or it is an O_PATH one (FMODE_PATH files are left out: -EBADF)."""
        file = self.files.get(fd)
        return None if file is None or file.f_flags & O_PATH else file

    def fd_install(self, fd: int, file: File, cloexec: bool = False) -> None:
        """fd_install(), or do_dup2() onto a descriptor in use: `file` at `fd`, holding a reference
        (close-on-exec as `cloexec` says); the file that was there is closed (filp_close)."""
        file.get()
        old = self.files.get(fd)
        self.files[fd] = file
        if cloexec:
            self.cloexec.add(fd)
        else:
            self.cloexec.discard(fd)
        if old is not None:
            old.put()

    def close_fd(self, fd: int) -> bool:
        """close_fd(): the descriptor goes and its reference to the file with it; False if none."""
        file = self.files.pop(fd, None)
        self.cloexec.discard(fd)
        if file is None:
            return False
        file.put()
        return True

    def dup_fd(self) -> dict[int, File]:
        """dup_fd(): a fork child's copy of the descriptor table, one more reference to each file."""
        for file in self.files.values():
            file.get()
        return dict(self.files)

    def exit_files(self) -> None:
        """exit_files(): every descriptor closed."""
        for fd in list(self.files):
            self.close_fd(fd)

    def alloc_fd(self, mem: PhysMem, start: int = 0) -> int:
        """alloc_fd(): the lowest free descriptor from `start`, its table made room for (expand_files:
        a larger table charged to the running task's memcg); -EMFILE past RLIMIT_NOFILE, -ENOMEM when
        the table cannot be had."""
        fd = start
        while fd in self.files:
            fd += 1
        if fd >= NR_OPEN:
            return -EMFILE
        return self.objects.fdt.expand(mem, fd) or fd


class ModelBackend:
    """The model of one machine; implements vmlab.backend.Backend."""

    name = "model"

    def __init__(self, ram: int | None = None) -> None:
        """An idle machine with `ram` bytes (default: Settings().ram; start() may change it)."""
        self.settings = Settings() if ram is None else Settings(ram=ram)
        self.program = Program("", ())
        self.mem = self._new_mem(self.settings.ram)
        #: When set, each fault's call path is appended here (the `--trace` view).
        self.traces: list[str] | None = None
        self.sysctl = VmSysctl()
        self.tasks: dict[int, Task] = {}
        self._next_pid = 1000
        self._shmem = ShmemMount()
        self._shmem_inodes: list[Inode] = []
        self._inodes: dict[tuple[int, int, int], Inode] = {}
        #: Host paths this machine unlinked: the model's copy of the namespace no longer has them.
        self._unlinked_names: set[str] = set()
        #: Deleted files a descriptor or a mapping still holds (the orphan list): evicted with the last.
        self._unlinked: list[Inode] = []
        #: The model's own files (open with O_CREAT of a path the host does not have, create_file).
        self.simfs = SimFs()
        self.memcgs = MemCgroupTree(version=1)
        self.oom_sysctl = OomSysctl()
        #: Processes that died other than by their own access (OOM kills): (pid, signal), oldest first.
        self.deaths: list[tuple[int, str]] = []
        self.panicked: str | None = None
        self._current: Task | None = None
        self._oom_streak = 0
        #: Untouched read-write reservations of processes imported from the host: pid -> (addr, pages).
        self.import_reserves: dict[int, tuple[int, int]] = {}
        #: Frames held for what the model does not hold itself (an imported host's page cache, kernel).
        self.kernel_pages: np.ndarray = np.zeros(0, dtype=np.int64)
        self._wire()
        self._syscalls: dict[str, Callable[..., int]] = {
            "mmap": self._mmap, "munmap": self._munmap, "mprotect": self._mprotect,
            "mremap": self._mremap, "brk": self._brk, "madvise": self._madvise,
            "mlock": self._mlock, "mlock2": self._mlock2, "munlock": self._munlock,
            "mlockall": self._mlockall, "munlockall": self._munlockall,
            "open": self._open, "openat": self._openat, "close": self._close, "dup": self._dup,
            "dup2": self._dup2, "dup3": self._dup3, "fcntl": self._fcntl,
            "ftruncate": self._ftruncate, "memfd_create": self._memfd_create, "execve": self._execve,
            "unlink": self._unlink, "unlinkat": self._unlinkat, "mbind": self._mbind,
            "read": self._read, "write": self._write, "pread64": self._pread64, "pwrite64": self._pwrite64,
            "lseek": self._lseek, "fadvise64": self._fadvise64, "truncate": self._truncate,
            "fsync": self._fsync, "fdatasync": self._fdatasync, "sync": self._sync,
            "sync_file_range": self._sync_file_range,
            "syncfs": self._syncfs, "msync": self._msync,
            "swapon": self._swapon, "swapoff": self._swapoff,
        }

    def _wire(self) -> None:
        """Connect the printk ring, the OOM killer and the memcg tree to the machine's memory."""
        self.log = Printk(self.mem.clock)
        self.oom = OomKiller(self.mem, self.log, lambda: list(self.tasks.values()), lambda: self._current,
                             self._oom_exit, self.oom_sysctl)
        self.mem.oom_hook = self._alloc_oom
        self.mem.uncharge_hook = self.memcgs.uncharge
        self.mem.swap.uncharge_swap = self.memcgs.uncharge_swap
        self.mem.memcgs = self.memcgs
        self.mem.lruvec.memcg_pages = self.memcgs.page_memcg
        self.memcgs.mem = self.mem
        self.memcgs.out_of_memory = self._memcg_oom
        self.memcgs.task_is_dying = self.oom.task_is_dying
        self.memcgs.retry_wait = self.oom.retry_wait
        self.memcgs.reclaim_hook = self._memcg_reclaim
        self.memcgs.current = self._current_memcg
        self.memcgs.task_state = self._current_memcg_state
        self.memcgs.pmd_mapped = lambda: pmd_leaf_pfns(mm.pt for mm in self._mms())

    # --- Backend -------------------------------------------------------------------------------------

    def start(self, program: Program, settings: Settings) -> int:
        """Exec `program` in a new first process; returns its pid (raises OSError if it cannot exec)."""
        self.settings = settings
        self.program = program
        if settings.ram != self.mem.max_pfn << 12:
            self.mem = self._new_mem(settings.ram)
            self._wire()
        self.sysctl = VmSysctl(max_map_count=settings.max_map_count, mmap_min_addr=settings.mmap_min_addr,
                               overcommit_memory=settings.overcommit_memory,
                               overcommit_ratio=settings.overcommit_ratio,
                               overcommit_kbytes=settings.overcommit_kbytes,
                               admin_reserve_kbytes=settings.admin_reserve_kbytes,
                               user_reserve_kbytes=settings.user_reserve_kbytes)
        task = Task(self._alloc_pid(), MmStruct(cap_sys_admin=settings.cap_sys_admin),
                    comm=os.path.basename(program.path)[:15], cap_sys_resource=settings.cap_sys_resource)
        task.pgid, task.sid = task.pid, LOGIN_SID  # a shell's job: its own group in the login session
        for fd in (0, 1, 2):
            task.fd_install(fd, File(Inode("/dev/null", ino=4, size=0, major=0, minor=5, rdev=DEV_NULL),
                                     writable=True, f_flags=open_f_flags(O_RDWR)))
        self.tasks[task.pid] = task
        self._run(task)  # its exec's pages are charged to its own (root) memcg, not the last task's
        err = self._execve(task, program.path, program.argv, program.envp)
        if err < 0:
            del self.tasks[task.pid]
            raise OSError(-err, f"exec {program.path}: {os.strerror(-err)}")
        for addr, length, write in program.startup:
            if self.access(task.pid, addr, length, write) is not None:
                raise OSError(0, f"{program.path}: its startup access at {addr:#x} faulted in the model")
        if self.traces is not None:
            self.traces.clear()  # the program's own startup is not the user's to trace
        return task.pid

    def syscall(self, pid: int, name: str, args: tuple[Arg, ...]) -> int:
        """Run one syscall in process `pid`; unknown names raise KeyError. Each number is first taken
        as the C type of its parameter (SYSCALL_ARG_TYPES), so -4096 as a length is 2^64 - 4096. A
        process the call's own allocations OOM-killed (MAP_POPULATE, mlock, swapoff in a memcg at its
        limit) dies on its way back to user mode: it is gone when the call returns, reported by
        reap_deaths(). (One killed before, while it was not running, runs the call and dies at its
        next access, unless reap_deaths() ran its exit first, as a scenario's runner does after each
        step.)"""
        task = self.tasks[pid]
        self._run(task)
        killed_before = task.sigkill
        result = self._syscalls[name](task, *syscall_args(name, args))
        self._release_orphans()
        if task.sigkill and not killed_before and pid in self.tasks:
            self._oom_exit(task)
        return result

    def _new_shmem(self, length: int) -> File:
        """__shmem_file_setup() (a shared anonymous mapping's, memfd_create's): a pseudo file, remembered
        so that its pages go when nothing holds it any more. Its inode, dentry and struct file are slab
        objects charged to the running task's memcg in that order (without reclaim, past the limit
        if need be, as VMAs are), given back with the file's last reference."""
        file = self._shmem.zero_setup(length)
        for size in PSEUDO_FILE_CHARGED:
            file.objcg = memcg_kmem_charge_obj_nofail(self.mem, size)
        file.slab = PSEUDO_FILE_FREED
        self._shmem_inodes.append(file.inode)
        return file

    def _release_orphans(self) -> None:
        """The last reference to an unlinked shmem file (MAP_SHARED|MAP_ANONYMOUS, memfd) went: its
        pages are freed, and its slots on swap (shmem_evict_inode); for a deleted file (unlink),
        iput() evicts the inode: truncate_inode_pages_final() frees its page cache, its dirty pages
        never written."""
        if not self._shmem_inodes and not self._unlinked:
            return
        held = {id(f.inode) for t in self.tasks.values() for f in t.files.values()}
        held |= {id(v.vm_file.inode) for t in self.tasks.values() for v in t.mm if v.vm_file is not None}
        for inode in [i for i in self._unlinked if id(i) not in held]:
            self._unlinked.remove(inode)
            truncate_inode_pages(self.mem, inode, 0)
        for inode in [i for i in self._shmem_inodes if id(i) not in held]:
            self._shmem_inodes.remove(inode)
            for pfn in inode.i_pages.values():
                put_page(self.mem, pfn)
            inode.i_pages.clear()
            shmem_free_swap(self.mem, inode, 0)
            xa_destroy(inode)
            shmem_unacct_size(self.mem, inode)

    def create_file(self, path: str, size: int, bdi: BackingDev | None = None, *,
                    large_folios: bool = False) -> Inode:
        """A file of the model's own (not on the host) of `size` bytes, none cached, on device `bdi`;
        `large_folios` as ext4's page cache (see SimFs.create)."""
        return self.simfs.create(path, size, bdi, large_folios=large_folios)

    def cachestat(self, pid: int, fd: int, off: int = 0, length: int = 0) -> CacheStat | int:
        """cachestat(2) of an open file of process `pid`, or -EBADF."""
        file = self.tasks[pid].files.get(fd)
        return -EBADF if file is None else filemap_cachestat(self.mem, file.inode, off, length)

    def drop_caches(self, mode: int) -> None:
        """echo mode > /proc/sys/vm/drop_caches: bit 1 drops the clean, unmapped page cache of every
        file (dirty pages stay: sync first, as the documentation says)."""
        if mode & 1:
            lru_add_drain(self.mem)  # lru_add_drain_all(): the model's one CPU
            drop_pagecache(self.mem, [*self._inodes.values(), *self.simfs.files.values(), *self._unlinked])

    def access(self, pid: int, addr: int, length: int, write: bool) -> str | None:
        """Touch each page of the range; a fatal signal ends the process."""
        try:
            return self._access(pid, addr, length, write)
        except OomPanic as err:
            self.panicked = str(err)
            return "PANIC"

    def _access(self, pid: int, addr: int, length: int, write: bool) -> str | None:
        """access() until the machine panics."""
        task = self.tasks[pid]
        self._run(task)
        self._oom_streak = 0
        if task.sigkill:  # a fatal signal came while it was not running: it dies before user code runs
            self.exit(pid)
            return task.exit_signal
        rlim = self.settings.rlimit_stack
        page = addr & PAGE_MASK
        end = addr + max(length, 1)
        vma = task.mm.vma_lookup(page)
        if write and self.traces is None and vma is not None and end - page >= BULK_MIN:
            done = fault_in_fresh_anon(task.mm, self.mem, vma, page, min(vma.vm_end, page_align(end)))
            task.stats.min_flt += done
            page += done << 12
        while page < end:
            trace = FaultTrace() if self.traces is not None else None
            sig = user_access(task.mm, max(page, addr), write, rlim, self.sysctl, task.stats, trace,
                              user_mode=True)
            if trace is not None and trace.lines and self.traces is not None:
                self.traces.append(trace.render())
            sig = self._fault_outcome(task, sig)
            if sig is not None:
                return sig
            if task.sigkill:  # killed (the OOM killer, a signal) while its fault ran
                self.exit(pid)
                return task.exit_signal
            page += PAGE_SIZE
        return None

    def _fault_outcome(self, task: Task, sig: str | None) -> str | None:
        """What a user access's fault result does to the task: out of memory runs the OOM killer
        (pagefault_out_of_memory), a fatal signal ends the process. The signal to report, or None."""
        if sig == FAULT_OOM:
            sig = self.pagefault_out_of_memory(task)
        if sig in (SIGKILL, *_FATAL) or task.sigkill:
            self.exit(task.pid)
        return task.exit_signal if task.sigkill else sig

    def access_trace(self, pid: int, addrs: np.ndarray, writes: np.ndarray | bool = False) -> str | None:
        """Replay a trace of single-byte accesses, in order; the fatal signal, or None.

        The hot path: accesses the MMU permits (present, and writable for a store) are checked for the
        whole trace at once against a snapshot of the page tables (a TLB) and take no fault; only the
        others go through the fault path, one by one, in trace order. A fault never unmaps another page,
        so a hit stays a hit. Accessed and dirty bits are set once per page touched.
        """
        task = self.tasks[pid]
        mm = task.mm
        assert mm.pt is not None
        vpns = np.asarray(addrs, dtype=np.uint64) >> np.uint64(12)
        wr = np.broadcast_to(np.asarray(writes, dtype=bool), vpns.shape)
        rlim = self.settings.rlimit_stack
        mem = self.mem
        start = 0  # accesses before `start` are done, their accessed bits written
        stepwise = False
        while start < len(vpns):
            if stepwise:  # under reclaim: one access at a time until a window passes without unmaps
                generation = mem.unmap_generation
                end = min(start + STEPWISE_WINDOW, len(vpns))
                for i in range(start, end):
                    sig = user_access(mm, int(addrs[i]), bool(wr[i]), rlim, self.sysctl, task.stats,
                                      user_mode=True)
                    if sig is not None:
                        self.exit(pid)
                        return sig
                start, stepwise = end, mem.unmap_generation != generation
                continue
            readable, writable = _tlb_snapshot(mm.pt)
            seg_v, seg_w = vpns[start:], wr[start:]
            hit = np.where(seg_w, np.isin(seg_v, writable), np.isin(seg_v, readable))
            done = 0  # hits of the segment before `done` have their bits written

            def flush_hits(upto: int, seg_v: np.ndarray = seg_v, seg_w: np.ndarray = seg_w,
                           hit: np.ndarray = hit) -> None:
                nonlocal done
                if upto > done:
                    sel = hit[done:upto]
                    keys = (seg_v[done:upto][sel] << np.uint64(1)) | seg_w[done:upto][sel].astype(np.uint64)
                    for key in np.unique(keys).tolist():
                        mmu_permits(mm, (key >> 1) << 12, bool(key & 1))  # the accessed (and dirty) bits
                    done = upto

            now_r: set[int] = set()
            now_w: set[int] = set()
            generation = mem.unmap_generation
            restart = len(vpns)
            for i in np.flatnonzero(~hit).tolist():
                vpn, w = int(seg_v[i]), bool(seg_w[i])
                if vpn in now_w or (not w and vpn in now_r):
                    hit[i] = True  # faulted in earlier in this segment: a hit now
                    continue
                mem.pending_accesses = lambda i=i: flush_hits(i)
                self._run(task)
                try:
                    sig = user_access(mm, (vpn << 12) | (int(addrs[start + i]) & 0xFFF), w, rlim,
                                      self.sysctl, task.stats, user_mode=True)
                finally:
                    mem.pending_accesses = None
                sig = self._fault_outcome(task, sig)
                if sig is not None:
                    return sig
                (now_w if w else now_r).add(vpn)
                if mem.unmap_generation != generation:  # reclaim unmapped pages: the snapshot is stale
                    restart, stepwise = start + i + 1, True
                    break
            flush_hits(restart - start)
            start = restart
        return None

    def fork(self, pid: int) -> int:
        """fork(): a child with a copy of the address space and the same open files, its kernel objects
        charged to the parent's memcg (vmlab.kernel.fork); -ENOMEM when the commit refuses the copy or
        a charge fails."""
        parent = self.tasks[pid]
        self._run(parent)
        objects = copy_process_objects(self.mem, parent.objects, max(parent.files, default=-1))
        if objects is None:
            return -ENOMEM
        mm = dup_mmap(parent.mm, self.sysctl)
        if isinstance(mm, int):
            objects.free()
            return mm
        if not objects.charge(self.mem, PID_SIZE):  # alloc_pid()
            exit_mmap(mm, self.mem)
            objects.free()
            return -ENOMEM
        child = Task(self._alloc_pid(), mm, parent.dup_fd(), set(parent.cloexec),
                     comm=parent.comm, uid=parent.uid, oom_score_adj=parent.oom_score_adj,
                     oom_score_adj_min=parent.oom_score_adj_min, cap_sys_resource=parent.cap_sys_resource,
                     ppid=parent.pid, cmdline=parent.cmdline, sig_ignored=set(parent.sig_ignored),
                     pgid=parent.pgid, sid=parent.sid, nice=parent.nice, objects=objects)
        self.tasks[child.pid] = child
        if parent.memcg is not None:
            self._attach(child, parent.memcg)
        for task, accesses in ((child, self.program.fork_child), (parent, self.program.fork_parent)):
            scratch = FaultStats()  # the program's own faults, not the scenario's
            for addr, _length, write in accesses:
                user_access(task.mm, addr, write, self.settings.rlimit_stack, self.sysctl, scratch,
                            user_mode=True)
        return child.pid

    def exit(self, pid: int) -> None:
        """exit(0): the process and its address space go away (exit_mmap, which also hides the mm from
        the OOM killer: MMF_OOM_SKIP), and it leaves its memcg."""
        task = self.tasks.pop(pid)
        self.memcgs.finish_oom_wait(task.memcg_oom)  # a fatal signal ends a memcg OOM sleep
        exit_mmap(task.mm, self.mem)
        task.exit_files()
        task.objects.free()
        task.mm.mmf |= MMF_OOM_SKIP
        self.oom.exit_oom_victim(task)
        self.memcgs.detach(task.tgid)
        self._release_orphans()

    def view(self, pid: int, name: str) -> str:
        """/proc/<pid>/maps, smaps, smaps_rollup, status, statm, oom_score or oom_score_adj as the model
        renders them."""
        mm = self.tasks[pid].mm
        if name == "maps":
            return task_mmu.show_maps(mm)
        if name == "smaps":
            return task_mmu.show_smaps(mm, self.mem)
        if name == "smaps_rollup":
            return task_mmu.show_smaps_rollup(mm, self.mem)
        if name == "status":
            return task_mmu.task_mem(mm)
        if name == "statm":
            return task_mmu.task_statm(mm)
        if name == "oom_score":
            return f"{self.oom.oom_score(self.tasks[pid])}\n"
        if name == "oom_score_adj":
            return f"{self.tasks[pid].oom_score_adj}\n"
        raise KeyError(name)

    def notes(self) -> list[str]:
        """Nothing acts on the model from outside a scenario."""
        return []

    def machine_view(self, name: str, arg: str = "") -> str:
        """/proc/meminfo, /proc/vmstat, /proc/pressure/memory, the LRU lists, `fincore --bytes ARG`,
        /proc/swaps, dmesg, or the v1 control files of memcg ARG (MemCgroup.v1_files) of the model
        machine."""
        if name == "meminfo":
            return show_meminfo(self.mem, self.sysctl)
        if name == "vmstat":
            return show_vmstat(self.mem)
        if name == "pressure":
            return self.mem.psi.show("memory")
        if name == "lru":
            return lru_view(self.mem)
        if name == "fincore":
            return show_fincore([(arg, self._inode(arg))])
        if name == "swaps":
            return swaps_show(self.mem.swap)
        if name == "dmesg":
            return self.log.dmesg()
        if name == "memcg":
            memcg = self.memcgs.lookup(arg)
            if memcg is None or self.memcgs.version != 1:
                raise KeyError(f"memcg {arg}")
            return "\n".join(memcg.v1_files()) + "\n"
        raise KeyError(name)

    def close(self) -> None:
        """Every process exits."""
        for pid in list(self.tasks):
            self.exit(pid)

    def counters(self, pid: int) -> Counters:
        """The task's fault counters and its mm's RSS, page-table and size counters."""
        task = self.tasks[pid]
        mm = task.mm
        rss = mm.rss
        pte_bytes = mm.pt.pgtables_bytes if mm.pt is not None else 0
        return Counters(task.stats.min_flt, task.stats.maj_flt, rss[MM_ANONPAGES] * 4, rss[MM_FILEPAGES] * 4,
                        rss[MM_SHMEMPAGES] * 4, pte_bytes >> 10, rss[MM_SWAPENTS] * 4, mm.total_vm * 4)

    def pagemap(self, pid: int, start: int, end: int) -> list[int]:
        """/proc/<pid>/pagemap entries of [start, end)."""
        return task_mmu.pagemap_read(self.tasks[pid].mm, self.mem, start, end)

    def residency(self, path: str) -> list[int]:
        """The cached pages of file `path` (fincore): the machine's page cache of it, or, for a file
        it has not opened, what the host's cache held when asked."""
        return residency(self._inode(path))

    def folios(self, path: str) -> list[tuple[int, int]]:
        """The folios holding the cached pages of file `path`, as (first index, pages)."""
        return cached_folios(self._inode(path))

    def file_cachestat(self, path: str) -> CacheStat:
        """cachestat(2) of the whole file `path`: its cached, dirty and under-write-back pages."""
        return filemap_cachestat(self.mem, self._inode(path), 0, 0)

    def file_size(self, path: str) -> int:
        """The size of file `path` as the machine sees it (its writes included)."""
        return self._inode(path).size

    def kpageflags(self, pfn: int) -> int:
        """/proc/kpageflags of one simulated frame."""
        return self.mem.stable_page_flags(pfn)

    def kpagecount(self, pfn: int) -> int:
        """/proc/kpagecount of one simulated frame (fs/proc/page.c: page_mapcount(), 0 for the zero
        pages, which are mapped by special entries)."""
        if not 0 <= pfn < self.mem.max_pfn or self.mem.is_zero_pfn(pfn) or self.mem.is_huge_zero_pfn(pfn):
            return 0
        return max(int(self.mem.mem_map._mapcount[pfn]) + 1, 0)

    # --- the OOM killer and memory cgroups ------------------------------------------------------------

    def _oom_exit(self, task: Task) -> None:
        """A task killed by the OOM killer got to run: it exits (do_exit -> exit_mmap)."""
        if task.pid in self.tasks:
            self.exit(task.pid)
            self.deaths.append((task.pid, task.exit_signal))

    def _alloc_oom(self, mem: PhysMem, order: int, zone_limit: int) -> bool:
        """__alloc_pages_may_oom(): no OOM for costly orders or a dying task; otherwise out_of_memory()
        and, if it killed (or waits for) a victim, a jiffy's wait before the allocation retries."""
        if order > PAGE_ALLOC_COSTLY_ORDER or self.oom.task_is_dying() or self._oom_streak >= MAX_OOM_RETRIES:
            return False
        self._oom_streak += 1
        oc = OomControl(None, GFP_HIGHUSER_MOVABLE_ZERO, order)
        if not self.oom.out_of_memory(oc, lambda: show_mem(mem, gfp_zone(oc.gfp[0]))):
            return False
        self.oom.retry_wait()
        return True

    def _memcg_reclaim(self, memcg: MemCgroup, nr_pages: int, may_swap: bool) -> int:
        """try_to_free_mem_cgroup_pages() by the node's reclaimer; the pages freed."""
        vmscan_ = self.mem.vmscan
        return 0 if vmscan_ is None else vmscan_.try_to_free_mem_cgroup_pages(memcg, nr_pages, may_swap)

    def _current_memcg(self) -> MemCgroup | None:
        """The memcg of the running task (None: the root, or no task running)."""
        return self._current.memcg if self._current is not None else None

    def _current_memcg_state(self) -> MemcgTaskState | None:
        """The running task's memcg OOM fields (None: no task running)."""
        return self._current.memcg_oom if self._current is not None else None

    def _run(self, task: Task) -> None:
        """`task` runs (a syscall, an access, a fork): it is the current task. One left asleep in a
        v1 memcg OOM (MEMCG_OOM_WAIT) could not run before something woke it: the model takes the
        step as that wake-up (it leaves the wait queue and its under_oom mark)."""
        self._current = task
        self.memcgs.finish_oom_wait(task.memcg_oom)

    def _memcg_oom(self, memcg: MemCgroup, order: int) -> bool:
        """mem_cgroup_out_of_memory(): the OOM killer confined to the memcg over its limit."""
        return self.oom.out_of_memory(OomControl(memcg, GFP_KERNEL, order), memcg.print_oom_meminfo)

    def pagefault_out_of_memory(self, task: Task) -> str:
        """pagefault_out_of_memory(): a user fault that failed for memory. A task that met a v1 memcg
        OOM with oom_kill_disable in it sleeps in the memcg OOM wait queue, under_oom marked
        (mem_cgroup_oom_synchronize; reported as MEMCG_OOM_WAIT) unless a fatal signal is pending; a
        killed task dies; otherwise the kernel warns and retries the fault for ever (reported as
        VM_FAULT_OOM)."""
        if self.memcgs.mem_cgroup_oom_synchronize(task.memcg_oom, handle=not task.sigkill):
            return task.exit_signal if task.sigkill else MEMCG_OOM_WAIT
        if task.sigkill:
            return task.exit_signal
        self.log.printk(KERN_WARNING, "Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF")
        return FAULT_OOM

    def spawn(self, comm: str, pid: int | None = None, uid: int = 0) -> int:
        """A new process with an empty address space and no program (a process imported from the host
        is built in it by vmlab.lab.oom_whatif); `pid` may be chosen if free. It leads a session and
        group of its own (a service's setsid()); only root's has CAP_SYS_RESOURCE. Returns the pid."""
        mm = MmStruct()
        arch_pick_mmap_layout(mm, self.settings.rlimit_stack, self.settings.legacy_va_layout)
        mm.pt = PageTables(self.mem)
        task = Task(pid if pid is not None else self._alloc_pid(), mm, comm=comm[:15], uid=uid)
        task.pgid = task.sid = task.pid  # started as a service: setsid()
        task.cap_sys_resource = uid == 0
        if task.pid in self.tasks:
            raise ValueError(f"pid {task.pid} is taken")
        self.tasks[task.pid] = task
        return task.pid

    def open_inode(self, pid: int, inode: Inode) -> int:
        """A read-only descriptor of a model-only file (its pages come in without I/O if `host_cached`
        is None) in process `pid`. The file joins the model's namespace (simfs) under its path, so its
        page cache stays reachable once descriptors and mappings are gone, as a file's does."""
        self.simfs.files.setdefault(inode.path, inode)
        return self._install(self.tasks[pid], File(inode), False)

    def reap_deaths(self) -> list[tuple[int, str]]:
        """The processes that died since the last call other than by their own access: (pid, signal).
        A process killed while it was not running (a fatal signal pending, not frozen) has run its exit
        by now, its wake-up's VICTIM_EXIT_NS timer or not: a scenario's steps are as far apart as the
        scheduler makes them, and on the kernel the victim is gone before its next step."""
        for task in [t for t in self.tasks.values() if t.sigkill and not t.frozen]:
            self._oom_exit(task)
        out, self.deaths = self.deaths, []
        return out

    def dmesg(self) -> str:
        """The kernel log as `dmesg` prints it."""
        return self.log.dmesg()

    def _attach(self, task: Task, memcg: MemCgroup) -> None:
        """The task joins `memcg`; its new charges go there (old ones stay, as in cgroup v1)."""
        self.memcgs.attach(memcg, task.tgid)
        task.memcg = memcg
        task.mm.memcg = memcg

    def memcg_create(self, path: str, limit: int | None) -> int:
        """mkdir a memory cgroup (and its parents) and write memory.limit_in_bytes (bytes; None: max)."""
        memcg = self.memcgs.mkdir(path)
        return 0 if limit is None else memcg.set_limit(limit // PAGE_SIZE)

    def memcg_set(self, path: str, name: str, value: int) -> int:
        """Write a memcg file: limit_in_bytes, memsw.limit_in_bytes (v1), swappiness (0..200:
        mem_cgroup_swappiness_write), oom_kill_disable, oom.group; 0 or -errno."""
        memcg = self.memcgs.lookup(path)
        if memcg is None:
            return -ENOENT
        if name in ("limit_in_bytes", "max"):
            return memcg.set_limit(value // PAGE_SIZE)
        if name == "memsw.limit_in_bytes" and self.memcgs.version == 1:
            return memcg.set_limit(value // PAGE_SIZE, memsw=True)
        if name == "swappiness":
            if not 0 <= value <= vmscan.MAX_SWAPPINESS:
                return -EINVAL
            memcg.swappiness = value
            return 0
        if name == "oom_kill_disable":
            memcg.oom_kill_disable = bool(value)
            if not value:
                self.memcgs.memcg1_oom_recover(memcg)
            return 0
        if name == "oom.group":
            memcg.oom_group = bool(value)
            return 0
        return -EINVAL

    def memcg_attach(self, pid: int, path: str) -> int:
        """echo PID > PATH/cgroup.procs; 0 or -ENOENT."""
        memcg = self.memcgs.lookup(path)
        if memcg is None:
            return -ENOENT
        self._attach(self.tasks[pid], memcg)
        return 0

    def hog_budget(self, pid: int) -> int:
        """How much a memory hog may map before it gives up: twice the machine's RAM."""
        return 2 * self.settings.ram

    def set_comm(self, pid: int, name: str) -> int:
        """Write /proc/PID/comm (proc_pid_set_comm -> set_task_comm: the first 15 bytes). Returns 0."""
        self.tasks[pid].comm = name.encode()[:15].decode(errors="ignore")
        return 0

    def sleep(self, pid: int, ns: int) -> None:
        """nanosleep() in process `pid`: `ns` of simulated time pass (timers fire); a fatal signal
        that comes meanwhile ends it when it wakes (its next access)."""
        self.mem.clock.advance(ns)

    def kill(self, pid: int, sig: str, sender: int | None = None) -> int:
        """kill(2) by process `sender` (None: root outside the machine) with kill(2)'s reading of `pid`
        (vmlab.kernel.signal.kill_something_info: a process, a group, all): 0, -ESRCH or -EPERM."""
        current = self.tasks.get(sender) if sender is not None else None
        return signal.kill_something_info(self.tasks, pid, sig, current, self.oom)

    def setpgid(self, pid: int, target: int, pgid: int) -> int:
        """setpgid(target, pgid) in process `pid` (vmlab.kernel.sys): 0 or -errno."""
        return kernel_sys.setpgid(self.tasks, self.tasks[pid], target, pgid)

    def getpgid(self, pid: int, target: int) -> int:
        """getpgid(target) in process `pid`: the group id, or -ESRCH."""
        return kernel_sys.getpgid(self.tasks, self.tasks[pid], target)

    def setpriority(self, pid: int, target: int, niceval: int) -> int:
        """setpriority(PRIO_PROCESS, target, niceval) in process `pid` (0: itself): 0 or -errno."""
        task = self.tasks.get(target or pid)
        return -ESRCH if task is None else kernel_sys.setpriority(self.tasks[pid], task, niceval)

    def sigignore(self, pid: int, sig: str) -> int:
        """sigaction(sig, SIG_IGN) in process `pid`: 0 or -EINVAL."""
        return signal.set_ignored(self.tasks[pid], sig)

    def process_mrelease(self, pid: int) -> int:
        """process_mrelease(2) of a pidfd of `pid`: 0, -ESRCH (gone) or -EINVAL (not dying)."""
        task = self.tasks.get(pid)
        if task is None:
            return -ESRCH
        return signal.process_mrelease(task, self.oom, task is self._current)

    def set_oom_score_adj(self, pid: int, adj: int) -> int:
        """Write /proc/PID/oom_score_adj (fs/proc/base.c:__set_oom_adj): -EINVAL out of range, -EACCES
        below oom_score_adj_min without CAP_SYS_RESOURCE; with it, the new value is also the minimum."""
        task = self.tasks[pid]
        if not OOM_SCORE_ADJ_MIN <= adj <= OOM_SCORE_ADJ_MAX:
            return -EINVAL
        if adj < task.oom_score_adj_min and not task.cap_sys_resource:
            return -EACCES
        task.oom_score_adj = adj
        if task.cap_sys_resource:
            task.oom_score_adj_min = adj
        return 0

    # --- helpers -------------------------------------------------------------------------------------

    def _mms(self) -> list[MmStruct]:
        """The live address spaces (what swapoff and the model's anon rmap walk visit)."""
        return [t.mm for t in self.tasks.values()]

    def _new_mem(self, ram: int) -> PhysMem:
        """The machine's physical memory with its reclaimer, whose rmap walk sees every task's mm."""
        mem = PhysMem(ram)
        mem.swap.mms = self._mms
        vmscan.install(mem, self._mms)
        return mem

    def _alloc_pid(self) -> int:
        self._next_pid += 1
        return self._next_pid

    def _inode(self, path: str) -> Inode:
        """One Inode object per file of this machine (host files by dev/ino, the built-in program's
        own copy), so that every open and exec of it shares one page cache and size."""
        sim = self.simfs.lookup(path)
        if sim is not None:
            return sim
        if os.path.realpath(path) in self._unlinked_names:
            raise FileNotFoundError(ENOENT, "unlinked in the model", path)
        if path == BUILTIN_PROGRAM:
            found = self._inodes.get((0, 0, 0))
            if found is None:
                found = self._inodes[(0, 0, 0)] = builtin_inode()
            return found
        fresh = host_inode(path)
        key = (fresh.major, fresh.minor, fresh.ino)
        return self._inodes.setdefault(key, fresh)

    @staticmethod
    def _populator(task: Task) -> Callable[[int, int], int]:
        """mm_populate() for one task, as mlock calls it (errors reported)."""
        return lambda start, end: mm_populate(task.mm, start, end, False, task.stats)

    # --- syscalls ------------------------------------------------------------------------------------

    def _mmap(self, task: Task, addr: int, length: int, prot: int, flags: int, fd: int, off: int) -> int:
        """ksys_mmap_pgoff() and vm_mmap_pgoff(): resolve the fd, map, then populate if asked."""
        if off & ~PAGE_MASK:
            return -EINVAL
        file = None
        if not flags & MAP_ANONYMOUS:
            file = task.fget(fd)
            if file is None:
                return -EBADF
            if flags & MAP_HUGETLB:
                return -EINVAL  # not a hugetlbfs file (the model has none)
        elif flags & MAP_HUGETLB:
            return hugetlb_anon_mmap_error(flags, length)
        result = do_mmap(task.mm, file, addr, length, prot, flags, off >> 12, self.sysctl,
                         self._new_shmem)
        if result >= 0:
            vma = task.mm.vma_lookup(result)
            locked = vma is not None and vma.vm_flags & VM_LOCKED
            if locked or (flags & (MAP_POPULATE | MAP_NONBLOCK)) == MAP_POPULATE:
                mm_populate(task.mm, result, result + length, True, task.stats)
        return result

    def _munmap(self, task: Task, addr: int, length: int) -> int:
        return do_munmap(task.mm, addr, length, self.sysctl)

    def _mprotect(self, task: Task, addr: int, length: int, prot: int) -> int:
        return do_mprotect(task.mm, addr, length, prot, self.sysctl, task.stats)

    def _mremap(self, task: Task, addr: int, old_len: int, new_len: int, flags: int,
                new_addr: int = 0) -> int:
        return do_mremap(task.mm, addr, old_len, new_len, flags, new_addr, self.sysctl, task.stats)

    def _brk(self, task: Task, brk: int) -> int:
        return sys_brk(task.mm, brk, self.sysctl)

    def _madvise(self, task: Task, addr: int, length: int, advice: int) -> int:
        return do_madvise(task.mm, addr, length, advice, self.sysctl, task.stats)

    def _mlock(self, task: Task, addr: int, length: int) -> int:
        return sys_mlock2(task.mm, addr, length, 0, self.sysctl, self._populator(task))

    def _mlock2(self, task: Task, addr: int, length: int, flags: int) -> int:
        return sys_mlock2(task.mm, addr, length, flags, self.sysctl,
                          self._populator(task))

    def _munlock(self, task: Task, addr: int, length: int) -> int:
        return sys_munlock(task.mm, addr, length, self.sysctl)

    def _mlockall(self, task: Task, flags: int) -> int:
        return sys_mlockall(task.mm, flags, self.sysctl, self._populator(task))

    def _munlockall(self, task: Task) -> int:
        return sys_munlockall(task.mm, self.sysctl)

    def _install(self, task: Task, file: File, cloexec: bool) -> int:
        fd = task.alloc_fd(self.mem)
        if fd >= 0:
            task.fd_install(fd, file, cloexec)
        return fd

    def _openat(self, task: Task, dirfd: int, path: str, flags: int, mode: int = 0) -> int:
        """do_sys_open(): open a host file (the model never writes to it), or make a file of the model's
        own with O_CREAT. An empty path is -ENOENT (getname() without AT_EMPTY_PATH), then a free
        descriptor is found (-EMFILE) and the struct file allocated (alloc_empty_file: FILP_SIZE bytes
        charged to the task's memcg, -ENOMEM when that fails) before the path is looked up; an open that
        fails after it frees the file, and the charge goes back."""
        if not path:
            return -ENOENT
        fd = task.alloc_fd(self.mem)
        if fd < 0:
            return fd
        err, objcg = memcg_kmem_charge_obj(self.mem, FILP_SIZE)
        if err:
            return -ENOMEM
        file = self._path_openat(task, dirfd, path, flags)
        if isinstance(file, int):
            if objcg is not None:
                memcg_kmem_uncharge_obj(objcg, FILP_SIZE)
            return file
        file.objcg = objcg
        task.fd_install(fd, file, bool(flags & O_CLOEXEC))
        return fd

    @staticmethod
    def _at_path(task: Task, dirfd: int, path: str) -> str | int:
        """A path relative to `dirfd` (AT_FDCWD: the working directory, the host process's) as one
        the model looks up; -EBADF for a descriptor the task does not have."""
        if path.startswith("/") or dirfd == AT_FDCWD:
            return path
        base = task.files.get(dirfd)
        return -EBADF if base is None else os.path.join(base.path, path)

    def _path_openat(self, task: Task, dirfd: int, path: str, flags: int) -> File | int:
        """path_openat(): the file `path` (relative to `dirfd`) opens as, or -errno: O_CREAT|O_EXCL of
        a file that exists -EEXIST, a directory opened for writing -EISDIR (may_open). The file keeps
        its open flags (fcntl.open_f_flags); an O_PATH one can be neither read, written nor mapped."""
        resolved = self._at_path(task, dirfd, path)
        if isinstance(resolved, int):
            return resolved
        path = resolved
        created = False
        try:
            inode = self._inode(path)
            if flags & O_CREAT and flags & O_EXCL:
                return -EEXIST
        except FileNotFoundError:
            if not flags & O_CREAT:
                return -ENOENT
            inode = self.simfs.create(path, host_dir=True)  # the model's own file; the host never sees it
            created = True
        except OSError as err:
            return -(err.errno or ENOENT)
        acc = flags & O_ACCMODE
        if inode.directory and (acc != O_RDONLY or flags & O_CREAT):
            return -EISDIR
        if flags & O_TRUNC and acc != O_RDONLY:
            truncate_setsize(self.mem, inode, 0)
        f_flags = open_f_flags(flags)
        path_only = bool(f_flags & O_PATH)  # FMODE_PATH: no reads, writes or mappings through it
        return File(inode, readable=acc in (O_RDONLY, O_RDWR) and not path_only,
                    writable=acc in (O_WRONLY, O_RDWR) and not path_only, f_flags=f_flags, created=created)

    def _open(self, task: Task, path: str, flags: int, mode: int = 0) -> int:
        return self._openat(task, AT_FDCWD, path, flags, mode)

    def _close(self, task: Task, fd: int) -> int:
        return 0 if task.close_fd(fd) else -EBADF

    def _dup(self, task: Task, fd: int) -> int:
        file = task.files.get(fd)
        return -EBADF if file is None else self._install(task, file, False)

    def _dup3(self, task: Task, oldfd: int, newfd: int, flags: int) -> int:
        """ksys_dup3(), its checks in order: bad flags or oldfd == newfd -EINVAL, newfd at or past
        RLIMIT_NOFILE -EBADF, no file at oldfd -EBADF."""
        if flags & ~O_CLOEXEC or oldfd == newfd:
            return -EINVAL
        file = task.files.get(oldfd)
        if file is None or newfd >= NR_OPEN:
            return -EBADF
        err = task.objects.fdt.expand(self.mem, newfd)  # replace_fd()'s expand_files()
        if err:
            return err
        task.fd_install(newfd, file, bool(flags & O_CLOEXEC))
        return newfd

    def _dup2(self, task: Task, oldfd: int, newfd: int) -> int:
        if oldfd == newfd:
            return newfd if oldfd in task.files else -EBADF
        return self._dup3(task, oldfd, newfd, 0)

    def _fcntl(self, task: Task, fd: int, cmd: int, arg: int = 0) -> int:
        return do_fcntl(task, fd, cmd, arg, NR_OPEN, self.mem)

    def _unlink(self, task: Task, path: str) -> int:
        """unlink(path): do_unlinkat(AT_FDCWD, path, 0)."""
        return self._unlinkat(task, AT_FDCWD, path, 0)

    def _unlinkat(self, task: Task, dirfd: int, path: str, flags: int) -> int:
        """do_unlinkat() of a file: its name goes (a host file's from the model's view of the
        namespace only: the host keeps it); with its last name (i_nlink) it is deleted, shown
        `(deleted)` in maps, and keeps its pages while a descriptor or a mapping holds it: the last
        one's release evicts it (_release_orphans). -ENOENT, -EISDIR for a directory, -EPERM for an
        active swap file (may_delete: IS_SWAPFILE), -EINVAL for flags other than AT_REMOVEDIR; rmdir
        (AT_REMOVEDIR) is not modelled (NotImplementedError). Not modelled: names are the inode's, not
        dentries, so for a file with hard links maps shows the first name the machine saw, and
        `(deleted)` only once the last name went (the kernel: the name each open used, `(deleted)`
        as soon as that name is unlinked)."""
        if flags & ~AT_REMOVEDIR:
            return -EINVAL
        if flags:
            raise NotImplementedError("unlinkat(AT_REMOVEDIR): the model has no directories of its own")
        if not path:
            return -ENOENT
        at = self._at_path(task, dirfd, path)
        if isinstance(at, int):
            return at
        try:
            inode = self._inode(at)
        except OSError as err:
            return -(err.errno or ENOENT)
        if inode.directory:
            return -EISDIR
        if find_area(self.mem.swap, at) is not None:
            return -EPERM
        if self.simfs.lookup(at) is inode:
            self.simfs.unlink(at)
        else:
            self._unlinked_names.add(os.path.realpath(at))
        inode.nlink -= 1
        if not inode.nlink:
            inode.deleted = True
            self._inodes = {k: v for k, v in self._inodes.items() if v is not inode}
            self._unlinked.append(inode)
        return 0

    def _mbind(self, task: Task, start: int, length: int, mode: int, nodemask: int, maxnode: int,
               flags: int) -> int:
        """mbind(): only a NULL nodemask (the model keeps no bytes of user memory to read one from);
        see vmlab.kernel.mempolicy."""
        if nodemask:
            raise NotImplementedError("mbind with a nodemask: the model cannot read user memory")
        return do_mbind(task.mm, start, length, mode, 0, flags, self.sysctl.max_map_count)

    def _ftruncate(self, task: Task, fd: int, length: int) -> int:
        """do_ftruncate(): a regular file open for writing gets the new size (truncate_setsize)."""
        file = task.fget(fd)
        if file is None or not file.writable or length < 0 or is_chrdev(file.inode):
            return -EBADF if file is None else -EINVAL
        truncate_setsize(self.mem, file.inode, length)
        return 0

    def _truncate(self, task: Task, path: str, length: int) -> int:
        """do_sys_truncate(): the file at `path` gets the new size (the model's copy only)."""
        if length < 0:
            return -EINVAL
        try:
            inode = self._inode(path)
        except OSError as err:
            return -(err.errno or ENOENT)
        truncate_setsize(self.mem, inode, length)
        return 0

    def _fsync(self, task: Task, fd: int) -> int:
        """vfs_fsync(): write the file's dirty pages and wait for them (a character device has no
        fsync: -EINVAL)."""
        file = task.fget(fd)
        if file is None:
            return -EBADF
        if is_chrdev(file.inode):
            return -EINVAL
        return filemap_write_and_wait_range(self.mem, file.inode)

    def _fdatasync(self, task: Task, fd: int) -> int:
        """fdatasync(): the same pages as fsync (the model has no inode metadata to skip)."""
        return self._fsync(task, fd)

    def _sync_file_range(self, task: Task, fd: int, offset: int, nbytes: int, flags: int) -> int:
        """sync_file_range(): -EBADF for a bad fd; -EINVAL for an unknown flag, a negative offset or a
        range that ends below it or past the loff_t range; -ESPIPE for a character device; otherwise
        the range's write-back as the flags ask (page_writeback.sync_file_range)."""
        file = task.fget(fd)
        if file is None:
            return -EBADF
        end = offset + nbytes
        if flags & ~SYNC_FILE_RANGE_WRITE_AND_WAIT or offset < 0 or end >= 1 << 63 or end < offset:
            return -EINVAL
        if is_chrdev(file.inode):
            return -ESPIPE
        return sync_file_range(self.mem, file.inode, offset, nbytes, flags)

    def _sync(self, task: Task) -> int:
        """sync(): every dirty page of the machine written and waited for."""
        ksys_sync(self.mem)
        return 0

    def _syncfs(self, task: Task, fd: int) -> int:
        """syncfs(): every dirty inode of the file's filesystem (same device)."""
        file = task.fget(fd)
        if file is None:
            return -EBADF
        dev = (file.inode.major, file.inode.minor)
        return sync_inodes(self.mem, [i for i in self.mem.wb.b_dirty if (i.major, i.minor) == dev])

    def _msync(self, task: Task, start: int, length: int, flags: int) -> int:
        """sys_msync(): MS_SYNC writes and waits for the file range behind each shared file mapping of
        [start, start+len); MS_ASYNC does nothing (dirty pages are already known to the flusher).
        -ENOMEM for a hole in the range (after syncing the rest), -EBUSY for MS_INVALIDATE on locked."""
        if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) or start & ~PAGE_MASK or (
                flags & MS_ASYNC and flags & MS_SYNC):
            return -EINVAL
        end = start + page_align(length)
        if end < start:
            return -ENOMEM
        unmapped_error = 0
        vma = task.mm.find_vma(start)
        while start < end:
            if vma is None:
                return -ENOMEM
            if start < vma.vm_start:
                if flags == MS_ASYNC:
                    return -ENOMEM
                start = vma.vm_start
                if start >= end:
                    return -ENOMEM
                unmapped_error = -ENOMEM
            if flags & MS_INVALIDATE and vma.vm_flags & VM_LOCKED:
                return -EBUSY
            fstart = (start - vma.vm_start) + (vma.vm_pgoff << PAGE_SHIFT)
            fend = fstart + (min(end, vma.vm_end) - start) - 1
            start = vma.vm_end
            if flags & MS_SYNC and vma.vm_file is not None and vma.vm_flags & VM_SHARED:
                filemap_write_and_wait_range(self.mem, vma.vm_file.inode, fstart >> PAGE_SHIFT,
                                             fend >> PAGE_SHIFT)
            vma = task.mm.find_vma(start)
        return unmapped_error

    def _uaccess(self, task: Task, buf: int, count: int, write: bool) -> int:
        """copy_to_user()/copy_from_user(): touch the buffer page by page, as the kernel's copy does
        (its faults count like the task's own, P13, but come from kernel mode: no FAULT_FLAG_USER, so
        a refused memcg charge never parks the task); the bytes copied before a bad address, or before
        a page the fault could not get memory for (the exception fixup's short copy)."""
        page = buf & PAGE_MASK
        while page < buf + count:
            sig = user_access(task.mm, max(page, buf), write, self.settings.rlimit_stack, self.sysctl,
                              task.stats, user_mode=False)
            if sig is not None:
                return max(page, buf) - buf
            page += PAGE_SIZE
        return count

    def _file_io(self, task: Task, fd: int, buf: int, count: int, pos: int | None, write: bool) -> int:
        """read()/write()/pread64()/pwrite64() of a regular file through the page cache. As vfs_read and
        vfs_write check first: a negative pread/pwrite position is -EINVAL (ksys_pread64), a buffer
        that is not all user space -EFAULT (access_ok), a directory -EISDIR (generic_read_dir); one call
        moves at most MAX_RW_COUNT bytes."""
        if pos is not None and pos < 0:
            return -EINVAL
        file = task.fget(fd)
        if file is None or not (file.writable if write else file.readable):
            return -EBADF
        if count > TASK_SIZE_MAX - buf:
            return -EFAULT
        count = min(count, MAX_RW_COUNT)
        inode = file.inode
        if inode.directory:
            return -EISDIR
        if is_chrdev(inode):
            return self._chrdev_io(task, inode, buf, count, write)
        offset = file.pos if pos is None else pos
        n = count if write else max(0, min(count, inode.size - offset))
        if write:
            if n and offset > inode.size:  # ext4_write_checks
                block_zero_eof(self.mem, inode, inode.size)
            self._write_begin_end(inode, offset, n)
        elif n:
            copied = len(filemap_read(self.mem, file, offset, count))
            if copied < ((offset + n - 1) >> PAGE_SHIFT) - (offset >> PAGE_SHIFT) + 1:
                # A page could not be had (memory, or the memcg's refusal): the read ends before
                # it, and with nothing read, filemap_read's error is the result.
                if not copied:
                    return -ENOMEM
                n = (((offset >> PAGE_SHIFT) + copied) << PAGE_SHIFT) - offset
        done = self._uaccess(task, buf, n, write=not write)
        if n and not done:
            return -EFAULT
        if write:
            inode.size = max(inode.size, offset + done)
        if pos is None:
            file.pos = offset + done
        return done

    def _chrdev_io(self, task: Task, inode: Inode, buf: int, count: int, write: bool) -> int:
        """read()/write() of a character device (vmlab.kernel.char_mem): a write never touches the buffer
        (P13); a read of /dev/zero (and the other devices that fill) writes the whole buffer, faulting
        it in, and returns what it wrote (-EFAULT when nothing)."""
        if write:
            return write_result(inode, count)
        n = read_length(inode, count)
        done = self._uaccess(task, buf, n, write=True)
        return -EFAULT if n and not done else done

    def _write_begin_end(self, inode: Inode, offset: int, n: int) -> None:
        """generic_perform_write(): folio by folio, in chunks that stop at each mapping_max_folio_size
        boundary. write_begin gets the folio (write_begin_get_folio: the cached one, or a new one as
        large as the rest of the chunk allows); a new folio is read first, one I/O, when a page of it
        inside the file is only partly written (a page fully overwritten, or wholly past EOF, needs no
        read); the copy costs the hit cost a page; write_end marks the folio dirty, and every 32 pages
        dirtied (the ratelimit) balance_dirty_pages() may make the writer sleep. A page that cannot be
        had is passed over. Writes do not mark pages accessed (FGP_WRITEBEGIN has no FGP_ACCESSED)."""
        mem = self.mem
        chunk = PAGE_SIZE << (MAX_PAGECACHE_ORDER if inode.large_folios else 0)
        pos, end = offset, offset + n
        dirtied = 0
        while pos < end:
            index = pos >> PAGE_SHIFT
            got = write_begin_get_folio(mem, inode, index, min(chunk - (pos & (chunk - 1)), end - pos))
            if got is None:
                pos = (index + 1) << PAGE_SHIFT
                continue
            head, order, new = got
            folio_end = (head + (1 << order)) << PAGE_SHIFT
            pages = range(index, ((min(end, folio_end) - 1) >> PAGE_SHIFT) + 1)
            if new and not inode.shmem and any(
                    min(end, (i + 1) << PAGE_SHIFT) - max(pos, i << PAGE_SHIFT) < PAGE_SIZE
                    and i << PAGE_SHIFT < inode.size for i in pages):
                read_folio(mem, inode, head, 1 << order)
            mem.clock.advance(mem.clock.costs.hit_ns * len(pages))
            pos = min(end, folio_end)
            # The blocks written (mark_buffer_dirty); shmem: PG_dirty only, not throttled.
            newly = folio_mark_dirty(mem, inode, inode.i_pages[index], pages)
            if newly and not inode.shmem:
                dirtied += newly
                if dirtied >= WRITE_RATELIMIT:
                    balance_dirty_pages(mem, dirtied)
                    dirtied = 0
        if dirtied:
            balance_dirty_pages(mem, dirtied)

    def _read(self, task: Task, fd: int, buf: int, count: int) -> int:
        return self._file_io(task, fd, buf, count, None, write=False)

    def _write(self, task: Task, fd: int, buf: int, count: int) -> int:
        return self._file_io(task, fd, buf, count, None, write=True)

    def _pread64(self, task: Task, fd: int, buf: int, count: int, pos: int) -> int:
        return self._file_io(task, fd, buf, count, pos, write=False)

    def _pwrite64(self, task: Task, fd: int, buf: int, count: int, pos: int) -> int:
        return self._file_io(task, fd, buf, count, pos, write=True)

    def _lseek(self, task: Task, fd: int, offset: int, whence: int) -> int:
        file = task.fget(fd)
        if file is None:
            return -EBADF
        if is_chrdev(file.inode):
            file.pos = llseek(file.inode, file.pos)
            return file.pos
        base = {0: 0, 1: file.pos, 2: file.inode.size}.get(whence)
        if base is None or base + offset < 0:
            return -EINVAL
        file.pos = base + offset
        return file.pos

    def _fadvise64(self, task: Task, fd: int, offset: int, length: int, advice: int) -> int:
        file = task.fget(fd)
        if file is None:
            return -EBADF
        return generic_fadvise(self.mem, file, offset, length, advice)

    def _swapon(self, task: Task, path: str, flags: int = 0) -> int:
        """swapon(2): a host file of the size it has becomes a swap area of the model (the host file
        is only measured, never written; no mkswap header is needed)."""
        return sys_swapon(self.mem.swap, path, flags)

    def _swapoff(self, task: Task, path: str) -> int:
        """swapoff(2): every swapped page of the area comes back into memory, then the area goes;
        -ENOENT if `path` does not exist, -EINVAL if it is not an active area, -ENOMEM if memory runs
        out on the way, -EINTR if the caller itself was OOM-killed meanwhile (try_to_unuse stops on
        signal_pending(current)). The caller is the OOM's origin meanwhile: the OOM killer takes it
        first, whatever its size (oom_evaluate_task), and it dies on its way back (syscall)."""
        si = find_area(self.mem.swap, path)
        if si is None:  # file_open_name() fails first for a name that is not there
            return -ENOENT if not path or not os.path.lexists(path) else -EINVAL
        disable_area(self.mem.swap, si)
        task.oom_origin = True  # set_current_oom_origin(): an OOM meanwhile kills the caller first
        try:
            while si.inuse_pages:  # try_to_unuse() retries while slots are left (reclaim may refill some)
                left = si.inuse_pages
                err = try_to_unuse(self.mem, si.type)
                if not err and si.inuse_pages and task.sigkill:
                    err = -EINTR
                elif not err and si.inuse_pages >= left:
                    err = -ENOMEM  # no progress: the kernel's OOM killer would have to make room
                if err:
                    reinsert_swap_info(self.mem.swap, si)
                    return err
        finally:
            task.oom_origin = False
        remove_area(self.mem.swap, si)
        return 0

    def _memfd_create(self, task: Task, name: str, flags: int = 0) -> int:
        """memfd_create(): a free descriptor first (-EMFILE), then the shmem pseudo file."""
        fd = task.alloc_fd(self.mem)
        if fd < 0:
            return fd
        shm = self._new_shmem(0)
        shm.inode.path = f"/memfd:{name}"
        shm.inode.major, shm.inode.minor = SHMEM_INTERNAL_DEV
        task.fd_install(fd, shm, bool(flags & MFD_CLOEXEC))
        return fd

    def _execve(self, task: Task, path: str, argv: tuple[str, ...], envp: tuple[str, ...]) -> int:
        """do_execve(): replace the address space; close-on-exec descriptors close."""

        new = MmStruct(cap_sys_admin=task.mm.cap_sys_admin)
        if mm_alloc(self.mem, new):  # mm_struct, PGD, rss_stat: charged to the exec'ing task's memcg
            return -ENOMEM
        new.memcg = task.memcg
        bprm = do_execve(path, argv, envp, self.settings.rlimit_stack, self.settings.legacy_va_layout,
                         self.sysctl, self._inode, new, task.stats)
        if isinstance(bprm, int) or not task.objects.charge_cred(self.mem):  # prepare_bprm_creds()
            exit_mmap(new, self.mem)
            return bprm if isinstance(bprm, int) else -ENOMEM
        exit_mmap(task.mm, self.mem)
        task.mm = bprm.mm
        task.comm = os.path.basename(path)[:15]  # a script's own name, not its interpreter's
        task.cmdline = tuple(bprm.argv)
        for fd in list(task.cloexec):
            task.close_fd(fd)
        return 0
