"""vmlab: the Linux memory manager as an executable model, held against the running kernel."""

__version__ = "0.1.0"
