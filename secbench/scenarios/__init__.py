"""Scenarios: each composes data, models, attacks and defenses into one measured experiment."""

from secbench.scenarios import backdoor, clean, noisy_labels, robustness, transfer, watermark  # noqa: F401  (registers)
from secbench.scenarios.base import Outcome, RunContext, Scenario

__all__ = ["Outcome", "RunContext", "Scenario"]
