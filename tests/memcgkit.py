"""A model machine whose first process runs in a memory cgroup, and a writer driven until it is
killed: what the model-side memcg tests and their host comparisons share."""

from __future__ import annotations

from vmlab.backend import Program, Settings
from vmlab.host.oracle import HostBackend
from vmlab.kernel.binfmt_elf import BUILTIN_PROGRAM
from vmlab.kernel.machine import ModelBackend
from vmlab.kernel.memcontrol import MemCgroup

MB = 1 << 20


def memcg_machine(limit: int, ram: int = 256 * MB) -> tuple[ModelBackend, int, MemCgroup]:
    """A model machine of `ram` bytes whose first process runs in memcg /t of `limit` bytes."""
    model = ModelBackend(ram)
    pid = model.start(Program(BUILTIN_PROGRAM, (BUILTIN_PROGRAM,)), Settings(ram=ram))
    assert model.memcg_create("/t", limit) == 0 and model.memcg_attach(pid, "/t") == 0
    memcg = model.memcgs.lookup("/t")
    assert memcg is not None
    return model, pid, memcg


def writes_until_killed(backend: ModelBackend | HostBackend, pid: int, addr: int, length: int,
                        stride: int) -> tuple[int, str | None]:
    """Write one byte every `stride` bytes of [addr, addr + length) until an access is refused: (the
    writes that went through, the signal that ended them, None when all did)."""
    done = 0
    for off in range(0, length, stride):
        sig = backend.access(pid, addr + off, 1, True)
        if sig is not None:
            return done, sig
        done += 1
    return done, None
