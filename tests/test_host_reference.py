"""Rows of the reference measurements, reproduced through HostBackend on this kernel.

Golden values are from /work/shared/reference/kernel-6.18-x86_64.md and experiments/out/*.txt, captured
on this machine by experiments/run_all.sh (e.g. `gcc -static -o series_static series.c;
setarch -R ./series_static`, `gcc -o merge merge.c; setarch -R ./merge anon`). Where the reference
program was a dynamic PIE, addresses the top-down search chose are replaced by what G2 predicts for
the stepper, whose highest gap is directly below [vvar] at 0x7ffff7ff7000 (L8, static non-PIE).
"""

from __future__ import annotations

import errno

import pytest

from hostutil import FIXED, PG, PRIVATE_ANON, RW, maps_lines, mmap
from vmlab.backend import Program, Settings
from vmlab.host.oracle import HostBackend

PROT_READ = 0x1
MAP_FIXED_NOREPLACE = 0x100000
MREMAP_MAYMOVE = 1
VVAR = 0x7FFFF7FF7000


def anon(start: int, end: int, perms: str = "rw-p") -> str:
    """A maps line of an anonymous VMA (F1: unnamed lines end with a space)."""
    return f"{start:08x}-{end:08x} {perms} 00000000 00:00 0 "


def region(host: HostBackend, pid: int, base: int) -> list[str]:
    """Maps lines in [base, base + 16 MiB), as the experiments' show()."""
    return maps_lines(host.view(pid, "maps"), base, base + 0x1000000)


def touch(host: HostBackend, pid: int, addr: int, pages: int) -> None:
    assert host.access(pid, addr, pages * PG, True) is None


# G9(a): experiments/out/series_static.txt
SERIES = [(0x1000, 0x7FFFF7FF6000), (0x10000, 0x7FFFF7FE6000), (0x100000, 0x7FFFF7EE6000),
          (0x200000, 0x7FFFF7C00000), (0x400000, 0x7FFFF7800000), (0x300000, 0x7FFFF7500000),
          (0x600000, 0x7FFFF6E00000), (0x201000, 0x7FFFF6BFF000), (0x1000, 0x7FFFF7EE5000)]


def test_g9a_series(host: HostBackend, proc: int) -> None:
    got = [(length, mmap(host, proc, 0, length)) for length, _ in SERIES]
    assert got == SERIES
    assert maps_lines(host.view(proc, "maps"), 0x7FFFF0000000, VVAR) == [
        anon(0x7FFFF6BFF000, 0x7FFFF7400000), anon(0x7FFFF7500000, 0x7FFFF7E00000),
        anon(0x7FFFF7EE5000, 0x7FFFF7FF7000)]


# L5 table and base.txt: first two 4K PROT_READ mmaps and [vvar] per RLIMIT_STACK / legacy layout.
@pytest.mark.parametrize(("settings", "vvar", "first", "second"), [
    (Settings(rlimit_stack=8 << 20), 0x7FFFF7FF7000, 0x7FFFF7FF6000, 0x7FFFF7FF5000),
    (Settings(rlimit_stack=131072 << 10), 0x7FFFF7EF7000, 0x7FFFF7EF6000, 0x7FFFF7EF5000),
    (Settings(rlimit_stack=200000 << 10), 0x7FFFF3BA7000, 0x7FFFF3BA6000, 0x7FFFF3BA5000),
    (Settings(rlimit_stack=None), 0x15555554E000, 0x15555554D000, 0x15555554C000),
    (Settings(legacy_va_layout=True), 0x2AAAAAAAB000, 0x2AAAAAAB3000, 0x2AAAAAAB4000),
], ids=["8M", "128M", "200000K", "unlimited", "legacy"])
def test_l5_mmap_base(host: HostBackend, program: Program, settings: Settings, vvar: int, first: int,
                      second: int) -> None:
    pid = host.start(program, settings)
    vvar_line = [line for line in host.view(pid, "maps").splitlines() if line.endswith("[vvar]")]
    assert vvar_line[0].startswith(f"{vvar:x}-{vvar + 4 * PG:x} ")
    assert [mmap(host, pid, 0, PG, PROT_READ) for _ in range(2)] == [first, second]


def test_hints_and_fixed(host: HostBackend, proc: int) -> None:
    """G3-G5, experiments/out/hints.txt (top-down results moved below the stepper's vvar)."""
    st = 0x7FFFFFFDE000  # [stack] start (L3)

    def m(addr: int, length: int, flags: int = 0) -> int:
        return host.syscall(proc, "mmap", (addr, length, RW, PRIVATE_ANON | flags, -1, 0))

    assert [
        m(0x10000000, 0x3000), m(0x20000123, 0x1000), m(0x10001000, 0x1000), m(0x100, 0x1000),
        m(0, 0x1000, FIXED), m(0x10001000, 0x1000, MAP_FIXED_NOREPLACE),
        m(0x10003000, 0x1000, MAP_FIXED_NOREPLACE), m(0x10001000, 0x1000, FIXED),
        m(0x10000001, 0x1000, FIXED), m(0x7FFFFFFFF000, 0x1000, FIXED), m(0x7FFFFFFFF000, 0x1000),
        m(0x30000000, 0x1001), m(0, 0), m(0x40000000, 0x400000), m(0x50001000, 0x400000),
        m(st - 0x100000, 0x1000), m(st - 0x101000, 0x1000), m(st - 0x2000, 0x1000, MAP_FIXED_NOREPLACE),
    ] == [
        0x10000000, 0x20000000, VVAR - PG, VVAR - 2 * PG,
        0, -errno.EEXIST,
        0x10003000, 0x10001000,
        -errno.EINVAL, -errno.ENOMEM, VVAR - 3 * PG,
        0x30000000, -errno.EINVAL, 0x40000000, 0x50001000,
        VVAR - 4 * PG, 0x7FFFFFEDD000, 0x7FFFFFFDC000,
    ]
    assert maps_lines(host.view(proc, "maps"), 0, 0x400000) + region(host, proc, 0x10000000) == [
        anon(0, 0x1000), anon(0x10000000, 0x10004000)]


def test_merge_a1_a3(host: HostBackend, proc: int) -> None:
    """M4, merge.txt: A1 two fresh mappings merge; A3 the fill between two faulted VMAs merges left only."""
    base = 0x10000000
    mmap(host, proc, base, 4 * PG)
    mmap(host, proc, base + 4 * PG, 4 * PG)
    assert region(host, proc, base) == [anon(0x10000000, 0x10008000)]
    base = 0x13000000
    mmap(host, proc, base, 4 * PG)
    touch(host, proc, base, 1)
    mmap(host, proc, base + 5 * PG, 4 * PG)
    touch(host, proc, base + 5 * PG, 1)
    assert region(host, proc, base) == [anon(0x13000000, 0x13004000), anon(0x13005000, 0x13009000)]
    mmap(host, proc, base + 4 * PG, PG)
    assert region(host, proc, base) == [anon(0x13000000, 0x13005000), anon(0x13005000, 0x13009000)]


def test_mprotect_p1_split_and_remerge(host: HostBackend, proc: int) -> None:
    base = 0x10000000
    mmap(host, proc, base, 8 * PG)
    touch(host, proc, base, 8)
    assert host.syscall(proc, "mprotect", (base + 2 * PG, 2 * PG, PROT_READ)) == 0
    assert region(host, proc, base) == [anon(0x10000000, 0x10002000), anon(0x10002000, 0x10004000, "r--p"),
                                        anon(0x10004000, 0x10008000)]
    assert host.syscall(proc, "mprotect", (base + 2 * PG, 2 * PG, RW)) == 0
    assert region(host, proc, base) == [anon(0x10000000, 0x10008000)]
    # P4: over a hole -> ENOMEM, the part before the hole already changed
    assert host.syscall(proc, "mprotect", (base, 8 * PG, PROT_READ)) == 0
    assert host.syscall(proc, "munmap", (base + 4 * PG, PG)) == 0
    assert host.syscall(proc, "mprotect", (base, 8 * PG, RW)) == -errno.ENOMEM
    assert region(host, proc, base) == [anon(0x10000000, 0x10004000), anon(0x10005000, 0x10008000, "r--p")]


def test_mremap_r1_to_r4(host: HostBackend, proc: int) -> None:
    """M7, merge2.txt R1-R4 (R3's moved address: the top of the gap below vvar, G2)."""
    def mremap(old: int, old_len: int, new_len: int, flags: int = 0) -> int:
        return host.syscall(proc, "mremap", (old, old_len, new_len, flags, 0))

    base = 0x10000000  # R1: grow in place into free space
    mmap(host, proc, base, 4 * PG)
    assert mremap(base, 4 * PG, 8 * PG) == base
    assert region(host, proc, base) == [anon(0x10000000, 0x10008000)]
    base = 0x11000000  # R2: grow up to a compatible next VMA -> merges with it
    mmap(host, proc, base, 4 * PG)
    touch(host, proc, base, 4)
    mmap(host, proc, base + 6 * PG, 4 * PG)
    assert mremap(base, 4 * PG, 6 * PG) == base
    assert region(host, proc, base) == [anon(0x11000000, 0x1100A000)]
    base = 0x12000000  # R3: blocked -> ENOMEM; with MAYMOVE -> moved top-down
    mmap(host, proc, base, 4 * PG)
    touch(host, proc, base, 4)
    mmap(host, proc, base + 4 * PG, PG, PROT_READ)
    assert mremap(base, 4 * PG, 8 * PG) == -errno.ENOMEM
    assert mremap(base, 4 * PG, 8 * PG, MREMAP_MAYMOVE) == VVAR - 8 * PG
    assert region(host, proc, base) == [anon(0x12004000, 0x12005000, "r--p")]
    assert maps_lines(host.view(proc, "maps"), VVAR - 8 * PG, VVAR) == [anon(VVAR - 8 * PG, VVAR)]
    base = 0x13000000  # R4: shrink
    mmap(host, proc, base, 8 * PG)
    assert mremap(base, 8 * PG, 3 * PG) == base
    assert region(host, proc, base) == [anon(0x13000000, 0x13003000)]


def test_munmap_u1_to_u3(host: HostBackend, proc: int) -> None:
    """M8, merge.txt U1-U3: holes and nothing-mapped succeed; unaligned start and len 0 are EINVAL."""
    base = 0x10000000

    def munmap(addr: int, length: int) -> int:
        return host.syscall(proc, "munmap", (addr, length))

    mmap(host, proc, base, 8 * PG)
    touch(host, proc, base, 8)
    assert munmap(base + 3 * PG, 2 * PG) == 0
    assert region(host, proc, base) == [anon(0x10000000, 0x10003000), anon(0x10005000, 0x10008000)]
    assert munmap(base + 2 * PG, 4 * PG) == 0
    assert munmap(base + 100 * PG, 4 * PG) == 0
    assert munmap(base + 5, PG) == -errno.EINVAL
    assert munmap(base, 1) == 0
    assert region(host, proc, base) == [anon(0x10001000, 0x10002000), anon(0x10006000, 0x10008000)]
    assert munmap(base, 0) == -errno.EINVAL


def test_brk_growth_and_shrink(host: HostBackend, proc: int) -> None:
    """L7, M10 (merge2.txt B1-B6 with raw brk): [heap] appears after the first growth, never merges
    with the bss, needs a one-page gap below the next VMA, returns the old brk on failure."""
    maps = host.view(proc, "maps")
    bss_end = int(maps_lines(maps, 0x400000, 0x10000000)[-1].split()[0].split("-")[1], 16)
    b0 = host.syscall(proc, "brk", (0,))
    assert b0 == bss_end  # start_brk = PAGE_ALIGN(end of bss)
    assert "[heap]" not in maps

    def heap() -> list[str]:
        return maps_lines(host.view(proc, "maps"), b0, b0 + 0x100000)

    def heap_line(end: int) -> str:
        return anon(b0, end).ljust(73) + "[heap]"  # F1: the name starts at byte 73

    assert host.syscall(proc, "brk", (b0 + PG,)) == b0 + PG
    assert heap() == [heap_line(b0 + PG)]
    assert maps_lines(host.view(proc, "maps"), b0 - PG, b0) == [anon(b0 - 5 * PG, b0)]  # bss separate
    assert host.syscall(proc, "brk", (b0 + 3 * PG,)) == b0 + 3 * PG
    assert mmap(host, proc, b0 + 5 * PG, PG) == b0 + 5 * PG
    assert host.syscall(proc, "brk", (b0 + 4 * PG,)) == b0 + 4 * PG
    assert host.syscall(proc, "brk", (b0 + 5 * PG,)) == b0 + 4 * PG  # failure: old brk
    assert heap() == [heap_line(b0 + 4 * PG), anon(b0 + 5 * PG, b0 + 6 * PG)]
    assert host.syscall(proc, "brk", (b0 + 2 * PG,)) == b0 + 2 * PG
    assert host.syscall(proc, "brk", (b0 + 2 * PG + 100,)) == b0 + 2 * PG + 100  # stored unaligned
    assert host.syscall(proc, "brk", (b0 - PG,)) == b0 + 2 * PG + 100  # below start_brk: ignored
    assert heap() == [heap_line(b0 + 3 * PG), anon(b0 + 5 * PG, b0 + 6 * PG)]
    assert host.syscall(proc, "munmap", (b0 + 5 * PG, PG)) == 0
    assert mmap(host, proc, b0 + 3 * PG, PG) == b0 + 3 * PG  # B6: merges into the heap VMA
    assert heap() == [heap_line(b0 + 4 * PG)]
