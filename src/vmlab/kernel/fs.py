"""Files the model maps: inodes taken from the host (stat for dev/inode/size, the mount's filesystem
type for how mmap places them), and the internal shmem files of MAP_SHARED|MAP_ANONYMOUS.
"""

from __future__ import annotations

import itertools
import os
import stat
from dataclasses import dataclass, field

from vmlab.kernel.memcontrol import OBJCG_PTR
from vmlab.kernel.mm_types import FILP_SIZE, VM_READAHEAD_PAGES, File, Inode
from vmlab.kernel.page_writeback import BackingDev
from vmlab.linux import mincore_residency

#: Filesystems whose file_operations use thp_get_unmapped_area (G7).
THP_ALIGNED_FS = frozenset({"ext2", "ext4", "xfs", "btrfs"})
SHMEM_FS = frozenset({"tmpfs", "shmem", "ramfs"})
#: Filesystems whose page cache takes large folios (mapping_set_large_folios): readahead sizes them.
LARGE_FOLIO_FS = frozenset({"ext4", "xfs"})
#: Filesystems whose file_operations take MAP_SYNC (FOP_MMAP_SYNC), so that their non-DAX files refuse it.
MMAP_SYNC_FS = frozenset({"ext4", "xfs"})
#: The internal shmem mount behind MAP_SHARED|MAP_ANONYMOUS and memfd shows as 00:01 (§0.6).
SHMEM_INTERNAL_DEV = (0, 1)


def _mounts() -> list[tuple[str, str, int, int]]:
    """The host's mounts from /proc/self/mountinfo: (mount point, filesystem type, major, minor);
    none when it cannot be read."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                major, minor = (int(n) for n in fields[2].split(":"))
                out.append((fields[4].replace("\\040", " "), right.split()[0], major, minor))
    except OSError:
        pass
    return out


def _mount_fstype(path: str) -> str:
    """The filesystem type of the mount that holds `path` (longest mount point prefix in mountinfo)."""
    best, fstype = -1, ""
    for mnt, kind, _, _ in _mounts():
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > best:
            best, fstype = len(mnt), kind
    return fstype


def host_shmem_devices() -> frozenset[str]:
    """The devices of the host's tmpfs (and ramfs) mounts as maps prints them (`00:1b`)."""
    return frozenset(f"{major:02x}:{minor:02x}" for _, kind, major, minor in _mounts() if kind in SHMEM_FS)


def host_inode(path: str) -> Inode:
    """An Inode for a host file as the kernel would show it in maps: canonical path, dev, ino, size.

    Raises OSError (FileNotFoundError, PermissionError) as open() would.
    """
    real = os.path.realpath(path)
    st = os.stat(real)
    fstype = _mount_fstype(real)
    ra_pages, io_pages = bdi_readahead(os.major(st.st_dev), os.minor(st.st_dev))
    chr_ = stat.S_ISCHR(st.st_mode)
    return Inode(path=real, ino=st.st_ino, size=st.st_size, major=os.major(st.st_dev),
                 minor=os.minor(st.st_dev), thp_aligned=fstype in THP_ALIGNED_FS,
                 directory=stat.S_ISDIR(st.st_mode), fop_mmap_sync=fstype in MMAP_SYNC_FS and not chr_,
                 rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if chr_ else None,
                 shmem=fstype in SHMEM_FS, host_cached=host_residency(real, st.st_size),
                 ra_pages=ra_pages, io_pages=io_pages, large_folios=fstype in LARGE_FOLIO_FS,
                 nlink=st.st_nlink)


def host_dir_mount(path: str) -> tuple[str, int, int] | None:
    """(filesystem type, major, minor) of the host mount that holds the directory of the absolute
    `path`, or None when that directory is not on the host."""
    parent = os.path.dirname(path)
    if not path.startswith("/") or not os.path.isdir(parent):
        return None
    real = os.path.realpath(parent)
    st = os.stat(real)
    return _mount_fstype(real), os.major(st.st_dev), os.minor(st.st_dev)


def _sysfs_int(path: str) -> int | None:
    """An integer sysfs attribute, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def bdi_readahead(major: int, minor: int) -> tuple[int, int]:
    """(ra_pages, io_pages) of the backing device MAJOR:MINOR: read_ahead_kb / 4 of its bdi and
    max_sectors_kb / 4 of its queue (VM_READAHEAD_PAGES where sysfs does not tell, as for a bdi that
    has no block queue)."""
    ra_kb = _sysfs_int(f"/sys/class/bdi/{major}:{minor}/read_ahead_kb")
    io_kb = _sysfs_int(f"/sys/dev/block/{major}:{minor}/queue/max_sectors_kb")
    return (VM_READAHEAD_PAGES if ra_kb is None else ra_kb // 4,
            VM_READAHEAD_PAGES if io_kb is None else io_kb // 4)


def host_residency(path: str, size: int) -> frozenset[int] | None:
    """The pages of a host file now in the host's page cache; None when it cannot be told (then all
    count as cached)."""
    if size == 0:
        return frozenset()
    try:
        return frozenset(mincore_residency(path))
    except OSError:
        return None


#: What a shmem inode and a dentry charge their memcg (shmem_inode_cache and dentry are SLAB_ACCOUNT):
#: the slab object (752 and 192 bytes on this kernel, /proc/slabinfo) and its obj_cgroup pointer.
SHMEM_INODE_SIZE = 752 + OBJCG_PTR
DENTRY_SIZE = 192 + OBJCG_PTR
#: A pseudo file's slab objects (memfd_create, a shared anonymous mapping: __shmem_file_setup), in
#: the order they are charged: the inode (shmem_get_inode), the dentry (d_alloc_pseudo), the file.
PSEUDO_FILE_CHARGED = (SHMEM_INODE_SIZE, DENTRY_SIZE, FILP_SIZE)
#: ... and the order its last fput() gives them back: __fput's dput() frees the dentry at once
#: (DCACHE_NORCU), then file_free(); the inode goes after an RCU grace period (i_callback).
PSEUDO_FILE_FREED = (DENTRY_SIZE, FILP_SIZE, SHMEM_INODE_SIZE)


@dataclass
class ShmemMount:
    """The kernel's internal shmem mount: each MAP_SHARED|MAP_ANONYMOUS mmap gets a new file on it.

    Inode numbers come from one counter per machine (M12); the host's differ run to run.
    """

    _next_ino: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def zero_setup(self, length: int) -> File:
        """shmem_zero_setup(): the `/dev/zero (deleted)` file behind a shared anonymous mapping."""
        inode = Inode(path="/dev/zero", ino=next(self._next_ino), size=length, major=SHMEM_INTERNAL_DEV[0],
                      minor=SHMEM_INTERNAL_DEV[1], shmem=True, deleted=True)
        return File(inode, readable=True, writable=True)


#: The device number the model's own files show (a block device that does not exist on the host).
SIMFS_DEV = (254, 0)


@dataclass
class SimFs:
    """The model's own file system namespace: files created by open(O_CREAT) (or by an experiment) that
    do not exist on the host. Nothing of them is cached at first: every page not yet in the page cache
    is read from their device (`bdi`, the machine's default when None).

    A file open(O_CREAT) makes in a directory of the host (`host_dir`) is a file of that mount, as
    the kernel would make it: on a tmpfs (/dev/shm) a shmem file of the mount's device, its pages
    swap-backed, never read or written back (the per-page overcommit charge of tmpfs files is not
    modelled, see shmem.py); elsewhere a file of the mount's device with its filesystem's file
    operations (ext4's: THP-aligned placement, MAP_SYNC, large folios from readahead and write()) and
    its disk's readahead sizes. Its inode number is the model's (the host counts its own)."""

    files: dict[str, Inode] = field(default_factory=dict)
    _next_ino: itertools.count[int] = field(default_factory=lambda: itertools.count(2))

    def unlink(self, path: str) -> None:
        """The name `path` (normalised) goes from the namespace."""
        del self.files[os.path.normpath(path)]

    def lookup(self, path: str) -> Inode | None:
        """The model file at `path` (normalised), or None."""
        return self.files.get(os.path.normpath(path))

    def create(self, path: str, size: int = 0, bdi: BackingDev | None = None, *,
               large_folios: bool = False, host_dir: bool = False) -> Inode:
        """A new regular file of `size` bytes, none of them cached (or the existing one); with
        `large_folios`, its page cache takes large folios as ext4's does (readahead's and write()'s);
        with `host_dir`, a file of the host mount its directory is on (see the class text)."""
        path = os.path.normpath(path)
        found = self.files.get(path)
        if found is None:
            ino = next(self._next_ino)
            where = host_dir_mount(path) if host_dir else None
            if where is not None and where[0] in SHMEM_FS:
                found = Inode(path=path, ino=ino, size=size, major=where[1], minor=where[2], shmem=True,
                              host_cached=frozenset())
            elif where is not None:
                fstype, major, minor = where
                ra_pages, io_pages = bdi_readahead(major, minor)
                found = Inode(path=path, ino=ino, size=size, major=major, minor=minor,
                              thp_aligned=fstype in THP_ALIGNED_FS, fop_mmap_sync=fstype in MMAP_SYNC_FS,
                              large_folios=large_folios or fstype in LARGE_FOLIO_FS, host_cached=frozenset(),
                              bdi=bdi, ra_pages=ra_pages, io_pages=io_pages)
            else:
                found = Inode(path=path, ino=ino, size=size, major=SIMFS_DEV[0], minor=SIMFS_DEV[1],
                              thp_aligned=True, fop_mmap_sync=True, large_folios=large_folios,
                              host_cached=frozenset(), bdi=bdi)
            self.files[path] = found
        return found
