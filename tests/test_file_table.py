"""struct file and VMAs as slab objects charged to the running task's memcg, and their lifetimes.

An open() charges FILP_SIZE bytes to the running task's memcg (alloc_empty_file: filp is
SLAB_ACCOUNT) before it looks the path up; the file lives while a descriptor or a VMA refers to it
(f_count) and its last fput() gives the bytes back. A VMA charges VMA_SIZE while it is linked. The
charges' agreement with the kernel is measured in test_host_file_table.py, test_host_xa_nodes.py,
test_host_fault_pte.py and test_host_kmem.py (kmem exact); here, the lifetimes on the model: what
holds the bytes, step by step, and check_machine's accounting of every reference.
"""

from __future__ import annotations

from memcgkit import memcg_machine
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.file import NR_OPEN_DEFAULT, fdtable_objects
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.memcontrol import MemCgroup
from vmlab.kernel.mm_types import FILP_SIZE, VMA_SIZE
from vmlab.kernel.uapi import ENOENT, PAGE_SIZE

MB = 1 << 20
AT_FDCWD, O_RDONLY, O_CLOEXEC = -100, 0, 0o2000000
F_DUPFD_CLOEXEC = 1030
PROT_READ, MAP_SHARED = 1, 1


def object_bytes(model: ModelBackend, memcg: MemCgroup) -> int:
    """The bytes of live slab objects charged to `memcg`."""
    return model.memcgs.slab_bytes(memcg)


def opened() -> tuple[ModelBackend, int, MemCgroup]:
    """A model whose first process runs in a memcg, with a model file /sim/f of 1 MiB."""
    model, pid, memcg = memcg_machine(64 * MB)
    model.create_file("/sim/f", MB)
    return model, pid, memcg


def test_a_descriptor_or_a_mapping_keeps_the_file_charged() -> None:
    """open charges FILP_SIZE; dup and a mapping take references to the file (the mapping charges its
    VMA); the file's bytes go back when the last reference goes (close, close, munmap), not before."""
    model, pid, memcg = opened()
    assert object_bytes(model, memcg) == 0
    fd = model.syscall(pid, "openat", (AT_FDCWD, "/sim/f", O_RDONLY, 0))
    assert fd >= 0 and object_bytes(model, memcg) == FILP_SIZE
    other = model.syscall(pid, "dup", (fd,))
    addr = model.syscall(pid, "mmap", (0, MB, PROT_READ, MAP_SHARED, fd, 0))
    assert other >= 0 and addr > 0
    assert object_bytes(model, memcg) == FILP_SIZE + VMA_SIZE
    assert model.tasks[pid].files[fd].f_count == 3
    check_machine(model)
    for step in (("close", (fd,)), ("close", (other,))):
        assert model.syscall(pid, *step) == 0
        assert object_bytes(model, memcg) == FILP_SIZE + VMA_SIZE  # the mapping holds the file
        check_machine(model)
    assert model.syscall(pid, "munmap", (addr, MB)) == 0
    assert object_bytes(model, memcg) == 0
    check_machine(model)


def test_two_opens_are_two_files_and_a_failed_open_frees_its_own() -> None:
    """Each open() is a struct file of its own; an open that fails after alloc_empty_file (no such
    path) gives its bytes back at once, the descriptor it would have had stays free."""
    model, pid, memcg = opened()
    fds = [model.syscall(pid, "openat", (AT_FDCWD, "/sim/f", O_RDONLY, 0)) for _ in range(2)]
    assert object_bytes(model, memcg) == 2 * FILP_SIZE
    assert model.syscall(pid, "openat", (AT_FDCWD, "/sim/none", O_RDONLY, 0)) == -ENOENT
    assert object_bytes(model, memcg) == 2 * FILP_SIZE
    assert model.syscall(pid, "openat", (AT_FDCWD, "/sim/f", O_RDONLY, 0)) == max(fds) + 1
    check_machine(model)


def test_a_fork_shares_the_file_until_both_processes_are_gone() -> None:
    """fork() gives the child the parent's descriptors and mappings (references, no new file; a VMA
    of its own for each of the parent's, and anon_vma chains, charged to the forking task's memcg);
    the file is freed once both have exited, by whichever goes last, back to the memcg that opened
    it. (The parent's other VMAs were made before it joined the memcg: they charge nothing.)"""
    model, pid, memcg = opened()
    fd = model.syscall(pid, "openat", (AT_FDCWD, "/sim/f", O_RDONLY, 0))
    assert model.syscall(pid, "mmap", (0, MB, PROT_READ, MAP_SHARED, fd, 0)) > 0
    before = object_bytes(model, memcg)
    child = model.fork(pid)
    file = model.tasks[pid].files[fd]
    forked = object_bytes(model, memcg) - before  # the child's VMAs and anon_vma chains
    assert model.tasks[child].files[fd] is file and file.f_count == 4
    assert before == FILP_SIZE + VMA_SIZE and forked >= len(list(model.tasks[child].mm)) * VMA_SIZE
    check_machine(model)
    model.exit(pid)
    assert file.f_count == 2 and object_bytes(model, memcg) == FILP_SIZE + forked
    check_machine(model)
    model.exit(child)
    assert file.f_count == 0 and object_bytes(model, memcg) == 0


def test_dup2_onto_a_descriptor_closes_its_file_and_exec_closes_cloexec_ones() -> None:
    """dup2() onto a descriptor in use closes the file that was there (its last reference: freed);
    F_DUPFD takes a reference; execve() closes the O_CLOEXEC descriptors, freeing a file only they
    held, and keeps the others."""
    model, pid, memcg = opened()
    a = model.syscall(pid, "openat", (AT_FDCWD, "/sim/f", O_RDONLY, 0))
    b = model.syscall(pid, "openat", (AT_FDCWD, "/sim/f", O_RDONLY | O_CLOEXEC, 0))
    assert object_bytes(model, memcg) == 2 * FILP_SIZE
    assert model.syscall(pid, "dup2", (a, b)) == b  # b's file had no other reference
    assert object_bytes(model, memcg) == FILP_SIZE and model.tasks[pid].files[a].f_count == 2
    c = model.syscall(pid, "openat", (AT_FDCWD, "/sim/f", O_RDONLY | O_CLOEXEC, 0))
    copy = model.syscall(pid, "fcntl", (c, F_DUPFD_CLOEXEC, 10))
    kept, closed = model.tasks[pid].files[a], model.tasks[pid].files[c]
    assert copy == 10 and closed.f_count == 2
    check_machine(model)
    assert model.syscall(pid, "execve", (BUILTIN_PROGRAM, (BUILTIN_PROGRAM,), ())) == 0
    assert sorted(model.tasks[pid].files) == [0, 1, 2, a, b]
    assert (closed.f_count, closed.objcg, kept.f_count, kept.objcg) == (0, None, 2, memcg)
    check_machine(model)


def test_a_vma_at_the_limit_is_charged_past_it() -> None:
    """A memcg at its limit with nothing in its stocks: a slab object charged as a VMA is (nofail)
    takes a page past the limit, where a plain GFP_NOWAIT charge fails and charges nothing."""
    model, _, memcg = memcg_machine(64 * MB)
    tree = model.memcgs
    assert memcg.memory.usage == 0 and memcg.set_limit(0) == 0
    assert tree.obj_cgroup_charge(memcg, VMA_SIZE, nowait=True) < 0
    assert (memcg.memory.usage, memcg.kmem.usage, memcg.kmem_obj_pages) == (0, 0, 0)
    assert tree.obj_cgroup_charge(memcg, VMA_SIZE, nowait=True, nofail=True) == 0
    assert (memcg.memory.usage, memcg.kmem.usage, memcg.kmem_obj_pages) == (1, 1, 1)
    assert memcg.memory.max == 0 and tree.obj_stock_bytes == PAGE_SIZE - VMA_SIZE


def test_a_descriptor_past_64_needs_a_table_and_a_fork_sizes_the_childs_by_the_highest() -> None:
    """expand_files(): descriptors up to 63 fit files_struct; 64 needs a table of 128 (its three
    objects charged), 200 one of 256 (the first freed); closing never shrinks it. A fork's child
    gets the table its highest open descriptor needs (none for 63; 128 for 100), and exits free
    them all."""
    model, pid, memcg = opened()
    fd = model.syscall(pid, "openat", (AT_FDCWD, "/sim/f", O_RDONLY, 0))
    table = model.tasks[pid].objects.fdt
    assert [model.syscall(pid, "dup", (fd,)) for _ in range(60)][-1] == 63
    assert table.max_fds == NR_OPEN_DEFAULT and object_bytes(model, memcg) == FILP_SIZE
    assert model.syscall(pid, "dup", (fd,)) == 64
    assert table.max_fds == 128 and object_bytes(model, memcg) == FILP_SIZE + sum(fdtable_objects(128))
    assert model.syscall(pid, "fcntl", (fd, F_DUPFD_CLOEXEC, 200)) == 200
    assert table.max_fds == 256 and object_bytes(model, memcg) == FILP_SIZE + sum(fdtable_objects(256))
    check_machine(model)
    for n in (64, 200):
        assert model.syscall(pid, "close", (n,)) == 0
    assert table.max_fds == 256
    child = model.fork(pid)
    assert model.tasks[child].objects.fdt.max_fds == NR_OPEN_DEFAULT  # highest descriptor 63
    assert model.syscall(pid, "dup2", (fd, 100)) == 100
    other = model.fork(pid)
    assert model.tasks[other].objects.fdt.max_fds == 128
    check_machine(model)
    for task in (child, other, pid):
        model.exit(task)
    assert object_bytes(model, memcg) == 0
