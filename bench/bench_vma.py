"""Address-space model speed (issue 2): mmap+munmap pairs with 1,000 live VMAs, and find_vma at 100,
10,000 and 60,000 VMAs.

References measured in the same run: the host kernel doing the same mmap+munmap pairs through ctypes
(Python call overhead included on both sides), and a linear scan of the same VMA list for find_vma.
Run: python bench/bench_vma.py
"""

from __future__ import annotations

import ctypes
import random
import time

from vmlab.kernel.fs import ShmemMount
from vmlab.kernel.mm_types import MmStruct
from vmlab.kernel.mmap import VmSysctl, arch_pick_mmap_layout, do_mmap, do_munmap
from vmlab.kernel.uapi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE

PG = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def _mm_with(n: int) -> tuple[MmStruct, VmSysctl]:
    """An mm holding n VMAs that cannot merge (alternating protections, one page apart)."""
    mm, sysctl = MmStruct(), VmSysctl()
    arch_pick_mmap_layout(mm, 8 << 20, legacy=False)
    shmem = ShmemMount()
    for i in range(n):
        do_mmap(mm, None, 0x10000000 + i * PG, PG, PROT_READ if i % 2 else RW, ANON | MAP_FIXED, 0,
                sysctl, shmem.zero_setup)
    assert mm.map_count == n
    return mm, sysctl


def bench_mmap_munmap(pairs: int = 100_000) -> float:
    """Model mmap+munmap pairs per second with 1,000 live VMAs."""
    mm, sysctl = _mm_with(1000)
    shmem = ShmemMount()
    t = time.perf_counter()
    for _ in range(pairs):
        a = do_mmap(mm, None, 0, PG, RW, ANON, 0, sysctl, shmem.zero_setup)
        do_munmap(mm, a, PG, sysctl)
    return pairs / (time.perf_counter() - t)


def bench_host_mmap_munmap(pairs: int = 100_000) -> float:
    """The running kernel's mmap+munmap pairs per second, called through ctypes from Python."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    mmap, munmap = libc.mmap, libc.munmap
    t = time.perf_counter()
    for _ in range(pairs):
        a = mmap(None, PG, RW, ANON, -1, 0)
        munmap(a, PG)
    return pairs / (time.perf_counter() - t)


def bench_find_vma(n: int, lookups: int = 200_000) -> tuple[float, float]:
    """Nanoseconds per find_vma, and per lookup of a linear scan over the same VMAs."""
    mm, _ = _mm_with(n)
    rng = random.Random(42)
    addrs = [0x10000000 + rng.randrange(n) * PG for _ in range(lookups)]
    find = mm.find_vma
    t = time.perf_counter()
    for a in addrs:
        find(a)
    model_ns = (time.perf_counter() - t) / lookups * 1e9
    vmas = list(mm)
    few = addrs[: max(200, lookups * 100 // n // 10)]
    t = time.perf_counter()
    for a in few:
        next(v for v in vmas if v.vm_end > a)
    linear_ns = (time.perf_counter() - t) / len(few) * 1e9
    return model_ns, linear_ns


def main() -> None:
    model = bench_mmap_munmap()
    host = bench_host_mmap_munmap()
    verdict = "met" if model >= 100_000 else "MISSED"
    print(f"mmap+munmap pairs/s, 1000 live VMAs: model {model:,.0f}  host kernel via ctypes {host:,.0f}  "
          f"ratio model/host {model / host:.2f}  (target >= 100,000/s: {verdict})")
    base = None
    for n in (100, 10_000, 60_000):
        ns, lin = bench_find_vma(n)
        base = base or ns
        print(f"find_vma with {n:>6} VMAs: {ns:7.0f} ns  ({ns / base:4.2f}x the 100-VMA time)   "
              f"linear scan {lin:11,.0f} ns  (ratio linear/model {lin / ns:,.0f})")


if __name__ == "__main__":
    main()
