"""`vmlab diff`: run one scenario on the model and on the running kernel and compare them step by step.

Every call result, access outcome and shown view is compared; what the kernel makes nondeterministic is
masked first (reference §6 N1: the inode numbers of `/dev/zero (deleted)` and `/memfd:` mappings, and
of files on the host's tmpfs mounts, such as /dev/shm, which the model numbers itself when they are
made in a run, the host's tmpfs by its own count since boot). One
rule serves every /proc text view (maps, smaps, smaps_rollup, status): header lines are compared, and of
the `Field: value` lines only those whose field the model printed. The paging views (counters,
pagemap) are compared whole.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

from vmlab.backend import Backend, Program
from vmlab.errors import InputError
from vmlab.kernel.fs import host_shmem_devices
from vmlab.lab.run import COMPARED, Record, Runner, Transcript, default_program
from vmlab.lab.scenario import MAIN, CallStep, EarlyoomStep, ForkStep, HogStep, JoinStep, Scenario

_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S{4} [0-9a-f]+ \S+ \d+")
_SHMEM = re.compile(r"^(\S+ \S+ \S+ \S+) \d+\s+(/dev/zero \(deleted\)|/memfd:.*)$")
_FILE = re.compile(r"^(\S+ \S+ \S+ (\S+)) \d+\s+(/.*)$")


def mask(text: str, tmpfs: frozenset[str] | None = None) -> str:
    """`text` with the inode number (and its padding) of shmem and memfd maps lines, and of those of
    files on the host's tmpfs mounts (`tmpfs`, their devices as maps prints them: read from the host
    when not given), replaced by `*`."""
    if tmpfs is None:
        tmpfs = host_shmem_devices()

    def one(line: str) -> str:
        m = _FILE.match(line)
        if m is not None and m.group(2) in tmpfs:
            return f"{m.group(1)} * {m.group(3)}"
        return _SHMEM.sub(r"\1 * \2", line)
    return "\n".join(one(line) for line in text.split("\n"))


def field_of(line: str) -> str | None:
    """The field name of a `Field: value` line of a /proc text view; None for a header line (a maps
    line, the [rollup] line) or a line without a colon."""
    if _HEADER.match(line) or ":" not in line:
        return None
    return line.split(":", 1)[0]


def view_fields(text: str) -> set[str]:
    """The field names (`Size`, `VmFlags`, `RssAnon`, ...) that appear in a view record (after its
    first line, the `show VIEW` echo)."""
    return {f for line in text.splitlines()[1:] if (f := field_of(line)) is not None}


#: Fields of a VMA's smaps block that do not depend on which pages are present.
_VMA_FIELDS = frozenset({"Size", "KernelPageSize", "MMUPageSize", "THPeligible", "VmFlags"})


def keep_fields(text: str, fields: set[str], program_vmas: list[tuple[int, int]]) -> str:
    """A view record reduced to its echo line, its header lines and the lines of `fields`. In the
    smaps blocks of VMAs that overlap the program's own (whose pages its own code touches, which only
    the host runs: reference §6 N6) only the fields that do not depend on present pages are kept."""
    out, page_fields = [], True
    for i, line in enumerate(text.split("\n")):
        f = field_of(line)
        if i == 0 or f is None:
            lo, _, hi = line.split(" ", 1)[0].partition("-")
            if i and _HEADER.match(line) and lo and hi:
                start, end = int(lo, 16), int(hi, 16)
                page_fields = not any(s < end and start < e for s, e in program_vmas)
            out.append(line)
        elif f in fields and (page_fields or f in _VMA_FIELDS):
            out.append(line)
    return "\n".join(out)


def by_step(transcript: Transcript) -> dict[int, list[Record]]:
    """The compared records of a transcript, per step."""
    out: dict[int, list[Record]] = {}
    for rec in transcript.records:
        if rec.kind in COMPARED:
            out.setdefault(rec.step, []).append(rec)
    return out


def step_texts(model: list[Record], kernel: list[Record], program_vmas: list[tuple[int, int]],
               tmpfs: frozenset[str]) -> tuple[str, str]:
    """The model's and the kernel's compared text of one step, masked (mask() with the host's tmpfs
    devices `tmpfs`); each view record of both is reduced to the fields of the model's record in the
    same place (see keep_fields)."""
    model_texts, kernel_texts = [], []
    for i, rec in enumerate(kernel):
        text = rec.text
        if rec.kind == "view" and i < len(model) and model[i].kind == "view":
            fields = view_fields(model[i].text)
            text = keep_fields(text, fields, program_vmas)
        kernel_texts.append(text)
    for i, rec in enumerate(model):
        text = rec.text
        if rec.kind == "view" and i < len(kernel) and kernel[i].kind == "view":
            text = keep_fields(text, view_fields(text), program_vmas)
        model_texts.append(text)
    return "\n".join(mask(t, tmpfs) for t in model_texts), "\n".join(mask(t, tmpfs) for t in kernel_texts)


@dataclass(frozen=True)
class Difference:
    """One step where the model and the kernel disagree, as a unified diff."""

    line: int
    source: str
    diff: str


def compare(scenario: Scenario, model: Transcript, kernel: Transcript) -> list[Difference]:
    """Every step whose compared output differs between the two transcripts."""
    m, k = by_step(model), by_step(kernel)
    tmpfs = host_shmem_devices()
    out = []
    for step in sorted(set(m) | set(k)):
        mt, kt = step_texts(m.get(step, []), k.get(step, []), model.program_vmas, tmpfs)
        if mt == kt:
            continue
        src = scenario.steps[step]
        diff = "\n".join(difflib.unified_diff(mt.split("\n"), kt.split("\n"), "model", "kernel",
                                              lineterm="", n=3))
        out.append(Difference(src.line, src.source, diff))
    return out


def model_only(scenario: Scenario) -> tuple[int, str] | None:
    """The first step of `scenario` that only the model may run, as (line, why); None when the kernel
    can run every step too. earlyoom would watch and kill the host's own processes, swapon and
    swapoff change the swap of the whole machine, and a memory hog outside a memory cgroup of the
    scenario would take the machine's memory (the parser lets a process join only a cgroup a `memcg`
    statement made, with its limit, or the root: /)."""
    memcg_of: dict[str, str] = {}  # actor -> the memcg it joined (a child inherits it)
    for step in scenario.steps:
        if isinstance(step, EarlyoomStep):
            return step.line, "earlyoom runs on the model only (on the host it would watch and kill the " \
                              "machine's own processes)"
        if isinstance(step, CallStep) and step.name in ("swapon", "swapoff"):
            return step.line, f"{step.name} runs on the model only (the host's swap is the whole machine's)"
        if isinstance(step, JoinStep):
            memcg_of[step.actor] = step.path
        elif isinstance(step, ForkStep) and step.actor in memcg_of:
            memcg_of[step.target] = memcg_of[step.actor]
        elif isinstance(step, HogStep) and memcg_of.get(step.actor, "/") == "/":
            who = "" if step.actor == MAIN else f"{step.actor}: "
            return step.line, f"{who}the memory hog runs on the kernel only inside a memory cgroup of the " \
                              "scenario (memcg PATH LIMIT, then join PATH)"
    return None


def diff_scenario(scenario: Scenario, model: Backend, host: Backend, program: Program | None = None,
                  out: Callable[[str], None] | None = None) -> list[Difference]:
    """Run `scenario` on both backends (closing them) and return the differences, printing each to `out`.
    InputError, before either runs, for a scenario with a step only the model may run (model_only)."""
    blocked = model_only(scenario)
    if blocked is not None:
        model.close()
        host.close()
        line, why = blocked
        raise InputError(f"{why}: vmlab diff compares only what the kernel can run too (vmlab run "
                         f"{scenario.path} runs it on the model)", scenario.path, line)
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
