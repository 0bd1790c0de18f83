"""Progressive few-label transfer (Li et al. 2021, arXiv 2107.12369): an annotation budget spent over
rounds, each round selecting samples to label and fine-tuning on everything labelled so far.

Three strategies at equal budget (``per_round`` new labels each round):

- ``random``: the new labels are drawn uniformly from the unlabelled pool.
- ``kmeans``: one-shot selection. At each round's total budget ``b`` a fresh k-means with ``b``
  centres on the pretrained features picks ``b`` samples, as if the whole budget were spent at once.
- ``anchored``: ACKMeans. Round 1 is the same k-means; later rounds cluster the features of the
  model fine-tuned in the previous round, with the labelled samples as fixed anchors.

Every fine-tune starts again from the pretrained encoder, with the head initialisation and batch
order of its round shared by all strategies, so accuracies differ only through the labelled sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from secbench.data.base import ImageSet
from secbench.engine import TrainConfig, accuracy
from secbench.fewlabel.evaluate import embed, finetune, stream
from secbench.fewlabel.selection import STRATEGIES, cluster_selection, random_selection
from secbench.progress import Progress


@dataclass(frozen=True)
class ProgressiveResult:
    """Per strategy: test accuracy after each round, classes covered after each round, and the labelled
    pool indices in the order they were labelled (the last round's set for ``kmeans``)."""

    accuracy: dict[str, list[float]]
    classes: dict[str, list[int]]
    picks: dict[str, list[int]]


def progressive_transfer(encoder: nn.Module, pool: ImageSet, test: ImageSet, num_classes: int, *,
                         strategies: Sequence[str], rounds: int, per_round: int, finetune_cfg: TrainConfig,
                         steps: int, seed: int, device: torch.device, n_init: int = 3,
                         progress: Progress) -> ProgressiveResult:
    """Run every strategy for ``rounds`` rounds of ``per_round`` labels on the unlabelled ``pool``."""
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown selection strategies {sorted(unknown)}; valid: {', '.join(STRATEGIES)}")
    pretrained = embed(encoder, pool.images, device=device)
    nothing = torch.zeros(0, dtype=torch.long)
    result = ProgressiveResult({}, {}, {})
    with progress.task("progressive selection", total=len(strategies) * rounds) as bar:
        for s, strategy in enumerate(strategies):
            labelled, features = nothing, pretrained
            result.accuracy[strategy], result.classes[strategy] = [], []
            for r in range(1, rounds + 1):
                select = stream(seed, 1, r)  # k-means seeding shared by both clustering strategies
                if strategy == "random":
                    new = random_selection(len(pool), labelled, per_round, generator=stream(seed, 2, s, r))
                    labelled = torch.cat([labelled, new])
                elif strategy == "kmeans":
                    labelled = cluster_selection(pretrained, nothing, r * per_round, generator=select, n_init=n_init)
                else:
                    new = cluster_selection(features, labelled, per_round, generator=select, n_init=n_init)
                    labelled = torch.cat([labelled, new])
                model = finetune(encoder, pool.subset(labelled), num_classes, finetune_cfg, steps=steps,
                                 generator=stream(seed, 3, r), device=device)
                result.accuracy[strategy].append(accuracy(model, test, device=device))
                result.classes[strategy].append(len(pool.labels[labelled].unique()))
                if strategy == "anchored" and r < rounds:  # selection and representation co-evolve
                    features = embed(model, pool.images, device=device)
                bar.advance(1, strategy=strategy, round=r)
            result.picks[strategy] = labelled.tolist()
    return result
