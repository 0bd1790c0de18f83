"""Activation Clustering (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by Activation
Clustering", SafeAI@AAAI 2019; ART's ``ActivationDefence``): within a label, poisoned images that reach it
through the trigger activate the last hidden layer differently from its genuine members, so the class
splits into two clusters of which the poison is the small one.

Per label (as the training set labels it): the penultimate-layer activations are reduced to 10 dimensions
by FastICA (the paper's choice; ART defaults to PCA), split by 2-means, and every cluster holding less
than 0.35 of the class (relative-size analysis with ART's threshold) is removed; the victim is
retrained from scratch on the rest. A class whose poison is 35% or more of it (an all-to-one target at a
high poison rate) therefore keeps its poison: the size test cannot see it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning

from defenses.backdoor.filtering import TrainingSetFilter
from secbench.registry import register


def two_clusters(features: torch.Tensor, *, dims: int, seed: int) -> torch.Tensor:
    """FastICA of ``features`` ``(n, D)`` to ``min(dims, D, n − 1)`` components, then 2-means: ``(n,)``
    cluster ids in {0, 1}."""
    x = features.double().numpy()
    components = max(1, min(dims, x.shape[1], len(x) - 1))
    with warnings.catch_warnings():
        # a not fully converged unmixing is still a projection to cluster in; small classes trigger it
        warnings.simplefilter("ignore", ConvergenceWarning)
        reduced = FastICA(n_components=components, random_state=seed, max_iter=1000).fit_transform(x)
    labels = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)
    return torch.from_numpy(labels).long()


def cluster_filter(features: torch.Tensor, labels: torch.Tensor, *, dims: int, size_threshold: float,
                   seed: int) -> tuple[torch.Tensor, dict[int, float]]:
    """bool ``(N,)``: per label, the members of a 2-means cluster smaller than ``size_threshold`` of the
    class; and each flagged label's removed share."""
    removed = torch.zeros(len(labels), dtype=torch.bool)
    flagged: dict[int, float] = {}
    for label in labels.unique().tolist():
        members = torch.nonzero(labels == label).flatten()
        if len(members) < 3:  # two clusters of one image each say nothing
            continue
        cluster = two_clusters(features[members], dims=dims, seed=seed)
        sizes = torch.bincount(cluster, minlength=2).double() / len(members)
        small = sizes < size_threshold
        if small.any():
            removed[members[small[cluster]]] = True
            flagged[label] = round(sizes[small].sum().item(), 4)
    return removed, flagged


@register("defense", "activation-clustering")
@dataclass(kw_only=True)
class ActivationClustering(TrainingSetFilter):
    """Activation Clustering (SafeAI 2019): FastICA to 10 dims, 2-means per class, remove small clusters, retrain.

    Args:
        ica_dims: FastICA components (the paper's 10).
        size_threshold: a cluster below this share of its class is flagged (ART's 0.35).
    """

    name: ClassVar[str] = "activation-clustering"
    prefix: ClassVar[str] = "ac"
    ica_dims: int = 10
    size_threshold: float = 0.35

    def flag(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        removed, flagged = cluster_filter(features, labels, dims=self.ica_dims, size_threshold=self.size_threshold,
                                          seed=self.seed)
        return removed, {"ac_flagged_classes": sorted(flagged), "ac_removed_share": {str(k): v for k, v in flagged.items()}}
