"""Presets and config resolution: scenario defaults → preset → command-line overrides → one frozen dict.

Each scenario declares a dataclass ``Config`` whose defaults are the ``quick`` preset, and a
``presets`` mapping with the fields that ``smoke`` and ``paper`` change. The resolved config
and the seed fully determine a run; its hash keys the results cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
    try:
        return dataclasses.asdict(config_cls(**values))
    except TypeError as exc:
        raise SecbenchError(f"invalid configuration: {exc}") from exc


def config_hash(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys, no whitespace)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def option_flag(name: str) -> str:
    """The command-line flag of a config field: ``nc_mitigation`` → ``--nc-mitigation``."""
    return "--" + name.replace("_", "-")


def option(default: Any, help: str) -> Any:
    """A scenario config field with the help text ``secbench run SCENARIO --help`` shows for it."""
    return dataclasses.field(default=default, metadata={"help": help})
