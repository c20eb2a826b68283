"""Where human-readable output goes: text to stdout, progress and reports to stderr."""

from __future__ import annotations

from functools import cache

from rich.console import Console


@cache
def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)
