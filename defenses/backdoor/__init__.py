"""Backdoor defenses behind one contract (:class:`BackdoorDefense`), run by the ``backdoor`` scenario's
``--defense``: ``neural-cleanse`` (model inspection and unlearning), ``strip`` (input filtering at
inference), ``spectral-signatures`` and ``activation-clustering`` (training-data filtering, then retraining),
``fine-pruning``, ``nad`` and ``anp`` (model repair: pruning, attention distillation, adversarial neuron pruning)."""

from defenses.backdoor import (  # noqa: F401  (they register themselves)
    activation_clustering,
    anp,
    fine_pruning,
    nad,
    neural_cleanse,
    spectral_signatures,
    strip,
)
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
