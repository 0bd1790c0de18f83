"""Which unlabelled target samples to label: random, one-shot k-means, and anchor-constrained k-means.

Li et al. 2021 (arXiv 2107.12369) spend an annotation budget over rounds, alternating selection and
fine-tuning. Their ACKMeans keeps the samples labelled in earlier rounds as fixed cluster centres
(anchors) and adds free centres around them; the samples to label next are the real points nearest
the free centres. Anchors pull the free centres away from regions already covered, so each round
labels what the labelled set does not yet represent.
"""

from __future__ import annotations

import torch

from secbench.fewlabel.clustering import kmeans, sq_distances

STRATEGIES = ("random", "kmeans", "anchored")


def nearest_points(features: torch.Tensor, centres: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    """For each of ``centres`` ``(K, D)`` in turn, the index of the nearest row of ``features`` ``(N, D)``
    that is neither in ``exclude`` nor taken by an earlier centre: ``(K,)`` distinct indices."""
    distances = sq_distances(features, centres)
    distances[exclude] = float("inf")
    picks = []
    for j in range(len(centres)):
        pick = int(distances[:, j].argmin())
        if distances[pick, j] == float("inf"):
            raise ValueError(f"only {len(picks)} unlabelled points left for {len(centres)} centres")
        picks.append(pick)
        distances[pick] = float("inf")
    return torch.tensor(picks, dtype=torch.long)


def cluster_selection(features: torch.Tensor, labelled: torch.Tensor, count: int, *, generator: torch.Generator,
                      n_init: int = 3) -> torch.Tensor:
    """``count`` new samples to label by anchor-constrained k-means: the ``labelled`` samples' features are
    the fixed anchors, ``count`` free centres are fitted around them, and each free centre's nearest
    unlabelled point is picked. With nothing labelled yet this is plain k-means selection."""
    result = kmeans(features, count, anchors=features[labelled], generator=generator, n_init=n_init)
    return nearest_points(features, result.free_centres(len(labelled)), exclude=labelled)


def random_selection(n: int, labelled: torch.Tensor, count: int, *, generator: torch.Generator) -> torch.Tensor:
    """``count`` samples drawn uniformly from the ``n`` minus the ``labelled`` ones."""
    free = torch.ones(n, dtype=torch.bool)
    free[labelled] = False
    candidates = torch.nonzero(free)[:, 0]
    if count > len(candidates):
        raise ValueError(f"only {len(candidates)} unlabelled points left for {count} picks")
    return candidates[torch.randperm(len(candidates), generator=generator)[:count]]
