"""Whether the model can be compared on the paging views yet: `ModelBackend.counters` and friends.

The lead's paging model lands separately; until then the model-vs-kernel comparisons of `show counters`
and `show pagemap` skip with the reason, while the kernel-only assertions always run.
"""

from __future__ import annotations

import functools
from pathlib import Path

from vmlab.backend import Settings
from vmlab.lab.scenario import PAGING_VIEWS, ExpectViewStep, ShowStep, load


@functools.cache
def model_paging_missing() -> str | None:
    """None when the model answers counters(); else why not (no method, or NotImplementedError)."""
    from vmlab.host.stepper_build import stepper_program
    from vmlab.kernel.machine import ModelBackend

    model = ModelBackend()
    if getattr(model, "counters", None) is None:
        return "the model's paging has not landed: ModelBackend has no counters()"
    try:
        model.counters(model.start(stepper_program(), Settings()))
    except NotImplementedError:
        return "the model's paging has not landed: ModelBackend.counters raises NotImplementedError"
    finally:
        model.close()
    return None


def uses_paging(path: Path) -> bool:
    """Whether the scenario at `path` shows or expects a paging view (counters, pagemap)."""
    return any(isinstance(s, ShowStep | ExpectViewStep) and s.view in PAGING_VIEWS
               for s in load(str(path)).steps)
