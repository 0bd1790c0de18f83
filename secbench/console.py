"""The rich console that tables go to."""

from __future__ import annotations

from rich.console import Console


def stdout_console() -> Console:
    """stdout; off a terminal (pipes, CI logs) rich would wrap at 80 columns, so tables get 200."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=200)
