"""The address-space structures of include/linux/mm_types.h: `mm_struct`, `vm_area_struct`, `anon_vma`.

VMAs live in one address-ordered array per mm (the role of the kernel's maple tree): `find_vma` is a
binary search, so it stays O(log n) at tens of thousands of VMAs.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from vmlab.kernel.char_mem import is_dev_zero
from vmlab.kernel.memcontrol import OBJCG_PTR, memcg_kmem_charge_obj_nofail, memcg_kmem_uncharge_obj
from vmlab.kernel.uapi import PAGE_SHIFT

if TYPE_CHECKING:
    from vmlab.kernel.memcontrol import MemCgroup
    from vmlab.kernel.page_writeback import BackingDev
    from vmlab.kernel.pgtable import PageTables
    from vmlab.kernel.xarray import XaNodes

# vm_flags bits (include/linux/mm.h), in the order /proc/PID/smaps prints their mnemonics.
VM_READ: Final = 0x00000001
VM_WRITE: Final = 0x00000002
VM_EXEC: Final = 0x00000004
VM_SHARED: Final = 0x00000008
VM_MAYREAD: Final = 0x00000010
VM_MAYWRITE: Final = 0x00000020
VM_MAYEXEC: Final = 0x00000040
VM_MAYSHARE: Final = 0x00000080
VM_GROWSDOWN: Final = 0x00000100
VM_UFFD_MISSING: Final = 0x00000200
VM_PFNMAP: Final = 0x00000400
VM_MAYBE_GUARD: Final = 0x00000800
VM_UFFD_WP: Final = 0x00001000
VM_LOCKED: Final = 0x00002000
VM_IO: Final = 0x00004000
VM_SEQ_READ: Final = 0x00008000
VM_RAND_READ: Final = 0x00010000
VM_DONTCOPY: Final = 0x00020000
VM_DONTEXPAND: Final = 0x00040000
VM_LOCKONFAULT: Final = 0x00080000
VM_ACCOUNT: Final = 0x00100000
VM_NORESERVE: Final = 0x00200000
VM_HUGETLB: Final = 0x00400000
VM_SYNC: Final = 0x00800000
VM_ARCH_1: Final = 0x01000000
VM_WIPEONFORK: Final = 0x02000000
VM_DONTDUMP: Final = 0x04000000
VM_SOFTDIRTY: Final = 0x08000000
VM_MIXEDMAP: Final = 0x10000000
VM_HUGEPAGE: Final = 0x20000000
VM_NOHUGEPAGE: Final = 0x40000000
VM_MERGEABLE: Final = 0x80000000
#: VM_HIGH_ARCH_8 on 64-bit: MAP_DROPPABLE's mapping, whose anon folios are never swap-backed (6.11+).
VM_DROPPABLE: Final = 1 << 40

VM_ACCESS_FLAGS: Final = VM_READ | VM_WRITE | VM_EXEC
#: enum fault_flag's FAULT_FLAG_USER: the fault came from user mode (x86 do_user_addr_fault sets it only
#: when user_mode(regs)): not for a kernel copy_to_user()/copy_from_user() fault, nor for GUP (mlock,
#: MAP_POPULATE, MADV_POPULATE_*). handle_mm_fault() marks such a fault with current->in_user_fault.
FAULT_FLAG_USER: Final = 1 << 6
VM_SPECIAL: Final = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
VM_LOCKED_MASK: Final = VM_LOCKED | VM_LOCKONFAULT
#: Flags that never block a merge and that a merged VMA keeps if either side had them (VM_STICKY).
VM_STICKY: Final = VM_MAYBE_GUARD
VM_IGNORE_MERGE: Final = VM_SOFTDIRTY | VM_STICKY
VM_DATA_DEFAULT_FLAGS: Final = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
VM_STACK_FLAGS: Final = VM_GROWSDOWN | VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT

#: fs/proc/task_mmu.c:show_smap_vma_flags() mnemonics, by bit.
VM_FLAG_MNEMONICS: tuple[tuple[int, str], ...] = (
    (VM_READ, "rd"), (VM_WRITE, "wr"), (VM_EXEC, "ex"), (VM_SHARED, "sh"),
    (VM_MAYREAD, "mr"), (VM_MAYWRITE, "mw"), (VM_MAYEXEC, "me"), (VM_MAYSHARE, "ms"),
    (VM_GROWSDOWN, "gd"), (VM_UFFD_MISSING, "um"), (VM_PFNMAP, "pf"), (VM_MAYBE_GUARD, "gu"),
    (VM_UFFD_WP, "uw"), (VM_LOCKED, "lo"), (VM_IO, "io"), (VM_SEQ_READ, "sr"), (VM_RAND_READ, "rr"),
    (VM_DONTCOPY, "dc"), (VM_DONTEXPAND, "de"), (VM_LOCKONFAULT, "lf"), (VM_ACCOUNT, "ac"),
    (VM_NORESERVE, "nr"), (VM_HUGETLB, "ht"), (VM_SYNC, "sf"), (VM_ARCH_1, "ar"),
    (VM_WIPEONFORK, "wf"), (VM_DONTDUMP, "dd"), (VM_SOFTDIRTY, "sd"), (VM_MIXEDMAP, "mm"),
    (VM_HUGEPAGE, "hg"), (VM_NOHUGEPAGE, "nh"), (VM_MERGEABLE, "mg"), (VM_DROPPABLE, "dp"),
)


def vm_flags_mnemonics(flags: int) -> str:
    """The `VmFlags:` value of smaps: each set flag's two letters followed by a space."""
    return "".join(f"{name} " for bit, name in VM_FLAG_MNEMONICS if flags & bit)


_anon_vma_ids = itertools.count(1)


#: What an anon_vma and an anon_vma_chain charge their memcg (both caches are SLAB_ACCOUNT): the
#: objects (104 and 64 bytes on this kernel, /proc/slabinfo) and their obj_cgroup pointers.
ANON_VMA_SIZE: Final = 104 + OBJCG_PTR
AVC_SIZE: Final = 64 + OBJCG_PTR


class AnonVma:
    """`struct anon_vma`: the reverse-mapping root shared by VMAs whose anonymous pages may be related.

    Its identity and its parent matter to the VMA rules; `parent` is set for the anon_vma a fork
    child gets (anon_vma_fork()). As a slab object: allocated (charged) on the first link of a VMA to
    it, `linked` by the anon_vma_chain of each VMA whose chain holds it (its interval tree), and
    `refcount` its own reference and, for a root, one from each live anon_vma below it; freed when
    the last reference goes (put_anon_vma), its own when the last VMA unlinks.
    """

    __slots__ = ("allocated", "id", "linked", "objcg", "parent", "refcount")

    def __init__(self, parent: AnonVma | None = None) -> None:
        self.id = next(_anon_vma_ids)
        self.parent = parent
        self.linked = 0
        self.refcount = 1
        self.allocated = False
        self.objcg: MemCgroup | None = None

    @property
    def root(self) -> AnonVma:
        """anon_vma->root: the oldest anon_vma of this one's fork tree (every descendant chains to it)."""
        anon_vma = self
        while anon_vma.parent is not None:
            anon_vma = anon_vma.parent
        return anon_vma

    def __repr__(self) -> str:
        return f"AnonVma#{self.id}"

    def put(self) -> None:
        """put_anon_vma(): one reference less; the last frees it (its charge back), and a non-root
        one then drops its reference to the root."""
        self.refcount -= 1
        if self.refcount:
            return
        if self.objcg is not None:
            memcg_kmem_uncharge_obj(self.objcg, ANON_VMA_SIZE)
            self.objcg = None
        if self.parent is not None:
            self.root.put()


def anon_vma_chain(vma: VmArea) -> list[AnonVma]:
    """The anon_vmas `vma`'s anon_vma_chain links it to: its own, then its ancestors', as many as
    the chain is long."""
    chain: list[AnonVma] = []
    anon_vma = vma.anon_vma
    while anon_vma is not None and len(chain) < vma.anon_vma_chain_len:
        chain.append(anon_vma)
        anon_vma = anon_vma.parent
    return chain


def link_anon_vmas(mm: MmStruct, vma: VmArea) -> None:
    """The slab objects of a linked VMA's new anon_vma chain (anon_vma_clone, anon_vma_fork,
    __anon_vma_prepare): an anon_vma_chain per anon_vma of it, and its own anon_vma on its first
    link (anon_vma_alloc(): after the chain a fork child clones, after the one chain entry of a
    new anon_vma of __anon_vma_prepare), charged in that order to the running task's memcg (without
    reclaim, past the limit if need be, as VMAs are)."""
    chain = anon_vma_chain(vma)
    if not chain:
        return
    new = chain[0] if not chain[0].allocated else None
    if new is None:
        sizes = [AVC_SIZE] * len(chain)
    elif len(chain) > 1:
        sizes = [AVC_SIZE] * (len(chain) - 1) + [ANON_VMA_SIZE, AVC_SIZE]
    else:
        sizes = [AVC_SIZE, ANON_VMA_SIZE]
    for size in sizes:
        objcg = memcg_kmem_charge_obj_nofail(mm.pt.mem if mm.pt is not None else None, size)
        if size == ANON_VMA_SIZE:
            assert new is not None
            new.objcg = objcg
        else:
            vma.avc_objcg = objcg
    if new is not None:
        new.allocated = True
        if new.parent is not None:
            new.root.refcount += 1  # get_anon_vma(anon_vma->root)
    for anon_vma in chain:
        anon_vma.linked += 1


def unlink_anon_vmas(vma: VmArea) -> None:
    """unlink_anon_vmas(): the VMA leaves each anon_vma of its chain; the chain entries go, first
    those whose anon_vma other VMAs still link, then for each anon_vma left unlinked its reference
    (put_anon_vma) and its entry."""
    emptied = []
    for anon_vma in anon_vma_chain(vma):
        anon_vma.linked -= 1
        if anon_vma.linked:
            _free_avc(vma)
        else:
            emptied.append(anon_vma)
    for anon_vma in emptied:
        anon_vma.put()
        _free_avc(vma)
    vma.avc_objcg = None


def _free_avc(vma: VmArea) -> None:
    """anon_vma_chain_free() of one entry of `vma`'s chain."""
    if vma.avc_objcg is not None:
        memcg_kmem_uncharge_obj(vma.avc_objcg, AVC_SIZE)


_inode_handles = itertools.count(1)


def _new_xa_nodes() -> XaNodes:
    """An empty i_pages' node count (vmlab.kernel.xarray, which imports this module)."""
    from vmlab.kernel.xarray import XaNodes

    return XaNodes()

#: VM_READAHEAD_PAGES: the default readahead window, 128 KiB.
VM_READAHEAD_PAGES: Final = 32


@dataclass(eq=False)
class Inode:
    """The parts of `struct inode` the model needs: identity, size, and how its filesystem maps it."""

    path: str
    ino: int
    size: int
    major: int = 0  # MAJOR(sb->s_dev), as maps prints it
    minor: int = 0
    #: f_op->get_unmapped_area is thp_get_unmapped_area (ext4, xfs, ...), so large mappings are 2M-aligned.
    thp_aligned: bool = False
    #: shmem/tmpfs object (MAP_SHARED|MAP_ANONYMOUS, memfd, /dev/shm): maps show offset and no THP alignment.
    shmem: bool = False
    #: S_ISDIR: open() for writing is -EISDIR, and it has no f_op->mmap (-ENODEV).
    directory: bool = False
    #: The filesystem's file_operations take MAP_SYNC (FOP_MMAP_SYNC: ext4, xfs); without DAX, which the
    #: model never has, their mmap then refuses a VM_SYNC mapping (daxdev_mapping_supported).
    fop_mmap_sync: bool = False
    #: S_ISCHR: the device number (major, minor) of a character device (vmlab.kernel.char_mem), else None.
    rdev: tuple[int, int] | None = None
    deleted: bool = False
    #: i_nlink: the names the file has (a host file's st_nlink); the last unlink() deletes it.
    nlink: int = 1
    #: The page cache (`i_mapping->i_pages`): file page index -> PFN of the cached frame.
    i_pages: dict[int, int] = field(default_factory=dict)
    #: Pages the host had in its page cache when the model first saw the file (None: treat all as
    #: cached); the model fills its cache from these without I/O, any other page is a major fault.
    host_cached: frozenset[int] | None = None
    #: Pages shmem_acct_size() charged to the committed counter for this shmem object (0: none).
    acct_pages: int = 0
    #: Shadow entries of evicted pages (workingset.pack_shadow values), by file page index: what the
    #: kernel leaves in i_pages when reclaim evicts a folio, so a refault can tell how long it was gone.
    #: An index with a shadow is not cached (the host's residency no longer applies to it).
    shadows: dict[int, int] = field(default_factory=dict)
    #: A shmem object's pages on swap: file page index -> swap entry (the value entries shmem_writeout
    #: leaves in i_pages; info->swapped is their number). An index here is not cached.
    swapped: dict[int, int] = field(default_factory=dict)
    #: The nodes of the kernel's i_pages XArray over the cached folios and the shadows (xarray.XaNodes):
    #: slab objects charged to the memcg of the task that allocates them.
    #: (Typed Any, not XaNodes: compiled, this class is made before vmlab.kernel.xarray, which imports
    #: this module, has made XaNodes; an annotation naming it would be read as a null type.)
    xa_nodes: Any = field(default_factory=_new_xa_nodes)
    #: The value page->mapping holds for this inode's pages (a handle, never 0, low bits clear).
    handle: int = field(default_factory=lambda: next(_inode_handles) << 2)
    #: inode_to_bdi(): the backing device's read_ahead_kb / 4 (a new file's f_ra.ra_pages) and
    #: io_pages (max_sectors_kb / 4, the most one read may ask for beyond ra_pages).
    ra_pages: int = VM_READAHEAD_PAGES
    io_pages: int = VM_READAHEAD_PAGES
    #: mapping_large_folio_support(): readahead may add folios of order > 0 (ext4, xfs).
    large_folios: bool = False
    #: The large folios in i_pages: index of the head page -> order (order-0 pages are not listed).
    folio_orders: dict[int, int] = field(default_factory=dict)
    #: Indices of the accounted dirty pages (the xarray's PAGECACHE_TAG_DIRTY).
    dirty: set[int] = field(default_factory=set)
    #: Indices whose PAGECACHE_TAG_DIRTY outlived the page's PG_dirty: truncation cleans a large folio
    #: it splits (try_to_free_buffers -> folio_cancel_dirty, which leaves the tag) and the split copies
    #: the tag to each new folio. cachestat counts them dirty; write-back passes them by (not dirty);
    #: the tag goes when the page is dirtied again (then written) or leaves the cache.
    stale_dirty: set[int] = field(default_factory=set)
    #: Indices of the pages whose block (a buffer head: 4 KiB blocks, one per page) is dirty: a write()
    #: dirties the blocks it wrote, a mapping's write or folio_mark_dirty() every block of the folio
    #: (block_dirty_folio). A dirty large folio may hold clean blocks; they decide whether a truncation
    #: can split it (truncate.truncate_partial_folio).
    dirty_buffers: set[int] = field(default_factory=set)
    #: Pages under write-back: index -> when the write completes (clock ns).
    under_writeback: dict[int, int] = field(default_factory=dict)
    #: When the inode went from clean to dirty (inode->dirtied_when, clock ns).
    dirtied_when: int = 0
    #: i_mmap: the VMAs mapping this file, each with its mm (MmStruct.insert/remove keep it).
    i_mmap: dict[VmArea, MmStruct] = field(default_factory=dict)
    #: The device behind the file (None: the machine's default device).
    bdi: BackingDev | None = None


@dataclass
class FileRaState:
    """`struct file_ra_state` (include/linux/fs.h): the most recent readahead window of one open file.

    [start, start+size) was read; the page at start+size-async_size carries PG_readahead, and reaching
    it starts the next window. `order` is the folio order that window asked for, `mmap_miss` counts
    mmap faults that missed the cache, `prev_pos` is the byte after the previous read() (-1 at open).
    """

    ra_pages: int = VM_READAHEAD_PAGES
    start: int = 0
    size: int = 0
    async_size: int = 0
    order: int = 0
    mmap_miss: int = 0
    prev_pos: int = -1


_file_ids = itertools.count(1)

#: What one struct file charges its memcg (filp is SLAB_ACCOUNT): the slab object (192 bytes on this
#: kernel, /proc/slabinfo) and the obj_cgroup pointer kept for it (obj_full_size()).
FILP_SIZE: Final = 192 + OBJCG_PTR
#: What one VMA charges its memcg (vm_area_cachep is SLAB_ACCOUNT): vm_area_struct (192 bytes on
#: this kernel, /proc/slabinfo) and its obj_cgroup pointer.
VMA_SIZE: Final = 192 + OBJCG_PTR
#: What an address space's own objects charge the memcg of the task that made it: its mm_struct
#: (mm_cachep is SLAB_ACCOUNT: 1600 bytes on this kernel, /sys/kernel/slab/mm_struct/slab_size, and
#: the obj_cgroup pointer), then its rss_stat counters (percpu_counter_init_many of NR_MM_COUNTERS
#: s32 per possible CPU, 2 here, with GFP_KERNEL_ACCOUNT: pcpu_obj_full_size() adds an obj_cgroup
#: pointer per 4-byte unit).
MM_STRUCT_SIZE: Final = 1600 + OBJCG_PTR
RSS_STAT_SIZE: Final = 4 * 4 * 2 + 4 * OBJCG_PTR


@dataclass(eq=False)
class File:
    """`struct file`: one open of an inode. Two open()s of one path are two files (merges compare files)."""

    inode: Inode
    readable: bool = True  # FMODE_READ
    writable: bool = False  # FMODE_WRITE
    pos: int = 0  # f_pos, shared by every descriptor dup'ed from this open
    id: int = field(default_factory=lambda: next(_file_ids))
    #: f_ra, set up by file_ra_state_init() from the inode's backing device.
    f_ra: FileRaState = field(default_factory=FileRaState)
    #: f_mode & FMODE_RANDOM (POSIX_FADV_RANDOM): reads take exactly the pages asked for.
    fmode_random: bool = False
    #: f_mode & FMODE_NOREUSE (POSIX_FADV_NOREUSE): its mappings' accesses say nothing of reuse
    #: (vma_has_recency).
    fmode_noreuse: bool = False
    #: f_flags: the open flags the file keeps (vmlab.kernel.fcntl.open_f_flags; F_GETFL, F_SETFL).
    f_flags: int = 0
    #: f_mode & FMODE_CREATED: this open created the file (F_CREATED_QUERY).
    created: bool = False
    #: f_owner: the signal (F_SETSIG) and the process (F_SETOWN; negative: a group) of async I/O.
    signum: int = 0
    owner: int = 0
    #: f_count: the references held by descriptors and by VMAs (get() and put()).
    f_count: int = 0
    #: The memcg its slab objects are charged to (alloc_empty_file() in that memcg's task); None when
    #: not accounted (the model's internal files, those of an imported process).
    objcg: MemCgroup | None = None
    #: The sizes of those objects, in the order file_free() gives them back: an open's struct file;
    #: a pseudo file's dentry, struct file and inode (vmlab.kernel.fs.PSEUDO_FILE_FREED).
    slab: tuple[int, ...] = (FILP_SIZE,)

    def __post_init__(self) -> None:
        """file_ra_state_init(): ra_pages from the backing device, prev_pos = -1."""
        self.f_ra = FileRaState(ra_pages=self.inode.ra_pages)

    def get(self) -> None:
        """get_file(): one more reference (a descriptor or a VMA)."""
        self.f_count += 1

    def put(self) -> None:
        """fput(): one reference less; the last one frees the file (__fput -> file_free)."""
        assert self.f_count > 0, f"fput of {self.path} with no reference"
        self.f_count -= 1
        if not self.f_count:
            self.free()

    def free(self) -> None:
        """__fput() and file_free(): the slab objects' charges go back to their memcg
        (memcg_slab_free_hook), also for a file no reference was taken to (an open that failed after
        alloc_empty_file)."""
        if self.objcg is not None:
            for size in self.slab:
                memcg_kmem_uncharge_obj(self.objcg, size)
            self.objcg = None

    @property
    def path(self) -> str:
        return self.inode.path


@dataclass(frozen=True)
class Mempolicy:
    """`struct mempolicy` of a VMA (mbind): its mode (MPOL_*), mode flags (MPOL_F_STATIC_NODES,
    MPOL_F_RELATIVE_NODES, ...) and nodes as a bitmask. Equal fields are mpol_equal(); a VMA's
    default policy is None (no struct at all)."""

    mode: int
    flags: int = 0
    nodes: int = 0


@dataclass(eq=False, slots=True)
class VmArea:
    """`struct vm_area_struct`: one mapped range [vm_start, vm_end) and everything that decides merging."""

    vm_start: int
    vm_end: int
    vm_flags: int
    vm_pgoff: int = 0
    vm_file: File | None = None
    anon_vma: AnonVma | None = None
    #: Length of anon_vma_chain: >1 means the VMA has "uncowed parents" (a fork child); blocks some merges.
    anon_vma_chain_len: int = 0
    #: vm_ops->name for special mappings ("[vvar]", "[vvar_vclock]", "[vdso]").
    special_name: str | None = None
    #: swap_readahead_info: the last swap fault's page address, readahead window and hits
    #: (SWAP_RA_VAL of mm/swap_state.c).
    swap_readahead_info: int = 0
    #: The memcg its slab object is charged to while it is linked (MmStruct.insert); None: not
    #: accounted (no memcg below the root, or an mm without page tables).
    objcg: MemCgroup | None = None
    #: The memcg its anon_vma_chain entries are charged to (link_anon_vmas), None: not accounted.
    avc_objcg: MemCgroup | None = None
    #: vm_policy: its NUMA memory policy (mbind), None for the default; VMAs merge only with equal ones.
    vm_policy: Mempolicy | None = None

    @property
    def pages(self) -> int:
        """vma_pages()."""
        return (self.vm_end - self.vm_start) >> PAGE_SHIFT

    def is_anonymous(self) -> bool:
        """vma_is_anonymous(): no vm_ops, i.e. private anonymous memory (brk, bss, stack, anon mmap, and a
        private mapping of /dev/zero, which keeps the file: mmap_zero's vma_set_anonymous)."""
        return (self.vm_file is None or is_dev_zero(self.vm_file.inode)) and self.special_name is None

    def had_uncowed_parents(self) -> bool:
        """vma_had_uncowed_parents(): has an anon_vma whose chain is not singular (inherited by fork)."""
        return self.anon_vma is not None and self.anon_vma_chain_len > 1

    def copy(self) -> VmArea:
        """vm_area_dup(): a field-for-field copy (the anon_vma is shared, as after anon_vma_clone)."""
        return VmArea(self.vm_start, self.vm_end, self.vm_flags, self.vm_pgoff, self.vm_file,
                      self.anon_vma, self.anon_vma_chain_len, self.special_name, self.swap_readahead_info,
                      vm_policy=self.vm_policy)

    def __repr__(self) -> str:
        return (f"VmArea({self.vm_start:#x}-{self.vm_end:#x} flags={self.vm_flags:#x} "
                f"pgoff={self.vm_pgoff:#x} file={self.vm_file.path if self.vm_file else None} "
                f"anon_vma={self.anon_vma})")


# rss_stat indices (include/linux/mm_types_task.h)
MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = range(4)


@dataclass(eq=False)
class MmStruct:
    """`struct mm_struct`: the VMAs of one address space in address order, and its layout fields."""

    mmap_base: int = 0
    mmap_legacy_base: int = 0
    topdown: bool = True  # MMF_TOPDOWN: arch_get_unmapped_area_topdown vs the legacy bottom-up search
    task_size: int = 0
    start_code: int = 0
    end_code: int = 0
    start_data: int = 0
    end_data: int = 0
    start_brk: int = 0
    brk: int = 0
    start_stack: int = 0
    arg_start: int = 0
    arg_end: int = 0
    env_start: int = 0
    env_end: int = 0
    total_vm: int = 0  # pages
    locked_vm: int = 0
    data_vm: int = 0
    exec_vm: int = 0
    stack_vm: int = 0
    def_flags: int = 0
    #: CAP_SYS_ADMIN of the task owning this mm: the one credential the model keeps (no struct cred),
    #: read by __vm_enough_memory (the admin reserve); inherited by fork and exec.
    cap_sys_admin: bool = True
    #: Page tables (vmlab.kernel.pgtable.PageTables) once the machine gives the mm physical memory.
    pt: PageTables | None = None
    #: rss_stat: MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES (pages).
    rss: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    hiwater_rss: int = 0
    hiwater_vm: int = 0  # VmPeak: raised where total_vm is about to drop (update_hiwater_vm)
    #: The memcg its pages are charged to (the kernel's mm->owner's memcg); None: not accounted.
    memcg: MemCgroup | None = None
    #: The memcg its mm_struct and rss_stat are charged to (vmlab.kernel.fork.mm_alloc); None: none.
    objcg: MemCgroup | None = None
    #: MMF_* bits of mm->flags beyond MMF_TOPDOWN (the OOM killer's: vmlab.kernel.oom_kill).
    mmf: int = 0
    _starts: list[int] = field(default_factory=list, repr=False)
    _vmas: list[VmArea] = field(default_factory=list, repr=False)

    def free_objects(self) -> None:
        """__mmdrop()'s frees of the mm's own objects: its rss_stat counters, then its mm_struct."""
        if self.objcg is not None:
            memcg_kmem_uncharge_obj(self.objcg, RSS_STAT_SIZE)
            memcg_kmem_uncharge_obj(self.objcg, MM_STRUCT_SIZE)
            self.objcg = None

    def vm_stat_account(self, flags: int, npages: int) -> None:
        """vm_stat_account(): total_vm, and exec_vm / stack_vm / data_vm by the kind of mapping
        (VmSize, VmExe+VmLib, VmStk, VmData in status); VmLck follows VM_LOCKED."""
        self.total_vm += npages
        if flags & (VM_EXEC | VM_WRITE | VM_GROWSDOWN) == VM_EXEC:
            self.exec_vm += npages
        elif flags & VM_GROWSDOWN:
            self.stack_vm += npages
        elif flags & (VM_WRITE | VM_SHARED | VM_GROWSDOWN) == VM_WRITE:
            self.data_vm += npages
        if flags & VM_LOCKED:
            self.locked_vm += npages

    # --- the VMA tree -------------------------------------------------------------------------------

    @property
    def map_count(self) -> int:
        """Number of VMAs (the gate area [vsyscall] is not one)."""
        return len(self._vmas)

    def __iter__(self) -> Iterator[VmArea]:
        """Traversal in address order (the lecture's linked list; the kernel's for_each_vma)."""
        return iter(list(self._vmas))

    def find_vma(self, addr: int) -> VmArea | None:
        """find_vma(): the first VMA with vm_end > addr, or None. O(log n)."""
        i = self._index_after(addr)
        return self._vmas[i] if i < len(self._vmas) else None

    def _index_after(self, addr: int) -> int:
        """Index of the first VMA with vm_end > addr."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and self._vmas[i].vm_end > addr:
            return i
        return i + 1

    def vma_lookup(self, addr: int) -> VmArea | None:
        """vma_lookup(): the VMA containing addr, or None."""
        vma = self.find_vma(addr)
        return vma if vma is not None and vma.vm_start <= addr else None

    def find_vma_intersection(self, start: int, end: int) -> VmArea | None:
        """find_vma_intersection(): the first VMA overlapping [start, end)."""
        vma = self.find_vma(start)
        return vma if vma is not None and vma.vm_start < end else None

    def vmas_in(self, start: int, end: int) -> list[VmArea]:
        """All VMAs overlapping [start, end), in address order."""
        i = self._index_after(start)
        out = []
        while i < len(self._vmas) and self._vmas[i].vm_start < end:
            out.append(self._vmas[i])
            i += 1
        return out

    def prev_vma(self, vma: VmArea) -> VmArea | None:
        """The VMA just below `vma` (vma_prev()), or None."""
        i = self._index_of(vma)
        return self._vmas[i - 1] if i > 0 else None

    def next_vma(self, vma: VmArea) -> VmArea | None:
        """The VMA just above `vma` (vma_next()), or None."""
        i = self._index_of(vma) + 1
        return self._vmas[i] if i < len(self._vmas) else None

    def vma_below(self, addr: int) -> VmArea | None:
        """The last VMA with vm_start < addr (vma_prev from a gap at addr), or None."""
        i = bisect.bisect_left(self._starts, addr) - 1
        return self._vmas[i] if i >= 0 else None

    def _index_of(self, vma: VmArea) -> int:
        i = bisect.bisect_left(self._starts, vma.vm_start)
        if i >= len(self._vmas) or self._vmas[i] is not vma:
            raise AssertionError(f"{vma!r} is not in this mm")
        return i

    def insert(self, vma: VmArea) -> None:
        """vma_iter_store(): link a VMA that overlaps none; it holds a reference to its file. A linked
        VMA is the model's vm_area_alloc() (or vm_area_dup()): VMA_SIZE bytes charged to the running
        task's memcg, without reclaim and over the limit if there is no room (the kernel reclaims
        first: here the next charge that needs room does), and so are its anon_vma chain's objects
        (link_anon_vmas)."""
        i = bisect.bisect_left(self._starts, vma.vm_start)
        if (i > 0 and self._vmas[i - 1].vm_end > vma.vm_start) or (
            i < len(self._vmas) and self._vmas[i].vm_start < vma.vm_end
        ):
            raise AssertionError(f"overlapping insert of {vma!r}")
        if vma.objcg is None:
            self.vm_area_alloc(vma)
        self._starts.insert(i, vma.vm_start)
        self._vmas.insert(i, vma)
        if vma.anon_vma is not None:
            link_anon_vmas(self, vma)
        if vma.vm_file is not None:
            vma.vm_file.get()
            vma.vm_file.inode.i_mmap[vma] = self

    def vm_area_alloc(self, vma: VmArea) -> None:
        """The charge of vm_area_alloc() for `vma`, not yet linked: VMA_SIZE bytes to the running
        task's memcg (nothing for an mm without page tables: no machine). insert() makes it unless
        the caller did (a shared anonymous mapping's VMA is charged before its shmem file)."""
        vma.objcg = memcg_kmem_charge_obj_nofail(self.pt.mem if self.pt is not None else None, VMA_SIZE)

    def remove(self, vma: VmArea) -> None:
        """Unlink a VMA: its anon_vma chain goes (unlink_anon_vmas, as free_pgtables does), its charge
        (vm_area_free), then its reference to its file (remove_vma's fput, which runs its __fput
        after: task_work)."""
        i = self._index_of(vma)
        del self._starts[i]
        del self._vmas[i]
        if vma.anon_vma is not None:
            unlink_anon_vmas(vma)
        if vma.objcg is not None:
            memcg_kmem_uncharge_obj(vma.objcg, VMA_SIZE)
            vma.objcg = None
        if vma.vm_file is not None:
            vma.vm_file.inode.i_mmap.pop(vma, None)
            vma.vm_file.put()

    def set_range(self, vma: VmArea, start: int, end: int) -> None:
        """Move a linked VMA's bounds (vma_set_range on a stored VMA); the caller keeps them disjoint."""
        i = self._index_of(vma)
        vma.vm_start, vma.vm_end = start, end
        self._starts[i] = start
