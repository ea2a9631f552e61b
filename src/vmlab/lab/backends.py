"""The two real backends, imported lazily: the model (vmlab.kernel.machine), the host (vmlab.host.oracle)."""

from __future__ import annotations

import importlib

from vmlab.backend import Backend
from vmlab.errors import InputError

#: Backend name -> (module, class).
BACKENDS = {"model": ("vmlab.kernel.machine", "ModelBackend"), "host": ("vmlab.host.oracle", "HostBackend")}


class Unavailable(InputError):
    """A backend that cannot be used here (its module is missing, or the host cannot run it)."""


def make_backend(name: str) -> Backend:
    """A fresh backend by name ("model" or "host"); Unavailable with the reason when it cannot be made."""
    module, cls = BACKENDS[name]
    try:
        return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as err:
        raise Unavailable(f"the {name} backend is not available: {err}") from None
