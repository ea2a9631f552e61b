"""The size of a process's descriptor table and what it charges, after fs/file.c (6.18).

files_struct holds NR_OPEN_DEFAULT (64) descriptors in itself (fdtab). A descriptor beyond them makes
expand_files() allocate a table for the smallest power of two that holds it (alloc_fdtable: the
struct fdtable, the array of file pointers and the open and close-on-exec bitmaps with their summary
bits, each GFP_KERNEL_ACCOUNT), and the table it replaces is freed; a fork's dup_fd() gives the child a
table sized by the parent's highest open descriptor (count_open_files, in whole words of the bitmap)
when that is beyond 64. Closing descriptors never shrinks a table. Each allocation is a kmalloc
object: it charges its kmalloc-cg bucket and the obj_cgroup pointer. The soft RLIMIT_NOFILE (1024)
keeps tables within 1024 descriptors, so every array fits a slab bucket (8 KiB at most).

The descriptors themselves are the machine's (Task.files); `FdTable` is only the table's size and the
objects it charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vmlab.kernel.memcontrol import OBJCG_PTR, memcg_kmem_charge_obj, memcg_kmem_uncharge_obj
from vmlab.kernel.uapi import ENOMEM

if TYPE_CHECKING:
    from vmlab.kernel.memcontrol import MemCgroup
    from vmlab.kernel.page_alloc import PhysMem

#: The descriptors files_struct holds without a table of its own.
NR_OPEN_DEFAULT = 64
#: The kmalloc buckets (bytes) a request is rounded up to.
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
#: sizeof(struct fdtable), L1_CACHE_BYTES, a word.
FDTABLE_SIZE, L1_CACHE_BYTES, WORD = 56, 64, 8


def kmalloc_charge(size: int) -> int:
    """What a GFP_KERNEL_ACCOUNT kmalloc of `size` bytes charges: its bucket and the obj_cgroup
    pointer (obj_full_size)."""
    return next(bucket for bucket in KMALLOC_SIZES if bucket >= size) + OBJCG_PTR


def _words(bits: int) -> int:
    """BITS_TO_LONGS(): the words `bits` bits take."""
    return -(-bits // (8 * WORD))


def fdtable_objects(max_fds: int) -> tuple[int, ...]:
    """alloc_fdtable()'s three allocations for a table of `max_fds` descriptors, charged sizes in its
    order: the struct fdtable, the file pointer array, the bitmaps (open and close-on-exec, one bit
    per descriptor each, then one summary bit per word of them, in whole words)."""
    words = _words(max_fds)
    summary = _words(words) * WORD
    bitmaps = max(2 * max_fds // 8 + summary, L1_CACHE_BYTES)
    return kmalloc_charge(FDTABLE_SIZE), kmalloc_charge(max_fds * WORD), kmalloc_charge(bitmaps)


@dataclass
class FdTable:
    """A process's descriptor table: how many descriptors it holds, and the memcg its allocated
    table's objects are charged to (None: the table inside files_struct, or nothing accounted)."""

    max_fds: int = NR_OPEN_DEFAULT
    memcg: MemCgroup | None = None
    objects: tuple[int, ...] = ()

    def expand(self, mem: PhysMem, nr: int) -> int:
        """expand_files(): make room for descriptor `nr`: a new table of the smallest power of two
        above it, charged to the running task's memcg, the old one freed; 0, or -ENOMEM (nothing
        changed) when a charge fails."""
        if nr < self.max_fds:
            return 0
        new = allocate(mem, 1 << nr.bit_length())
        if new is None:
            return -ENOMEM
        self.free()
        self.max_fds, self.memcg, self.objects = new.max_fds, new.memcg, new.objects
        return 0

    def dup(self, mem: PhysMem, highest_fd: int) -> FdTable | None:
        """dup_fd()'s table for a fork child whose highest open descriptor is `highest_fd` (-1: none):
        the files_struct's own when count_open_files() fits in it, else one allocated (charged to the
        running task's memcg); None when that charge fails."""
        open_files = _words(highest_fd + 1) * 8 * WORD
        if open_files <= NR_OPEN_DEFAULT:
            return FdTable()
        return allocate(mem, 1 << (open_files - 1).bit_length())

    def free(self) -> None:
        """free_fdtable() of an allocated table (the one inside files_struct goes with it)."""
        if self.memcg is not None:
            for size in reversed(self.objects):
                memcg_kmem_uncharge_obj(self.memcg, size)
        self.max_fds, self.memcg, self.objects = NR_OPEN_DEFAULT, None, ()


def allocate(mem: PhysMem, max_fds: int) -> FdTable | None:
    """alloc_fdtable() of `max_fds` descriptors, its objects charged in turn; None (nothing left
    charged) when one fails."""
    table = FdTable(max_fds)
    for size in fdtable_objects(max_fds):
        err, memcg = memcg_kmem_charge_obj(mem, size)
        if err:
            table.free()
            return None
        if memcg is not None:
            table.memcg = memcg
            table.objects += (size,)
    return table
