"""The scenario contract: a named experiment that turns a resolved config and a seed into metrics."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from secbench import checkpoint
from secbench.config import config_hash
from secbench.progress import NullProgress, Progress


@dataclass
class RunContext:
    """What the runner hands a scenario: where to compute, how to report, where artifacts go."""

    device: torch.device
    seed: int
    generator: torch.Generator
    artifacts: Path
    cache: Path  # shared by all runs in the results folder: trained models reused across scenarios
    progress: Progress = field(default_factory=NullProgress)

    def save_model(self, model: nn.Module, stem: str, *, name: str, **build: Any) -> Path:
        return checkpoint.save(model, self.artifacts / stem, name=name, **build)

    def write_json(self, filename: str, payload: Any) -> Path:
        return checkpoint.write_json(self.artifacts / filename, payload)

    def cache_entry(self, prefix: str, payload: dict[str, Any]) -> Path:
        """The cache folder of a trained component: ``payload`` (what it was trained from), the seed and the
        device decide it, so every run of the results folder that needs the same component reuses it."""
        key = config_hash({**payload, "seed": self.seed, "device": self.device.type})
        return self.cache / f"{prefix}-{key.split(':')[1][:16]}"

    def stream(self, *parts: str) -> torch.Generator:
        """A random stream of its own for one component (and the global stream its networks initialise
        from), derived from the run's seed: a component draws the same numbers whether or not others ran
        before it in this process, so a cached and a fresh upstream component give the same result."""
        seed = int(config_hash({"seed": self.seed, "parts": parts}).split(":")[1][:15], 16)
        torch.manual_seed(seed)
        return torch.Generator().manual_seed(seed)


@dataclass
class Outcome:
    """A scenario's measurements. Metric names are snake_case; fractions lie in [0, 1]."""

    metrics: dict[str, float]
    higher_is_better: dict[str, bool]
    n: int  # evaluation items behind the headline metric
    dataset_fingerprint: str | None = None
    derived: dict[str, Any] = field(default_factory=dict)  # values the config left open (e.g. epochs from a budget)


class Scenario(abc.ABC):
    """Subclasses set ``name``, ``version`` (bump when a metric's meaning changes), a ``Config``
    dataclass whose defaults are the ``quick`` preset, and ``presets`` with what ``smoke`` and
    ``paper`` change. ``run`` only computes: timing, caching and recording belong to the runner."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    Config: ClassVar[type]
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    headline: ClassVar[tuple[str, ...]] = ()  # metrics the end-of-command table shows for several runs

    def grid(self, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        """The runs one command expands to (e.g. ``--attack all``); one by default."""
        return [cfg]

    def identity(self, cfg: dict[str, Any], preset: str) -> dict[str, Any]:
        """The record's identity fields, one per dimension a report may pivot on (``preset``: the one ``cfg``
        was resolved from)."""
        return {key: cfg.get(key) for key in ("dataset", "model", "method", "attack", "defense")}

    @abc.abstractmethod
    def run(self, cfg: dict[str, Any], ctx: RunContext) -> Outcome: ...
