"""SimCLR contrastive pretraining (Chen et al. 2020, arXiv 2002.05709) through ``secbench.engine.fit``.

Why SimCLR rather than MoCo v2: both optimise the same InfoNCE objective with the same augmentations
and projection head; MoCo v2 adds a momentum encoder and a queue of 65,536 negatives so that a GPU
batch of 256 still sees many negatives. On the CPU-sized runs secbench targets the in-batch negatives
of SimCLR (2N - 2 per anchor) are enough, and leaving out the momentum copy halves the forward cost
of every step. The encoder is any registered model: its ``features`` are the representation ``h``,
and a two-layer MLP projection head (discarded after pretraining) gives the embedding ``z``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from secbench.data.base import ImageSet
from secbench.engine import Sampler, TrainConfig, fit, recalibrate_batchnorm
from secbench.fewlabel.augment import SimCLRAugment
from secbench.progress import Progress


class SimCLR(nn.Module):
    """Encoder plus projection head; each forward draws two augmented views of every image.

    Shape: ``(N, 3, H, W)`` float in [0, 1] → ``(2N, dim)`` L2-normalised embeddings, the first N
    rows one view of each image and the last N the other.
    """

    def __init__(self, encoder: nn.Module, generator: torch.Generator, *, dim: int = 128,
                 augment: SimCLRAugment | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        width = encoder.classifier.in_features
        self.projector = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, dim))
        self.augment = augment or SimCLRAugment()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = torch.cat([self.augment(x, self.generator), self.augment(x, self.generator)])  # (2N, 3, H, W)
        views = views.contiguous(memory_format=torch.channels_last)
        return F.normalize(self.projector(self.encoder.features(views)).float(), dim=1)


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy over ``(2N, dim)`` unit embeddings whose
    rows ``i`` and ``i + N`` are a positive pair; the other ``2N - 2`` rows are the negatives."""
    n = len(z) // 2
    logits = (z @ z.T) / temperature  # (2N, 2N) cosine similarities
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.arange(2 * n, device=z.device).roll(n)  # i ↔ i + N
    return F.cross_entropy(logits, positive)


def pretrain_simclr(encoder: nn.Module, data: ImageSet, cfg: TrainConfig, *, temperature: float,
                    generator: torch.Generator, device: torch.device, sampler: Sampler | None = None,
                    progress: Progress | None = None, description: str = "SimCLR") -> dict[str, list[float]]:
    """Train ``encoder`` in place with SimCLR on ``data`` (labels unused) and return fit's history.

    ``cfg.augment`` is ignored: the views are drawn inside :class:`SimCLR`. After training, the
    encoder's BatchNorm statistics are re-estimated on ``cfg.precise_bn`` batches of plain images
    (not views), drawn by ``sampler`` so that they follow the same re-balanced mix as training.
    """
    model = SimCLR(encoder, generator)
    history = fit(model, data, replace(cfg, augment=(), precise_bn=0), generator=generator, device=device,
                  sampler=sampler, progress=progress, loss_fn=lambda z, _: nt_xent(z, temperature),
                  description=description)
    if cfg.precise_bn:
        recalibrate_batchnorm(encoder, data, batches=cfg.precise_bn, batch_size=cfg.batch_size,
                              generator=generator, device=device, sampler=sampler)
    encoder.eval()
    return history
