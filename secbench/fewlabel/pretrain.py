"""The four encoder initialisations the few-label scenario compares, all from the source dataset.

- ``none``: random initialisation, the floor.
- ``supervised``: cross-entropy on the source labels (crop and flip augmentation).
- ``ssl``: SimCLR on the source images, labels unused.
- ``ssl-target``: target-aware unsupervised pretraining (TUP, Li et al. 2021, arXiv 2107.12369):
  SimCLR on the source images plus the unlabelled target training images, every batch holding
  ``target_share`` target images (:class:`~secbench.fewlabel.sampler.RebalancedSampler`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from secbench.data.base import DataSplits, ImageSet
from secbench.engine import TrainConfig, fit
from secbench.fewlabel.sampler import RebalancedSampler
from secbench.fewlabel.ssl import pretrain_simclr
from secbench.progress import Progress

PRETRAININGS = ("none", "supervised", "ssl", "ssl-target")


@dataclass(frozen=True)
class PretrainRecipe:
    """Budgets in images seen (epochs follow from the data size) and the SimCLR options."""

    sup_images: int
    sup_batch: int
    sup_lr: float
    ssl_images: int
    ssl_batch: int
    ssl_lr: float
    temperature: float
    target_share: float

    def supervised(self, n: int) -> TrainConfig:
        return TrainConfig(epochs=_epochs(self.sup_images, n), batch_size=self.sup_batch, lr=self.sup_lr,
                           augment=("crop", "flip"))

    def simclr(self, n: int) -> TrainConfig:
        # SGD with Nesterov momentum and a cosine schedule, as the CIFAR reproductions of SimCLR/MoCo use
        # in place of LARS (whose point is batches of 4,096).
        return TrainConfig(epochs=_epochs(self.ssl_images, n), batch_size=self.ssl_batch, lr=self.ssl_lr,
                           schedule="cosine", weight_decay=5e-4)


def _epochs(images: int, n: int) -> int:
    return max(1, math.ceil(images / n))


def pretrain(method: str, encoder: nn.Module, source: DataSplits, target_pool: ImageSet, recipe: PretrainRecipe, *,
             generator: torch.Generator, device: torch.device, progress: Progress) -> dict[str, list[float]]:
    """Train ``encoder`` in place with ``method`` and return its history (empty for ``none``)."""
    if method == "none":
        return {}
    if method == "supervised":
        return fit(encoder, source.train, recipe.supervised(len(source.train)), generator=generator, device=device,
                   progress=progress, description=f"supervised pretraining on {source.name}")
    if method == "ssl":
        return pretrain_simclr(encoder, source.train, recipe.simclr(len(source.train)),
                               temperature=recipe.temperature, generator=generator, device=device,
                               progress=progress, description=f"SimCLR on {source.name}")
    if method == "ssl-target":
        # labels mark the domain (0 source, 1 target); SimCLR never reads them
        mixed = ImageSet(torch.cat([source.train.images, target_pool.images]),
                         torch.cat([torch.zeros(len(source.train), dtype=torch.long),
                                    torch.ones(len(target_pool), dtype=torch.long)]))
        cfg = recipe.simclr(len(mixed))
        sampler = RebalancedSampler(len(source.train), len(target_pool), recipe.target_share, cfg.batch_size)
        return pretrain_simclr(encoder, mixed, cfg, temperature=recipe.temperature, generator=generator,
                               device=device, sampler=sampler, progress=progress,
                               description=f"SimCLR on {source.name} + target")
    raise ValueError(f"unknown pretraining {method!r}; valid: {', '.join(PRETRAININGS)}")
