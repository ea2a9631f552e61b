"""Reading the golden kernel outputs in tests/fixtures/kernel (see the README there)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "kernel"


def sections(name: str) -> dict[str, list[str]]:
    """`--- maps: LABEL` / `--- VmFlags: LABEL` sections of a captured output, label -> lines."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("--- "):
            current = out.setdefault(line[4:], [])
        elif line.startswith(("#", "[")) or current is None:
            current = None
        elif line[:1] in "0123456789abcdef" and ("-" in line.split(" ")[0] or "VmFlags" in line):
            current.append(line)
        else:
            current = None
    return out
