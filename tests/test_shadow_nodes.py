"""The workingset shrinker on the model: nodes of the page cache that hold only shadow entries are
freed once a memcg has more than an eighth of its pages' worth (count_shadow_nodes), oldest first,
and a refault into a freed node's range is no refault. Its agreement with the kernel (the nodes
freed, kmem, the refaults) is measured in test_refault_host.py; here, its working on model files.
"""

from __future__ import annotations

from memcgkit import memcg_machine
from vmlab.kernel.debug_vm import check_machine
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.memcontrol import MemCgroup

MB = 1 << 20
AT_FDCWD, O_RDONLY = -100, 0
RW, PRIVATE_ANON = 3, 0x22
POSIX_FADV_RANDOM = 1
FILE_SIZE = 256 * MB


def read_through(limit: int) -> tuple[ModelBackend, int, MemCgroup, int]:
    """A model file of FILE_SIZE read once in 1 MiB calls by a process in a memcg of `limit`:
    (the machine, the pid, the memcg, the file's descriptor)."""
    model, pid, memcg = memcg_machine(limit, ram=512 * MB)
    model.create_file("/sim/big", FILE_SIZE)
    buf = model.syscall(pid, "mmap", (0, MB, RW, PRIVATE_ANON, -1, 0))
    fd = model.syscall(pid, "openat", (AT_FDCWD, "/sim/big", O_RDONLY, 0))
    while model.syscall(pid, "read", (fd, buf, MB)) > 0:
        pass
    return model, pid, memcg, fd


def vmstat(model: ModelBackend) -> dict[str, int]:
    """The model's /proc/vmstat as a dict."""
    return {k: int(v) for k, v in (line.split() for line in model.machine_view("vmstat").splitlines())}


def test_a_memcg_keeps_few_nodes_of_shadows() -> None:
    """Reading 16 times the memcg's size leaves shadows in about a thousand leaves; the shrinker
    frees most of them (workingset_nodereclaim), so the file's tree keeps a fraction and its kmem
    falls with it; /proc/vmstat shows the nodes freed and those of only shadows still listed."""
    model, _, memcg, _ = read_through(16 * MB)
    inode = model._inode("/sim/big")
    freed = model.mem.events["workingset_nodereclaim"]
    stat = vmstat(model)
    print(f"nodes kept {inode.xa_nodes.nr_nodes()}, freed {freed}, listed {stat['workingset_nodes']}")
    assert freed > 500 and inode.xa_nodes.nr_nodes() < 400
    assert memcg.kmem_obj_pages < 60  # the nodes a thousand leaves need would take 150 pages
    assert stat["workingset_nodereclaim"] == freed and stat["slabs_scanned"] >= freed
    assert stat["workingset_nodes"] == len(model.mem.shadow_nodes.lists.get(memcg.id, ()))
    check_machine(model)


def test_a_refault_into_a_freed_node_is_no_refault() -> None:
    """The oldest nodes go first: the file's head, evicted first, lost its shadows with its nodes,
    so reading a page of it again is no refault, while a page evicted last, whose node was kept,
    refaults (one-page reads under POSIX_FADV_RANDOM: no readahead)."""
    model, pid, memcg, fd = read_through(16 * MB)
    inode = model._inode("/sim/big")
    last = max(inode.shadows)
    assert 0 not in inode.i_pages and 0 not in inode.shadows and model.mem.events["workingset_nodereclaim"]
    assert model.syscall(pid, "fadvise64", (fd, 0, 0, POSIX_FADV_RANDOM)) == 0
    buf = model.syscall(pid, "mmap", (0, MB, RW, PRIVATE_ANON, -1, 0))
    counts = []
    for index in (0, last):
        before = memcg.stat["workingset_refault_file"]
        assert model.syscall(pid, "pread64", (fd, buf, 4096, index * 4096)) == 4096
        counts.append(memcg.stat["workingset_refault_file"] - before)
    assert counts == [0, 1]
    check_machine(model)
