"""Anonymous write faults per second: the host kernel (a small C program, gcc at run time, its fault
count confirmed by getrusage) against the model's Backend-level bulk path on the same workload
(`ModelBackend.access(pid, addr, PAGES*4096, write=True)` on a fresh mapping) and against the per-page
fault path (one access per page); target model/host >= 0.5.

Run: PYTHONPATH=src /work/venv/bin/python bench/bench_faults.py [PAGES]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vmlab.backend import Settings

PAGES = 262144

C_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

int main(int argc, char **argv)
{
    long pages = atol(argv[1]), pg = 4096;
    char *p = mmap(NULL, pages * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    madvise(p, pages * pg, MADV_NOHUGEPAGE); /* 4K faults, as enabled=madvise gives anyway */
    struct rusage r0, r1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t1); /* warm up: the vDSO data pages and these stack slots */
    getrusage(RUSAGE_SELF, &r1);
    getrusage(RUSAGE_SELF, &r0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < pages; i++)
        p[i * pg] = 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &r1);
    printf("%ld %.9f\n", r1.ru_minflt - r0.ru_minflt,
           (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
"""


def host_rate(pages: int, runs: int = 3) -> float:
    """Write faults per second on the running kernel, the best of `runs` (the first run in a fresh VM
    also pays the hypervisor's first touch of guest memory); exits if a fault count is not `pages`."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise SystemExit("bench_faults: no C compiler (gcc/cc) on PATH")
    with tempfile.TemporaryDirectory(prefix="vmlab-bench-") as tmp:
        src, exe = Path(tmp) / "faults.c", Path(tmp) / "faults"
        src.write_text(C_SOURCE)
        subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
        best = 0.0
        for _ in range(runs):
            faults, seconds = subprocess.run([str(exe), str(pages)], check=True, capture_output=True,
                                             text=True).stdout.split()
            if int(faults) != pages:
                raise SystemExit(f"bench_faults: expected {pages} minor faults, getrusage counted {faults}")
            best = max(best, pages / float(seconds))
    return best


def model_rate(pages: int, one_by_one: bool) -> float:
    """Write faults per second in the model: one access of the whole range (a run of first touches is
    faulted in at once, the same state as one do_anonymous_page() per page), or `one_by_one`, each
    page its own access through the full fault path (do_user_addr_fault -> handle_mm_fault)."""
    from vmlab.host.stepper_build import stepper_program
    from vmlab.kernel.machine import ModelBackend

    model = ModelBackend()
    try:
        pid = model.start(stepper_program(), Settings())
        addr = model.syscall(pid, "mmap", (0, pages * 4096, 3, 0x22, -1, 0))
        before = model.counters(pid)
        start = time.perf_counter()
        spans = [(addr + i * 4096, 4096) for i in range(pages)] if one_by_one else [(addr, pages * 4096)]
        for a, n in spans:
            if model.access(pid, a, n, True) is not None:
                raise SystemExit("bench_faults: the model killed the process")
        seconds = time.perf_counter() - start
        if model.counters(pid).minflt - before.minflt != pages:
            raise SystemExit("bench_faults: the model did not count one fault per page")
    finally:
        model.close()
    return pages / seconds


def main() -> None:
    """Print both rates and their ratio."""
    pages = int(sys.argv[1]) if len(sys.argv) > 1 else PAGES
    host = host_rate(pages)
    print(f"host:  {host:,.0f} anonymous write faults/s ({pages} fresh pages, best of 3, "
          "getrusage)")
    for label, one in (("range access (bulk first touches)", False),
                       ("page by page (full fault path)", True)):
        model = model_rate(pages, one)
        print(f"model, {label}: {model:,.0f} faults/s; model/host = {model / host:.3f} (target >= 0.5)")


if __name__ == "__main__":
    main()
