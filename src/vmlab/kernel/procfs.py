"""The /proc views of the model, after fs/proc/task_mmu.c: maps and smaps, byte for byte (§4, F1–F2)."""

from __future__ import annotations

from vmlab.kernel.mm_types import (
    VM_EXEC,
    VM_MAYSHARE,
    VM_READ,
    VM_WRITE,
    MmStruct,
    VmArea,
    vm_flags_mnemonics,
)
from vmlab.kernel.uapi import PAGE_SHIFT

#: The gate area is printed last and is not a VMA (L9).
VSYSCALL_LINE = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
_NAME_COLUMN = 72  # seq_setwidth(m, 25 + sizeof(void *) * 6 - 1)


def vma_name(mm: MmStruct, vma: VmArea) -> str | None:
    """get_vma_name(): file path, special name, [heap], [stack], or None."""
    if vma.vm_file is not None:
        inode = vma.vm_file.inode
        return inode.path.replace("\n", "\\012") + (" (deleted)" if inode.deleted else "")
    if vma.special_name is not None:
        return vma.special_name
    if vma.vm_start < mm.brk and vma.vm_end > mm.start_brk:
        return "[heap]"
    if vma.vm_start <= mm.start_stack <= vma.vm_end:
        return "[stack]"
    return None


def show_map_vma(mm: MmStruct, vma: VmArea) -> str:
    """show_map_vma(): one line of /proc/PID/maps, newline included."""
    f = vma.vm_flags
    perms = ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + (
        "x" if f & VM_EXEC else "-") + ("s" if f & VM_MAYSHARE else "p")
    if vma.vm_file is not None:
        inode = vma.vm_file.inode
        pgoff, major, minor, ino = vma.vm_pgoff << PAGE_SHIFT, inode.major, inode.minor, inode.ino
    else:
        pgoff = major = minor = ino = 0
    line = f"{vma.vm_start:08x}-{vma.vm_end:08x} {perms} {pgoff:08x} {major:02x}:{minor:02x} {ino} "
    name = vma_name(mm, vma)
    if name is None:
        return line + "\n"
    return line.ljust(_NAME_COLUMN) + " " + name + "\n"


def show_maps(mm: MmStruct) -> str:
    """The whole /proc/PID/maps."""
    return "".join(show_map_vma(mm, vma) for vma in mm) + VSYSCALL_LINE


def _kb_line(field: str, kb: int) -> str:
    return f"{field + ':':<16}{kb:>8} kB\n"


def show_smap(mm: MmStruct, vma: VmArea) -> str:
    """show_smap(): the header and the fields that depend on the VMA alone, then VmFlags.

    The page-derived fields (Rss, Pss, ...) are the paging model's; until a VMA's pages are modelled
    they are left out rather than printed as zeros that might be false.
    """
    size_kb = (vma.vm_end - vma.vm_start) >> 10
    return (show_map_vma(mm, vma) + _kb_line("Size", size_kb) + _kb_line("KernelPageSize", 4)
            + _kb_line("MMUPageSize", 4) + f"VmFlags: {vm_flags_mnemonics(vma.vm_flags)}\n")


def show_smaps(mm: MmStruct) -> str:
    """The whole /proc/PID/smaps, the gate area last (its VmFlags are just `ex`)."""
    gate = (VSYSCALL_LINE + _kb_line("Size", 4) + _kb_line("KernelPageSize", 4)
            + _kb_line("MMUPageSize", 4) + "VmFlags: ex \n")
    return "".join(show_smap(mm, vma) for vma in mm) + gate
