"""`struct linux_binprm` and the parts of fs/exec.c a binary format's loader calls (6.18, x86_64,
ADDR_NO_RANDOMIZE): opening the file to run, the new mm with its first stack page, copying strings
onto that stack page by page (each page faulted in, as get_arg_page() does), removing argv[0] for an
interpreter, and setup_arg_pages().

The loaders are vmlab.kernel.binfmt_elf and vmlab.kernel.binfmt_script; vmlab.kernel.exec runs them.
Reference rules: kernel-6.18-x86_64.md §1 L2–L3 (stack top, the strings' pages, the 128 KiB extension).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vmlab.kernel.fault import FaultStats
from vmlab.kernel.fs import host_inode
from vmlab.kernel.gup import get_user_pages_remote
from vmlab.kernel.memcontrol import memcg_kmem_charge_obj
from vmlab.kernel.mm_types import FILP_SIZE, VM_EXEC, VM_STACK_FLAGS, File, Inode, MmStruct, VmArea
from vmlab.kernel.mmap import TASK_SIZE, VmSysctl, acct_stack_growth
from vmlab.kernel.rmap import anon_vma_prepare
from vmlab.kernel.uapi import EACCES, EFAULT, ENOMEM, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE
from vmlab.kernel.util import security_vm_enough_memory_mm

E2BIG = errno.E2BIG
STACK_TOP = TASK_SIZE  # STACK_TOP_MAX with 4-level paging (L2)
ARG_MAX = 32 * PAGE_SIZE  # the historical minimum room for argument strings
MAX_ARG_STRLEN = 32 * PAGE_SIZE  # longest single argv/envp string
_STK_LIM = 8 << 20
STACK_EXPAND = 131072  # setup_arg_pages(): stack_expand
EXSTACK_DEFAULT, EXSTACK_DISABLE_X, EXSTACK_ENABLE_X = 0, 1, 2
_U64 = (1 << 64) - 1


#: A machine's inode for a path (host files by dev/ino, the built-in program's own), see exec_mm.
InodeLookup = Callable[[str], Inode]


def open_exec(path: str, inode_for: InodeLookup = host_inode) -> Inode | int:
    """open_exec()/do_open_execat(): the inode of an executable regular file, or -errno.

    ENOENT/ENOTDIR/ELOOP/... come from the path walk; EACCES for a non-regular file or one nobody may
    execute (root needs one x bit).
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111 or not os.access(path, os.X_OK):
            return -EACCES
        return inode_for(path)
    except OSError as e:
        return -(e.errno or errno.ENOENT)


# --- the argument pages ------------------------------------------------------------------------------------

@dataclass
class LinuxBinprm:
    """`struct linux_binprm`: the exec in progress (its new mm, the stack VMA and the copy cursor p)."""

    mm: MmStruct
    vma: VmArea
    filename: str  # the path execve was given: AT_EXECFN, and the new comm's basename
    rlim_stack: int  # RLIMIT_STACK.rlim_cur, RLIM_INFINITY for unlimited
    #: The file the next loader runs: the filename, then each script's interpreter (bprm->interp).
    interp: str = ""
    p: int = 0
    exec: int = 0  # address of the filename copy (AT_EXECFN)
    argmin: int = 0
    argc: int = 0
    envc: int = 0
    arg_bytes: int = 0  # Σ strlen(argv)+1: create_elf_tables walks these to find arg_end
    #: The argument strings on the stack, argv[0] lowest: what /proc/PID/cmdline will show.
    argv: list[str] = dataclasses.field(default_factory=list)
    env_bytes: int = 0
    sysctl: VmSysctl = dataclasses.field(default_factory=VmSysctl)
    #: The exec'ing task's fault counters: the exec's own writes into the new mm fault like its own.
    stats: FaultStats = dataclasses.field(default_factory=FaultStats)


def _c_string(s: str) -> bytes:
    """The bytes the kernel copies for a string argument: up to its first NUL, NUL included."""
    return os.fsencode(s).split(b"\0", 1)[0] + b"\0"


def bprm_mm_init(filename: str, rlimit_stack: int | None, sysctl: VmSysctl | None = None,
                 mm: MmStruct | None = None, stats: FaultStats | None = None) -> LinuxBinprm | int:
    """bprm_mm_init()/__bprm_mm_init(): a new mm (`mm`, empty, or a fresh one) whose only VMA is one
    stack page below STACK_TOP, charged by insert_vm_struct(); -ENOMEM if the commit refuses it."""
    mm = mm if mm is not None else MmStruct()
    sysctl = sysctl if sysctl is not None else VmSysctl()
    if security_vm_enough_memory_mm(mm, 1, sysctl):
        return -ENOMEM
    # insert_vm_struct() gives an anonymous VMA pgoff = vm_start >> PAGE_SHIFT; stack growth lowers it.
    vma = VmArea(STACK_TOP - PAGE_SIZE, STACK_TOP, VM_STACK_FLAGS, (STACK_TOP - PAGE_SIZE) >> PAGE_SHIFT)
    mm.insert(vma)
    mm.vm_stat_account(VM_STACK_FLAGS, 1)
    rlim = _U64 if rlimit_stack is None else rlimit_stack
    return LinuxBinprm(mm, vma, filename, rlim, filename, p=vma.vm_end - 8, sysctl=sysctl,
                       stats=stats if stats is not None else FaultStats())


def bprm_stack_limits(bprm: LinuxBinprm) -> int:
    """bprm_stack_limits(): how low the strings may reach (¼ of the stack limit, at least ARG_MAX)."""
    limit = min(_STK_LIM // 4 * 3, bprm.rlim_stack // 4)
    limit = max(limit, ARG_MAX)
    ptr_size = (max(bprm.argc, 1) + bprm.envc) * 8
    if limit <= ptr_size:
        return -E2BIG
    bprm.argmin = bprm.p - (limit - ptr_size)
    return 0


def expand_downwards(bprm: LinuxBinprm, addr: int) -> int:
    """expand_downwards() on the stack VMA during exec: cover PAGE_START(addr) (no guard-gap check:
    nothing else is mapped yet); -ENOMEM past RLIMIT_STACK."""
    vma, mm = bprm.vma, bprm.mm
    new_start = addr & PAGE_MASK
    if new_start >= vma.vm_start:
        return 0
    if vma.vm_end - new_start > bprm.rlim_stack:
        return -ENOMEM
    grow = (vma.vm_start - new_start) >> PAGE_SHIFT
    if acct_stack_growth(mm, vma, grow, bprm.sysctl):
        return -ENOMEM
    mm.set_range(vma, new_start, vma.vm_end)
    vma.vm_pgoff -= grow
    mm.vm_stat_account(vma.vm_flags, grow)
    return 0


def copy_strings(bprm: LinuxBinprm, strings: Sequence[str]) -> int:
    """copy_strings()/copy_string_kernel(): copy the strings downwards, the last one highest.

    get_arg_page() extends the stack VMA ahead of each page written (6.5+), so the VMA ends up
    covering exactly the pages the strings touched (L3's A), and faults the page in (GUP, write)
    each time the copy moves into another page: the kernel keeps the last page mapped across the
    strings of one call, not from one call to the next. -E2BIG when a page cannot be had.
    """
    total = 0
    if strings:
        anon_vma_prepare(bprm.mm, bprm.vma)  # the copy write-faults anonymous pages into the stack
    kmapped = -1
    for s in reversed(strings):
        data = _c_string(s)
        if len(data) > MAX_ARG_STRLEN:
            return -E2BIG
        bprm.p -= len(data)
        if bprm.p < bprm.argmin:
            return -E2BIG
        if expand_downwards(bprm, bprm.p):
            return -E2BIG
        for page in range((bprm.p + len(data) - 1) & PAGE_MASK, (bprm.p & PAGE_MASK) - 1, -PAGE_SIZE):
            if page != kmapped and _get_arg_page(bprm, page):
                return -E2BIG
            kmapped = page
        total += len(data)
    return total


def _get_arg_page(bprm: LinuxBinprm, page: int, write: bool = True) -> int:
    """get_arg_page()'s get_user_pages_remote(FOLL_FORCE, with FOLL_WRITE to write) of a stack page:
    0 or -errno. Only where the new mm has page tables (an mm built for its layout alone has no
    memory)."""
    if bprm.mm.pt is None:
        return 0
    return get_user_pages_remote(bprm.mm, page, 1, write, bprm.stats)


def copy_string_kernel(bprm: LinuxBinprm, arg: str) -> int:
    """copy_string_kernel(): one string below bprm.p, its pages each got anew (no page kept mapped
    from an earlier copy); 0 or -E2BIG. The caller counts it in argc."""
    copied = copy_strings(bprm, [arg])
    if copied < 0:
        return copied
    bprm.arg_bytes += copied
    return 0


def remove_arg_zero(bprm: LinuxBinprm) -> int:
    """remove_arg_zero(): step bprm.p over the string of argv[0], reading each of its pages through
    get_arg_page() (a read: FOLL_FORCE | FOLL_TOUCH), and drop it from argc; 0 or -EFAULT."""
    if not bprm.argc:
        return 0
    length = len(_c_string(bprm.argv[0]))
    for page in range(bprm.p & PAGE_MASK, bprm.p + length, PAGE_SIZE):
        if _get_arg_page(bprm, page, write=False):
            return -EFAULT
    bprm.p += length
    bprm.arg_bytes -= length
    bprm.argc -= 1
    del bprm.argv[0]
    return 0


def setup_arg_pages(bprm: LinuxBinprm, executable_stack: int) -> int:
    """setup_arg_pages(): final stack flags, then extend the stack by 128 KiB within RLIMIT_STACK (L3).

    No shift: with ASLR off STACK_TOP is where the strings already are.
    """
    mm, vma = bprm.mm, bprm.vma
    mm.arg_start = bprm.p
    vm_flags = VM_STACK_FLAGS
    if executable_stack == EXSTACK_ENABLE_X:
        vm_flags |= VM_EXEC
    elif executable_stack == EXSTACK_DISABLE_X:
        vm_flags &= ~VM_EXEC
    vma.vm_flags = vm_flags | mm.def_flags
    stack_size = vma.vm_end - vma.vm_start
    rlim_stack = bprm.rlim_stack & PAGE_MASK
    stack_expand = min(rlim_stack, stack_size + STACK_EXPAND)
    mm.start_stack = bprm.p
    if expand_downwards(bprm, vma.vm_end - stack_expand):
        return -EFAULT
    return 0



def exec_file(inode: Inode, mm: MmStruct | None) -> File | None:
    """do_open_execat()'s struct file of an executable (or open_exec()'s of its interpreter), with the
    reference the exec holds until it is done (bprm->file); charged (FILP_SIZE) to the running task's
    memcg where `mm` is a machine's. None when the charge fails (-ENOMEM)."""
    file = File(inode)
    if mm is not None and mm.pt is not None:
        err, file.objcg = memcg_kmem_charge_obj(mm.pt.mem, FILP_SIZE)
        if err:
            return None
    file.get()
    return file
