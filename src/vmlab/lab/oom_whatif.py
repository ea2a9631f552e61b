"""`vmlab oom --what-if`: import live processes and memcgs into the model, grow one (or start a new
one), and report what the model's OOM killer logs.

Each imported process is rebuilt from real model pages so that every counter dump_tasks() prints is the
live one: `anon` private anonymous pages (touched), `file` pages of a private mapping of a model-only
file (read), `shmem` pages of a shared anonymous mapping (touched), extra one-page anonymous mappings in
2 MiB slots of their own until the page-table pages equal the live `pgtables_bytes`, and a
reservation (read-write, never touched, like a hog's MAP_NORESERVE arena) for the rest of `total_vm`;
growing an imported process touches that reservation first, so its total_vm stays the live one.
Pages are charged to the process's memcg as they are touched; the rest of each memcg's live usage
(page cache, kernel memory) is charged as it is, unattributed.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmlab.host.oomsnap import ProcSnap, Snapshot
from vmlab.kernel import memcontrol
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.memcontrol import MemCgroup
from vmlab.kernel.mm_types import Inode
from vmlab.kernel.swap import lru_add_drain
from vmlab.kernel.uapi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_NORESERVE,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
)
from vmlab.kernel.xarray import xa_uncharge

#: Where an imported process's memory is laid out (1 GiB aligned, below the model's mmap_base).
IMPORT_BASE = 0x7E0000000000
PMD = 2 << 20
GIB = 1 << 30
ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
RW = PROT_READ | PROT_WRITE
POSIX_FADV_WILLNEED = 3
#: A growth is touched in runs of this size (each faulted at once while memory lasts).
CHUNK = 16 << 20


def _up(x: int, align: int) -> int:
    """Round up to a multiple of `align`."""
    return (x + align - 1) // align * align


@dataclass(frozen=True)
class Layout:
    """The mappings an imported process gets: (address, pages, kind) with kind anon/file/shmem/none."""

    regions: tuple[tuple[int, int, str], ...]


def tables_for(regions: list[tuple[int, int]]) -> int:
    """Page-table pages (PUD, PMD and PTE tables) the touched ranges [addr, addr + pages) need."""
    pte, pmd, pud = set(), set(), set()
    for addr, pages in regions:
        if pages <= 0:
            continue
        end = addr + pages * PAGE_SIZE
        pte.update(range(addr // PMD, (end - 1) // PMD + 1))
        pmd.update(range(addr // GIB, (end - 1) // GIB + 1))
        pud.update(range(addr // (512 * GIB), (end - 1) // (512 * GIB) + 1))
    return len(pte) + len(pmd) + len(pud)


def layout(p: ProcSnap) -> Layout:
    """Regions reproducing the process's counters (see the module docstring); when the live process has
    fewer page-table pages than the dense layout needs, the layout keeps its own (a larger VmPTE)."""
    c = p.counters
    want = c.pgtables_bytes // PAGE_SIZE

    def regions(k: int) -> list[tuple[int, int, str]]:
        out, at = [], IMPORT_BASE
        for pages, kind in ((c.anon - k, "anon"), (c.file, "file"), (c.shmem, "shmem")):
            if pages > 0:
                out.append((at, pages, kind))
                at = _up(at + pages * PAGE_SIZE, PMD)
        out += [(at + i * PMD, 1, "anon") for i in range(k)]
        return out

    k = 0
    while k < c.anon and tables_for([(a, n) for a, n, _ in regions(k)]) < want:
        k += 1
    out = regions(k)
    used = sum(n for _, n, _ in out)
    end = max((a + n * PAGE_SIZE for a, n, _ in out), default=IMPORT_BASE)
    if c.total_vm > used:
        out.append((_up(end, PMD), c.total_vm - used, "none"))
    return Layout(tuple(out))


def import_process(model: ModelBackend, p: ProcSnap) -> None:
    """Rebuild one live process in the model (its memcg must exist); raises if a mapping fails."""
    pid = model.spawn(p.comm, p.pid, p.uid)
    task = model.tasks[pid]
    task.oom_score_adj = task.oom_score_adj_min = p.oom_score_adj  # imported as is: no permission check
    if p.memcg != "/":
        model.memcg_attach(pid, p.memcg)
    for addr, pages, kind in layout(p).regions:
        length = pages * PAGE_SIZE
        if kind == "file":
            inode = Inode(f"/vmlab-import/{p.pid}", ino=p.pid, size=length, host_cached=None)
            fd = model.open_inode(pid, inode)
            got = model.syscall(pid, "mmap", (addr, length, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0))
        elif kind == "shmem":
            shared = MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED
            got = model.syscall(pid, "mmap", (addr, length, RW, shared, -1, 0))
        elif kind == "none":
            got = model.syscall(pid, "mmap", (addr, length, RW, ANON | MAP_NORESERVE, -1, 0))
            model.import_reserves[pid] = (addr, pages)
        else:
            got = model.syscall(pid, "mmap", (addr, length, RW, ANON, -1, 0))
        if got != addr:
            raise RuntimeError(f"import of {p.pid}: mmap of {kind} at {addr:#x} returned {got}")
        if kind != "none":
            sig = model.access(pid, addr, length, write=kind != "file")
            if sig is not None:
                raise RuntimeError(f"import of {p.pid}: touching its {kind} pages gave {sig}")


def build(snap: Snapshot, global_fill: bool = False, cache: dict[str, int] | None = None) -> ModelBackend:
    """A model machine holding the snapshot's memcgs and processes, memcg usage equal to the live one
    (what the processes' pages do not account for is charged unattributed). `cache` (memcg path ->
    pages, from its memory.stat) is imported as clean, unmapped page cache of a model-only file,
    charged to that memcg (brought in by one of its processes) and reclaimable. With `global_fill` the
    machine has the host's RAM and everything but the host's MemAvailable is taken (the page cache and
    kernel memory the model does not hold count as used: the model has no reclaim)."""
    model = ModelBackend(snap.memtotal_pages * PAGE_SIZE if global_fill else None)
    model.memcgs.version = snap.version
    for cg in snap.memcgs:
        model.memcg_create(cg.path, None)
    limits = {cg.path: cg.limit_pages for cg in snap.memcgs}
    for p in snap.procs:
        import_process(model, p)
    for path, pages in (cache or {}).items():
        import_cache(model, path, pages)
    model.memcgs.drain_all_stock(model.memcgs.root)  # usage is the live one: nothing charged ahead
    lru_add_drain(model.mem)  # the imported pages on their lists, as the snapshot's memory.stat counts them
    for cg in reversed(snap.memcgs):  # children first: a parent's own usage is known once theirs is
        memcg = model.memcgs.lookup(cg.path)
        assert memcg is not None
        own = memcg.memory.usage - sum(c.memory.usage for c in memcg.children)
        live_own = cg.usage_pages - sum(c.usage_pages for c in snap.memcgs if _parent(c.path) == cg.path)
        if live_own > own:
            model.memcgs.force_charge(memcg, live_own - own)
        elif own > live_own and memcg.parent is not None:
            charged_before_joining(model, memcg, own - live_own)
    if global_fill and model.mem.nr_free_pages > snap.memavailable_pages:
        model.kernel_pages = model.mem.alloc_pages_bulk(model.mem.nr_free_pages - snap.memavailable_pages)
    for cg in snap.memcgs:  # limits last: the import itself never hits them
        memcg = model.memcgs.lookup(cg.path)
        assert memcg is not None
        memcg.memory.max = limits[cg.path]
    return model


def charged_before_joining(model: ModelBackend, memcg: MemCgroup, pages: int) -> None:
    """Move `pages` of the memcg's charges to its parent: what its processes hold beyond its live usage
    was charged before they joined it (a task that moves keeps its charges where they were made, but
    for v1's move_charge_at_immigrate; measured: four hogs started outside a 64 MiB v1 memcg and
    moved in held 133 pages more than its usage, their first page tables and anon pages). The
    page-table pages go first (kmem: the first tables an exec makes), then anon pages, oldest first."""
    tree, moved = model.memcgs, 0
    parent = memcg.parent
    assert parent is not None
    tables = [pfn for pfn, owner in tree.kmem_memcg.items() if owner is memcg]
    anon = [pfn for pfn, (owner, _, kind) in tree.page_memcg.items()
            if owner is memcg and kind == memcontrol.ANON]
    for pfn in tables + anon:
        if moved >= pages:
            return
        moved += tree.page_memcg[pfn][1] if pfn in tree.page_memcg else 1
        tree.move_account(pfn, parent)


def import_cache(model: ModelBackend, path: str, pages: int) -> None:
    """`pages` of page cache charged to memcg `path`: a model-only file its first process reads ahead
    whole (fadvise WILLNEED: no user buffer, nothing marked accessed)."""
    memcg = model.memcgs.lookup(path)
    if memcg is None or not memcg.procs or pages <= 0:
        raise RuntimeError(f"no process in memcg {path} to import its page cache with")
    pid = memcg.procs[0]
    inode = Inode(f"/vmlab-import/cache{path}", ino=1 << 30, size=pages * PAGE_SIZE, host_cached=frozenset())
    fd = model.open_inode(pid, inode)
    step = 32 * PAGE_SIZE  # force_page_cache_ra() reads at most the readahead window per call
    for offset in range(0, pages * PAGE_SIZE, step):
        if model.syscall(pid, "fadvise64", (fd, offset, step, POSIX_FADV_WILLNEED)) != 0:
            raise RuntimeError(f"import of the page cache of {path} failed")
    model.syscall(pid, "close", (fd,))
    if len(inode.i_pages) != pages:
        raise RuntimeError(f"import of the page cache of {path}: {len(inode.i_pages)} of {pages} pages")
    # The stand-in file's XArray nodes are not the kernel's (the live cache is spread over its own
    # files, whose nodes are in the memcg's usage that build() charges unattributed): uncharged.
    xa_uncharge(inode)


def _parent(path: str) -> str:
    """The parent cgroup path of `path`."""
    return path.rsplit("/", 1)[0] or "/"


@dataclass(frozen=True)
class Outcome:
    """What the model did: its log lines, who died (pid, comm), and whether the grower survived."""

    log: tuple[str, ...]
    killed: tuple[tuple[int, str], ...]
    grower: int
    result: str | None  # the grower's access result: None (it got its memory), SIGKILL, ...


def grow(model: ModelBackend, pid: int | None, nbytes: int, memcg: str | None = None) -> Outcome:
    """Process `pid` (None: a new process `whatif`, in `memcg` if given) maps and touches `nbytes`
    more anonymous memory; the model's log lines from then on and the processes it killed."""
    if pid is None:
        pid = model.spawn("whatif", max(model.tasks, default=1000) + 1)
        if memcg is not None:
            model.memcg_attach(pid, memcg)
    comms = {p: t.comm for p, t in model.tasks.items()}
    seq = model.log.next_seq
    length = _up(max(nbytes, PAGE_SIZE), PAGE_SIZE)
    reserve = model.import_reserves.get(pid)
    if reserve is not None and reserve[1] * PAGE_SIZE >= length:
        addr = reserve[0]
        model.import_reserves[pid] = (addr + length, reserve[1] - length // PAGE_SIZE)
    else:
        addr = model.syscall(pid, "mmap", (0, length, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        if addr < 0:
            return Outcome((), (), pid, f"mmap failed: {addr}")
    result = None
    for at in range(addr, addr + length, CHUNK):  # chunks: whole runs fault at once until memory is short
        result = model.access(pid, at, min(CHUNK, addr + length - at), write=True)
        if result is not None:
            break
    model.mem.clock.advance(4 * 10**9)  # let killed tasks exit and the reaper's timer run
    killed = tuple((p, comms[p]) for p in comms if p not in model.tasks)
    return Outcome(tuple(r.dmesg() for r in model.log.since(seq)), killed, pid, result)
