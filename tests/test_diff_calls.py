"""Fixed scenarios whose every result the running kernel decides, run on the model and on the host and
compared line for line (`vmlab diff`'s machinery, test_diff_random.check_agreement): the character
devices (a private /dev/zero mapping is anonymous memory, a shared one shmem that keeps its offset,
/dev/null cannot be mapped), the flag checks of mmap (MAP_HUGETLB, MAP_SHARED_VALIDATE, MAP_SYNC), the
special mappings that refuse to be split ([vvar], [vdso]), and fcntl's status flags and commands.

Each case was first a disagreement: found by running these calls against the kernel
(`vmlab diff FILE` with FILE the scenario text here).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from test_diff_random import check_agreement, pytestmark  # noqa: F401  (the host marks and skips)
from vmlab.lab.run import make_file
from vmlab.lab.scenario import FileSpec

DATA = f"/tmp/vmlab-diff-calls-{os.getpid()}.dat"


@pytest.fixture(autouse=True)
def _data_file() -> Iterator[None]:
    make_file(FileSpec(DATA, 16 * 4096))  # 4 KiB folios, as the model assumes (test_diff_random)
    yield
    if os.path.exists(DATA):
        os.unlink(DATA)


def test_dev_zero_and_dev_null_agree_with_kernel() -> None:
    """A private /dev/zero mapping: /dev/zero in maps, Anonymous pages in smaps, the zero page on read,
    copy-on-write across fork, THP alignment of a large one, merging of two maps of one open file at
    consecutive offsets; a shared one: `/dev/zero (deleted)` keeping the offset, RssShmem, SIGBUS past
    the object's end (it is only as long as the mapping); read() of /dev/zero fills the buffer, of
    /dev/null returns 0; lseek of either is 0; /dev/null cannot be mapped (-ENODEV)."""
    check_agreement(
        'z = openat(AT_FDCWD, "/dev/zero", O_RDWR)\n'
        'n = openat(AT_FDCWD, "/dev/null", O_RDWR)\n'
        "big = mmap(NULL, 4M, PROT_READ|PROT_WRITE, MAP_PRIVATE, z, 0)\n"
        "big2 = mmap(NULL, 4M, PROT_READ|PROT_WRITE, MAP_PRIVATE, z, 2M)\n"
        "room = mmap(NULL, 64K, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
        "pz = mmap(room, 8K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED, z, 0)\n"
        "pz2 = mmap(room + 8K, 8K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED, z, 8K)\n"
        "pz3 = mmap(room + 16K, 8K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS, -1, 0)\n"
        "sz = mmap(NULL, 16K, PROT_READ|PROT_WRITE, MAP_SHARED, z, 4096)\n"
        "sz2 = mmap(NULL, 2M, PROT_READ|PROT_WRITE, MAP_SHARED, z, 0)\n"
        "read pz, 8K\n"
        "write pz + 8K, 4K\n"
        "write sz, 8K\n"
        "show smaps\n"
        "show status\n"
        "child = fork()\n"
        "@child write pz, 4K\n"
        "@child write sz + 8K, 4K\n"
        "@child show smaps\n"
        "process main\n"
        "read(z, pz + 4K, 8K)\n"
        "read(z, 0x1000, 4096)\n"
        "read(n, pz, 4096)\n"
        "pread64(z, pz, 4096, 100)\n"
        "lseek(z, 100, 0)\n"
        "lseek(n, 100, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, n, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED, n, 0)\n"
        "fadvise64(z, 0, 4096, POSIX_FADV_WILLNEED)\n"
        "madvise(pz, 4096, MADV_WILLNEED)\n"
        "mprotect(pz + 4K, 4K, PROT_READ)\n"
        "madvise(pz, 8K, MADV_DONTNEED)\n"
        "mremap(pz + 8K, 8K, 32K, MREMAP_MAYMOVE)\n"
        "show smaps\n"
        "show counters\n"
        "write sz + 12K, 4K\n")


def test_dev_zero_mremap_agrees_with_kernel() -> None:
    """A private /dev/zero VMA places its own mappings (get_unmapped_area_zero), so MREMAP_FIXED moves
    it only alone: a range reaching past its end is -EFAULT (found by test_diff_random: the model
    moved the part inside); a move or growth of part of it gets the new address as its offset, as
    anonymous memory without an anon_vma does."""
    check_agreement(
        'z = openat(AT_FDCWD, "/dev/zero", O_RDWR)\n'
        "mmap(0x100ff000, 40960, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
        "mmap(0x10095000, 106496, PROT_NONE, MAP_PRIVATE|MAP_FIXED, z, 0)\n"
        "mremap(0x100ab000, 192512, 192512, MREMAP_MAYMOVE|MREMAP_FIXED, 0x10000000)\n"
        "mremap(0x10095000, 8192, 8192, MREMAP_MAYMOVE|MREMAP_FIXED, 0x10000000)\n"
        "mremap(0x10097000, 8192, 16384, MREMAP_MAYMOVE)\n"
        "mmap(0x10200000, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED, z, 0)\n"
        "write 0x10200000, 8K\n"
        "mremap(0x10200000, 65536, 65536, MREMAP_MAYMOVE|MREMAP_FIXED, 0x10300000)\n"
        "show smaps\n")


def test_mmap_flag_checks_agree_with_kernel() -> None:
    """MAP_HUGETLB on a regular file or with a page size the machine has no hstate for is -EINVAL;
    MAP_SHARED ignores flags it does not know, MAP_SHARED_VALIDATE refuses them (-EOPNOTSUPP, also
    MAP_FIXED_NOREPLACE); ext4 refuses MAP_SYNC whatever the mapping type (no DAX); an invalid mapping
    type with every flag set is -EINVAL."""
    check_agreement(
        f'fd = openat(AT_FDCWD, "{DATA}", O_RDWR)\n'
        "mmap(NULL, 4096, PROT_READ, -1, -1, 0)\n"
        "mmap(NULL, 4096, PROT_READ, 0xffffffff, -1, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB, -1, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_1GB, -1, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|0xfc000000, -1, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_HUGETLB, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED|MAP_HUGETLB, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, 8, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, 8|MAP_ANONYMOUS|MAP_HUGETLB, -1, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE|0x40000000, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE|0x80000000, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE|MAP_FIXED_NOREPLACE, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED|MAP_FIXED_NOREPLACE, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED|0x80000000, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE|MAP_SYNC, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED|MAP_SYNC, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_SYNC, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_SYNC, -1, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE|MAP_ANONYMOUS, -1, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_UNINITIALIZED, -1, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|0x40000000, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, 0, fd, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_ANONYMOUS, -1, 0)\n"
        "show smaps\n")


def test_special_mappings_are_never_split() -> None:
    """[vvar] lies just above the first unhinted mapping: unmapping, remapping over, mprotecting or
    madvising part of it needs a split, which special_mapping_split refuses (-EINVAL); mremap of it is
    -EFAULT, and a munmap that reaches into it keeps the split it already made below it."""
    check_agreement(
        "a = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
        "munmap(a + 8K, 4096)\n"
        "mmap(a + 8K, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
        "mprotect(a + 8K, 4096, PROT_NONE)\n"
        "mremap(a + 8K, 4096, 8192, 0)\n"
        "madvise(a + 8K, 4096, MADV_DONTFORK)\n"
        "mlock(a + 8K, 4096)\n"
        "munmap(a + 4K, 8K)\n"
        "show maps\n")


def test_fcntl_agrees_with_kernel() -> None:
    """F_GETFL after open() with every kind of flag (O_CLOEXEC, the creation flags and unknown bits
    dropped, O_LARGEFILE added, O_PATH keeping almost nothing) and after F_SETFL (only O_APPEND,
    O_NONBLOCK, O_DIRECT and O_NOATIME change; O_DIRECT refused on /dev/zero); an O_PATH descriptor
    takes only the descriptor commands; the signal, owner, lease, notify, pipe and seal commands; an
    unknown command is -EINVAL; O_CREAT|O_EXCL of an existing file is -EEXIST."""
    check_agreement(
        f'a = openat(AT_FDCWD, "{DATA}", O_RDONLY|O_CLOEXEC)\n'
        "fcntl(a, F_GETFL)\n"
        f'openat(AT_FDCWD, "{DATA}", O_WRONLY|O_APPEND|O_CREAT|O_TRUNC|O_EXCL)\n'
        f'b = openat(AT_FDCWD, "{DATA}", O_WRONLY|O_APPEND|O_CREAT|O_NOCTTY)\n'
        "fcntl(b, F_GETFL)\n"
        f'c = openat(AT_FDCWD, "{DATA}", O_RDWR|O_NONBLOCK|O_DSYNC|O_DIRECT|O_NOATIME|O_NOFOLLOW|0x100000)\n'
        "fcntl(c, F_GETFL)\n"
        'd = openat(AT_FDCWD, "/tmp", O_RDONLY|O_DIRECTORY)\n'
        "fcntl(d, F_GETFL)\n"
        f'e = openat(AT_FDCWD, "{DATA}", O_PATH)\n'
        "fcntl(e, F_GETFL)\n"
        "fcntl(e, F_SETFL, 0)\n"
        "fcntl(e, F_GETSIG)\n"
        "fcntl(e, F_DUPFD, 0)\n"
        "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, e, 0)\n"
        "read(e, 0x1000, 4096)\n"
        "lseek(e, 0, 0)\n"
        f'f = openat(AT_FDCWD, "{DATA}", O_RDWR|0x40000000)\n'
        "fcntl(f, F_GETFL)\n"
        "fcntl(a, F_SETFL, O_APPEND|O_NONBLOCK|O_DIRECT|O_NOATIME|O_RDWR|O_ASYNC)\n"
        "fcntl(a, F_GETFL)\n"
        "fcntl(a, F_SETFL, 0)\n"
        "fcntl(a, F_GETFL)\n"
        'z = openat(AT_FDCWD, "/dev/zero", O_RDWR)\n'
        "fcntl(z, F_GETFL)\n"
        "fcntl(z, F_SETFL, O_DIRECT)\n"
        "fcntl(z, F_SETFL, O_APPEND)\n"
        "fcntl(z, F_GETFL)\n"
        "fcntl(a, F_GETSIG)\n"
        "fcntl(a, F_SETSIG, 10)\n"
        "fcntl(a, F_GETSIG)\n"
        "fcntl(a, F_SETSIG, 65)\n"
        "fcntl(a, F_SETSIG, 64)\n"
        "fcntl(a, F_GETOWN)\n"
        "fcntl(a, F_SETOWN, 0)\n"
        "fcntl(a, F_GETLEASE)\n"
        "fcntl(a, F_NOTIFY, 0)\n"
        "fcntl(d, F_NOTIFY, 0)\n"
        "fcntl(a, F_SETPIPE_SZ, 4096)\n"
        "fcntl(a, F_GETPIPE_SZ)\n"
        "fcntl(a, F_GET_SEALS)\n"
        "fcntl(a, F_ADD_SEALS, 1)\n"
        "fcntl(b, F_ADD_SEALS, 1)\n"
        "fcntl(a, F_DUPFD_QUERY, a)\n"
        "fcntl(a, F_DUPFD_QUERY, b)\n"
        "fcntl(a, F_DUPFD_QUERY, 99)\n"
        "fcntl(a, F_CREATED_QUERY)\n"
        "fcntl(a, F_DUPFD, 5000)\n"
        "fcntl(a, 12345)\n"
        "fcntl(a, -1)\n")


def test_fork_copies_page_tables_as_kernel() -> None:
    """fork copies the entries of a VMA only where vma_needs_copy() (an anon_vma, or VM_PFNMAP like
    [vvar]), but copy_pte_range gives the child every table the parent has over such a VMA's range
    before it looks at the entries: a MADV_WIPEONFORK page next to [vvar] leaves the child a PTE table
    there, through [vvar]'s copy (the model had none: VmPTE +4 kB on the child's first write, the
    kernel +0; found by the MADV_FREE work), and a read-only neighbour without an anon_vma keeps its
    zero-page entries out of the child while sharing the table."""
    check_agreement(
        "a = mmap(0x10000000, 8K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
        "b = mmap(0x10002000, 8K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
        "write a, 4K\n"
        "read b, 8K\n"
        "c = mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
        "madvise(c, 8192, MADV_WIPEONFORK)\n"
        "write c, 4K\n"
        "show status\n"
        "child = fork()\n"
        "@child show status\n"
        "@child read b, 8K\n"
        "@child write c + 4K, 4K\n"
        "@child show counters\n"
        "@child show pagemap 0x10000000, 0x4000\n"
        "process main\n"
        "child2 = fork()\n"
        "@child2 write c + 4K, 4K\n"
        "@child2 show counters\n")


def test_write_and_sync_calls_agree_with_kernel() -> None:
    """write()/pwrite64() results (-EBADF on a read-only fd, -EFAULT from an unmapped buffer, -EINVAL
    for a negative offset, a write far past EOF), the large folios the writes leave, and the argument
    checks of fsync/fdatasync (-EINVAL on /dev/null), sync_file_range (-EBADF first, then -EINVAL for
    an unknown flag, a negative offset, a range that ends below its start or past the loff_t range,
    then -ESPIPE for a character device), msync and ftruncate."""
    check_agreement(
        f'fd = openat(AT_FDCWD, "{DATA}", O_RDWR)\n'
        f'ro = openat(AT_FDCWD, "{DATA}", O_RDONLY)\n'
        'n = openat(AT_FDCWD, "/dev/null", O_RDWR)\n'
        "buf = mmap(NULL, 256K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
        "m = mmap(NULL, 64K, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)\n"
        "pwrite64(fd, buf, 100K, 64K)\n"
        "write(ro, buf, 4096)\n"
        "write(n, buf, 4096)\n"
        "write(fd, 0x1000, 4096)\n"
        "pwrite64(fd, buf, 4096, -1)\n"
        "pwrite64(fd, buf, 64K + 10, 1M - 10)\n"
        f"show folios {DATA}\n"
        "fsync(fd)\n"
        "fsync(999)\n"
        "fsync(n)\n"
        "fdatasync(n)\n"
        "fdatasync(ro)\n"
        "sync_file_range(fd, 0, 0, 8)\n"
        "sync_file_range(fd, -4096, 4096, SYNC_FILE_RANGE_WRITE)\n"
        "sync_file_range(fd, 100, -1, SYNC_FILE_RANGE_WRITE)\n"
        "sync_file_range(fd, 0x7fffffffffffffff, 2, SYNC_FILE_RANGE_WRITE)\n"
        "sync_file_range(999, 0, 0, 8)\n"
        "sync_file_range(n, 0, 0, SYNC_FILE_RANGE_WRITE)\n"
        "sync_file_range(ro, 0, 0, SYNC_FILE_RANGE_WRITE_AND_WAIT)\n"
        "sync_file_range(fd, 0, 0, 0)\n"
        "write m, 4096\n"
        "msync(m + 1, 4096, MS_SYNC)\n"
        "msync(m, 4096, MS_SYNC|MS_ASYNC)\n"
        "msync(m, 4096, 8)\n"
        "msync(m, 4096, MS_SYNC)\n"
        "msync(m, 4096, MS_INVALIDATE)\n"
        "ftruncate(fd, -1)\n"
        "ftruncate(ro, 0)\n"
        "ftruncate(n, 0)\n"
        "ftruncate(fd, 8K + 100)\n"
        f"show folios {DATA}\n")


def test_mbind_checks_agree_with_kernel() -> None:
    """mbind()'s checks in the kernel's order (examples/mbind.vml walks its splits and merges): the
    mode is an int (high bits of the argument dropped), unknown modes and flag combinations refused,
    unknown flags beyond bit 31 dropped (an unsigned int), a length that wraps to 0 is a no-op and
    one that wraps past the address space is -EINVAL, a nodemask-less MPOL_INTERLEAVE or
    MPOL_WEIGHTED_INTERLEAVE is -EINVAL, the [vdso] cannot be split (-EINVAL) and the vsyscall
    page is no VMA (-EFAULT); the maps afterwards show the policies set."""
    check_agreement(
        "a = mmap(0x10000000, 64K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
        "mbind(a, 4K, 0x100000004, NULL, 0, 0)\n"
        "mbind(a, 4K, -1, NULL, 0, 0)\n"
        "mbind(a, 4K, MPOL_LOCAL, NULL, 0, 0x100000000)\n"
        "mbind(a, -4096, MPOL_LOCAL, NULL, 0, 0)\n"
        "mbind(a, -1, MPOL_LOCAL, NULL, 0, 0)\n"
        "mbind(a + 8K, 4K, MPOL_PREFERRED|MPOL_F_RELATIVE_NODES|MPOL_F_STATIC_NODES, NULL, 0, 0)\n"
        "mbind(a + 8K, 4K, MPOL_LOCAL, NULL, 1<<40, MPOL_MF_MOVE_ALL)\n"
        "mbind(a + 16K, 4K, MPOL_INTERLEAVE|MPOL_F_NUMA_BALANCING, NULL, 0, 0)\n"
        "mbind(a + 16K, 4K, MPOL_WEIGHTED_INTERLEAVE, NULL, 0, 0)\n"
        "mbind(0x7ffff7ffb000, 4K, MPOL_LOCAL, NULL, 0, 0)\n"
        "mbind(0xffffffffff600000, 4K, MPOL_LOCAL, NULL, 0, 0)\n"
        "show maps\n")


def test_madv_cold_ages_what_it_covers_as_the_kernel() -> None:
    """MADV_COLD clears the young bit of the range's exclusive folios and their PG_referenced:
    smaps' Referenced drops for them (it stayed in the model, found by an explore run of
    test_diff_random: a populated page, then MADV_COLD). MADV_PAGEOUT leaves the young bit (the
    model cleared it: the same explore seed, run again): with no swap on this host the page stays,
    Referenced. A file mapping read through, a COW-shared anon range (a fork child's pages mapped
    twice are left alone), a THP covered whole (its PMD made old) and one covered in part (its PMD
    split, the pages in the range aged, the rest still young)."""
    check_agreement(
        f'fd = openat(AT_FDCWD, "{DATA}", O_RDONLY)\n'
        "m = mmap(NULL, 64K, PROT_READ, MAP_PRIVATE, fd, 0)\n"
        "read m, 64K\n"
        "p = mmap(0x10094000, 4096, PROT_READ|PROT_WRITE,"
        " MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED|MAP_POPULATE, -1, 0)\n"
        "a = mmap(NULL, 256K, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
        "write a, 256K\n"
        "child = fork()\n"
        "madvise(m, 32K, MADV_COLD)\n"
        "madvise(p, 4096, MADV_COLD)\n"
        "q = mmap(0x10098000, 4096, PROT_READ|PROT_WRITE,"
        " MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED|MAP_POPULATE, -1, 0)\n"
        "madvise(q, 4096, MADV_PAGEOUT)\n"
        "madvise(a, 128K, MADV_COLD)\n"
        "show smaps\n"
        "@child madvise(a + 128K, 128K, MADV_COLD)\n"
        "@child show smaps\n"
        "b = mmap(NULL, 8M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
        "madvise(b, 8M, MADV_HUGEPAGE)\n"
        "write b, 8M\n"
        "madvise(b, 4M, MADV_COLD)\n"
        "madvise(b + 4M + 4K, 8K, MADV_COLD)\n"
        "show smaps\n")


def test_a_write_to_a_thp_a_fork_child_still_maps_in_part_copies_the_page() -> None:
    """After fork, the child writes the first page of a THP (its PMD split, that page copied) and
    unmaps it; the parent's THP is then mapped once by the parent's PMD and by 511 of the child's
    PTEs. The parent's write must not reuse it (folio_ref_count > 1): its PMD is split and the page
    copied, the child keeping the old one. The model reused the THP, the PMD writable over pages the
    child maps (the explore profile of test_pressure_invariants found it)."""
    check_agreement(
        "h = mmap(NULL, 4M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
        "madvise(h, 4M, MADV_HUGEPAGE)\n"
        "write h, 2M\n"
        "child = fork()\n"
        "@child write h\n"
        "@child munmap(h, 4096)\n"
        "write h + 8K\n"
        "show smaps\n"
        "show pagemap h, 16K verbose\n"
        "@child show smaps\n"
        "@child show pagemap h, 16K verbose\n")


def test_a_file_the_scenario_creates_is_a_file_of_its_directorys_mount() -> None:
    """open(O_CREAT) of a new file in /tmp (ext4 here) makes an ext4 file in the model too: its
    writes take large folios (one 1 MiB write: one order-8 folio on both). Before, the model's new
    files had no large folios (256 single pages), whatever the directory's filesystem. The model runs
    first, while the host has no such file; the scenario removes it at its end."""
    path = f"/tmp/vmlab-diff-created-{os.getpid()}.dat"
    try:
        check_agreement(
            f'fd = openat(AT_FDCWD, "{path}", O_RDWR|O_CREAT|O_EXCL, 0600)\n'
            "buf = mmap(NULL, 1M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "write buf, 1M\n"
            "pwrite64(fd, buf, 1M, 0)\n"
            "pwrite64(fd, buf, 24K, 1M + 8K)\n"
            f"show folios {path}\n"
            f'unlink("{path}")\n')
    finally:
        if os.path.exists(path):
            os.unlink(path)
