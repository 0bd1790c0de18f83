"""Errors a user can fix: the CLI prints them on one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SecbenchError(Exception):
    """A problem with the user's input (name, file, option, missing data). Exit code 2."""


class UnknownNameError(SecbenchError, KeyError):
    """A name that is not in the registry (or not a valid choice)."""

    def __init__(self, what: str, name: str, valid: Iterable[str], hint: str | None = None):
        valid = sorted(valid)
        close = difflib.get_close_matches(name, valid, n=1)
        msg = f"unknown {what} {name!r}"
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        msg += f"; valid: {', '.join(valid) if valid else 'none'}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run is recorded as failed with this reason."""
