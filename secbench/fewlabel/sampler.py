"""The re-balancing sampler of target-aware unsupervised pretraining (Li et al. 2021, arXiv 2107.12369).

The pretraining set is the source followed by the (much smaller) unlabeled target set. Drawn
uniformly, target images would be a small minority of every batch (12.6% for digits next to
10,000 shapes) and their structure swamped by the source's; the sampler instead fills every batch
with a fixed share of target images, cycling through reshuffled passes of each part separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from secbench.errors import SecbenchError


@dataclass(frozen=True)
class RebalancedSampler:
    """Epoch orders over ``n_source + n_target`` items (source indices first) in which every batch of
    ``batch_size`` holds ``round(target_share * batch_size)`` target items (the last, shorter batch
    its rounded share), at random positions. Small parts repeat, large ones are sub-sampled; each
    part is walked in reshuffled passes, so within a pass no item repeats.

    Call it with a generator for one epoch's ``n_source + n_target`` indices (``secbench.engine.fit``'s
    ``sampler``).
    """

    n_source: int
    n_target: int
    target_share: float
    batch_size: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_share <= 1.0:
            raise SecbenchError(f"--target-share is a fraction in [0, 1], got {self.target_share}")
        if (self.n_source == 0 and self.target_share < 1) or (self.n_target == 0 and self.target_share > 0):
            raise SecbenchError(f"cannot draw a target share of {self.target_share} from {self.n_source} source "
                                f"and {self.n_target} target items")

    def batch_sizes(self) -> list[int]:
        n = self.n_source + self.n_target
        return [min(self.batch_size, n - start) for start in range(0, n, self.batch_size)]

    def target_counts(self) -> list[int]:
        """Target items in each batch of one epoch."""
        return [round(self.target_share * size) for size in self.batch_sizes()]

    def __call__(self, generator: torch.Generator) -> torch.Tensor:
        sizes, counts = self.batch_sizes(), self.target_counts()
        n = self.n_source + self.n_target
        target = _passes(self.n_target, sum(counts), generator) + self.n_source
        source = _passes(self.n_source, n - sum(counts), generator)
        batches, t, s = [], 0, 0
        for size, k in zip(sizes, counts, strict=True):
            batch = torch.cat([target[t : t + k], source[s : s + size - k]])
            batches.append(batch[torch.randperm(size, generator=generator)])
            t, s = t + k, s + size - k
        return torch.cat(batches)


def _passes(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` indices below ``n``: as many reshuffled full passes as needed, cut to length."""
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    passes = -(-count // n)
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(passes)])[:count]
