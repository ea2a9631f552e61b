"""Which build of vmlab is running: setup.py compiles the model's hot modules with mypyc unless
VMLAB_PURE=1; the Python sources (an editable or pure install, or src/ on the path) compile none."""

from __future__ import annotations

import importlib
import pkgutil

import vmlab.kernel


def compiled_modules() -> list[str]:
    """The modules of vmlab.kernel that run compiled (an extension module, not a .py file); importing
    each to tell."""
    compiled = []
    for info in pkgutil.iter_modules(vmlab.kernel.__path__):
        module = importlib.import_module(f"vmlab.kernel.{info.name}")
        if not (module.__file__ or "").endswith(".py"):
            compiled.append(info.name)
    return compiled
