"""Which vmlab a benchmark measures: the installed build with its hot modules compiled by mypyc
(setup.py, the default install), or the Python sources (VMLAB_PURE=1, or src/ on PYTHONPATH)."""

from __future__ import annotations

import vmlab
from vmlab.build import compiled_modules


def vmlab_build() -> str:
    """One line: where vmlab was imported from and which of its kernel modules are compiled."""
    compiled = compiled_modules()
    kind = f"compiled with mypyc: {', '.join(compiled)}" if compiled else "the Python sources, none compiled"
    return f"vmlab from {vmlab.__path__[0]} ({kind})"
