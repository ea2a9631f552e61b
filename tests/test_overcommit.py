"""Overcommit in the model, rule by rule (mm/util.c __vm_enough_memory and its callers, 6.18).

Each test runs the built-in program on a small model machine and checks the committed counter
(pages) and the syscall results; check_committed() holds after every test. The host agrees with
these rules in tests/test_host_overcommit.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.debug_vm import check_committed
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.mm_types import VM_ACCOUNT, VM_GROWSDOWN, MmStruct
from vmlab.kernel.mmap import VmSysctl
from vmlab.kernel.page_alloc import PhysMem
from vmlab.kernel.uapi import ENOMEM, MAP_NORESERVE, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE
from vmlab.kernel.util import (
    __vm_enough_memory,
    init_admin_reserve,
    init_user_reserve,
    vm_commit_limit,
)

PG = 4096
R, RW = 1, 3
PRIV, SHARED, ANON, FIXED = 0x02, 0x01, 0x20, 0x10
PROGRAM = Program(BUILTIN_PROGRAM, ("minimal",))
RAM = 512 << 20


class Machine:
    """A model machine running the built-in program, with shortcuts for the syscalls under test."""

    def __init__(self, **settings: object) -> None:
        self.b = ModelBackend(RAM)
        self.pid = self.b.start(PROGRAM, Settings(ram=RAM, **settings))  # type: ignore[arg-type]

    @property
    def committed(self) -> int:
        """vm_committed_as in pages."""
        return self.b.mem.vm_committed_as

    def call(self, name: str, *args: int, pid: int | None = None) -> int:
        return self.b.syscall(self.pid if pid is None else pid, name, args)

    def mmap(self, length: int, prot: int = RW, flags: int = PRIV | ANON, addr: int = 0) -> int:
        return self.call("mmap", addr, length, prot, flags, -1, 0)

    def delta(self, name: str, *args: int) -> tuple[int, int]:
        """(result, change of the committed pages) of one syscall."""
        before = self.committed
        result = self.call(name, *args)
        return result, self.committed - before


@pytest.fixture
def machine() -> Iterator[Machine]:
    m = Machine()
    yield m
    check_committed(m.b)
    m.b.close()
    assert m.committed == m.b.mem.vm_committed_leak, "every process gone: only leaks stay committed"


def test_commit_limit_ratio_and_kbytes() -> None:
    """vm_commit_limit(): overcommit_kbytes wins over the ratio; the ratio is of totalram_pages."""
    mem = PhysMem(RAM)
    assert vm_commit_limit(mem, VmSysctl()) == mem.totalram_pages * 50 // 100
    assert vm_commit_limit(mem, VmSysctl(overcommit_ratio=80)) == mem.totalram_pages * 80 // 100
    assert vm_commit_limit(mem, VmSysctl(overcommit_kbytes=4096 + 3)) == 1024


def test_reserves_from_free_memory() -> None:
    """init_user_reserve/init_admin_reserve: free/32 in kB, capped at 128 MiB and 8 MiB."""
    small = PhysMem(64 << 20)
    free_kb = small.nr_free_pages * 4
    assert init_user_reserve(small) == free_kb // 32 < 128 << 10
    assert init_admin_reserve(small) == min(free_kb // 32, 8 << 10)
    big = PhysMem(8 << 30)
    assert init_user_reserve(big) == 128 << 10
    assert init_admin_reserve(big) == 8 << 10


def test_mode0_single_request_above_ram_fails() -> None:
    """Mode 0 (6.18): only one request larger than RAM + swap fails; the counter is untouched then."""
    mem = PhysMem(RAM)
    total = mem.totalram_pages
    assert __vm_enough_memory(mem, VmSysctl(), None, total, True) == 0
    assert mem.vm_committed_as == total
    assert __vm_enough_memory(mem, VmSysctl(), None, total + 1, True) == -ENOMEM
    assert mem.vm_committed_as == total
    assert __vm_enough_memory(mem, VmSysctl(), None, total, True) == 0  # no sum over requests
    assert __vm_enough_memory(mem, VmSysctl(overcommit_memory=1), None, 10 * total, True) == 0


def test_mode2_limit_admin_and_user_reserve() -> None:
    """Mode 2: committed (request included) must stay below the limit less the admin reserve (no
    CAP_SYS_ADMIN) and less min(total_vm / 32, user reserve)."""
    mem = PhysMem(RAM)
    sysctl = VmSysctl(overcommit_memory=2, overcommit_kbytes=400 << 10, admin_reserve_kbytes=8 << 10,
                      user_reserve_kbytes=1 << 10)
    limit = 100 << 10  # pages
    assert __vm_enough_memory(mem, sysctl, None, limit - 1, True) == 0
    assert __vm_enough_memory(mem, sysctl, None, 1, True) == -ENOMEM
    mem.vm_committed_as = 0
    assert __vm_enough_memory(mem, sysctl, None, limit - 2048 - 1, False) == 0
    assert __vm_enough_memory(mem, sysctl, None, 1, False) == -ENOMEM
    mem.vm_committed_as = 0
    mm = MmStruct(total_vm=32 * 100)  # total_vm / 32 = 100 pages < the 256-page user reserve
    assert __vm_enough_memory(mem, sysctl, mm, limit - 100 - 1, True) == 0
    assert __vm_enough_memory(mem, sysctl, mm, 1, True) == -ENOMEM
    mem.vm_committed_as = 0
    mm.total_vm = 32 * 1000  # capped by the user reserve, 256 pages
    assert __vm_enough_memory(mem, sysctl, mm, limit - 256 - 1, True) == 0
    assert __vm_enough_memory(mem, sysctl, mm, 1, True) == -ENOMEM


def test_mmap_charges_private_writable_only(machine: Machine) -> None:
    """accountable_mapping(): private writable is charged; read-only and MAP_NORESERVE (mode 0) are not;
    a shared anonymous object is charged its size (shmem_acct_size) unless MAP_NORESERVE."""
    a, d = machine.delta("mmap", 0, 10 * PG, RW, PRIV | ANON, -1, 0)
    assert d == 10
    assert machine.delta("mmap", 0, 10 * PG, R, PRIV | ANON, -1, 0)[1] == 0
    assert machine.delta("mmap", 0, 10 * PG, RW, PRIV | ANON | MAP_NORESERVE, -1, 0)[1] == 0
    s, d = machine.delta("mmap", 0, 7 * PG, RW, SHARED | ANON, -1, 0)
    assert d == 7
    assert machine.delta("mmap", 0, 7 * PG, RW, SHARED | ANON | MAP_NORESERVE, -1, 0)[1] == 0
    assert machine.delta("munmap", a + 2 * PG, 3 * PG) == (0, -3)
    assert machine.delta("munmap", s, 7 * PG) == (0, -7)  # the object goes with its last mapping


def test_mmap_fixed_over_accounted_charges_the_difference(machine: Machine) -> None:
    """A MAP_FIXED accountable mapping is charged its size less the VM_ACCOUNT pages it replaces; a
    non-accountable one over them uncharges them."""
    a = machine.mmap(8 * PG)
    assert machine.delta("mmap", a + 4 * PG, 8 * PG, RW, PRIV | ANON | FIXED, -1, 0) == (a + 4 * PG, 4)
    assert machine.delta("mmap", a, 4 * PG, R, PRIV | ANON | FIXED, -1, 0) == (a, -4)


def test_noreserve_is_charged_in_mode2() -> None:
    """MAP_NORESERVE is ignored in mode 2 (do_mmap), so the mapping is charged."""
    m = Machine(overcommit_memory=2, overcommit_ratio=100)
    assert m.delta("mmap", 0, 10 * PG, RW, PRIV | ANON | MAP_NORESERVE, -1, 0)[1] == 10
    check_committed(m.b)


def test_mode2_mmap_refused_at_the_limit() -> None:
    """Mode 2 refuses the mmap that reaches the limit with ENOMEM and leaves the counter alone."""
    m = Machine(overcommit_memory=2, overcommit_kbytes=64 << 10, user_reserve_kbytes=0)
    room = (64 << 10) // 4 - m.committed  # pages below the limit
    r, d = m.delta("mmap", 0, room * PG, RW, PRIV | ANON, -1, 0)
    assert (r, d) == (-ENOMEM, 0)
    r, d = m.delta("mmap", 0, (room - 1) * PG, RW, PRIV | ANON, -1, 0)
    assert r > 0 and d == room - 1
    check_committed(m.b)


def test_brk_charges_and_fails_with_the_old_break() -> None:
    """do_brk_flags charges the growth; shrinking uncharges; a refused growth returns the old break."""
    m = Machine(overcommit_memory=2, overcommit_kbytes=64 << 10, user_reserve_kbytes=0)
    brk0 = m.call("brk", 0)
    assert m.delta("brk", brk0 + 5 * PG) == (brk0 + 5 * PG, 5)
    assert m.delta("brk", brk0 + 2 * PG) == (brk0 + 2 * PG, -3)
    room = (64 << 10) // 4 - m.committed
    assert m.delta("brk", brk0 + (2 + room) * PG) == (brk0 + 2 * PG, 0)
    assert m.delta("brk", brk0 + (1 + room) * PG) == (brk0 + (1 + room) * PG, room - 1)
    check_committed(m.b)


def test_mremap_grow_move_dontunmap(machine: Machine) -> None:
    """mremap: growth in place or by a move charges the difference; MREMAP_DONTUNMAP charges the whole
    new length (the source stays); a shrink uncharges."""
    a = machine.mmap(4 * PG, RW, PRIV | ANON | FIXED, 0x10000000)
    assert machine.delta("mremap", a, 4 * PG, 6 * PG, 0, 0) == (a, 2)
    machine.mmap(PG, R, PRIV | ANON | FIXED, a + 6 * PG)  # a wall: growth must move
    b, d = machine.delta("mremap", a, 6 * PG, 9 * PG, MREMAP_MAYMOVE, 0)
    assert b != a and d == 3
    c, d = machine.delta("mremap", b, 9 * PG, 9 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0)
    assert c > 0 and d == 9
    assert machine.delta("mremap", c, 9 * PG, 5 * PG, 0, 0) == (c, -4)


def test_mremap_shrink_and_move_leaks_the_shrink(machine: Machine) -> None:
    """6.18 charges a shrinking move (MREMAP_FIXED) the shrink again: munmap of the result leaves it
    committed (measured on the host, test_host_overcommit)."""
    a = machine.mmap(8 * PG)
    dst = machine.mmap(8 * PG, 0, PRIV | ANON | MAP_NORESERVE)
    r, d = machine.delta("mremap", a, 8 * PG, 3 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst)
    assert (r, d) == (dst, 0)
    assert machine.delta("munmap", dst, 3 * PG) == (0, -3)
    assert machine.b.mem.vm_committed_leak == 5


def test_mprotect_charges_write_and_uncharges_untouched(machine: Machine) -> None:
    """mprotect_fixup: adding write to a VMA without VM_ACCOUNT charges it; removing write from an
    untouched anonymous VMA uncharges it, from a touched one does not."""
    a = machine.mmap(6 * PG, R)
    assert machine.delta("mprotect", a, 4 * PG, RW) == (0, 4)
    assert machine.delta("mprotect", a, 4 * PG, R) == (0, -4)
    assert machine.delta("mprotect", a, 2 * PG, RW) == (0, 2)
    assert machine.b.access(machine.pid, a, 1, True) is None
    assert machine.delta("mprotect", a, 2 * PG, R) == (0, 0)


def test_fork_charges_the_copy_exit_uncharges(machine: Machine) -> None:
    """dup_mmap charges every VM_ACCOUNT VMA again; the child's exit gives it back."""
    machine.mmap(16 * PG)
    before = machine.committed
    child = machine.b.fork(machine.pid)
    copied = machine.committed - before
    assert copied == sum(v.pages for v in machine.b.tasks[machine.pid].mm if v.vm_flags & VM_ACCOUNT)
    assert copied >= 16
    machine.b.exit(child)
    assert machine.committed == before


def test_fork_refused_in_mode2() -> None:
    """A fork whose copy would pass the limit fails with ENOMEM and leaves nothing charged."""
    m = Machine(overcommit_memory=2, overcommit_kbytes=64 << 10, user_reserve_kbytes=0)
    room = (64 << 10) // 4 - m.committed
    assert m.mmap((room // 2 + 1) * PG) > 0
    before = m.committed
    assert m.b.fork(m.pid) == -ENOMEM
    assert m.committed == before and len(m.b.tasks) == 1
    check_committed(m.b)


def test_stack_growth_is_charged(machine: Machine) -> None:
    """acct_stack_growth charges each page the stack grows by (a fault below it)."""
    mm = machine.b.tasks[machine.pid].mm
    stack = next(v for v in mm if v.vm_flags & VM_GROWSDOWN)
    before = machine.committed
    assert machine.b.access(machine.pid, stack.vm_start - 3 * PG, 1, True) is None
    assert machine.committed - before == 3


def test_exec_charges_its_mappings(machine: Machine) -> None:
    """After exec, the committed pages are exactly the new image's VM_ACCOUNT VMAs."""
    mm = machine.b.tasks[machine.pid].mm
    assert machine.committed == sum(v.pages for v in mm if v.vm_flags & VM_ACCOUNT) > 0
