"""Spectral Signatures (Tran, Li and Madry, NeurIPS 2018; code ``MadryLab/backdoor_data_poisoning``):
poisoned images leave a detectable trace along the top singular direction of their class's learned
representations.

Per label (as the training set labels it, poisoned labels included): the penultimate-layer representations
are centred on the class mean, the top right singular vector ``v`` of that matrix is taken, and each image
scores ``|(r − mean)·v|``; the ``round(1.5·ε·n)`` highest-scoring images of each class of ``n`` are
removed (the paper's 1.5ε, ART's ``eps_multiplier``), and the victim is retrained from scratch on the rest.
``ε`` is the poison rate the defender assumes, an upper bound it is taken to know: ``--ss-poison-rate``,
by default the attack's ``--poison-rate``. Our rate counts over the eligible images, so an all-to-one
target class holds far more than ε of poison (at 10 balanced classes and rate 0.1, about 47%) and at
most 1.5ε of it can go: recall is capped there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from defenses.backdoor.filtering import TrainingSetFilter
from secbench.registry import register


def spectral_scores(features: torch.Tensor) -> torch.Tensor:
    """``|projection|`` of each centred row of ``features`` ``(n, D)`` on their top right singular vector: ``(n,)`` ≥ 0."""
    centred = features.double() - features.double().mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[0]).abs()


def spectral_filter(features: torch.Tensor, labels: torch.Tensor, *, remove_fraction: float) -> torch.Tensor:
    """bool ``(N,)``: per label, the ``round(remove_fraction × n)`` images of highest spectral score."""
    removed = torch.zeros(len(labels), dtype=torch.bool)
    for label in labels.unique():
        members = torch.nonzero(labels == label).flatten()
        k = min(len(members), round(remove_fraction * len(members)))
        if k and len(members) > 1:  # one image has no direction to score along
            removed[members[spectral_scores(features[members]).topk(k).indices]] = True
    return removed


@register("defense", "spectral-signatures")
@dataclass(kw_only=True)
class SpectralSignatures(TrainingSetFilter):
    """Spectral Signatures (NeurIPS 2018): remove the top 1.5ε spectral scores per class, retrain.

    Args:
        poison_rate: the attack's poison rate (set from ``--poison-rate``), the default ε.
        ss_poison_rate: ε the defender assumes; 0 means ``poison_rate``.
        eps_multiplier: share of each class removed per unit of ε (the paper's 1.5).
    """

    name: ClassVar[str] = "spectral-signatures"
    prefix: ClassVar[str] = "ss"
    poison_rate: float = 0.1
    ss_poison_rate: float = 0.0
    eps_multiplier: float = 1.5

    def flag(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        eps = self.ss_poison_rate or self.poison_rate
        removed = spectral_filter(features, labels, remove_fraction=min(1.0, self.eps_multiplier * eps))
        return removed, {"ss_eps": eps}
