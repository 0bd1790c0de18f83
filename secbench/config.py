"""Presets and config resolution: scenario defaults → preset → command-line overrides → one frozen dict.

Each scenario declares a dataclass ``Config`` whose defaults are the ``quick`` preset, and a
``presets`` mapping with the fields that ``smoke`` and ``paper`` change. The resolved config
and the seed fully determine a run; its hash keys the results cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any

from secbench.errors import SecbenchError, UnknownNameError

PRESETS = {
    "smoke": "seconds: tiny data and one or two epochs, for tests (numbers are not meaningful)",
    "quick": "minutes on 2 CPU cores: reduced data and epochs, same algorithms (the default)",
    "paper": "the papers' hyperparameters and full data sizes, for a GPU",
}


def resolve(config_cls: type, presets: dict[str, dict[str, Any]], preset: str, overrides: dict[str, Any]) -> dict:
    """The fully resolved config as a plain dict; validation errors raise :class:`SecbenchError`."""
    if preset not in PRESETS:
        raise UnknownNameError("preset", preset, PRESETS)
    # The declared defaults, not those of an instance: a config may complete unset fields at construction
    # (a victim takes its model's training recipe), and that must happen for the final model, not the default.
    values = {f.name: f.default for f in dataclasses.fields(config_cls)}
    values.update(presets.get(preset, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    for field in dataclasses.fields(config_cls):
        check_number(option_flag(field.name), values.get(field.name), **field.metadata.get("bounds", {}))
    try:
        return dataclasses.asdict(config_cls(**values))
    except (TypeError, ValueError) as exc:
        raise SecbenchError(f"invalid configuration: {exc}") from exc


# No option counts or sizes anything near this; a larger value is a typo (or a fuzzer), not a request.
LARGEST = 2**31 - 1


def check_number(flag: str, value: Any, *, low: float = 0, high: float | None = None, positive: bool = False) -> None:
    """Reject a numeric option outside ``[low, high]`` (``positive``: above 0), NaN, infinite or huge, naming
    ``flag``; every numeric option is non-negative unless it says otherwise. Non-numbers pass through."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value) or abs(value) > LARGEST:
        raise SecbenchError(f"{flag} must be a finite number of at most {LARGEST:,}, got {value}")
    if positive and value <= 0:
        raise SecbenchError(f"{flag} must be above 0, got {value}")
    if value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SecbenchError(f"{flag} must be {allowed}, got {value}")


def field_types(config_cls: type) -> dict[str, type]:
    """Each config field's value type, ``int | None`` read as ``int``: what its command-line option parses."""
    hints = typing.get_type_hints(config_cls)
    out = {}
    for field in dataclasses.fields(config_cls):
        kind = hints[field.name]
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        out[field.name] = kind
    return out


def config_hash(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys, no whitespace)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def option_flag(name: str) -> str:
    """The command-line flag of a config field: ``nc_mitigation`` → ``--nc-mitigation``."""
    return "--" + name.replace("_", "-")


def option(default: Any, help: str, **bounds: Any) -> Any:
    """A scenario config field with the help text ``secbench run SCENARIO --help`` shows for it; a numeric one
    may narrow its range with ``low``, ``high`` and ``positive`` (see :func:`check_number`)."""
    return dataclasses.field(default=default, metadata={"help": help, "bounds": bounds})
