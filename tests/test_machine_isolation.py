"""Two model machines in one process share no kernel state: what one machine's reclaim leaves behind
(a shadow entry of an evicted page of the built-in program) must not reach the next machine, whose
first touch of that page brings it in afresh, not as a refault of a page it never had.

(Before the fix every machine's built-in program inode shared the shadow dict of one module-level
inode, so a test's results depended on which tests ran before it in the same process.)
"""

from __future__ import annotations

from vmlab.backend import Program, Settings
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.filemap import replay_reads
from vmlab.kernel.machine import ModelBackend

RAM = 32 << 20
TEXT = 0x401000  # the built-in program's text page (file page 1)
O_RDONLY, AT_FDCWD = 0, -100


def _machine() -> tuple[ModelBackend, int]:
    backend = ModelBackend(RAM)
    pid = backend.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=RAM))
    return backend, pid


def test_a_machines_evictions_leave_no_shadows_in_the_next() -> None:
    first, pid = _machine()
    try:
        assert first.access(pid, TEXT, 4096, False) is None
        assert first.syscall(pid, "munmap", (TEXT, 4096)) == 0  # cached, unmapped: reclaimable
        first.create_file("/big", 2 * RAM)
        fd = first.syscall(pid, "openat", (AT_FDCWD, "/big", O_RDONLY, 0))
        replay_reads(first.mem, first.tasks[pid].files[fd], range(2 * RAM >> 12))
        assert 1 in first._inode(BUILTIN_PROGRAM).shadows  # the text page was evicted, with a shadow
    finally:
        first.close()
    second, pid = _machine()
    try:
        assert not second._inode(BUILTIN_PROGRAM).shadows
        assert second.access(pid, TEXT, 4096, False) is None
        events = second.mem.events
        assert events["workingset_refault_file"] == 0 and events["workingset_activate_file"] == 0
        assert 1 in second._inode(BUILTIN_PROGRAM).i_pages
    finally:
        second.close()
