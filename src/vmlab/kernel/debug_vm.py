"""The model's invariant checker, after mm/debug_vm.c (and the checks of mm/debug.c, mm/page_alloc.c's
bad_page, mm/rmap.c's mapcount sanity): `check_machine()` walks every frame, every page table and
every VMA of a ModelBackend and raises AssertionError naming what disagrees.

Invariants, machine-wide:
- the buddy allocator is consistent (PhysMem.check_buddy) and, per zone, free + allocated = managed;
- every allocated frame has exactly one owner: the page cache of some inode, an anon page mapped by
  some PTE/PMD, a page table of some live mm (linked or deposited), the huge zero folio, a boot
  reservation, or (its last reference) a CPU's folio batch, which frees it when it drains; none is
  unowned (leaked) and none is owned twice;
- _refcount and _mapcount of each owned frame equal the references found: one per PTE/PMD mapping
  (on the folio head) plus the page cache's, one mapcount per mapping of each subpage;
- the committed counter (vm_committed_as) equals the pages of every live VM_ACCOUNT VMA, plus the
  shmem objects' charges, plus what the kernel charges and never gives back (vm_committed_leak).
Per mm:
- RSS counters equal the present entries by type (zero pages excluded, a PMD leaf counts 512);
- pgtables_bytes = 4096 x (tables other than the PGD, deposited ones included); every table is
  reachable exactly once or deposited with exactly one PMD leaf;
- every non-none entry (present, PROT_NONE or guard marker) lies inside a VMA, a PMD leaf inside one
  VMA; file pages are the VMA file's cache page at the right index; anon pages belong to the VMA's
  anon_vma chain; a writable entry is in a VM_WRITE VMA and, in a private VMA, maps an exclusive anon
  page;
- VMAs sorted, page aligned, non-empty and disjoint; map_count = len(VMAs); total_vm = their pages.
The CPU's folio batches and mlock batch (check_fbatches, check_mlock_batch) hold a reference on each
folio they list; a new folio there is on no LRU list yet.
Lazily freed anon folios (check_lazyfree): a droppable VMA's anon pages are never swap-backed, no
lazyfree (anon, not swap-backed) folio is in the swap cache (such a folio on a file LRU list is
legal).
Reclaim: every folio on the list its flags name (check_lru); a cache index holds a page or a shadow,
not both; unevictable folios are mlocked (check_reclaim); reclaim itself refuses to free a dirty page.
Memory cgroups (check_memcg): every charged frame is a live cache, anon or swap-cache folio head,
counted once in exactly one memcg with its folio's size; each memcg's `charged` is the sum of its
frames; usage = charged + forced pages of the subtree + the stock's pages (memory; v1's memsw adds the
subtree's swap); each swap entry charged to a memcg (swap_cgroup) is a slot in use, and each memcg's
swap counts its entries; each memcg's LRU mirror is exactly its charged folios of each node list, in
node-list order. Every page-table frame charged to a memcg (kmem_memcg) is a table of a live mm; each
memcg's `kmem_charged` is the count of its table frames, which its memory (and memsw) usage includes,
its `kernel_stack` the stack pages of the tasks whose objects it was charged for, and v1's kmem
counter is exactly the subtree's table frames, kernel stacks and slab pages. Slab objects
(check_xa_nodes): each inode's XArray nodes are those its entries need (every index with a page or a
shadow in an entry; the tree rebuilt from the entries is the one kept), a node charged is a node of
the tree; each open file's f_count is the descriptors and VMAs that refer to it, and each anon_vma
in a VMA's chain is linked by exactly the chains that hold it (check_slab_objects); and each memcg's
slab pages hold exactly the bytes of its nodes, files, VMAs and anon_vma chains, the object stock's
and its nr_charged_bytes.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from vmlab.kernel.fork import CRED_SIZE, THREAD_SIZE_PAGES
from vmlab.kernel.memory import GUARD_MARKER, HPAGE_PMD_NR
from vmlab.kernel.mlock_folio import NEW_FOLIO
from vmlab.kernel.mm_types import (
    ANON_VMA_SIZE,
    AVC_SIZE,
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_STRUCT_SIZE,
    MM_SWAPENTS,
    RSS_STAT_SIZE,
    VM_DROPPABLE,
    VM_SHARED,
    VM_WRITE,
    VMA_SIZE,
    AnonVma,
    File,
    Inode,
    MmStruct,
    VmArea,
    anon_vma_chain,
)
from vmlab.kernel.page_alloc import NO_PFN, MemMap, PhysMem
from vmlab.kernel.page_flags import (
    MAPCOUNT_NONE,
    PAGE_MAPPING_ANON,
    PG,
    PG_swapcache,
    PGTY_table,
    page_type_value,
)
from vmlab.kernel.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    LEVELS,
    PMD_SIZE,
    PTE_PFN_MASK,
    PageTables,
    pte_pfn,
)
from vmlab.kernel.swap import LRU_NAMES, LRU_UNEVICTABLE, CpuFbatches, folio_lru_list_of
from vmlab.kernel.swapfile import (
    SWAP_HAS_CACHE,
    SWAP_MAP_BAD,
    is_swap_slot_pte,
    pte_to_swp_entry,
    swap_slot_in_use,
    swp_offset,
    swp_type,
)
from vmlab.kernel.uapi import PAGE_SHIFT, PAGE_SIZE
from vmlab.kernel.util import accounted_pages
from vmlab.kernel.workingset import list_key
from vmlab.kernel.xarray import XA_CHUNK_SHIFT, XA_NODE_SIZE, XaNodes

if TYPE_CHECKING:
    from vmlab.kernel.machine import ModelBackend

# Owners of a frame, in the order the checker assigns them.
FREE, RESERVED, HUGE_ZERO, TABLE, CACHE, ANON, SWAPCACHE, BATCHED = range(1, 9)
#: The owners of a live folio: what may be on an LRU list, charged to a memcg, and refcounted by folio.
FOLIO_OWNERS = (CACHE, ANON, SWAPCACHE, BATCHED)
#: Checks a caller may waive while a known model bug is open (check_machine's `waive`):
#: an mm that still maps the huge zero folio after dropping its reference (the model puts the mm's
#: reference on every zap of a huge-zero PMD; the kernel holds it until __mmput);
WAIVE_HUGE_ZERO_MM_REF = "huge-zero-mm-ref"
#: unmapped shmem pages whose inode no VMA, file or backend table reaches (the model never frees a
#: shmem object when its last mapping goes); they are then counted as page cache.
WAIVE_ORPHAN_SHMEM = "orphan-shmem"
OWNER_NAMES = {0: "nobody", FREE: "the buddy allocator", RESERVED: "a boot reservation",
               HUGE_ZERO: "the huge zero folio", TABLE: "a page table", CACHE: "the page cache",
               ANON: "an anon mapping", SWAPCACHE: "the swap cache (unmapped)",
               BATCHED: "a CPU's folio batch (its last reference)"}


class Frames:
    """Per-frame bookkeeping the checker fills in: who owns it and the references it should carry."""

    def __init__(self, mem: PhysMem) -> None:
        self.mem = mem
        self.owner = np.zeros(mem.max_pfn, dtype=np.int8)
        self.ref = np.zeros(mem.max_pfn, dtype=np.int64)
        self.map = np.zeros(mem.max_pfn, dtype=np.int64)
        #: Writable entries of private VMAs: (where, pfn, pages); their pages must be exclusive.
        self.private_writable: list[tuple[str, int, int]] = []
        #: Swap PTEs found, by swap entry.
        self.swap_refs: Counter[int] = Counter()

    def claim(self, pfns: np.ndarray | Iterable[int], owner: int, where: str) -> None:
        """Mark frames as owned by `owner`; a frame claimed twice is an error."""
        arr = np.asarray(list(pfns) if not isinstance(pfns, np.ndarray) else pfns, dtype=np.int64)
        if arr.size == 0:
            return
        bad = arr[(arr < 0) | (arr >= self.mem.max_pfn)]
        if bad.size:
            raise AssertionError(f"{where}: pfn {int(bad[0]):#x} outside mem_map")
        taken = arr[self.owner[arr] != 0]
        if taken.size or np.unique(arr).size != arr.size:
            pfn = int(taken[0]) if taken.size else int(arr[0])
            raise AssertionError(f"{where}: frame {pfn:#x} already owned by "
                                 f"{OWNER_NAMES[int(self.owner[pfn])]}: {self.mem.mem_map[pfn]!r}")
        self.owner[arr] = owner


def enumerate_inodes(backend: ModelBackend) -> list[Inode]:
    """Every inode that may hold page-cache pages of this machine: those the backend opened, the
    deleted ones still held, those of the open files and mapped files of every task (the built-in
    program's among the backend's)."""
    seen: dict[int, Inode] = {}
    candidates: list[Inode] = [*backend._inodes.values(), *backend.simfs.files.values(), *backend._unlinked]
    for task in backend.tasks.values():
        candidates.extend(f.inode for f in task.files.values())
        candidates.extend(v.vm_file.inode for v in task.mm if v.vm_file is not None)
    for inode in candidates:
        seen.setdefault(id(inode), inode)
    return list(seen.values())


# --- page tables -----------------------------------------------------------------------------------------

def walk_tables(pt: PageTables, where: str) -> Iterator[tuple[int, int, bool]]:
    """Every non-none leaf-level entry of `pt` as (address, entry, is_pmd_leaf), checking the tree: each
    linked table is one of pt.tables and linked once, upper levels hold only links or PMD leaves, and
    the unreachable tables are exactly the deposited ones (empty, one per PMD leaf)."""
    reached = {pt.pgd}
    stack = [(pt.pgd, 0, 0)]
    leaves: list[tuple[int, int, bool]] = []
    pmd_leaves: set[int] = set()
    while stack:
        table, depth, base = stack.pop()
        if table not in pt.tables:
            raise AssertionError(f"{where}: table {table:#x} linked at {base:#x} is not in pt.tables")
        entries = pt.tables[table]
        shift = LEVELS[depth][1]
        nz = np.flatnonzero(entries)
        if depth == len(LEVELS) - 1:
            leaves.extend((base + (int(i) << shift), int(entries[i]), False) for i in nz)
            continue
        for i in nz.tolist():
            entry = int(entries[i])
            addr = base + (i << shift)
            if depth == 0 and addr >= 1 << 47:
                raise AssertionError(f"{where}: PGD entry {i} (kernel half) is used: {entry:#x}")
            if not entry & _PAGE_PRESENT:
                raise AssertionError(f"{where}: non-present {LEVELS[depth][0]} entry {entry:#x} at {addr:#x}")
            if entry & _PAGE_PSE:
                if LEVELS[depth][0] != "pmd":
                    raise AssertionError(f"{where}: {LEVELS[depth][0]} leaf {entry:#x} at {addr:#x}")
                leaves.append((addr, entry, True))
                pmd_leaves.add(addr)
                continue
            child = (entry & PTE_PFN_MASK) >> PAGE_SHIFT
            if child in reached:
                raise AssertionError(f"{where}: table {child:#x} linked twice (again at {addr:#x})")
            reached.add(child)
            stack.append((child, depth + 1, addr))
    deposited = set(pt.deposited.values())
    if reached & deposited:
        raise AssertionError(f"{where}: deposited tables also linked: {sorted(reached & deposited)}")
    if set(pt.tables) != reached | deposited:
        orphans = sorted(set(pt.tables) - reached - deposited)
        raise AssertionError(f"{where}: tables neither linked nor deposited: {[hex(p) for p in orphans]}; "
                             f"missing: {sorted((reached | deposited) - set(pt.tables))}")
    for haddr, pfn in pt.deposited.items():
        if np.any(pt.tables[pfn]):
            raise AssertionError(f"{where}: deposited table {pfn:#x} of {haddr:#x} is not empty")
    if set(pt.deposited) != pmd_leaves:
        raise AssertionError(f"{where}: deposits at {sorted(hex(a) for a in pt.deposited)} but PMD leaves "
                             f"at {sorted(hex(a) for a in pmd_leaves)}")
    expected = PAGE_SIZE * (len(pt.tables) - 1)
    if pt.pgtables_bytes != expected:
        raise AssertionError(f"{where}: pgtables_bytes {pt.pgtables_bytes} != 4096 x {len(pt.tables) - 1} "
                             f"tables below the PGD = {expected}")
    return iter(sorted(leaves))


# --- VMAs ------------------------------------------------------------------------------------------------

def check_vmas(mm: MmStruct, where: str) -> list[VmArea]:
    """VMAs sorted, aligned, non-empty, disjoint; the index arrays agree; map_count, total_vm."""
    vmas = list(mm)
    prev_end = 0
    for vma in vmas:
        if vma.vm_start & (PAGE_SIZE - 1) or vma.vm_end & (PAGE_SIZE - 1) or vma.vm_start >= vma.vm_end:
            raise AssertionError(f"{where}: bad VMA bounds {vma!r}")
        if vma.vm_start < prev_end:
            raise AssertionError(f"{where}: {vma!r} overlaps or precedes the VMA ending at {prev_end:#x}")
        prev_end = vma.vm_end
    if mm._starts != [v.vm_start for v in vmas]:
        raise AssertionError(f"{where}: the start index disagrees with the VMAs")
    if mm.map_count != len(vmas):
        raise AssertionError(f"{where}: map_count {mm.map_count} != {len(vmas)} VMAs")
    pages = sum(v.pages for v in vmas)
    if mm.total_vm != pages:
        raise AssertionError(f"{where}: total_vm {mm.total_vm} != {pages} pages in VMAs")
    return vmas


def _anon_chain(anon_vma: AnonVma | None) -> set[int]:
    """Ids of an anon_vma and its ancestors (the pages a VMA may map)."""
    ids = set()
    while anon_vma is not None:
        ids.add(anon_vma.id)
        anon_vma = anon_vma.parent
    return ids


# --- the checker -----------------------------------------------------------------------------------------

def check_mm(pid: int, mm: MmStruct, mem: PhysMem, frames: Frames,
             waive: frozenset[str] = frozenset()) -> None:
    """The per-mm invariants; adds the mm's table frames and mapping references to `frames`."""
    where = f"pid {pid}"
    vmas = check_vmas(mm, where)
    if mm.pt is None:
        raise AssertionError(f"{where}: live mm without page tables")
    pt = mm.pt
    leaves = list(walk_tables(pt, where))
    frames.claim(np.fromiter(pt.tables, dtype=np.int64, count=len(pt.tables)), TABLE, f"{where} tables")
    mm_map = mem.mem_map
    rss = [0, 0, 0, 0]
    starts = [v.vm_start for v in vmas]
    for addr, entry, huge in leaves:
        size = PMD_SIZE if huge else PAGE_SIZE
        i = bisect.bisect_right(starts, addr) - 1
        vma = vmas[i] if i >= 0 else None
        at = f"{where} {'PMD' if huge else 'PTE'} {addr:#x} = {entry:#x}"
        if vma is None or addr + size > vma.vm_end:
            raise AssertionError(f"{at}: not inside a VMA (nearest below: {vma!r})")
        if not entry & (_PAGE_PRESENT | _PAGE_PROTNONE):
            if is_swap_slot_pte(entry) and not huge:
                swp = pte_to_swp_entry(entry)
                if not swap_slot_in_use(mem.swap, swp):
                    raise AssertionError(f"{at}: swap entry {swp:#x} of a slot not in use")
                if vma.vm_flags & VM_SHARED or vma.anon_vma is None:
                    raise AssertionError(f"{at}: swap entry in a VMA without anon pages: {vma!r}")
                frames.swap_refs[swp] += 1
                rss[MM_SWAPENTS] += 1
            elif entry != GUARD_MARKER or huge:
                raise AssertionError(f"{at}: a non-present entry that is neither swap nor a guard marker")
            continue
        pfn = pte_pfn(entry)
        writable = bool(entry & _PAGE_RW) and bool(entry & _PAGE_PRESENT)
        if writable and not vma.vm_flags & VM_WRITE:
            raise AssertionError(f"{at}: writable entry in a VMA without VM_WRITE: {vma!r}")
        if huge and mem.is_huge_zero_pfn(pfn):
            if writable:
                raise AssertionError(f"{at}: the huge zero folio mapped writable")
            if id(mm) not in mem._huge_zero_mms and WAIVE_HUGE_ZERO_MM_REF not in waive:
                raise AssertionError(f"{at}: maps the huge zero folio but the mm holds no reference to it")
            continue
        if entry & _PAGE_SPECIAL:
            if huge or not mem.is_zero_pfn(pfn):
                raise AssertionError(f"{at}: special entry that is not the zero page")
            if writable:
                raise AssertionError(f"{at}: the zero page mapped writable")
            continue
        if not 0 <= pfn < mem.max_pfn:
            raise AssertionError(f"{at}: pfn {pfn:#x} outside mem_map")
        head = mm_map.compound_head(pfn)
        mapping = int(mm_map.mapping[head])
        index = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
        if mapping & PAGE_MAPPING_ANON:
            if vma.vm_flags & VM_SHARED:
                raise AssertionError(f"{at}: anon page {pfn:#x} in a shared VMA {vma!r}")
            if mapping >> 2 not in _anon_chain(vma.anon_vma):
                raise AssertionError(f"{at}: anon page {pfn:#x} of AnonVma#{mapping >> 2} is not in the "
                                     f"anon_vma chain of {vma!r}")
            check_lazyfree(mem, vma, pfn, at)
            counter = MM_ANONPAGES
        elif vma.special_name is not None:
            if pfn not in mem.special_pages.get(vma.special_name, ()):
                raise AssertionError(f"{at}: page {pfn:#x} is not a page of the {vma.special_name} image")
            counter = MM_FILEPAGES
        else:
            inode = vma.vm_file.inode if vma.vm_file is not None else None
            if inode is None or mapping != inode.handle or inode.i_pages.get(index) != pfn:
                raise AssertionError(f"{at}: page {pfn:#x} (mapping {mapping:#x}) is not the cache page of "
                                     f"index {index} of {vma!r}: {mm_map[pfn]!r}")
            if huge:
                raise AssertionError(f"{at}: file pages are not PMD-mapped in the model")
            counter = MM_SHMEMPAGES if mm_map.test(pfn, PG.swapbacked) else MM_FILEPAGES
            if writable and not vma.vm_flags & VM_SHARED:
                raise AssertionError(f"{at}: page-cache page mapped writable in a private VMA {vma!r}")
        nr = HPAGE_PMD_NR if huge else 1
        rss[counter] += nr
        frames.map[pfn:pfn + nr] += 1
        frames.ref[head] += 1
        if writable and not vma.vm_flags & VM_SHARED and counter == MM_ANONPAGES:
            frames.private_writable.append((at, pfn, nr))
    if rss != mm.rss:
        raise AssertionError(f"{where}: rss {mm.rss} (file, anon, swap, shmem) != entries {rss}")
    # hiwater_rss is raised only where RSS drops (update_hiwater_rss); status shows max(it, rss).


def check_committed(backend: ModelBackend) -> None:
    """vm_committed_as = Σ VM_ACCOUNT VMA pages of the live mms + Σ shmem charges + the known leaks."""
    mem = backend.mem
    inodes = {id(i): i for i in [*enumerate_inodes(backend), *backend._shmem_inodes]}
    vmas = sum(accounted_pages(task.mm) for task in backend.tasks.values())
    shmem = sum(i.acct_pages for i in inodes.values())
    if mem.vm_committed_as != vmas + shmem + mem.vm_committed_leak:
        raise AssertionError(f"vm_committed_as {mem.vm_committed_as} pages != {vmas} (VM_ACCOUNT VMAs) + "
                             f"{shmem} (shmem objects) + {mem.vm_committed_leak} (leaked)")


def check_machine(backend: ModelBackend, waive: frozenset[str] = frozenset()) -> None:
    """Check every invariant of the machine (see the module docstring); AssertionError on the first
    broken one, naming the frame, entry or VMA and what was expected. `waive` names checks to skip
    while a known model bug is open (WAIVE_*)."""
    mem = backend.mem
    mm_map = mem.mem_map
    mem.check_buddy()
    frames = Frames(mem)
    # The buddy's free frames, then the boot reservations (PG_reserved).
    for zone in mem.zones:
        for pfn, order in mem.free_blocks(zone):
            frames.claim(np.arange(pfn, pfn + (1 << order)), FREE, f"free block {pfn:#x}/{order}")
    reserved = np.flatnonzero((mm_map.flags >> np.uint64(PG.reserved)) & np.uint64(1))
    frames.claim(reserved, RESERVED, "reserved frames")
    # The huge zero folio while it exists.
    hz = mem._huge_zero_pfn
    if hz != NO_PFN:
        frames.claim(np.arange(hz, hz + HPAGE_PMD_NR), HUGE_ZERO, "huge zero folio")
        if mem._huge_zero_refcount != 1 + len(mem._huge_zero_mms):
            raise AssertionError(f"huge zero folio: refcount {mem._huge_zero_refcount} != 1 (shrinker) + "
                                 f"{len(mem._huge_zero_mms)} mms")
        live = {id(t.mm) for t in backend.tasks.values()}
        if not mem._huge_zero_mms <= live:
            raise AssertionError("huge zero folio: referenced by an mm that is gone")
    elif mem._huge_zero_refcount or mem._huge_zero_mms:
        raise AssertionError("huge zero folio: references without a folio")
    # Page tables and mappings of every live mm.
    for pid, task in sorted(backend.tasks.items()):
        check_mm(pid, task.mm, mem, frames, waive)
    check_committed(backend)
    # The page cache: one reference per cached page.
    for inode in enumerate_inodes(backend):
        for index, pfn in sorted(inode.i_pages.items()):
            at = f"page cache of {inode.path} (ino {inode.ino}) index {index}"
            frames.claim([pfn], CACHE, at)
            if int(mm_map.mapping[pfn]) != inode.handle or int(mm_map.index[pfn]) != index:
                raise AssertionError(f"{at}: frame {pfn:#x} has mapping {int(mm_map.mapping[pfn]):#x} "
                                     f"index {int(mm_map.index[pfn])}: {mm_map[pfn]!r}")
            frames.ref[pfn] += 1
    # The vDSO image: one reference each, held by the machine (mapped like file pages).
    for name, pfns in mem.special_pages.items():
        frames.claim(pfns, CACHE, f"the {name} image")
        frames.ref[pfns] += 1
    # Anon frames: every frame (and THP subpage) some entry maps that is not in the cache.
    mapped = np.flatnonzero(frames.map)
    anon = mapped[frames.owner[mapped] == 0]
    for head in sorted(set(mm_map_heads(mm_map, anon).tolist())):
        n = 1 << mm_map.folio_order(head)
        frames.claim(np.arange(head, head + n), ANON, f"anon folio {head:#x}")
    odd = mapped[(frames.owner[mapped] != CACHE) & (frames.owner[mapped] != ANON)]
    if odd.size:
        pfn = int(odd[0])
        raise AssertionError(f"frame {pfn:#x} is mapped but owned by {OWNER_NAMES[int(frames.owner[pfn])]}: "
                             f"{mm_map[pfn]!r}")
    check_swap_cache(mem, frames)
    check_fbatches(mem, frames)
    check_mlock_batch(mem, frames)
    if WAIVE_ORPHAN_SHMEM in waive:
        _claim_orphan_shmem(mem, frames)
    _check_counts(mem, frames)
    _check_conservation(mem, frames)
    check_lru(mem, frames)
    check_writeback(mem, enumerate_inodes(backend))
    check_shmem_swap(backend, frames)
    check_swap_areas(mem, frames)
    check_reclaim(mem, enumerate_inodes(backend))
    check_xa_nodes(backend, enumerate_inodes(backend), check_slab_objects(backend))
    check_memcg(backend, frames)


def check_slab_objects(backend: ModelBackend) -> Counter[int]:
    """Each file a task's descriptor or VMA refers to has one reference (f_count) for each of them;
    each anon_vma in a VMA's chain is linked by exactly the chains that hold it, alive, allocated;
    the bytes of the struct file, VMA, anon_vma_chain, anon_vma, mm_struct and task objects charged
    to each memcg, by id()."""
    refs: Counter[int] = Counter()
    files: dict[int, File] = {}
    charged: Counter[int] = Counter()
    linked: Counter[int] = Counter()
    anon_vmas: dict[int, AnonVma] = {}
    for task in backend.tasks.values():
        if task.objects.memcg is not None:
            charged[id(task.objects.memcg)] += sum(task.objects.sizes)
        if task.objects.cred is not None:
            charged[id(task.objects.cred)] += CRED_SIZE
        fdt = task.objects.fdt
        if fdt.memcg is not None:
            charged[id(fdt.memcg)] += sum(fdt.objects)
        if task.files and max(task.files) >= fdt.max_fds:
            raise AssertionError(f"pid {task.pid}: descriptor {max(task.files)} beyond its table of "
                                 f"{fdt.max_fds}")
        if task.mm.objcg is not None:
            charged[id(task.mm.objcg)] += MM_STRUCT_SIZE + RSS_STAT_SIZE
        held = [*task.files.values(), *(v.vm_file for v in task.mm if v.vm_file is not None)]
        for file in held:
            refs[id(file)] += 1
            files[id(file)] = file
        for vma in task.mm:
            chain = anon_vma_chain(vma)
            if vma.objcg is not None:
                charged[id(vma.objcg)] += VMA_SIZE
            if vma.avc_objcg is not None:
                charged[id(vma.avc_objcg)] += AVC_SIZE * len(chain)
            for anon_vma in chain:
                linked[id(anon_vma)] += 1
                anon_vmas[id(anon_vma)] = anon_vma
                anon_vmas[id(anon_vma.root)] = anon_vma.root
    for key, anon_vma in anon_vmas.items():
        if anon_vma.linked != linked[key] or anon_vma.refcount <= 0 or not anon_vma.allocated:
            raise AssertionError(f"{anon_vma!r}: linked {anon_vma.linked} (chains holding it: "
                                 f"{linked[key]}), refcount {anon_vma.refcount}, allocated "
                                 f"{anon_vma.allocated}")
        if anon_vma.objcg is not None:
            charged[id(anon_vma.objcg)] += ANON_VMA_SIZE
    for key, file in files.items():
        if file.f_count != refs[key]:
            raise AssertionError(f"file {file.path} (#{file.id}): f_count {file.f_count}, "
                                 f"{refs[key]} descriptors and VMAs refer to it")
        if file.objcg is not None:
            charged[id(file.objcg)] += sum(file.slab)
    return charged


def check_xa_nodes(backend: ModelBackend, inodes: list[Inode], objects: Counter[int]) -> None:
    """Each inode's XArray nodes against its entries, and the slab bytes each memcg paid for: its nodes
    and its other `objects` (check_slab_objects)."""
    owned: Counter[int] = Counter()
    for inode in inodes:
        nodes = inode.xa_nodes
        at = f"i_pages of {inode.path} (ino {inode.ino})"
        used = inode.i_pages.keys() | inode.shadows.keys() | inode.swapped.keys()
        if nodes.order_counts != Counter(nodes.orders.values()):
            raise AssertionError(f"{at}: order_counts {nodes.order_counts} for entries of orders "
                                 f"{dict(Counter(nodes.orders.values()))}")
        covered = {i for head, order in nodes.orders.items() for i in range(head, head + (1 << order))}
        for head, order in nodes.orders.items():
            span = range(head, head + (1 << order))
            if not used.intersection(span):
                raise AssertionError(f"{at}: entry at {head} of order {order} holds no page, shadow or "
                                     "swap entry")
            # a multi-index entry of cached pages is their folio's (one a reclaim is taking frame by
            # frame holds shadows too)
            if (inode.i_pages.keys() & set(span) and not inode.shadows.keys() & set(span)
                    and inode.folio_orders.get(head) != order):
                raise AssertionError(f"{at}: entry at {head} of order {order} holds pages of no folio "
                                     f"of that order (folio order {inode.folio_orders.get(head, 0)})")
        rebuilt = XaNodes()
        rebuilt.update([], sorted(nodes.orders.items()) + [(i, 0) for i in sorted(used - covered)])
        if rebuilt.masks != nodes.masks or rebuilt.chain != nodes.chain:
            raise AssertionError(f"{at}: {nodes.nr_nodes()} nodes kept, its entries need "
                                 f"{rebuilt.nr_nodes()}")
        real = set(nodes.masks) - set(nodes.chain)
        for node, memcg in nodes.owner.items():
            if node not in real:
                raise AssertionError(f"{at}: node {node} charged to {memcg.path} is not in the tree")
            owned[id(memcg)] += 1
    check_shadow_nodes(backend.mem, inodes)
    tree = backend.memcgs
    if tree is None:
        return
    for memcg in tree.root.iter_tree():
        held = owned[id(memcg)] * XA_NODE_SIZE + objects[id(memcg)] + memcg.nr_charged_bytes
        if tree.obj_stock_memcg is memcg:
            held += tree.obj_stock_bytes
        if memcg.kmem_obj_pages * PAGE_SIZE != held:
            raise AssertionError(f"memcg {memcg.path}: {memcg.kmem_obj_pages} slab pages charged, "
                                 f"{held} bytes in its objects, the object stock and nr_charged_bytes")


def check_shadow_nodes(mem: PhysMem, inodes: list[Inode]) -> None:
    """Each inode's block_pages counts its cached pages by block, and the shadow_nodes lists (settled)
    hold exactly the nodes that hold only shadow entries, each on the list of the memcg that paid
    for it (never a shmem object's: its value entries are swap entries)."""
    for inode in inodes:
        blocks = Counter(i >> XA_CHUNK_SHIFT for i in inode.i_pages)
        if inode.xa_nodes.block_pages != blocks:
            raise AssertionError(f"block_pages of {inode.path}: {len(inode.xa_nodes.block_pages)} blocks "
                                 f"counted, {len(blocks)} with cached pages, or counts differ")
    shadows = mem.shadow_nodes
    shadows.settle()
    want: dict[tuple[int, tuple[int, int]], int | None] = {}
    for inode in inodes:
        nodes = inode.xa_nodes
        for node in () if inode.shmem else nodes.masks:
            if nodes.shadow_only(node):
                want[(inode.handle, node)] = list_key(nodes.owner.get(node))
    have = {key: lru for lru, lst in shadows.lists.items() for key in lst}
    if have != want or shadows.listed != have:
        extra, missing = have.keys() - want.keys(), want.keys() - have.keys()
        raise AssertionError(f"shadow_nodes lists: {len(extra)} listed that hold more than shadows "
                             f"(e.g. {sorted(extra)[:3]}), {len(missing)} of only shadows not listed "
                             f"(e.g. {sorted(missing)[:3]}), or on the wrong memcg's list")


def check_mlock_batch(mem: PhysMem, frames: Frames) -> None:
    """The CPU's mlock batch: folio heads of anon or page-cache folios, each entry holding one
    reference; a new folio waiting there is mlocked and on no list; one whose other references went
    (unmapped while locked) is owned by the batch."""
    mm_map = mem.mem_map
    for head, kind in mem.mlock_fbatch:
        at = f"mlock batch: frame {head:#x}"
        if mm_map.compound_head(head) != head or not int(mm_map.mapping[head]):
            raise AssertionError(f"{at} is not the head of an anon or page-cache folio: {mm_map[head]!r}")
        if kind == NEW_FOLIO and mm_map.test(head, PG.lru):
            raise AssertionError(f"{at} is new but already on a list: {mm_map[head]!r}")
        _batch_reference(mem, frames, head, at)


def check_fbatches(mem: PhysMem, frames: Frames) -> None:
    """The CPU's folio batches (swap.CpuFbatches): each entry a folio head holding one reference; a
    folio waits in lru_add at most once and off every list (PG_lru clear); one whose other references
    went (unmapped or truncated while it waited) is owned by the batch."""
    mm_map = mem.mem_map
    for name, batch in zip(CpuFbatches.ORDER, mem.fbatches.batches(), strict=True):
        for head in batch:
            at = f"{name} batch: frame {head:#x}"
            if mm_map.compound_head(head) != head:
                raise AssertionError(f"{at} is not a folio head: {mm_map[head]!r}")
            if name == "lru_add" and mm_map.test(head, PG.lru):
                raise AssertionError(f"{at} has PG_lru (it is on no list while batched): {mm_map[head]!r}")
            _batch_reference(mem, frames, head, at)
    if len(set(mem.fbatches.lru_add)) != len(mem.fbatches.lru_add):
        raise AssertionError(f"lru_add batch holds a folio twice: {mem.fbatches.lru_add}")


def _batch_reference(mem: PhysMem, frames: Frames, head: int, at: str) -> None:
    """A CPU batch's reference on folio `head`: counted; the folio is the batch's when nothing else
    owns it any more (unmapped, truncated or out of the swap cache while it waited)."""
    mm_map = mem.mem_map
    if int(frames.owner[head]) == 0:
        frames.claim(np.arange(head, head + (1 << mm_map.folio_order(head))), BATCHED, at)
    frames.ref[head] += 1


def check_lazyfree(mem: PhysMem, vma: VmArea, pfn: int, at: str) -> None:
    """An anon page mapped in a VM_DROPPABLE VMA is never swap-backed (folio_add_new_anon_rmap; reclaim
    drops it, written or not). Elsewhere an anon folio may be lazyfree (not swap-backed after
    MADV_FREE: on a file LRU list, or in the lru_lazyfree batch), but never so in the swap cache."""
    mm_map = mem.mem_map
    flags = int(mm_map.flags[mm_map.compound_head(pfn)])
    swapbacked = bool(flags >> PG.swapbacked & 1)
    if vma.vm_flags & VM_DROPPABLE and swapbacked:
        raise AssertionError(f"{at}: swap-backed anon page {pfn:#x} in a droppable VMA {vma!r}")
    if not swapbacked and flags >> PG_swapcache & 1:
        raise AssertionError(f"{at}: lazyfree anon page {pfn:#x} in the swap cache: {mm_map[pfn]!r}")


def check_memcg(backend: ModelBackend, frames: Frames) -> None:
    """The memcg invariants of the module docstring."""
    mem, tree = backend.mem, backend.memcgs
    mm_map = mem.mem_map
    charged: Counter[int] = Counter()
    for pfn, (memcg, nr, kind) in tree.page_memcg.items():
        at = f"memcg {memcg.path}: charged frame {pfn:#x} ({kind})"
        if int(frames.owner[pfn]) not in FOLIO_OWNERS or mm_map.compound_head(pfn) != pfn:
            raise AssertionError(f"{at} is not a live cache or anon folio head but owned by "
                                 f"{OWNER_NAMES[int(frames.owner[pfn])]}: {mm_map[pfn]!r}")
        if nr != 1 << mm_map.folio_order(pfn):
            raise AssertionError(f"{at} charged {nr} pages for a folio of {1 << mm_map.folio_order(pfn)}")
        charged[id(memcg)] += nr
    tables: Counter[int] = Counter()
    for pfn, memcg in tree.kmem_memcg.items():
        if int(frames.owner[pfn]) != TABLE:
            raise AssertionError(f"memcg {memcg.path}: kmem-charged frame {pfn:#x} is not a page table of a "
                                 f"live mm but {OWNER_NAMES[int(frames.owner[pfn])]}: {mm_map[pfn]!r}")
        tables[id(memcg)] += 1
    stacks: Counter[int] = Counter()
    for task in backend.tasks.values():
        if task.objects.stack and task.objects.memcg is not None:
            stacks[id(task.objects.memcg)] += THREAD_SIZE_PAGES
    swapped: Counter[int] = Counter()
    for entry, memcg in tree.swap_cgroup.items():
        if not swap_slot_in_use(mem.swap, entry):
            raise AssertionError(f"memcg {memcg.path}: charged for swap entry {entry:#x}, whose slot is free")
        swapped[id(memcg)] += 1
    for memcg in tree.root.iter_tree():
        if memcg.swap != swapped[id(memcg)]:
            raise AssertionError(f"memcg {memcg.path}: swap {memcg.swap} pages, its swap entries are "
                                 f"{swapped[id(memcg)]}")
        if memcg.charged != charged[id(memcg)]:
            raise AssertionError(f"memcg {memcg.path}: charged {memcg.charged} pages, its frames hold "
                                 f"{charged[id(memcg)]}")
        if memcg.kernel_stack != stacks[id(memcg)]:
            raise AssertionError(f"memcg {memcg.path}: kernel_stack {memcg.kernel_stack} pages, its "
                                 f"tasks' stacks are {stacks[id(memcg)]}")
        if memcg.kmem_charged != tables[id(memcg)]:
            raise AssertionError(f"memcg {memcg.path}: kmem_charged {memcg.kmem_charged} pages, "
                                 f"{tables[id(memcg)]} table frames are charged to it")
        if memcg.parent is None:
            continue  # the root's counters are not charged (pages of root tasks are not accounted)
        kmem = sum(c.kmem_charged + c.kmem_obj_pages + c.kernel_stack for c in memcg.iter_tree())
        if tree.version == 1 and memcg.kmem.usage != kmem:
            raise AssertionError(f"memcg {memcg.path}: kmem usage {memcg.kmem.usage} != {kmem} table "
                                 "frames, kernel stack and slab pages charged in its subtree")
        want = kmem + sum(c.charged + c.forced for c in memcg.iter_tree())
        want += tree.stock_pages(memcg)
        swap = sum(c.swap for c in memcg.iter_tree())
        counters = (("memory", memcg.memory, 0), ("memsw", memcg.memsw, swap))[:2 if tree.version == 1 else 1]
        for name, counter, extra in counters:
            if counter.usage != want + extra:
                raise AssertionError(f"memcg {memcg.path}: {name} usage {counter.usage} != {want + extra} "
                                     "pages charged (frames, tables, forced, stocked and swapped) in its "
                                     "subtree")
    for lru, lst in enumerate(mem.lruvec.lists):
        by_memcg: dict[int, list[int]] = {}
        for head in lst:
            got = tree.page_memcg.get(head)
            if got is not None:
                by_memcg.setdefault(id(got[0]), []).append(head)
        for memcg in tree.root.iter_tree():
            want_heads = by_memcg.get(id(memcg), [])
            mirror = memcg.lruvec.lists[lru]
            if list(mirror) != want_heads:
                extra = set(mirror) ^ set(want_heads)
                raise AssertionError(f"memcg {memcg.path}: its {LRU_NAMES[lru]} list differs from its folios "
                                     f"on the node list (first odd one: "
                                     f"{min(extra) if extra else 'none, the order'})")
            pages = sum(1 << mm_map.folio_order(h) for h in want_heads)
            if memcg.lruvec.nr_pages[lru] != pages:
                raise AssertionError(f"memcg {memcg.path}: {LRU_NAMES[lru]} counts "
                                     f"{memcg.lruvec.nr_pages[lru]} pages, {pages} on it")


def check_writeback(mem: PhysMem, inodes: list[Inode]) -> None:
    """Dirty and write-back accounting: a file page is PG_dirty exactly when its inode tags it dirty (so
    no dirty page left the cache unwritten, except through truncation, which cancels it), PG_writeback
    exactly when a write of it is pending on the clock; NR_FILE_DIRTY and NR_WRITEBACK are those counts;
    the flusher's b_dirty list holds exactly the inodes with dirty pages. The cached pages of a large
    folio are dirty, and under write-back, all or none (the kernel's one PG_dirty and PG_writeback)."""
    mm_map = mem.mem_map
    wb = mem.wb
    dirty = writeback = 0
    for inode in inodes:
        if inode.shmem:
            continue
        for head, order in inode.folio_orders.items():
            frames = [p for p in map(inode.i_pages.get, range(head, head + (1 << order))) if p is not None]
            states = {(mm_map.test(p, PG.dirty), mm_map.test(p, PG.writeback)) for p in frames}
            if len(states) > 1:
                raise AssertionError(f"{inode.path}: the pages of the folio at index {head} (order {order}) "
                                     f"differ in PG_dirty/PG_writeback: {sorted(states)}")
        for index, pfn in inode.i_pages.items():
            at = f"page cache of {inode.path} index {index} (pfn {pfn:#x})"
            if mm_map.test(pfn, PG.dirty) != (index in inode.dirty):
                raise AssertionError(f"{at}: PG_dirty {mm_map.test(pfn, PG.dirty)} but the inode's dirty tag "
                                     f"{index in inode.dirty}")
            if mm_map.test(pfn, PG.writeback) != (index in inode.under_writeback):
                raise AssertionError(f"{at}: PG_writeback and the pending writes disagree")
        cached = inode.i_pages.keys()
        if not inode.stale_dirty <= cached or not inode.stale_dirty.isdisjoint(inode.dirty):
            raise AssertionError(f"{inode.path}: stale dirty tags {sorted(inode.stale_dirty)[:8]} on pages "
                                 "not cached or tagged dirty for real")
        if not inode.dirty <= cached or not inode.under_writeback.keys() <= cached:
            raise AssertionError(f"{inode.path}: dirty or write-back pages that are not in its cache")
        if not inode.dirty_buffers <= inode.dirty:
            raise AssertionError(f"{inode.path}: dirty blocks on pages that are not dirty: "
                                 f"{sorted(inode.dirty_buffers - inode.dirty)[:8]}")
        if bool(inode.dirty) != (inode in wb.b_dirty):
            raise AssertionError(f"{inode.path}: {len(inode.dirty)} dirty pages but b_dirty membership "
                                 f"{inode in wb.b_dirty}")
        dirty += len(inode.dirty)
        writeback += len(inode.under_writeback)
    if (dirty, writeback) != (wb.nr_dirty, wb.nr_writeback):
        raise AssertionError(f"NR_FILE_DIRTY/NR_WRITEBACK {wb.nr_dirty}/{wb.nr_writeback} but the pages say "
                             f"{dirty}/{writeback}")


def check_swap_cache(mem: PhysMem, frames: Frames) -> None:
    """The swap cache: each cached folio is a small swap-backed folio with PG_swapcache and its entry in
    ->private, holding one reference; an unmapped one is owned by the cache, a mapped one is an anon
    page; exactly the cached folios carry PG_swapcache."""
    mm_map = mem.mem_map
    for entry, head in sorted(mem.swap.cache.items()):
        at = f"swap cache entry {entry:#x}: folio {head:#x}"
        flags = int(mm_map.flags[head])
        if not flags >> PG_swapcache & 1 or not flags >> PG.swapbacked & 1 or flags >> PG.head & 1:
            raise AssertionError(f"{at} is not a small swap-backed folio with PG_swapcache: {mm_map[head]!r}")
        if int(mm_map.private[head]) != entry:
            raise AssertionError(f"{at} has private {int(mm_map.private[head]):#x}: {mm_map[head]!r}")
        if frames.owner[head] == 0:
            if frames.map[head]:
                raise AssertionError(f"{at} is mapped but not claimed")
            frames.claim([head], SWAPCACHE, at)
        elif frames.owner[head] != ANON:
            raise AssertionError(f"{at} is owned by {OWNER_NAMES[int(frames.owner[head])]}: {mm_map[head]!r}")
        frames.ref[head] += 1
    flagged = np.flatnonzero((mm_map.flags >> np.uint64(PG_swapcache)) & np.uint64(1))
    swapbacked = (mm_map.flags[flagged] >> np.uint64(PG.swapbacked)) & np.uint64(1)
    stray = set(flagged[swapbacked == 1].tolist()) - set(mem.swap.cache.values())
    if stray:
        pfn = min(stray)
        raise AssertionError(f"frame {pfn:#x} has PG_swapcache but is not in the swap cache: {mm_map[pfn]!r}")


def check_shmem_swap(backend: ModelBackend, frames: Frames) -> None:
    """The swap entries of shmem objects (Inode.swapped): each names a slot in use, at an index that
    is not cached, and is one reference to it (counted with the swap PTEs); shmem_swaplist holds
    exactly the live objects that have such entries."""
    mem = backend.mem
    inodes = {id(i): i for i in [*enumerate_inodes(backend), *backend._shmem_inodes]}
    holders: dict[int, Inode] = {}
    for inode in inodes.values():
        for index, entry in inode.swapped.items():
            at = f"{inode.path} (ino {inode.ino}) index {index}: swap entry {entry:#x}"
            if not inode.shmem or index in inode.i_pages:
                raise AssertionError(f"{at}: not a shmem page on swap (shmem {inode.shmem}, cached too?)")
            if not swap_slot_in_use(mem.swap, entry):
                raise AssertionError(f"{at}: its slot is free")
            frames.swap_refs[entry] += 1
        if inode.swapped:
            holders[inode.handle] = inode
    listed = mem.swap.shmem_swaplist
    if holders.keys() != listed.keys() or any(listed[h] is not i for h, i in holders.items()):
        raise AssertionError(f"shmem_swaplist {sorted(listed)} but the objects with pages on swap are "
                             f"{sorted(holders)}")


def check_swap_areas(mem: PhysMem, frames: Frames) -> None:
    """Swap slots and swap entries match: each slot's count is the number of swap PTEs naming it,
    SWAP_HAS_CACHE is set exactly for cached entries, inuse_pages and nr_swap_pages/total_swap_pages
    agree with the maps, a slot PTEs refer to without a cached folio was written (no dirty page was
    dropped), and shadows exist only for slots in use that are not cached."""
    state = mem.swap
    free = total = 0
    for si in state.active():
        where = f"swap area {si.type} ({si.path})"
        expect = np.zeros(si.max, dtype=np.int64)
        for entry, n in frames.swap_refs.items():
            if swp_type(entry) == si.type:
                expect[swp_offset(entry)] = n
        cached = np.zeros(si.max, dtype=bool)
        for entry in state.cache:
            if swp_type(entry) == si.type:
                cached[swp_offset(entry)] = True
        smap = si.swap_map.astype(np.int64)
        if smap[0] != SWAP_MAP_BAD:
            raise AssertionError(f"{where}: header slot map {smap[0]:#x}")
        counts, has_cache = smap[1:] & ~SWAP_HAS_CACHE, (smap[1:] & SWAP_HAS_CACHE) != 0
        bad = np.flatnonzero((counts != expect[1:]) | (has_cache != cached[1:]))
        if bad.size:
            off = int(bad[0]) + 1
            raise AssertionError(f"{where}: slot {off} map {int(smap[off]):#x} but {int(expect[off])} swap "
                                 f"PTEs and {'a' if cached[off] else 'no'} cached folio")
        inuse = int(np.count_nonzero(smap[1:]))
        if inuse != si.inuse_pages:
            raise AssertionError(f"{where}: inuse_pages {si.inuse_pages} != {inuse} slots in use")
        unwritten = np.flatnonzero((counts > 0) & ~cached[1:] & ~si.written[1:])
        if unwritten.size:
            raise AssertionError(f"{where}: slot {int(unwritten[0]) + 1} is referenced by PTEs but was never "
                                 "written and has no cached folio (a dirty page dropped)")
        free += si.pages - inuse
        total += si.pages
    if (state.nr_swap_pages, state.total_swap_pages) != (free, total):
        raise AssertionError(f"nr_swap_pages/total_swap_pages {state.nr_swap_pages}/{state.total_swap_pages}"
                             f" != {free}/{total} from the areas")
    for entry in state.shadows:
        if not swap_slot_in_use(state, entry) or entry in state.cache:
            raise AssertionError(f"shadow for swap entry {entry:#x}, which is free or cached")


def check_lru(mem: PhysMem, frames: Frames) -> None:
    """The LRU: a folio is on at most one list, the one its flags name (folio_lru_list), and on a
    list exactly when PG_lru is set; only page-cache and anon folio heads are on lists; every list's
    page count is the sum of its folios' sizes."""
    mm_map = mem.mem_map
    seen: set[int] = set()
    for lru, lst in enumerate(mem.lruvec.lists):
        pages = 0
        for head in lst:
            at = f"{LRU_NAMES[lru]} list: frame {head:#x}"
            if head in seen:
                raise AssertionError(f"{at} is on two lists")
            seen.add(head)
            flags = int(mm_map.flags[head])
            if not flags >> PG.lru & 1 or folio_lru_list_of(flags) != lru:
                raise AssertionError(f"{at} has flags for another list: {mm_map[head]!r}")
            if int(frames.owner[head]) not in FOLIO_OWNERS or mm_map.compound_head(head) != head:
                raise AssertionError(f"{at} is not a cache or anon folio head: {mm_map[head]!r}")
            pages += 1 << mm_map.folio_order(head)
        if pages != mem.lruvec.nr_pages[lru]:
            raise AssertionError(f"{LRU_NAMES[lru]} list: {mem.lruvec.nr_pages[lru]} pages counted, "
                                 f"{pages} on it")
    flagged = np.flatnonzero((mm_map.flags >> np.uint64(PG.lru)) & np.uint64(1))
    stray = set(flagged.tolist()) - seen
    if stray:
        pfn = min(stray)
        raise AssertionError(f"frame {pfn:#x} has PG_lru but is on no list: {mm_map[pfn]!r}")


def check_reclaim(mem: PhysMem, inodes: list[Inode]) -> None:
    """Reclaim's state: reclaim can reach every inode with cached pages (mem.address_spaces); an index
    holds a page or a shadow entry, never both; the unevictable list holds only mlocked folios."""
    for inode in inodes:
        if inode.i_pages and mem.address_spaces.get(inode.handle) is not inode:
            raise AssertionError(f"page cache of {inode.path} (ino {inode.ino}) is not in address_spaces")
        both = inode.i_pages.keys() & inode.shadows.keys()
        if both:
            raise AssertionError(f"page cache of {inode.path}: indexes {sorted(both)[:8]} have a page and a "
                                 f"shadow entry")
    mm_map = mem.mem_map
    for head in mem.lruvec.lists[LRU_UNEVICTABLE]:
        if not int(mm_map.flags[head]) >> PG.mlocked & 1:
            raise AssertionError(f"unevictable list: frame {head:#x} is not mlocked: {mm_map[head]!r}")


def _claim_orphan_shmem(mem: PhysMem, frames: Frames) -> None:
    """Count unowned, unmapped shmem cache pages (mapping an inode handle, swapbacked) as page cache
    with the cache's one reference."""
    mm_map = mem.mem_map
    unowned = np.flatnonzero(frames.owner == 0)
    shmem = (((mm_map.flags[unowned] >> np.uint64(PG.swapbacked)) & np.uint64(1)) == 1) & \
        (mm_map.mapping[unowned] != 0) & ((mm_map.mapping[unowned] & PAGE_MAPPING_ANON) == 0) & \
        (frames.map[unowned] == 0)
    orphans = unowned[shmem]
    frames.claim(orphans, CACHE, "orphaned shmem pages")
    frames.ref[orphans] += 1


def _check_counts(mem: PhysMem, frames: Frames) -> None:
    """_refcount and _mapcount of cache and anon frames equal the references counted."""
    mm_map = mem.mem_map
    owned = np.flatnonzero(np.isin(frames.owner, FOLIO_OWNERS))
    is_tail = mm_map.lru_next[owned] < NO_PFN
    heads = owned[~is_tail]
    tails = owned[is_tail]
    bad = heads[mm_map._refcount[heads] != frames.ref[heads]]
    if bad.size:
        pfn = int(bad[0])
        raise AssertionError(f"frame {pfn:#x} ({OWNER_NAMES[int(frames.owner[pfn])]}): _refcount "
                             f"{int(mm_map._refcount[pfn])} != {int(frames.ref[pfn])} references found: "
                             f"{mm_map[pfn]!r}")
    bad = tails[(mm_map._refcount[tails] != 0) | (frames.ref[tails] != 0)]
    if bad.size:
        raise AssertionError(f"tail frame {int(bad[0]):#x} holds references: {mm_map[int(bad[0])]!r}")
    bad = owned[mm_map._mapcount[owned].astype(np.int64) + 1 != frames.map[owned]]
    if bad.size:
        pfn = int(bad[0])
        raise AssertionError(f"frame {pfn:#x} ({OWNER_NAMES[int(frames.owner[pfn])]}): mapcount "
                             f"{int(mm_map._mapcount[pfn]) + 1} != {int(frames.map[pfn])} mappings found: "
                             f"{mm_map[pfn]!r}")
    anon = np.flatnonzero(frames.owner == ANON)
    bad = anon[(mm_map.mapping[mm_map_heads(mm_map, anon)] & PAGE_MAPPING_ANON) == 0]
    if bad.size:
        raise AssertionError(f"frame {int(bad[0]):#x} is mapped, not cached, and not anon: "
                             f"{mm_map[int(bad[0])]!r}")
    tables = np.flatnonzero(frames.owner == TABLE)
    bad = tables[(mm_map._mapcount[tables] != page_type_value(PGTY_table)) | (mm_map._refcount[tables] != 1)]
    if bad.size:
        raise AssertionError(f"page-table frame {int(bad[0]):#x} is not a typed table with one reference: "
                             f"{mm_map[int(bad[0])]!r}")
    for at, pfn, nr in frames.private_writable:
        if int(frames.map[pfn:pfn + nr].max()) != 1 or (nr > 1 and frames.ref[pfn] != 1):
            raise AssertionError(f"{at}: writable in a private VMA but the page is shared "
                                 f"(mapcount {int(frames.map[pfn])}): {mm_map[pfn]!r}")
    unmapped = np.flatnonzero((frames.owner == CACHE) & (frames.map == 0))
    if unmapped.size and (mm_map._mapcount[unmapped] != MAPCOUNT_NONE).any():
        raise AssertionError("an unmapped cache page has a mapcount")


def mm_map_heads(mm_map: MemMap, pfns: np.ndarray) -> np.ndarray:
    """compound_head() of each of `pfns`, vectorised."""
    links = mm_map.lru_next[pfns].astype(np.int64)
    return np.where(links < NO_PFN, -2 - links, pfns)


def _check_conservation(mem: PhysMem, frames: Frames) -> None:
    """Every RAM frame has one owner; per zone free + allocated = managed (reserved frames aside)."""
    mm_map = mem.mem_map
    unowned = np.flatnonzero(frames.owner == 0)
    ram = np.zeros(mem.max_pfn, dtype=bool)
    for start, end in mem.e820:
        ram[start:end] = True
    leaked = unowned[ram[unowned]]
    if leaked.size:
        pfn = int(leaked[0])
        raise AssertionError(f"{leaked.size} allocated frames have no owner (leaked), first {pfn:#x}: "
                             f"{mm_map[pfn]!r}")
    for zone in mem.zones:
        if not zone.populated():
            continue
        span = frames.owner[zone.zone_start_pfn:zone.zone_end_pfn]
        in_ram = ram[zone.zone_start_pfn:zone.zone_end_pfn]
        free = int(np.count_nonzero(span == FREE))
        allocated = int(np.count_nonzero((span > RESERVED) & in_ram))
        if free != zone.free_pages or free + allocated != zone.managed_pages:
            raise AssertionError(f"zone {zone.name}: free {free} (counter {zone.free_pages}) + allocated "
                                 f"{allocated} != managed {zone.managed_pages}")
