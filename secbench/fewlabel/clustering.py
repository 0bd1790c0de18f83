"""k-means with optional fixed anchor centres, and clustering quality against class labels.

One k-means serves both uses of the few-label scenario: with no anchors it is Lloyd's algorithm
with k-means++ seeding (the clustering-quality measure of Li et al. 2021, arXiv 2107.12369); with
anchors it is their Anchor-Constrained k-means (ACKMeans), where the already labelled samples stay
fixed centres and only the new centres move. The scores (NMI, ARI, Hungarian-matched accuracy) all
come from one contingency table and agree with scikit-learn's ``normalized_mutual_info_score``
(arithmetic mean) and ``adjusted_rand_score``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.special import comb


@dataclass(frozen=True)
class KMeansResult:
    """``centres``: ``(M + k, D)``, the ``M`` anchors first (unchanged) then the ``k`` free centres;
    ``assign``: ``(N,)`` index of each point's centre; ``inertia``: sum of squared distances."""

    centres: torch.Tensor
    assign: torch.Tensor
    inertia: float

    def free_centres(self, n_anchors: int) -> torch.Tensor:
        return self.centres[n_anchors:]


def sq_distances(x: torch.Tensor, centres: torch.Tensor, x_sq: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, K)`` squared Euclidean distances, clamped at 0 against rounding; ``x_sq`` = ``(N, 1)`` row norms²."""
    x_sq = x.pow(2).sum(1, keepdim=True) if x_sq is None else x_sq
    return (x_sq - 2 * x @ centres.T + centres.pow(2).sum(1)).clamp_min_(0)


def _seed(x: torch.Tensor, x_sq: torch.Tensor, anchors: torch.Tensor, k: int,
          generator: torch.Generator) -> torch.Tensor:
    """k-means++ (Arthur & Vassilvitskii 2007): each new centre is a point drawn with probability
    proportional to its squared distance to the nearest centre so far, anchors included."""
    chosen = []
    if len(anchors):
        nearest = sq_distances(x, anchors, x_sq).min(1).values
    else:
        first = int(torch.randint(len(x), (1,), generator=generator))
        chosen.append(first)
        nearest = sq_distances(x, x[first : first + 1], x_sq)[:, 0]
    while len(chosen) < k:
        total = nearest.sum()
        if total <= 0:  # every point already sits on a centre: duplicates are all that is left
            pick = int(torch.randint(len(x), (1,), generator=generator))
        else:
            pick = int(torch.multinomial((nearest / total).cpu(), 1, generator=generator))
        chosen.append(pick)
        nearest = torch.minimum(nearest, sq_distances(x, x[pick : pick + 1], x_sq)[:, 0])
    return x[chosen].clone()


def _lloyd(x: torch.Tensor, x_sq: torch.Tensor, anchors: torch.Tensor, free: torch.Tensor, max_iter: int,
           tol: float) -> KMeansResult:
    """Lloyd iterations that move only the free centres, until no point changes centre or the free
    centres move less than ``tol`` in total squared distance."""
    m, assign = len(anchors), None
    for _ in range(max_iter):
        d = sq_distances(x, torch.cat([anchors, free]), x_sq)
        new_assign = d.argmin(1)
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        sums = torch.zeros(m + len(free), x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, assign, x)[m:]
        counts = torch.bincount(assign, minlength=m + len(free))[m:]
        moved = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], free)
        empty = torch.nonzero(counts == 0)[:, 0]
        if len(empty):  # as scikit-learn: move empty centres onto the points farthest from their centre
            far = d.gather(1, assign[:, None])[:, 0].argsort(descending=True)[: len(empty)]
            moved[empty] = x[far]
        shift, free = float((moved - free).pow(2).sum()), moved
        if shift <= tol:
            break
    d = sq_distances(x, torch.cat([anchors, free]), x_sq)
    assign = d.argmin(1)
    return KMeansResult(torch.cat([anchors, free]), assign, float(d.gather(1, assign[:, None]).sum()))


def kmeans(x: torch.Tensor, k: int, *, generator: torch.Generator, anchors: torch.Tensor | None = None,
           n_init: int = 3, max_iter: int = 300, tol: float = 1e-4) -> KMeansResult:
    """Cluster ``(N, D)`` points around ``k`` free centres plus optional fixed ``anchors`` ``(M, D)``.

    Points are assigned to the nearest of all ``M + k`` centres, but only the free centres move
    (to the mean of their points). The best of ``n_init`` k-means++ seedings (lowest inertia) wins.
    ``tol`` is relative, as scikit-learn's: times the mean per-feature variance of ``x``.
    """
    anchors = x.new_zeros((0, x.shape[1])) if anchors is None else anchors.to(x)
    if k < 1 or k > len(x):
        raise ValueError(f"k-means needs 1 <= k <= {len(x)} points, got k={k}")
    x_sq = x.pow(2).sum(1, keepdim=True)
    tol = tol * float(x.var(0).mean()) if len(x) > 1 else 0.0
    runs = [_lloyd(x, x_sq, anchors, _seed(x, x_sq, anchors, k, generator), max_iter, tol) for _ in range(n_init)]
    return min(runs, key=lambda r: r.inertia)


def contingency(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """``(classes, clusters)`` counts of points per (true label, cluster) pair."""
    _, rows = np.unique(labels, return_inverse=True)
    _, cols = np.unique(clusters, return_inverse=True)
    table = np.zeros((rows.max() + 1, cols.max() + 1), dtype=np.int64)
    np.add.at(table, (rows, cols), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(table: np.ndarray) -> float:
    """Normalised mutual information, MI / mean(H(labels), H(clusters)), in [0, 1]."""
    if table.shape[0] == table.shape[1] == 1:
        return 1.0  # one class, one cluster: identical partitions
    n = table.sum()
    joint = table[table > 0] / n
    outer = np.outer(table.sum(1), table.sum(0))[table > 0] / n**2
    mi = float((joint * np.log(joint / outer)).sum())
    mean_entropy = (_entropy(table.sum(1)) + _entropy(table.sum(0))) / 2
    return 0.0 if mi <= 0 else mi / mean_entropy


def ari(table: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985): pair agreement corrected for chance, 1 for identical
    partitions, about 0 for random ones."""
    n = table.sum()
    pairs = comb(table, 2).sum()
    rows, cols = comb(table.sum(1), 2).sum(), comb(table.sum(0), 2).sum()
    expected = rows * cols / comb(n, 2)
    best = (rows + cols) / 2
    return 1.0 if best == expected else float((pairs - expected) / (best - expected))


def cluster_accuracy(table: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to classes (Hungarian algorithm)."""
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def clustering_scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """``cluster_nmi``, ``cluster_ari`` and ``cluster_acc`` of a clustering against true labels."""
    table = contingency(np.asarray(labels), np.asarray(clusters))
    return {"cluster_nmi": nmi(table), "cluster_ari": ari(table), "cluster_acc": cluster_accuracy(table)}
