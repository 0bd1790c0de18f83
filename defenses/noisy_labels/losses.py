"""Noise-robust segmentation losses and the learner contract they share with PNAL.

Every loss takes per-point logits ``(B, K, N)`` and labels ``(B, N)``; a label of :data:`IGNORE`
(-1) takes no part (PNAL masks the points it has not corrected). Means are over the points that take
part.

- ``ce``: cross-entropy, the baseline every paper starts from;
- ``gce``: generalized cross-entropy (Zhang & Sabuncu, arXiv 1805.07836), ``(1 - p_y^q) / q``, q = 0.7:
  between CE (q → 0) and the noise-tolerant MAE (q = 1); PNAL's code borrows it from Truncated-Loss;
- ``sce``: symmetric cross-entropy (Wang et al., arXiv 1908.06112), ``α·CE + β·RCE`` with the reverse
  CE's log 0 clipped at log 1e-4, as in the authors' code (α 0.1, β 1.0, their CIFAR-10 setting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from secbench.data.points import PointSet
from secbench.engine import LossFn
from secbench.registry import register

IGNORE = -1


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if not (labels != IGNORE).any():  # a batch PNAL has not corrected yet: nothing to learn, not NaN
        return logits.sum() * 0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)


def _label_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax probability ``(M,)`` of each kept point's label."""
    keep = labels != IGNORE
    probs = logits.float().softmax(1).movedim(1, -1)[keep]  # (M, K)
    return probs.gather(1, labels[keep][:, None]).squeeze(1)


def generalized_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    p_label = _label_probability(logits, labels)
    return ((1 - p_label.clamp_min(1e-7) ** q) / q).mean() if len(p_label) else logits.sum() * 0


def symmetric_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.1,
                            beta: float = 1.0) -> torch.Tensor:
    p_label = _label_probability(logits, labels)
    if not len(p_label):
        return logits.sum() * 0
    # RCE = -Σ_k p_k log(onehot_k clipped at 1e-4) = -log(1e-4) · (1 - p_y)
    reverse = -math.log(1e-4) * (1 - p_label)
    return alpha * cross_entropy(logits, labels) + beta * reverse.mean()


@dataclass
class Learner:
    """What :func:`secbench.engine.fit` calls as ``item_loss(logits, labels, block_index)``.

    The base learner applies its loss to the labels it is given (the noisy ones); PNAL overrides
    ``__call__`` and keeps its own corrected labels.
    """

    loss: LossFn = cross_entropy

    def prepare(self, train: PointSet) -> None:
        """Called once before training with the (noisy-labelled) training set; the losses keep no state."""

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, labels)


@register("defense", "ce")
def ce() -> Learner:
    """Noisy labels: plain cross-entropy (the baseline)."""
    return Learner(cross_entropy)


@register("defense", "gce")
def gce(*, q: float = 0.7) -> Learner:
    """Noisy labels: generalized cross-entropy (arXiv 1805.07836), q = 0.7."""
    return Learner(lambda logits, labels: generalized_cross_entropy(logits, labels, q))


@register("defense", "sce")
def sce(*, alpha: float = 0.1, beta: float = 1.0) -> Learner:
    """Noisy labels: symmetric cross-entropy (arXiv 1908.06112), alpha 0.1, beta 1."""
    return Learner(lambda logits, labels: symmetric_cross_entropy(logits, labels, alpha, beta))
