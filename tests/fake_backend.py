"""A dict-based toy Backend for the lab's own tests: enough mmap/munmap/mprotect/brk/fork to drive the
runner, deliberately not the model (no merging rules beyond "adjacent anon with equal prot")."""

from __future__ import annotations

from dataclasses import dataclass

from vmlab.backend import Arg, Program, Settings
from vmlab.kernel import uapi

TOP = 0x7FFFF7FFF000
BRK = 0x4AC000


@dataclass
class Vma:
    """A toy VMA."""

    start: int
    end: int
    prot: int
    name: str = ""


@dataclass
class Proc:
    """A toy process: its VMAs and brk."""

    vmas: list[Vma]
    brk: int = BRK
    fds: dict[int, str] | None = None


def _perms(prot: int) -> str:
    return "".join(c if prot & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4))) + "p"


class FakeBackend:
    """Implements vmlab.backend.Backend over Python lists; every call is recorded in `calls`."""

    name = "fake"

    def __init__(self) -> None:
        self.procs: dict[int, Proc] = {}
        self.next_pid = 100
        self.calls: list[tuple[int, str, tuple[Arg, ...]]] = []
        self.closed = False
        #: What notes() returns.
        self.outside: list[str] = []

    def start(self, program: Program, settings: Settings) -> int:
        """A process with a text VMA named after the program and a stack."""
        del settings
        return self._new(Proc([Vma(0x400000, 0x401000, 5, program.path),
                               Vma(0x7FFFFFFDE000, 0x7FFFFFFFF000, 3, "[stack]")]))

    def notes(self) -> list[str]:
        """The lines set in `outside`."""
        return list(self.outside)

    def _new(self, proc: Proc) -> int:
        self.next_pid += 1
        self.procs[self.next_pid] = proc
        return self.next_pid

    def _unmap(self, proc: Proc, start: int, end: int) -> None:
        out = []
        for v in proc.vmas:
            if v.end <= start or v.start >= end:
                out.append(v)
                continue
            if v.start < start:
                out.append(Vma(v.start, start, v.prot, v.name))
            if v.end > end:
                out.append(Vma(end, v.end, v.prot, v.name))
        proc.vmas = sorted(out, key=lambda v: v.start)

    def _free(self, proc: Proc, start: int, end: int) -> bool:
        return all(v.end <= start or v.start >= end for v in proc.vmas)

    def syscall(self, pid: int, name: str, args: tuple[Arg, ...]) -> int:
        """mmap (anon), munmap, mprotect, brk; anything else is -ENOSYS."""
        self.calls.append((pid, name, args))
        proc = self.procs[pid]
        if name == "mmap":
            addr, length, prot, flags = (int(a) for a in args[:4])  # type: ignore[call-overload]
            length = uapi.page_align(length)
            if flags & uapi.MAP_FIXED_NOREPLACE and not self._free(proc, addr, addr + length):
                return -uapi.EEXIST
            if not flags & (uapi.MAP_FIXED | uapi.MAP_FIXED_NOREPLACE) and not (
                    addr and self._free(proc, addr, addr + length)):
                addr = TOP - length
                while not self._free(proc, addr, addr + length):
                    addr -= uapi.PAGE_SIZE
            path = ""
            if not flags & uapi.MAP_ANONYMOUS:
                if proc.fds is None or int(args[4]) not in proc.fds:  # type: ignore[arg-type]
                    return -uapi.EBADF
                path = proc.fds[int(args[4])]  # type: ignore[arg-type]
            self._unmap(proc, addr, addr + length)
            proc.vmas = sorted([*proc.vmas, Vma(addr, addr + length, prot, path)], key=lambda v: v.start)
            return addr
        if name == "munmap":
            addr, length = int(args[0]), uapi.page_align(int(args[1]))  # type: ignore[arg-type]
            if addr & ~uapi.PAGE_MASK:
                return -uapi.EINVAL
            self._unmap(proc, addr, addr + length)
            return 0
        if name == "mprotect":
            addr, length, prot = (int(a) for a in args)  # type: ignore[call-overload]
            end = addr + uapi.page_align(length)
            hit = [Vma(max(v.start, addr), min(v.end, end), prot, v.name)
                   for v in proc.vmas if v.start < end and v.end > addr]
            self._unmap(proc, addr, end)
            proc.vmas = sorted(proc.vmas + hit, key=lambda v: v.start)
            return 0
        fds = proc.fds if proc.fds is not None else {}
        proc.fds = fds
        if name == "openat":
            fd = min(set(range(3, 1024)) - set(fds))
            fds[fd] = str(args[1])
            return fd
        if name == "close":
            return 0 if fds.pop(int(args[0]), None) is not None else -uapi.EBADF  # type: ignore[arg-type]
        if name == "dup":
            if int(args[0]) not in fds:  # type: ignore[arg-type]
                return -uapi.EBADF
            fd = min(set(range(3, 1024)) - set(fds))
            fds[fd] = fds[int(args[0])]  # type: ignore[arg-type]
            return fd
        if name == "brk":
            want = int(args[0])  # type: ignore[arg-type]
            if want > proc.brk:
                proc.vmas = sorted([*proc.vmas, Vma(proc.brk, uapi.page_align(want), 3, "[heap]")],
                                   key=lambda v: v.start)
                proc.brk = want
            return proc.brk
        return -38

    def access(self, pid: int, addr: int, length: int, write: bool) -> str | None:
        """SIGSEGV when a touched page has no VMA or lacks the permission."""
        for page in range(addr & uapi.PAGE_MASK, addr + max(length, 1), uapi.PAGE_SIZE):
            v = next((v for v in self.procs[pid].vmas if v.start <= page < v.end), None)
            if v is None or (write and not v.prot & 2):
                return "SIGSEGV"
        return None

    def fork(self, pid: int) -> int:
        """Copy the VMA list."""
        src = self.procs[pid]
        return self._new(Proc([Vma(v.start, v.end, v.prot, v.name) for v in src.vmas], src.brk,
                              dict(src.fds or {})))

    def exit(self, pid: int) -> None:
        """Forget the process."""
        del self.procs[pid]

    def view(self, pid: int, name: str) -> str:
        """maps lines in the kernel's format (names padded to column 73); smaps = maps + Size."""
        lines = []
        for v in self.procs[pid].vmas:
            head = f"{v.start:08x}-{v.end:08x} {_perms(v.prot)} 00000000 00:00 0 "
            line = head + (" " * max(0, 72 - len(head)) + " " + v.name if v.name else "")
            lines.append(line)
            if name == "smaps":
                lines.append(f"Size:           {(v.end - v.start) >> 10:8} kB")
        return "".join(line + "\n" for line in lines)

    def close(self) -> None:
        """Nothing to stop."""
        self.closed = True
