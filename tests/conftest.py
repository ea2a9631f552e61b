"""Shared test setup: fixture plugins (each in its own module to keep merges small) and hypothesis
profiles (`ci`: >= 200 fixed examples, reproducible; `explore`: 1000 random ones; select with
HYPOTHESIS_PROFILE)."""

from __future__ import annotations

import importlib
import os
import pkgutil

import pytest
from hypothesis import HealthCheck, settings

import vmlab
from vmlab.build import compiled_modules

pytest_plugins = ("hostkit", "hostutil", "swapkit")

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None)
# Random seeds and more examples, to hunt for new disagreements (CI stays reproducible with "ci").
settings.register_profile("explore", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _import_every_vmlab_module() -> None:
    """Import all of vmlab up front. Hypothesis draws a share of its values from the literals of the
    project's modules loaded at the time (its local-constants pool), so a test's derandomized `ci`
    examples would otherwise depend on which modules earlier tests happened to import."""
    for info in pkgutil.walk_packages(vmlab.__path__, "vmlab."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


_import_every_vmlab_module()


#: Whether the vmlab under test has its hot modules compiled (setup.py's mypyc build). Compiled code
#: calls its own functions directly, so a test that patches one (marked `pure`) would not see its
#: patch take effect: such tests then run in tests/test_pure_sources.py against the Python sources.
COMPILED = bool(compiled_modules())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With a compiled vmlab, the `pure` tests are left to tests/test_pure_sources.py."""
    if COMPILED:
        moved = pytest.mark.skip(reason="patches the model's internals: run on the Python sources by "
                                        "tests/test_pure_sources.py")
        for item in items:
            if item.get_closest_marker("pure"):
                item.add_marker(moved)
