"""`vmlab diff` machinery on two fake backends: masking, smaps field selection, per-step unified diffs."""

from __future__ import annotations

import pytest

from fake_backend import TOP, FakeBackend
from vmlab.backend import Arg, Program
from vmlab.kernel.fs import host_shmem_devices
from vmlab.lab.diff import diff_scenario, keep_fields, mask, view_fields
from vmlab.lab.run import Runner
from vmlab.lab.scenario import parse

PROG = Program("/bin/prog", ("/bin/prog",))


class Shifted(FakeBackend):
    """A 'kernel' that places unhinted mmaps one page lower than the fake model."""

    def syscall(self, pid: int, name: str, args: tuple[Arg, ...]) -> int:
        """mmap(NULL, ...) lands a page lower; everything else as the fake."""
        if name == "mmap" and args[0] == 0:
            args = (TOP - 2 * 4096 - int(args[1]), *args[1:])  # type: ignore[arg-type]
        return super().syscall(pid, name, args)


def test_agreeing_backends_have_no_differences() -> None:
    scn = parse("mmap(0x10000000, 4K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\nshow maps\n")
    assert diff_scenario(scn, FakeBackend(), FakeBackend(), PROG) == []


def test_differences_are_unified_diffs_labelled_model_kernel() -> None:
    scn = parse("mmap(NULL, 4K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nshow maps\n", "s.vml")
    out: list[str] = []
    diffs = diff_scenario(scn, FakeBackend(), Shifted(), PROG, out=out.append)
    assert [d.line for d in diffs] == [1, 2]
    assert diffs[0].diff.splitlines()[:2] == ["--- model", "+++ kernel"]
    assert "-mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7ffe000" in diffs[0].diff
    assert "+mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7ffc000" in diffs[0].diff
    assert out[0].startswith("s.vml:1: model and kernel differ at: mmap(NULL, 4K")


def test_a_backend_note_is_shown_but_not_a_difference() -> None:
    """A kernel with something acting from outside (a DAMON scheme) says so in its transcript's notes,
    after the execve line; a note alone makes no difference."""
    kernel = FakeBackend()
    kernel.outside = ["kdamond 0 (paddr 0x100000000-0x1e0000000): pageout: DAMON acts on pages"]
    scn = parse("mmap(0x10000000, 4K, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n")
    out: list[str] = []
    assert diff_scenario(scn, FakeBackend(), kernel, PROG, out=out.append) == []
    transcript = Runner(scn, kernel, PROG).run()
    notes = [r.text for r in transcript.records if r.kind == "note"]
    assert notes[1] == f"# fake: note: {kernel.outside[0]}"
    assert notes[0].startswith("# fake: execve(")


def test_shmem_inodes_are_masked() -> None:
    a = "7ffff7ff4000-7ffff7ff6000 rw-s 00000000 00:01 13                         /dev/zero (deleted)"
    b = "7ffff7ff4000-7ffff7ff6000 rw-s 00000000 00:01 2051                       /dev/zero (deleted)"
    c = "7ffff7ff4000-7ffff7ff6000 rw-s 00000000 00:01 7                          /memfd:x (deleted)"
    assert mask(a) == mask(b) != a
    assert mask(c).endswith("00:01 * /memfd:x (deleted)")
    plain = "00400000-00401000 r--p 00000000 fe:00 2147290                            /srv/exp/stepper"
    assert mask(plain) == plain


def test_inodes_on_the_hosts_tmpfs_mounts_are_masked() -> None:
    """A file made in /dev/shm gets its inode number from the host's tmpfs count since boot: masked
    on the lines of a tmpfs mount's device, as the mountinfo of this host lists them."""
    devs = sorted(host_shmem_devices())
    if not devs:
        pytest.skip("no tmpfs mount on this host")
    a = f"7ffff7200000-7ffff7300000 rw-s 00000000 {devs[0]} 8                          /dev/shm/psm_2bc8f3c0"
    b = f"7ffff7200000-7ffff7300000 rw-s 00000000 {devs[0]} 2                          /dev/shm/psm_2bc8f3c0"
    assert mask(a) == mask(b) == f"7ffff7200000-7ffff7300000 rw-s 00000000 {devs[0]} * /dev/shm/psm_2bc8f3c0"
    elsewhere = "7ffff7200000-7ffff7300000 rw-s 00000000 fe:00 8                          /srv/data"
    assert "fe:00" not in devs and mask(elsewhere) == elsewhere


def test_smaps_compares_only_the_model_fields() -> None:
    model = "show smaps\n00400000-00401000 r--p 00000000 fe:00 1  /x\nVmFlags: rd mr mw me "
    kernel = ("show smaps\n00400000-00401000 r--p 00000000 fe:00 1  /x\nSize:                  4 kB\n"
              "Rss:                   4 kB\nVmFlags: rd mr mw me ")
    assert view_fields(model) == {"VmFlags"}
    assert keep_fields(kernel, {"VmFlags"}, []) == model
