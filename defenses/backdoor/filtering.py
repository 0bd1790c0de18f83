"""Training-data filtering, the part Spectral Signatures and Activation Clustering share: score the
poisoned training set through the backdoored model's penultimate features, remove what looks poisoned,
judge the removal against the recorded poisoned positions, and retrain the victim on the rest.

Applies only when the victim trained on that set (the data-poisoning threat model): under
``training-controlled`` the attacker ran the training and the defender holds no poisoned set, which
:class:`secbench.scenarios.backdoored.BackdoorConfig` refuses up front (``--defense all`` leaves the
filters out there).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from defenses.backdoor.base import BackdoorDefense, DefenseInputs, DefenseResult
from defenses.backdoor.features import penultimate
from secbench.errors import SecbenchError

if TYPE_CHECKING:
    from secbench.scenarios.base import RunContext


def removal_scores(removed: torch.Tensor, poisoned: torch.Tensor) -> dict[str, float]:
    """Precision and recall in [0, 1] of the bool ``(N,)`` mask ``removed`` against the true ``poisoned``
    mask, and the count removed. Precision is 0 when nothing is removed, recall 0 when nothing is poisoned."""
    hits = (removed & poisoned).sum().item()
    return {"precision": hits / max(1, removed.sum().item()), "recall": hits / max(1, poisoned.sum().item()),
            "n_removed": float(removed.sum().item())}


@dataclass(kw_only=True)
class TrainingSetFilter(BackdoorDefense):
    """A defense that removes training images and retrains. Subclasses set ``prefix`` (of their metrics)
    and implement :meth:`flag`."""

    needs_training_set: ClassVar[bool] = True
    prefix: ClassVar[str]

    @abc.abstractmethod
    def flag(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """``features`` ``(N, D)`` of the training images and their (possibly poisoned) ``labels`` ``(N,)`` →
        bool ``(N,)`` mask of the images to remove, and findings for the record's ``derived``."""

    def run(self, inputs: DefenseInputs, ctx: RunContext) -> DefenseResult:
        if inputs.retrain is None:
            raise SecbenchError(f"{self.name} needs the training set the victim trained on, which the "
                                "training-controlled threat model does not give the defender")
        train = inputs.poisoned_train.data
        features = penultimate(inputs.model, train.images, device=ctx.device)
        removed, derived = self.flag(features, train.labels.cpu())
        scores = removal_scores(removed, inputs.poisoned_train.is_poisoned())
        # nothing removed: retraining on the same images would only reproduce the backdoored model
        model = inputs.retrain(train.subset(torch.nonzero(~removed).flatten())) if removed.any() else inputs.model
        metrics = {f"{self.prefix}_{k}": v for k, v in scores.items()}
        better = {f"{self.prefix}_precision": True, f"{self.prefix}_recall": True, f"{self.prefix}_n_removed": False}
        return DefenseResult(model, metrics, better, {**derived, f"{self.prefix}_retrained": bool(removed.any())})
