"""Host bytes per simulated 4 KiB frame for 16 GiB of simulated RAM, fully touched (every free frame
allocated and mapped through one mm's page tables with the bulk paths), against the kernel's 64-byte
struct page; and order-0 allocation speed against a plain Python list used as a free list.

Run: PYTHONPATH=src python bench/bench_memmap.py [GiB]

Measured on this machine (16 GiB): 59.1 B/frame (237 MiB; ratio 0.92 to struct page), mem_map
alone 51 B/frame; order-0 alloc+free 12.4 us/pair vs 0.04 us for list pop/append (~320x).
"""

from __future__ import annotations

import sys
import time
import tracemalloc

from vmlab.kernel.page_alloc import STRUCT_PAGE_SIZE, PhysMem
from vmlab.kernel.pgtable import PAGE_SHARED, PageTables


def footprint(gib: int) -> None:
    """Build, fill and map the machine under tracemalloc; print bytes per frame."""
    tracemalloc.start()
    t0 = time.perf_counter()
    mem = PhysMem(gib << 30)
    pt = PageTables(mem)
    pfns = mem.alloc_pages_bulk(mem.nr_free_pages)  # down to the min watermarks
    # Leave room for the page tables themselves: give back one frame per 512 mapped.
    spare, pfns = pfns[: len(pfns) // 500], pfns[len(pfns) // 500:]
    mem.free_pages_bulk(spare)
    assert pt.map_range(0x10000000, pfns, PAGE_SHARED) == 0
    elapsed = time.perf_counter() - t0
    del pfns, spare  # the PFN list is the caller's, not the model's
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    frames = (gib << 30) >> 12
    per = current / frames
    print(f"{gib} GiB simulated: {frames} frames, {pt.pgtables_bytes >> 20} MiB of simulated page tables")
    print(f"  host memory held: {current / 2**20:.0f} MiB (peak {peak / 2**20:.0f} MiB) in {elapsed:.1f} s")
    print(f"  = {per:.1f} bytes per frame (target <= 64); mem_map arrays alone "
          f"{mem.mem_map.nbytes() / frames:.1f} B/frame (mem_map spans the 1 GiB PCI hole too)")
    print(f"  ratio to the kernel's struct page ({STRUCT_PAGE_SIZE} B): {per / STRUCT_PAGE_SIZE:.2f}")


def alloc_speed(n: int = 200_000) -> None:
    """Order-0 alloc+free pairs: the buddy allocator vs list.pop()/append() of PFNs."""
    mem = PhysMem(4 << 30)
    t0 = time.perf_counter()
    got = [mem.alloc_pages(0) for _ in range(n)]
    for pfn in got:
        assert pfn is not None
        mem.free_pages(pfn)
    model = time.perf_counter() - t0
    free_list = list(range(n * 2))
    t0 = time.perf_counter()
    taken = [free_list.pop() for _ in range(n)]
    for pfn in taken:
        free_list.append(pfn)
    plain = time.perf_counter() - t0
    print(f"order-0 alloc+free x{n}: buddy {model / n * 1e6:.2f} us/pair, list {plain / n * 1e6:.3f} us/pair,"
          f" ratio {model / plain:.0f}x")


if __name__ == "__main__":
    footprint(int(sys.argv[1]) if len(sys.argv) > 1 else 16)
    alloc_speed()
