"""Scenarios: each composes data, models, attacks and defenses into one measured experiment."""

from secbench.scenarios import (  # noqa: F401  (registers)
    backdoor,
    clean,
    detection,
    noisy_labels,
    robustness,
    transfer,
    watermark,
)
from secbench.scenarios.base import Outcome, RunContext, Scenario

__all__ = ["Outcome", "RunContext", "Scenario"]
