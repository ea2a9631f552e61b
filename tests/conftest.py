"""Shared test setup: fixture plugins (each in its own module to keep merges small) and hypothesis
profiles (`ci` runs >= 200 examples; select another with HYPOTHESIS_PROFILE)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ("hostkit", "hostutil")

settings.register_profile("ci", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
