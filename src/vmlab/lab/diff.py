"""`vmlab diff`: run one scenario on the model and on the running kernel and compare them step by step.

Every call result, access outcome and shown view is compared; what the kernel makes nondeterministic is
masked first (reference §6 N1: the inode numbers of `/dev/zero (deleted)` and `/memfd:` mappings). For
smaps, only the header lines and the fields the model printed are compared.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

from vmlab.backend import Backend, Program
from vmlab.lab.run import COMPARED, Runner, Transcript, default_program
from vmlab.lab.scenario import Scenario

_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S{4} [0-9a-f]+ \S+ \d+")
_SHOW_SMAPS = re.compile(r"^(@\S+ )?show smaps$", re.MULTILINE)
_SHMEM = re.compile(r"^(\S+ \S+ \S+ \S+) \d+\s+(/dev/zero \(deleted\)|/memfd:.*)$")


def mask(text: str) -> str:
    """`text` with the inode number (and its padding) of shmem and memfd maps lines replaced by `*`."""
    return "\n".join(_SHMEM.sub(r"\1 * \2", line) for line in text.split("\n"))


def smaps_fields(text: str) -> set[str]:
    """The field names (`Size`, `VmFlags`, ...) that appear in an smaps text."""
    return {line.split(":", 1)[0] for line in text.splitlines()[1:]
            if ":" in line and not _HEADER.match(line)}


#: smaps fields that do not depend on which pages are present.
_VMA_FIELDS = frozenset({"Size", "KernelPageSize", "MMUPageSize", "THPeligible", "VmFlags"})


def keep_fields(text: str, fields: set[str], program_vmas: list[tuple[int, int]]) -> str:
    """An smaps text reduced to its header lines and the lines of `fields`. In the blocks of VMAs that
    overlap the program's own (whose pages its own code touches, which only the host runs: reference
    §6 N6) only the fields that do not depend on present pages are kept."""
    out, page_fields = [], True
    for i, line in enumerate(text.split("\n")):
        if i == 0 or _HEADER.match(line):
            lo, _, hi = line.split(" ", 1)[0].partition("-")
            if i and lo and hi:
                start, end = int(lo, 16), int(hi, 16)
                page_fields = not any(s < end and start < e for s, e in program_vmas)
            out.append(line)
            continue
        name = line.split(":", 1)[0]
        if name in fields and (page_fields or name in _VMA_FIELDS):
            out.append(line)
    return "\n".join(out)


def by_step(transcript: Transcript) -> dict[int, str]:
    """The compared records of a transcript joined per step."""
    out: dict[int, list[str]] = {}
    for rec in transcript.records:
        if rec.kind in COMPARED:
            out.setdefault(rec.step, []).append(mask(rec.text))
    return {step: "\n".join(texts) for step, texts in out.items()}


@dataclass(frozen=True)
class Difference:
    """One step where the model and the kernel disagree, as a unified diff."""

    line: int
    source: str
    diff: str


def compare(scenario: Scenario, model: Transcript, kernel: Transcript) -> list[Difference]:
    """Every step whose compared output differs between the two transcripts."""
    m, k = by_step(model), by_step(kernel)
    out = []
    for step in sorted(set(m) | set(k)):
        mt, kt = m.get(step, ""), k.get(step, "")
        if _SHOW_SMAPS.search(mt):
            fields = smaps_fields(mt)
            mt, kt = (keep_fields(mt, fields, model.program_vmas),
                      keep_fields(kt, fields, model.program_vmas))
        if mt == kt:
            continue
        src = scenario.steps[step]
        diff = "\n".join(difflib.unified_diff(mt.split("\n"), kt.split("\n"), "model", "kernel",
                                              lineterm="", n=3))
        out.append(Difference(src.line, src.source, diff))
    return out


def diff_scenario(scenario: Scenario, model: Backend, host: Backend, program: Program | None = None,
                  out: Callable[[str], None] | None = None) -> list[Difference]:
    """Run `scenario` on both backends (closing them) and return the differences, printing each to `out`."""
    program = program or scenario.program or default_program()
    transcripts = []
    for backend in (model, host):
        try:
            transcripts.append(Runner(scenario, backend, program).run())
        finally:
            backend.close()
    diffs = compare(scenario, *transcripts)
    for d in diffs if out is not None else []:
        assert out is not None
        out(f"{scenario.path}:{d.line}: model and kernel differ at: {d.source}\n{d.diff}")
    return diffs
