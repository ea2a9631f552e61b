"""The ELF handler of execve, after fs/binfmt_elf.c:load_elf_binary (6.18, x86_64, ADDR_NO_RANDOMIZE):
the file's program headers, then the new address space. vmlab.kernel.exec runs it, after the strings
are on the new stack (vmlab.kernel.binfmts) and any `#!` script has named its interpreter.

Reference rules: kernel-6.18-x86_64.md §1 L1–L10 (layout, stack size, PIE and interpreter placement,
bss, brk, vdso), §3 M6 (VM_ACCOUNT on data, bss and stack).

What happens, in the kernel's order:
1. (binfmts, exec) `bprm_mm_init`: a new mm with a one-page stack VMA under STACK_TOP; `copy_strings`
   copies the filename, envp and argv downwards from STACK_TOP - 8, growing that VMA page by page
   (E2BIG past the argument limit) and faulting each page in (get_arg_page).
2. `arch_pick_mmap_layout` (mmap.py), `setup_arg_pages`: final stack flags (PT_GNU_STACK) and the
   128 KiB extension capped by RLIMIT_STACK.
3. The executable's PT_LOADs (`elf_load`: one file VMA each, the bss beyond the last file page as an
   anonymous VMA through vm_brk_flags; `padzero` writes the tail of the last file page, a COW
   fault), then the interpreter's (`load_elf_interp`), then the vdso block (`map_vdso`), then
   `create_elf_tables` (where the initial stack pointer lands: its writes fault) and the brk.
   With a machine's page tables these faults are real, so a process starts with the kernel's
   resident pages: at the exec stop smaps and status are the kernel's, Rss and VmPTE included.

Deliberate differences: a 32-bit ELF is -ENOEXEC here (the kernel would hand it to compat_binfmt_elf);
a failure after the point of no return returns -errno instead of
killing the process; READ_IMPLIES_EXEC personalities and noexec mounts are not modelled.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from vmlab.kernel.binfmts import (
    EXSTACK_DEFAULT,
    EXSTACK_DISABLE_X,
    EXSTACK_ENABLE_X,
    LinuxBinprm,
    expand_downwards,
    setup_arg_pages,
)
from vmlab.kernel.fault import FaultStats, user_access
from vmlab.kernel.mm_types import (
    VM_DONTDUMP,
    VM_DONTEXPAND,
    VM_EXEC,
    VM_IO,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYWRITE,
    VM_PFNMAP,
    VM_READ,
    VM_WRITE,
    File,
    Inode,
    MmStruct,
    VmArea,
)
from vmlab.kernel.mmap import (
    DEFAULT_MAP_WINDOW,
    TASK_SIZE,
    VmSysctl,
    arch_pick_mmap_layout,
    do_mmap,
    do_munmap,
    get_unmapped_area,
    vm_brk_flags,
)
from vmlab.kernel.rmap import anon_vma_prepare
from vmlab.kernel.uapi import (
    EFAULT,
    EINVAL,
    ENOMEM,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    page_align,
)

ENOEXEC = errno.ENOEXEC
ELIBBAD = errno.ELIBBAD

#: A path exec_mm loads without touching the disk: a tiny static non-PIE program (see BUILTIN_IMAGE).
BUILTIN_PROGRAM = "/vmlab/minimal"

ELF_ET_DYN_BASE = DEFAULT_MAP_WINDOW // 3 * 2  # 0x555555554aaa (L6)
ELF_MIN_ALIGN = PAGE_SIZE
#: ELF_PLATFORM (utsname()->machine), copied onto the stack by create_elf_tables().
ELF_PLATFORM = b"x86_64"
#: saved_auxv words create_elf_tables() puts on the stack on this kernel: AT_SYSINFO_EHDR,
#: AT_MINSIGSTKSZ, 15 generic entries, AT_HWCAP2, AT_EXECFN, AT_PLATFORM, AT_RSEQ_FEATURE_SIZE,
#: AT_RSEQ_ALIGN and AT_NULL: 23 pairs.
AUXV_WORDS = 46
_U64 = (1 << 64) - 1

# include/uapi/linux/elf.h
ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_INTERP = 1, 3
PT_GNU_STACK = 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4
ELF_PHDR_SIZE = 56  # sizeof(struct elf64_phdr)
ELF_EHDR_SIZE = 64  # sizeof(struct elf64_hdr)
PATH_MAX = 4096

# arch/x86/entry/vdso: the 64-bit image is 2 text pages with 6 data pages below it (L8).
VDSO_TEXT_PAGES = 2
VVAR_PAGES = 4
VDSO_NR_VCLOCK_PAGES = 2
_VVAR_FLAGS = VM_READ | VM_MAYREAD | VM_IO | VM_DONTDUMP | VM_PFNMAP | VM_DONTEXPAND
_VDSO_FLAGS = VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_DONTEXPAND


def _pagestart(v: int) -> int:
    """ELF_PAGESTART()."""
    return v & ~(ELF_MIN_ALIGN - 1)


def _pageoffset(v: int) -> int:
    """ELF_PAGEOFFSET()."""
    return v & (ELF_MIN_ALIGN - 1)


def _bad_addr(x: int) -> bool:
    """BAD_ADDR(): an error (-errno) or an address at or above TASK_SIZE."""
    return x < 0 or x >= TASK_SIZE


# --- the ELF file ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ElfPhdr:
    """`struct elf64_phdr`: one program header."""

    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_filesz: int
    p_memsz: int
    p_align: int


@dataclass(frozen=True)
class ElfImage:
    """What load_elf_binary reads from a file: the ELF header fields it checks and the program headers."""

    inode: Inode
    e_type: int
    e_machine: int
    e_phoff: int
    phdrs: tuple[ElfPhdr, ...]
    interp: str | None = None  # PT_INTERP path (the first PT_INTERP), NUL stripped


#: The built-in program (BUILTIN_PROGRAM): laid out like `gcc -static -nostdlib -no-pie` output with
#: 4 KiB segment alignment — a 1-page r-- header segment at 0x400000, 1 page of text, 1 page of
#: rodata, then 0x10 bytes of data in the page at 0x403000 followed by 64 KiB of bss (a separate
#: anonymous VMA 0x404000-0x414000). Its fake inode: dev fe:00 (the root disk of the reference machine,
#: §0.6), ino 4242, 0x3010 bytes on an ext4-like (THP-aligning) filesystem.
def builtin_inode() -> Inode:
    """A new inode of the built-in program, with an empty page cache: each machine has its own (an
    inode's cache, shadows and write-back state are the machine's; BUILTIN_IMAGE.inode only names the
    file)."""
    return Inode(path=BUILTIN_PROGRAM, ino=4242, size=0x3010, major=0xFE, minor=0x00, thp_aligned=True,
                 fop_mmap_sync=True)


BUILTIN_IMAGE = ElfImage(
    inode=builtin_inode(),
    e_type=ET_EXEC, e_machine=EM_X86_64, e_phoff=64,
    phdrs=(
        ElfPhdr(PT_LOAD, PF_R, 0x0, 0x400000, 0x158, 0x158, 0x1000),
        ElfPhdr(PT_LOAD, PF_R | PF_X, 0x1000, 0x401000, 0x1B5, 0x1B5, 0x1000),
        ElfPhdr(PT_LOAD, PF_R, 0x2000, 0x402000, 0x64, 0x64, 0x1000),
        ElfPhdr(PT_LOAD, PF_R | PF_W, 0x3000, 0x403000, 0x10, 0x10020, 0x1000),
        ElfPhdr(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0, 0x10),
    ),
)


def read_elf(inode: Inode, interpreter: bool = False) -> ElfImage | int:
    """The header checks of load_elf_binary + load_elf_phdrs(): the image, or -errno when it is not a
    loadable x86_64 ELF — ENOEXEC for the executable; for an interpreter EIO when its 64-byte header
    cannot be read whole (elf_read()), else ELIBBAD."""
    bad = ELIBBAD if interpreter else ENOEXEC
    try:
        with open(inode.path, "rb") as f:
            ident = f.read(ELF_EHDR_SIZE)
            if interpreter and len(ident) < ELF_EHDR_SIZE:
                return -errno.EIO
            if ident[:4] != b"\x7fELF":
                return -bad
            f.seek(0)
            elf = ELFFile(f)
            hdr = elf.header
            if hdr["e_type"] not in ("ET_EXEC", "ET_DYN") or elf.get_machine_arch() != "x64":
                return -bad
            if elf.elfclass != 64 or hdr["e_phentsize"] != ELF_PHDR_SIZE:
                return -bad
            if not 1 <= hdr["e_phnum"] <= 65536 // ELF_PHDR_SIZE:
                return -bad
            phdrs: list[ElfPhdr] = []
            interp: str | None = None
            for seg in elf.iter_segments():
                h = seg.header
                p_type = h["p_type"]
                ptype = p_type if isinstance(p_type, int) else _PT_BY_NAME.get(p_type, -1)
                phdrs.append(ElfPhdr(ptype, h["p_flags"], h["p_offset"], h["p_vaddr"], h["p_filesz"],
                                     h["p_memsz"], h["p_align"]))
                if ptype == PT_INTERP and interp is None:
                    raw = seg.data()
                    if not 2 <= len(raw) <= PATH_MAX or raw[-1:] != b"\0":
                        return -ENOEXEC
                    interp = os.fsdecode(raw.split(b"\0", 1)[0])
            e_type = ET_EXEC if hdr["e_type"] == "ET_EXEC" else ET_DYN
            return ElfImage(inode, e_type, EM_X86_64, hdr["e_phoff"], tuple(phdrs), interp)
    except (ELFError, OSError, ValueError, KeyError, AssertionError):
        return -bad


_PT_BY_NAME = {"PT_LOAD": PT_LOAD, "PT_INTERP": PT_INTERP, "PT_GNU_STACK": PT_GNU_STACK}


def _write_user(mm: MmStruct, start: int, length: int, sysctl: VmSysctl, stats: FaultStats) -> int:
    """copy_to_user()/put_user()/clear_user() of [start, start + length) into the new mm, in ascending
    order: a page not writable yet is write-faulted in kernel mode; 0, or -EFAULT where the fault
    fails. Nothing to do where the mm has no page tables (built for its layout alone)."""
    if mm.pt is None:
        return 0
    for page in range(start & PAGE_MASK, start + length, PAGE_SIZE):
        if user_access(mm, max(page, start), True, None, sysctl, stats, user_mode=False) is not None:
            return -EFAULT
    return 0


# --- mapping the segments ----------------------------------------------------------------------------------

def _make_prot(p_flags: int) -> int:
    """make_prot(): PF_R/W/X to PROT_READ/WRITE/EXEC."""
    return ((PROT_READ if p_flags & PF_R else 0) | (PROT_WRITE if p_flags & PF_W else 0)
            | (PROT_EXEC if p_flags & PF_X else 0))


def elf_map(mm: MmStruct, file: File, addr: int, phdr: ElfPhdr, prot: int, type_: int, total_size: int,
            sysctl: VmSysctl) -> int:
    """elf_map(): mmap the file part of a segment; with total_size, reserve the whole image first and
    unmap what lies beyond this segment (so an interpreter lands where all of it fits)."""
    size = page_align(phdr.p_filesz + _pageoffset(phdr.p_vaddr))
    off = phdr.p_offset - _pageoffset(phdr.p_vaddr)
    addr = _pagestart(addr)
    if not size:
        return addr
    if off < 0 or off & ~PAGE_MASK:
        return -EINVAL  # vm_mmap(): offset not page aligned
    length = page_align(total_size) if total_size else size
    map_addr = do_mmap(mm, file, addr, length, prot, type_, off >> PAGE_SHIFT, sysctl)
    if total_size and not _bad_addr(map_addr) and length > size:
        do_munmap(mm, map_addr + size, length - size, sysctl)
    return map_addr


def padzero(mm: MmStruct, address: int, sysctl: VmSysctl, stats: FaultStats) -> int:
    """padzero(): clear the tail of the page holding `address` — a write fault (the file page read,
    then copied: a private anonymous page, and the VMA's anon_vma); -EFAULT where the page is not
    writable."""
    if not _pageoffset(address):
        return 0
    vma = mm.vma_lookup(address)
    if vma is None or not vma.vm_flags & VM_WRITE:
        return -EFAULT
    anon_vma_prepare(mm, vma)
    return _write_user(mm, address, PAGE_SIZE - _pageoffset(address), sysctl, stats)


def elf_load(mm: MmStruct, file: File, addr: int, phdr: ElfPhdr, prot: int, type_: int,
             total_size: int, sysctl: VmSysctl, stats: FaultStats) -> int:
    """elf_load(): map one PT_LOAD — the file pages (elf_map), zero the partial last page, and the
    part of p_memsz beyond the last file page as anonymous memory via vm_brk_flags (the bss, L6)."""
    if phdr.p_filesz:
        map_addr = elf_map(mm, file, addr, phdr, prot, type_, total_size, sysctl)
        if _bad_addr(map_addr):
            return map_addr
        zero_start = map_addr + _pageoffset(phdr.p_vaddr) + phdr.p_filesz
        zero_end = map_addr + _pageoffset(phdr.p_vaddr) + phdr.p_memsz
        if phdr.p_memsz > phdr.p_filesz and padzero(mm, zero_start, sysctl, stats) and prot & PROT_WRITE:
            return -EFAULT
    else:
        map_addr = zero_start = _pagestart(addr)
        zero_end = zero_start + _pageoffset(phdr.p_vaddr) + phdr.p_memsz
    if phdr.p_memsz > phdr.p_filesz:
        zero_start, zero_end = page_align(zero_start), page_align(zero_end)
        error = vm_brk_flags(mm, zero_start, zero_end - zero_start,
                             VM_EXEC if prot & PROT_EXEC else 0, sysctl)
        if error:
            map_addr = error
    return map_addr


def total_mapping_size(phdrs: Sequence[ElfPhdr]) -> int:
    """total_mapping_size(): from the first PT_LOAD's page to the end of the highest p_memsz."""
    loads = [p for p in phdrs if p.p_type == PT_LOAD]
    if not loads:
        return 0
    return max(p.p_vaddr + p.p_memsz for p in loads) - min(_pagestart(p.p_vaddr) for p in loads)


def maximum_alignment(phdrs: Sequence[ElfPhdr]) -> int:
    """maximum_alignment(): the largest power-of-two PT_LOAD p_align, at least a page."""
    aligns = [p.p_align for p in phdrs if p.p_type == PT_LOAD]
    return page_align(max((a for a in aligns if a and not a & (a - 1)), default=0))


def load_elf_interp(mm: MmStruct, image: ElfImage, file: File, no_base: int, sysctl: VmSysctl,
                    stats: FaultStats) -> int:
    """load_elf_interp(): map the interpreter — an ET_DYN one wherever the whole image fits (top-down
    below mmap_base, L6), the rest of its segments MAP_FIXED after the first; its load address or -errno."""
    total_size = total_mapping_size(image.phdrs)
    if not total_size:
        return -EINVAL
    load_addr, load_addr_set = 0, False
    for phdr in image.phdrs:
        if phdr.p_type != PT_LOAD:
            continue
        elf_type = MAP_PRIVATE
        vaddr = phdr.p_vaddr
        if image.e_type == ET_EXEC or load_addr_set:
            elf_type |= MAP_FIXED
        elif no_base and image.e_type == ET_DYN:
            load_addr = -vaddr & _U64
        map_addr = elf_load(mm, file, (load_addr + vaddr) & _U64, phdr, _make_prot(phdr.p_flags), elf_type,
                            total_size, sysctl, stats)
        total_size = 0
        if _bad_addr(map_addr):
            return map_addr if map_addr < 0 else -ENOMEM
        if not load_addr_set and image.e_type == ET_DYN:
            load_addr = (map_addr - _pagestart(vaddr)) & _U64
            load_addr_set = True
        k = (load_addr + vaddr) & _U64
        if (_bad_addr(k) or phdr.p_filesz > phdr.p_memsz or phdr.p_memsz > TASK_SIZE
                or TASK_SIZE - phdr.p_memsz < k):
            return -ENOMEM
    return load_addr


def _install_special_mapping(mm: MmStruct, addr: int, pages: int, vm_flags: int, name: str) -> None:
    """_install_special_mapping(): a named VM_DONTEXPAND VMA that never merges."""
    vma = VmArea(addr, addr + (pages << PAGE_SHIFT), vm_flags | VM_DONTEXPAND | mm.def_flags,
                 special_name=name)
    mm.insert(vma)
    mm.vm_stat_account(vma.vm_flags, pages)


def map_vdso(mm: MmStruct) -> int:
    """arch/x86/entry/vdso/vma.c:map_vdso(image, 0): one 8-page get_unmapped_area search, split into
    [vvar] (4 pages), [vvar_vclock] (2) and [vdso] (2 pages of text) (L8); 0 or -errno."""
    data_pages = VVAR_PAGES + VDSO_NR_VCLOCK_PAGES
    addr = get_unmapped_area(mm, None, 0, (data_pages + VDSO_TEXT_PAGES) << PAGE_SHIFT, 0, 0)
    if addr < 0:
        return addr
    _install_special_mapping(mm, addr + (data_pages << PAGE_SHIFT), VDSO_TEXT_PAGES, _VDSO_FLAGS, "[vdso]")
    _install_special_mapping(mm, addr, VVAR_PAGES, _VVAR_FLAGS, "[vvar]")
    _install_special_mapping(mm, addr + (VVAR_PAGES << PAGE_SHIFT), VDSO_NR_VCLOCK_PAGES, _VVAR_FLAGS,
                             "[vvar_vclock]")
    return 0


def create_elf_tables(bprm: LinuxBinprm) -> int:
    """create_elf_tables(): below the strings go the platform string, 16 random bytes, auxv, envp,
    argv and argc, 16-byte aligned; sets start_stack and arg/env bounds. 0 or -EFAULT. The writes
    are the kernel's copy_to_user() and put_user() calls in its order: the platform string, the
    random bytes, then from argc up through argv, envp and auxv (each new page write-faulted)."""
    mm = bprm.mm
    p = bprm.p & ~0xF  # arch_align_stack() with ADDR_NO_RANDOMIZE
    p -= len(ELF_PLATFORM) + 1
    u_platform = p
    p -= 16  # AT_RANDOM bytes
    u_rand_bytes = p
    sp = p - AUXV_WORDS * 8
    items = (bprm.argc + 1) + (bprm.envc + 1) + 1
    bprm.p = (sp - items * 8) & ~0xF
    if (_write_user(mm, u_platform, len(ELF_PLATFORM) + 1, bprm.sysctl, bprm.stats)
            or _write_user(mm, u_rand_bytes, 16, bprm.sysctl, bprm.stats)):
        return -EFAULT
    if expand_downwards(bprm, bprm.p):  # find_extend_vma()
        return -EFAULT
    if _write_user(mm, bprm.p, (items + AUXV_WORDS) * 8, bprm.sysctl, bprm.stats):
        return -EFAULT
    mm.arg_end = mm.env_start = mm.arg_start + bprm.arg_bytes
    mm.env_end = mm.env_start + bprm.env_bytes
    mm.start_stack = bprm.p
    return 0


# --- load_elf_binary ---------------------------------------------------------------------------------------

def _executable_stack(image: ElfImage) -> int:
    """PT_GNU_STACK: EXSTACK_ENABLE_X with PF_X, EXSTACK_DISABLE_X without, EXSTACK_DEFAULT if absent."""
    for phdr in image.phdrs:
        if phdr.p_type == PT_GNU_STACK:
            return EXSTACK_ENABLE_X if phdr.p_flags & PF_X else EXSTACK_DISABLE_X
    return EXSTACK_DEFAULT


def _et_dyn_load_bias(mm: MmStruct, file: File, image: ElfImage, phdr: ElfPhdr, has_interp: bool,
                      total_size: int, sysctl: VmSysctl, stats: FaultStats) -> int:
    """load_elf_binary()'s ET_DYN case at the first PT_LOAD: where the image goes (before subtracting
    its first p_vaddr), or -errno. A PIE: ELF_ET_DYN_BASE aligned down to the largest p_align. A static
    PIE or loader: 0 (let the mmap search place it), unless p_align > 4 KiB — then map the whole image
    once to see where the search puts it, unmap it, and align that address down."""
    alignment = maximum_alignment(image.phdrs)
    if has_interp:
        return ELF_ET_DYN_BASE & ~(alignment - 1) if alignment else ELF_ET_DYN_BASE
    if alignment <= ELF_MIN_ALIGN:
        return 0
    probe = elf_load(mm, file, 0, phdr, _make_prot(phdr.p_flags), MAP_PRIVATE, total_size, sysctl, stats)
    if _bad_addr(probe):
        return probe if probe < 0 else -EINVAL
    do_munmap(mm, probe, total_size, sysctl)
    return probe & ~(alignment - 1)


def load_elf_binary(bprm: LinuxBinprm, image: ElfImage, interp: tuple[ElfImage, File] | None,
                    rlimit_stack: int | None, legacy: bool, sysctl: VmSysctl, file: File) -> int:
    """load_elf_binary() from begin_new_exec on: layout, stack, segments, interpreter, vdso, tables, brk.
    `file` is the executable's struct file, `interp` the interpreter's image and struct file.

    ET_EXEC at its link addresses (MAP_FIXED_NOREPLACE, then MAP_FIXED); a PIE with an interpreter at
    ELF_ET_DYN_BASE aligned down to the largest p_align; an ET_DYN without one wherever its whole image
    fits (top-down: mmap_base - total size), re-placed MAP_FIXED_NOREPLACE when p_align > 4 KiB.
    """
    mm = bprm.mm
    arch_pick_mmap_layout(mm, rlimit_stack, legacy)
    err = setup_arg_pages(bprm, _executable_stack(image))
    if err:
        return err
    load_bias, total_size = 0, 0
    first = True
    elf_brk = 0
    start_code, end_code, start_data, end_data = _U64, 0, 0, 0
    for phdr in image.phdrs:
        if phdr.p_type != PT_LOAD:
            continue
        prot = _make_prot(phdr.p_flags)
        flags = MAP_PRIVATE
        vaddr = phdr.p_vaddr
        if not first:
            flags |= MAP_FIXED
        elif image.e_type == ET_EXEC:
            flags |= MAP_FIXED_NOREPLACE
        else:
            total_size = total_mapping_size(image.phdrs)
            if not total_size:
                return -EINVAL
            placed = _et_dyn_load_bias(mm, file, image, phdr, interp is not None, total_size, sysctl,
                                       bprm.stats)
            if placed < 0:
                return placed
            if placed or interp is not None:
                flags |= MAP_FIXED_NOREPLACE
            load_bias = _pagestart((placed - vaddr) & _U64)
        error = elf_load(mm, file, (load_bias + vaddr) & _U64, phdr, prot, flags, total_size, sysctl,
                         bprm.stats)
        if _bad_addr(error):
            return error if error < 0 else -EINVAL
        if first:
            first = False
            if image.e_type == ET_DYN:
                load_bias = (load_bias + error - _pagestart((load_bias + vaddr) & _U64)) & _U64
        # Only the first segment reserves the whole image: measured, VmPeak at the exec stop of
        # ld.so run directly and of 2 MiB-aligned PIEs is the first reservation's, never what
        # reserving the whole image again from each later segment would raise it to.
        total_size = 0
        k = vaddr
        if phdr.p_flags & PF_X and k < start_code:
            start_code = k
        start_data = max(start_data, k)
        if (k >= TASK_SIZE or phdr.p_filesz > phdr.p_memsz or phdr.p_memsz > TASK_SIZE
                or TASK_SIZE - phdr.p_memsz < k):
            return -EINVAL
        k = vaddr + phdr.p_filesz
        if phdr.p_flags & PF_X:
            end_code = max(end_code, k)
        end_data = max(end_data, k)
        elf_brk = max(elf_brk, vaddr + phdr.p_memsz)
    elf_brk = (elf_brk + load_bias) & _U64
    if interp is not None:
        interp_load = load_elf_interp(mm, interp[0], interp[1], load_bias, sysctl, bprm.stats)
        if interp_load < 0:
            return interp_load
    err = map_vdso(mm)
    if err:
        return err
    err = create_elf_tables(bprm)
    if err:
        return err
    mm.start_code = (start_code + load_bias) & _U64
    mm.end_code = (end_code + load_bias) & _U64
    mm.start_data = (start_data + load_bias) & _U64
    mm.end_data = (end_data + load_bias) & _U64
    if image.e_type == ET_DYN and interp is None:
        elf_brk = ELF_ET_DYN_BASE  # 6.15+: a static PIE's brk lives in the unused PIE area (L7)
    mm.start_brk = mm.brk = page_align(elf_brk)
    return 0


