"""Fixture plugins shared by the test modules (each lives in its own module to keep merges small)."""

pytest_plugins = ("hostkit", "hostutil")
