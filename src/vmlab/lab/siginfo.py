"""The siginfo strace would print for an access that killed a process, worked out from the maps before it.

Backends report only the signal's name; `si_code`/`si_addr` follow the x86 fault rules
(arch/x86/mm/fault.c:access_error(), mm/filemap.c:filemap_fault() beyond EOF):
- no VMA covers the address → SIGSEGV/SEGV_MAPERR;
- a write to a VMA without VM_WRITE, or any access to a PROT_NONE VMA → SIGSEGV/SEGV_ACCERR
  (x86 lets a read through on any of r, w, x);
- a file page at or beyond EOF → SIGBUS/BUS_ADRERR.
Deliberately approximate where the maps text cannot say: stack growth below `[stack]` is not modelled
here, so the first uncovered page is blamed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from vmlab.kernel.uapi import PAGE_MASK, PAGE_SIZE

_LINE = re.compile(r"([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ (\d+)\s*(.*)$")


@dataclass(frozen=True)
class MapsLine:
    """One parsed /proc/PID/maps line."""

    start: int
    end: int
    perms: str
    offset: int
    inode: int
    name: str


def parse_maps(text: str) -> list[MapsLine]:
    """The VMAs of a maps text, in order (lines that do not parse are skipped)."""
    out = []
    for line in text.splitlines():
        if m := _LINE.match(line):
            out.append(MapsLine(int(m.group(1), 16), int(m.group(2), 16), m.group(3), int(m.group(4), 16),
                                int(m.group(5)), m.group(6).strip()))
    return out


def touched(addr: int, length: int) -> Iterator[int]:
    """The addresses Backend.access touches: `addr`, then the start of every later page in the range
    (one at a time: the range may be far larger than memory)."""
    yield addr
    page = (addr & PAGE_MASK) + PAGE_SIZE
    while page < addr + max(length, 1):
        yield page
        page += PAGE_SIZE


def _file_pages(vma: MapsLine) -> int | None:
    """Pages of the mapped file (ceil(size/4096)), or None when it is not a regular host file."""
    if not vma.inode or not vma.name.startswith("/") or vma.name.endswith("(deleted)"):
        return None
    try:
        size = os.stat(vma.name).st_size
    except OSError:
        return None
    return (size + PAGE_SIZE - 1) // PAGE_SIZE


def fault(maps: str, addr: int, length: int, write: bool, signal: str) -> str | None:
    """strace's `--- SIG {si_signo=..., si_code=..., si_addr=...} ---` line for an access that a
    fault signal (SIGSEGV, SIGBUS) killed; None for any other signal: a SIGKILL (the OOM killer's)
    kills without a signal-delivery stop, so strace prints only `+++ killed by SIGKILL +++`."""
    if signal not in ("SIGSEGV", "SIGBUS"):
        return None
    vmas = parse_maps(maps)
    code, where = ("BUS_ADRERR" if signal == "SIGBUS" else "SEGV_MAPERR"), addr
    for t in touched(addr, length):
        vma = next((v for v in vmas if v.start <= t < v.end), None)
        if vma is None:
            code, where = "SEGV_MAPERR", t
            break
        if (write and vma.perms[1] != "w") or vma.perms[:3] == "---":
            code, where = "SEGV_ACCERR", t
            break
        pages = _file_pages(vma)
        if pages is not None and vma.offset // PAGE_SIZE + (t - vma.start) // PAGE_SIZE >= pages:
            code, where = "BUS_ADRERR", t
            break
    signo = "SIGBUS" if code.startswith("BUS") else "SIGSEGV"
    return f"--- {signo} {{si_signo={signo}, si_code={code}, si_addr={where:#x}}} ---"
