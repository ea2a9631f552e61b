"""The `Mem-Info:` block of a global OOM report (mm/show_mem.c), on the model.

This host cannot show its own block without a machine-wide OOM (no SysRq here: CONFIG_MAGIC_SYSRQ is
not set), so the block is held to what the kernel guarantees of it: every number is a counter that
/proc/meminfo, /proc/zoneinfo and /proc/buddyinfo print too (the same NR_* items and zone fields, the
views the differential tests hold against the host), and each line has the shape of
show_free_areas()'s format strings for this configuration (CONFIG_NUMA, CONFIG_TRANSPARENT_HUGEPAGE,
11 page orders, two hugetlb page sizes, no CMA or memory-failure lines). Before, the model printed
an abbreviated block: every mapped anonymous page as inactive, no active, dirty, unevictable or swap
counts, no zone lines.
"""

from __future__ import annotations

import re
from pathlib import Path

from swapkit import MADV_PAGEOUT, PRIVATE_ANON, RW, model_with_swap
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.page_alloc import ZONE_MOVABLE, ZONE_NORMAL
from vmlab.kernel.show_mem import show_mem

PG = 4096
O_RDWR, O_CREAT, AT_FDCWD, MAP_SHARED = 2, 0o100, -100, 1
MADV_HUGEPAGE = 14


def busy_machine(swapfile: Path) -> ModelBackend:
    """A model machine whose Mem-Info counters are not zero: anonymous memory, a THP, mlocked memory,
    a file read twice (active file pages) and one written through a shared mapping (dirty, mapped),
    and anonymous pages swapped out and read back (the swap cache)."""
    model, pid = model_with_swap(swapfile, 128 << 20)
    anon = model.syscall(pid, "mmap", (0, 8 << 20, RW, PRIVATE_ANON, -1, 0))
    assert model.access(pid, anon, 4 << 20, True) is None
    assert model.syscall(pid, "madvise", (anon, 1 << 20, MADV_PAGEOUT)) == 0
    assert model.access(pid, anon, 256 << 10, False) is None  # swapped in: in the swap cache
    thp = (anon + (4 << 20) + (2 << 20) - 1) & ~((2 << 20) - 1)
    assert model.syscall(pid, "madvise", (thp, 2 << 20, MADV_HUGEPAGE)) == 0
    assert model.access(pid, thp, 2 << 20, True) is None
    locked = model.syscall(pid, "mmap", (0, 64 * PG, RW, PRIVATE_ANON, -1, 0))
    assert model.syscall(pid, "mlock", (locked, 64 * PG)) == 0
    model.create_file("/vmlab-sim/read", 4 << 20)
    fd = model.syscall(pid, "openat", (AT_FDCWD, "/vmlab-sim/read", O_RDWR, 0))
    buf = model.syscall(pid, "mmap", (0, 1 << 20, RW, PRIVATE_ANON, -1, 0))
    for _ in range(2):
        for off in range(0, 4 << 20, 1 << 20):
            assert model.syscall(pid, "pread64", (fd, buf, 1 << 20, off)) == 1 << 20
    model.create_file("/vmlab-sim/written", 1 << 20)
    wfd = model.syscall(pid, "openat", (AT_FDCWD, "/vmlab-sim/written", O_RDWR, 0))
    shared = model.syscall(pid, "mmap", (0, 1 << 20, RW, MAP_SHARED, wfd, 0))
    assert model.access(pid, shared, 512 << 10, True) is None
    check_machine(model)
    return model


def kb_fields(line: str) -> dict[str, int]:
    """`name:NkB` fields of a node or zone line, in kB."""
    return {m[0]: int(m[1]) for m in re.findall(r"(\S+):(\d+)[kK]B", line)}


def parse_proc(text: str) -> dict[str, int]:
    """`Field:   N kB` lines of /proc/meminfo, in kB."""
    return {name: int(value) for name, value in re.findall(r"^(\S+):\s+(\d+)", text, re.M)}


FIELD = r"\s+(protection|pages free|min|low|high|present|managed):?\s+\(?([\d, ]+)\)?$"


def zoneinfo(text: str) -> dict[str, dict[str, list[int]]]:
    """/proc/zoneinfo per zone name: each `name value...` line's numbers (protection's list too)."""
    out: dict[str, dict[str, list[int]]] = {}
    for line in text.splitlines():
        if m := re.match(r"Node 0, zone\s+(\S+)", line):
            zone = out.setdefault(m[1], {})
        elif m := re.match(FIELD, line):
            zone[m[1]] = [int(n) for n in m[2].split(",")]
    return out


def test_every_number_is_the_counter_the_proc_views_print(swapfile: Path) -> None:
    model = busy_machine(swapfile)
    lines = show_mem(model.mem, ZONE_MOVABLE)
    meminfo = parse_proc(model.machine_view("meminfo"))
    zones = zoneinfo(model.mem.zoneinfo())
    buddy = {f[3]: [int(n) for n in f[4:]] for f in (ln.split() for ln in model.mem.buddyinfo().splitlines())}

    assert lines[0] == "Mem-Info:"
    pages = {m[0]: int(m[1]) for m in re.findall(r"(\w+):(\d+)(?!kB)\b", " ".join(lines[1:9]))}
    assert pages["free"] * 4 == meminfo["MemFree"]
    node = kb_fields(lines[9])
    for name, field in (("active_anon", "Active(anon)"), ("inactive_anon", "Inactive(anon)"),
                        ("active_file", "Active(file)"), ("inactive_file", "Inactive(file)"),
                        ("unevictable", "Unevictable"), ("mapped", "Mapped"), ("dirty", "Dirty"),
                        ("writeback", "Writeback"), ("shmem", "Shmem"), ("anon_thp", "AnonHugePages"),
                        ("pagetables", "PageTables")):
        assert node[name] == meminfo[field] == pages.get(name, node[name] // 4) * 4, name
    assert all(node[n] for n in ("active_anon", "inactive_anon", "active_file", "inactive_file", "mapped",
                                 "dirty", "anon_thp", "unevictable"))

    zone_lines = [ln for ln in lines if re.match(r"Node 0 \w+ free:", ln)]
    assert [ln.split()[2] for ln in zone_lines] == [z for z in zones if zones[z].get("present", [0])[0]]
    sums = dict.fromkeys(("active_anon", "inactive_anon", "active_file", "inactive_file", "unevictable"), 0)
    for ln in zone_lines:
        name, got = ln.split()[2], kb_fields(ln)
        z = zones[name]
        for field in ("min", "low", "high", "present", "managed"):
            assert got[field] == z[field][0] * 4, (name, field)
        assert got["free"] == z["pages free"][0] * 4
        reserve = lines[lines.index(ln) + 1]
        assert reserve == "lowmem_reserve[]: " + " ".join(map(str, z["protection"]))
        for key in sums:
            sums[key] += got[key]
        assert got["mlocked"] <= got["unevictable"]
    assert sums == {k: node[k] for k in sums}
    assert sum(kb_fields(ln)["mlocked"] for ln in zone_lines) == meminfo["Mlocked"] == 64 * 4
    assert sum(kb_fields(ln)["writepending"] for ln in zone_lines) == meminfo["Dirty"] + meminfo["Writeback"]

    for name, counts in buddy.items():
        ln = next(ln for ln in lines if ln.startswith(f"Node 0 {name}: "))
        assert [int(n) for n in re.findall(r"(\d+)\*\d+kB", ln)] == counts
        assert ln.endswith(f"= {sum(n << o for o, n in enumerate(counts)) * 4}kB")

    tail = lines[-7:]
    assert tail[0] == f"{(meminfo['Cached'] + meminfo['SwapCached']) // 4} total pagecache pages"
    assert tail[1] == f"{meminfo['SwapCached'] // 4} pages in swap cache" and meminfo["SwapCached"] > 0
    assert tail[2] == f"Free swap  = {meminfo['SwapFree']}kB"
    assert tail[3] == f"Total swap = {meminfo['SwapTotal']}kB"
    present = sum(z["present"][0] for z in zones.values())
    reserved = sum(z["present"][0] - z["managed"][0] for z in zones.values())
    assert tail[4:] == [f"{present} pages RAM", "0 pages HighMem/MovableOnly", f"{reserved} pages reserved"]


#: show_free_areas()'s lines for this configuration, from the format strings of mm/show_mem.c (6.18).
KB = r"\d+kB"
SHAPES = [
    r"Mem-Info:",
    r"active_anon:\d+ inactive_anon:\d+ isolated_anon:\d+",
    r" active_file:\d+ inactive_file:\d+ isolated_file:\d+",
    r" unevictable:\d+ dirty:\d+ writeback:\d+",
    r" slab_reclaimable:\d+ slab_unreclaimable:\d+",
    r" mapped:\d+ shmem:\d+ pagetables:\d+",
    r" sec_pagetables:\d+ bounce:\d+",
    r" kernel_misc_reclaimable:\d+",
    r" free:\d+ free_pcp:\d+ free_cma:\d+",
    "Node 0 " + " ".join(f"{f}:{KB}" for f in (
        "active_anon", "inactive_anon", "active_file", "inactive_file", "unevictable", r"isolated\(anon\)",
        r"isolated\(file\)", "mapped", "dirty", "writeback", "shmem", "shmem_thp", "shmem_pmdmapped",
        "anon_thp", "writeback_tmp", "kernel_stack", "pagetables", "sec_pagetables"))
    + r" all_unreclaimable\? (yes|no)",
]
ZONE = (r"Node 0 (DMA|DMA32|Normal) free:\d+kB boost:\d+kB min:\d+kB low:\d+kB high:\d+kB "
        r"reserved_highatomic:\d+KB " + " ".join(f"{f}:{KB}" for f in (
            "active_anon", "inactive_anon", "active_file", "inactive_file", "unevictable", "writepending",
            "present", "managed", "mlocked", "bounce", "free_pcp", "local_pcp", "free_cma")))
RESERVE = r"lowmem_reserve\[\]:( \d+){5}"
BUDDY = r"Node 0 (DMA|DMA32|Normal): (\d+\*\d+kB ){11}= \d+kB"
TAIL = [r"Node 0 hugepages_total=\d+ hugepages_free=\d+ hugepages_surp=\d+ hugepages_size=1048576kB",
        r"Node 0 hugepages_total=\d+ hugepages_free=\d+ hugepages_surp=\d+ hugepages_size=2048kB",
        r"\d+ total pagecache pages", r"\d+ pages in swap cache", r"Free swap  = \d+kB",
        r"Total swap = \d+kB", r"\d+ pages RAM", r"\d+ pages HighMem/MovableOnly", r"\d+ pages reserved"]


def test_lines_have_the_kernels_shape_and_zones_stop_at_the_allocations_zone(swapfile: Path) -> None:
    """A GFP_KERNEL allocation's block (gfp_zone: ZONE_NORMAL) lists the same zones here, every
    populated one being at most Normal; each line matches its format string."""
    model = busy_machine(swapfile)
    lines = show_mem(model.mem, ZONE_MOVABLE)
    populated = [z for z in model.mem.zones if z.populated()]
    n = len(populated)
    shapes = SHAPES + [ZONE, RESERVE] * n + [BUDDY] * n + TAIL
    assert len(lines) == len(shapes)
    for line, shape in zip(lines, shapes, strict=True):
        assert re.fullmatch(shape, line), (shape, line)
    assert show_mem(model.mem, ZONE_NORMAL) == lines
    fewer = show_mem(model.mem, populated[0].idx)  # only the lowest zone's lines
    assert len(fewer) == len(lines) - 3 * (n - 1) and fewer[9] == lines[9]


def test_a_global_oom_prints_the_block_the_machine_had(swapfile: Path) -> None:
    """The report of a hog that filled memory and swap has the block's shape, no free swap, and the
    victim's resident anonymous pages among the anonymous LRU pages it counts."""
    model, pid = model_with_swap(swapfile, 64 << 20)
    hog = model.syscall(pid, "mmap", (0, 256 << 20, RW, PRIVATE_ANON | 0x4000, -1, 0))
    assert model.access(pid, hog, 256 << 20, True) == "SIGKILL"
    log = model.machine_view("dmesg").splitlines()
    start = next(i for i, ln in enumerate(log) if ln.endswith("] Mem-Info:"))
    block = [ln.split("] ", 1)[1] for ln in log[start:]]
    block = block[:next(i for i, ln in enumerate(block) if ln.startswith("Tasks state"))]
    shapes = SHAPES + [ZONE, RESERVE] * 2 + [BUDDY] * 2 + TAIL
    assert all(re.fullmatch(s, ln) for s, ln in zip(shapes, block, strict=True))
    assert int(re.search(r"Free swap  = (\d+)kB", "\n".join(block))[1]) == 0  # type: ignore[index]
    killed = next(ln for ln in log if "Out of memory: Killed process" in ln)
    node = kb_fields(block[9])
    assert node["inactive_anon"] + node["active_anon"] >= int(re.search(r"anon-rss:(\d+)kB", killed)[1]) > 0  # type: ignore[index]
