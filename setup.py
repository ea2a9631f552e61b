"""The build: the model's hot path (COMPILED below) compiled with mypyc, as black and mypy ship
themselves; the same Python sources, run about twice as fast on the reclaim-heavy benchmark
(docs/performance.md). VMLAB_PURE=1 builds the plain
Python package instead: for an editable install (`VMLAB_PURE=1 pip install -e .`), where a compiled
module would shadow its edited source, and for stepping through the model in a debugger."""

from __future__ import annotations

import os

from setuptools import setup

#: The modules compiled (vmlab/kernel/NAME.py): the reclaim-heavy replay's own path, then what it still
#: spent time in outside it (perf, cProfile): the core dataclasses, memcg, PSI, the plug, the constants.
COMPILED = ("filemap", "readahead", "page_alloc", "vmscan", "swap", "workingset", "clock", "xarray",
            "mm_types", "memcontrol", "psi", "blk_mq", "page_flags", "uapi")


def ext_modules() -> list:
    """The extension modules to build: none for a pure build."""
    if os.environ.get("VMLAB_PURE") == "1":
        return []
    from mypyc.build import mypycify

    return mypycify([f"src/vmlab/kernel/{name}.py" for name in COMPILED])


setup(ext_modules=ext_modules())
