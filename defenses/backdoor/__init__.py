"""Backdoor defenses behind one contract (:class:`BackdoorDefense`), run by the ``backdoor`` scenario's
``--defense``: ``neural-cleanse`` (model inspection and unlearning)."""

from defenses.backdoor import neural_cleanse  # noqa: F401  (registers)
from defenses.backdoor.base import (
    BackdoorDefense,
    DefenseInputs,
    DefenseResult,
    backdoor_defense_class,
    backdoor_defense_names,
    defense_effectiveness,
)

__all__ = ["BackdoorDefense", "DefenseInputs", "DefenseResult", "backdoor_defense_class", "backdoor_defense_names",
           "defense_effectiveness"]
