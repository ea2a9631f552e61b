"""A bare model process for address-space unit tests: the mm-level syscalls without a loaded program."""

from __future__ import annotations

from vmlab.kernel import task_mmu
from vmlab.kernel.fault import FaultStats, user_access
from vmlab.kernel.fs import ShmemMount
from vmlab.kernel.madvise import do_madvise
from vmlab.kernel.mm_types import File, MmStruct, vm_flags_mnemonics
from vmlab.kernel.mmap import VmSysctl, arch_pick_mmap_layout, do_mmap, do_munmap, sys_brk
from vmlab.kernel.mprotect import do_mprotect
from vmlab.kernel.mremap import do_mremap
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.pgtable import PageTables
from vmlab.kernel.uapi import PAGE_SIZE


class BareProc:
    """An address space with no program loaded: the mm-level syscalls, for rule-by-rule unit tests."""

    def __init__(self, rlimit_stack: int | None = 8 << 20, legacy: bool = False,
                 sysctl: VmSysctl | None = None) -> None:
        self.mem = PhysMem(256 << 20)
        self.mm = MmStruct(pt=PageTables(self.mem))
        arch_pick_mmap_layout(self.mm, rlimit_stack, legacy)
        self.stats = FaultStats()
        self.sysctl = sysctl or VmSysctl()
        self.shmem = ShmemMount()
        self.rlimit_stack = rlimit_stack

    def mmap(self, addr: int, length: int, prot: int, flags: int, file: File | None = None,
             off: int = 0) -> int:
        return do_mmap(self.mm, file, addr, length, prot, flags, off // PAGE_SIZE, self.sysctl,
                       self.shmem.zero_setup)

    def munmap(self, addr: int, length: int) -> int:
        return do_munmap(self.mm, addr, length, self.sysctl)

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        return do_mprotect(self.mm, addr, length, prot, self.sysctl)

    def mremap(self, addr: int, old: int, new: int, flags: int, new_addr: int = 0) -> int:
        return do_mremap(self.mm, addr, old, new, flags, new_addr, self.sysctl)

    def madvise(self, addr: int, length: int, advice: int) -> int:
        return do_madvise(self.mm, addr, length, advice, self.sysctl)

    def brk(self, addr: int) -> int:
        return sys_brk(self.mm, addr, self.sysctl)

    def touch(self, addr: int, pages: int = 1, write: bool = True) -> str | None:
        for i in range(pages):
            sig = user_access(self.mm, addr + i * PAGE_SIZE, write, self.rlimit_stack, self.sysctl,
                              self.stats, user_mode=True)
            if sig:
                return sig
        return None

    def maps(self, lo: int = 0, hi: int = 1 << 64) -> list[str]:
        """maps lines (without newline) of the VMAs overlapping [lo, hi), like dump_maps_range()."""
        return [task_mmu.show_map_vma(self.mm, v).rstrip("\n") for v in self.mm
                if v.vm_end > lo and v.vm_start < hi]

    def vmflags(self, lo: int = 0, hi: int = 1 << 64) -> list[str]:
        """`START VmFlags: ...` lines as the experiments print them."""
        return [f"{v.vm_start:x} VmFlags: {vm_flags_mnemonics(v.vm_flags)}"
                for v in self.mm if lo <= v.vm_start < hi]
