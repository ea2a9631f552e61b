"""Files the model maps: inodes taken from the host (stat for dev/inode/size, the mount's filesystem
type for how mmap places them), and the internal shmem files of MAP_SHARED|MAP_ANONYMOUS.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

from vmlab.kernel.mm_types import File, Inode

#: Filesystems whose file_operations use thp_get_unmapped_area (G7).
THP_ALIGNED_FS = frozenset({"ext2", "ext4", "xfs", "btrfs"})
SHMEM_FS = frozenset({"tmpfs", "shmem", "ramfs"})
#: The internal shmem mount behind MAP_SHARED|MAP_ANONYMOUS and memfd shows as 00:01 (§0.6).
SHMEM_INTERNAL_DEV = (0, 1)


def _mount_fstype(path: str) -> str:
    """The filesystem type of the mount that holds `path` (longest mount point prefix in mountinfo)."""
    best, fstype = -1, ""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                mnt = left.split()[4].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > best:
                    best, fstype = len(mnt), right.split()[0]
    except OSError:
        pass
    return fstype


def host_inode(path: str) -> Inode:
    """An Inode for a host file as the kernel would show it in maps: canonical path, dev, ino, size.

    Raises OSError (FileNotFoundError, PermissionError) as open() would.
    """
    real = os.path.realpath(path)
    st = os.stat(real)
    fstype = _mount_fstype(real)
    return Inode(path=real, ino=st.st_ino, size=st.st_size, major=os.major(st.st_dev),
                 minor=os.minor(st.st_dev), thp_aligned=fstype in THP_ALIGNED_FS,
                 shmem=fstype in SHMEM_FS)


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
