"""Cluster providers for PNAL's cluster-wise correction: every point gets a cluster id, precomputed once.

PNAL votes inside clusters of points that likely share a class. Its data script offers a superpoint
partition, DBSCAN or a Gaussian mixture on xyz + rgb; the shipped S3DIS data uses DBSCAN. Here each
block is clustered on its own (blocks are what a batch holds, and a cluster never spans batches in
the official code either), on ``[x, y, z, w·r, w·g, w·b]`` with metres for xyz and ``w`` =
``colour_weight`` metres per unit of colour. DBSCAN's noise points (label -1) become singletons.
Ids are unique over the whole set.
"""

from __future__ import annotations

import numpy as np
import torch

from secbench.errors import UnknownNameError

CLUSTERINGS = ("dbscan", "gmm")


def check_clustering(method: str) -> None:
    """Raise the one-line error for a clustering name PNAL does not know."""
    if method not in CLUSTERINGS:
        raise UnknownNameError("clustering", method, CLUSTERINGS)


def cluster_points(points: torch.Tensor, method: str = "dbscan", *, eps: float = 0.08, min_samples: int = 4,
                   components: int = 24, colour_weight: float = 0.3, seed: int = 0) -> torch.Tensor:
    """Cluster ids ``(B, N)`` int64 for blocks ``points`` ``(B, 9, N)`` (channels xyz, rgb, ...).

    ``dbscan``: neighbourhood radius ``eps`` (metres) and ``min_samples``; ``gmm``: a ``components``-way
    Gaussian mixture per block (fewer when a block has fewer distinct points).
    """
    from sklearn.cluster import DBSCAN  # deferred: scikit-learn is slow to import
    from sklearn.mixture import GaussianMixture

    check_clustering(method)
    features = points[:, :6].permute(0, 2, 1).cpu().double().numpy().copy()
    features[:, :, 3:] *= colour_weight
    ids = np.empty(features.shape[:2], dtype=np.int64)
    offset = 0
    for b, block in enumerate(features):
        if method == "dbscan":
            local = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(block)
            singles = local < 0
            local[singles] = local.max() + 1 + np.arange(singles.sum())
        else:
            n = min(components, len(np.unique(block, axis=0)))
            local = GaussianMixture(n, covariance_type="full", reg_covar=1e-4, random_state=seed).fit_predict(block)
        _, local = np.unique(local, return_inverse=True)
        ids[b] = local + offset
        offset += int(local.max()) + 1
    return torch.from_numpy(ids)


def cluster_purity(clusters: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of points whose cluster's majority (clean) label is their own: the ceiling of any
    correction that gives a whole cluster one label."""
    c, y = clusters.reshape(-1), labels.reshape(-1)
    pairs = c * (int(y.max()) + 1) + y
    values, counts = pairs.unique(return_counts=True)
    majority = torch.zeros(int(c.max()) + 1, dtype=counts.dtype).scatter_reduce(
        0, values // (int(y.max()) + 1), counts, reduce="amax")
    return majority.sum().item() / len(c)
