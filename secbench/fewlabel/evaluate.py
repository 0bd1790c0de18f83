"""Few-label evaluation of a pretrained encoder on a target dataset: k-shot label draws, linear probe,
weighted kNN and full fine-tuning.

The probe and kNN see frozen, L2-normalised ``features`` of the encoder (the linear protocol of
Tian et al. 2020, arXiv 2003.11539: logistic regression on normalised embeddings; the weighted kNN of
Wu et al. 2018, arXiv 1805.01978, as solo-learn runs it: k = 20, temperature 0.07, cosine similarity).
Fine-tuning trains the whole network with a new linear head on the labelled images only.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from secbench.data.base import ImageSet
from secbench.engine import TrainConfig, fit, predict
from secbench.errors import SecbenchError
from secbench.progress import Progress


def k_shot(labels: torch.Tensor, ks: Sequence[int], seed: int) -> dict[int, torch.Tensor]:
    """For each ``k`` in ``ks``, the sorted indices of exactly ``k`` items of every class of ``labels``.

    The draws are nested (the ``k = 2`` set holds the ``k = 1`` set), so an accuracy curve over ``k``
    measures more labels, not another draw. A class with fewer than ``max(ks)`` items is an error.
    """
    rng = np.random.default_rng(seed)
    y = labels.cpu().numpy()
    classes, counts = np.unique(y, return_counts=True)
    if min(ks) < 1:
        raise SecbenchError(f"labels per class must be positive, got {sorted(ks)}")
    if counts.min() < max(ks):
        short = classes[counts < max(ks)].tolist()
        raise SecbenchError(f"{max(ks)} labels per class asked for, but classes {short} have only {counts.min()}")
    orders = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    return {k: torch.from_numpy(np.sort(np.concatenate([o[:k] for o in orders]))) for k in ks}


def stream(seed: int, *tags: int) -> torch.Generator:
    """A generator of its own for ``(seed, *tags)``: fine-tunes that should differ only in their labels
    (k, round, strategy) get the same head initialisation and batch order (common random numbers)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, *tags]).generate_state(1)[0]))


class _Features(nn.Module):
    """A model's penultimate ``features`` as its forward, so that ``engine.predict`` batches them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def embed(model: nn.Module, images: torch.Tensor, *, device: torch.device) -> torch.Tensor:
    """L2-normalised features ``(N, D)`` (float32, CPU) of uint8 or [0, 1] ``(N, 3, H, W)`` images."""
    return F.normalize(predict(_Features(model), images, device=device), dim=1)


def linear_probe(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor,
                 test_labels: torch.Tensor) -> float:
    """Test accuracy of multinomial logistic regression (L2, C = 1, lbfgs) fitted on ``train`` features."""
    from sklearn.linear_model import LogisticRegression  # deferred: only this protocol needs it

    if len(train_labels.unique()) < 2:
        return float((test_labels == train_labels[0]).float().mean())  # one class: the probe predicts it
    probe = LogisticRegression(C=1.0, max_iter=1000).fit(train.numpy(), train_labels.numpy())
    return float((probe.predict(test.numpy()) == test_labels.numpy()).mean())


def weighted_knn(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                 *, k: int = 20, temperature: float = 0.07) -> float:
    """Test accuracy of the weighted kNN: each of the ``k`` most cosine-similar ``train`` items votes for
    its class with weight ``exp(similarity / temperature)`` (``k`` capped at the number of items)."""
    similarity = test @ train.T  # (N_test, N_train); rows are unit vectors
    top, index = similarity.topk(min(k, len(train)), dim=1)
    votes = torch.zeros(len(test), int(train_labels.max()) + 1)
    votes.scatter_add_(1, train_labels[index], (top / temperature).exp())
    return float((votes.argmax(1) == test_labels).float().mean())


def finetune(encoder: nn.Module, labelled: ImageSet, num_classes: int, cfg: TrainConfig, *, steps: int,
             generator: torch.Generator, device: torch.device, progress: Progress | None = None) -> nn.Module:
    """A copy of ``encoder`` with a new ``num_classes``-way head, trained end to end for ``steps`` batches
    of ``cfg.batch_size`` drawn from the (few) ``labelled`` images, which repeat as often as needed."""
    model = copy.deepcopy(encoder)
    width = model.classifier.in_features
    model.classifier = nn.Linear(width, num_classes)
    with torch.no_grad():  # nn.Linear's own U(±1/√width) init, but from ``generator``: reproducible per call
        for param in model.classifier.parameters():
            param.uniform_(-(width**-0.5), width**-0.5, generator=generator)
    repeated = labelled.subset(torch.arange(steps * cfg.batch_size) % len(labelled))
    fit(model, repeated, replace(cfg, epochs=1), generator=generator, device=device, progress=progress,
        description=f"fine-tune on {len(labelled)} labels")
    return model
