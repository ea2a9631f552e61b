"""Which vmlab a benchmark measures: the installed build with its hot modules compiled by mypyc
(setup.py, the default install), or the Python sources (VMLAB_PURE=1, or src/ on PYTHONPATH)."""

from __future__ import annotations

import importlib
import pkgutil

import vmlab.kernel


def compiled_modules() -> list[str]:
    """The kernel modules of the vmlab imported that are compiled (an extension module, not .py)."""
    compiled = []
    for info in pkgutil.iter_modules(vmlab.kernel.__path__):
        module = importlib.import_module(f"vmlab.kernel.{info.name}")
        if not (module.__file__ or "").endswith(".py"):
            compiled.append(info.name)
    return compiled


def vmlab_build() -> str:
    """One line: where vmlab was imported from and which of its kernel modules are compiled."""
    compiled = compiled_modules()
    kind = f"compiled with mypyc: {', '.join(compiled)}" if compiled else "the Python sources, none compiled"
    return f"vmlab from {vmlab.__path__[0]} ({kind})"
