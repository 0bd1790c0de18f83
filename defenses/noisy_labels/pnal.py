"""PNAL (Ye et al., arXiv 2107.14230): point-wise confidence selection from each point's prediction
history, and cluster-wise label correction by voting; as in the official code (``self_correcter.py``).

1. Warm-up (``warmup_epochs``): the loss on the noisy labels, every point.
2. Then, every batch, before the step:

   - each point's history holds its last ``queue`` argmax predictions (written after each step);
     its uncertainty is ``-p ln p / ln K`` with ``p`` the share of the history's mode; the point is
     reliable when the history is full and the uncertainty is at most ``tau``. With Q = 4 and
     ``tau`` 0.05 (the code's default; the released config's 0.001 decides the same), only a
     history of four equal predictions is reliable;
   - voting (``vote``, on by default; the released config leaves it off): in each cluster, the modal
     predictions of its reliable points are counted; every class counted at least ``max // vote_threshold``
     times is a winner, one winner is drawn at random, and the whole cluster takes it;
     only counted classes can win (the official code's ``bincount`` also lets uncounted classes win
     when a cluster has fewer than ``vote_threshold`` votes, which we take for an oversight); without
     voting, the cluster takes the modal prediction of the reliable point with the lowest loss on its
     given (noisy) label;
   - corrected labels persist across epochs and are overwritten by later corrections; points never
     corrected are left out of the loss.

The EMA of the weights PNAL evaluates with is the engine's ``TrainConfig.ema``. Unlike the official code,
points not yet corrected stay in the network's input (it zeroes their coordinates and colours); only the
loss leaves them out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from defenses.noisy_labels.clusters import check_clustering, cluster_points
from defenses.noisy_labels.losses import IGNORE, Learner
from secbench.data.points import PointSet
from secbench.errors import SecbenchError
from secbench.registry import register


def history_reliability(history: torch.Tensor, num_classes: int, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Modal class and reliability of each point from its prediction ``history`` ``(..., Q)`` (IGNORE: empty slot).

    Returns ``(mode, reliable)``, both ``history.shape[:-1]``; a history with an empty slot is never reliable.
    """
    counts = F.one_hot(history.clamp_min(0), num_classes).sum(-2)
    top, mode = counts.max(-1)
    p = top.double() / history.shape[-1]
    uncertainty = -p * p.log() / math.log(num_classes)
    return mode, (uncertainty <= tau) & (history >= 0).all(-1)


@dataclass
class PNAL(Learner):
    """The PNAL learner: ``prepare`` clusters the training blocks; ``__call__`` corrects and masks.

    After training, ``labels`` ``(B, N)`` are the training labels as corrected (the noisy ones where
    never corrected) and ``corrected`` marks the points in the loss, whose label it set by voting.
    """

    queue: int = 4
    tau: float = 0.05
    warmup_epochs: int = 4
    vote: bool = True
    vote_threshold: int = 5
    clustering: str = "dbscan"
    cluster_eps: float = 0.08
    seed: int = 0
    clusters: torch.Tensor | None = field(default=None, init=False)
    labels: torch.Tensor | None = field(default=None, init=False)
    corrected: torch.Tensor | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.queue < 1 or self.vote_threshold < 1 or self.warmup_epochs < 0 or self.tau < 0:
            raise SecbenchError("PNAL needs queue >= 1, vote_threshold >= 1, warmup_epochs >= 0 and tau >= 0")
        check_clustering(self.clustering)

    def prepare(self, train: PointSet) -> None:
        self.noisy = train.labels.clone()
        self.labels = train.labels.clone()
        self.corrected = torch.zeros_like(self.noisy, dtype=torch.bool)
        self.history = torch.full((*self.noisy.shape, self.queue), IGNORE, dtype=torch.int64,
                                  device=self.noisy.device)
        self.recorded = torch.zeros(len(self.noisy), dtype=torch.int64, device=self.noisy.device)
        self.clusters = cluster_points(train.points, self.clustering, eps=self.cluster_eps,
                                       seed=self.seed).to(self.noisy.device)
        self.seen = 0
        self.generator = torch.Generator(device=self.noisy.device).manual_seed(self.seed)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        index = index.to(self.noisy.device)
        epoch = self.seen // len(self.noisy)
        self.seen += len(index)
        if epoch < self.warmup_epochs:
            target = self.noisy[index]
        else:
            self.correct(index, logits.detach())
            target = torch.where(self.corrected[index], self.labels[index], IGNORE)
        loss = self.loss(logits, target.to(logits.device))
        self.record(index, logits.detach().argmax(1))
        return loss

    def record(self, index: torch.Tensor, predictions: torch.Tensor) -> None:
        """Write the step's argmax ``predictions`` ``(b, N)`` of blocks ``index`` into their circular histories."""
        slot = (self.recorded[index] % self.queue)[:, None].expand(-1, self.noisy.shape[1])
        points = torch.arange(self.noisy.shape[1], device=self.noisy.device)[None, :].expand_as(slot)
        self.history[index[:, None], points, slot] = predictions.to(self.noisy.device)
        self.recorded[index] += 1

    def correct(self, index: torch.Tensor, logits: torch.Tensor) -> None:
        """Relabel every cluster of blocks ``index`` that has a reliable point (see the module docstring)."""
        num_classes = logits.shape[1]
        mode, reliable = history_reliability(self.history[index], num_classes, self.tau)
        ids, cluster = self.clusters[index].reshape(-1).unique(return_inverse=True)
        mode, reliable = mode.reshape(-1), reliable.reshape(-1)
        new = torch.full((len(ids),), IGNORE, dtype=torch.int64, device=ids.device)
        if self.vote:
            votes = torch.zeros(len(ids), num_classes, device=ids.device)
            votes.index_put_((cluster[reliable], mode[reliable]), torch.ones(int(reliable.sum()), device=ids.device),
                             accumulate=True)
            top = votes.max(1).values
            has = top > 0
            winners = (votes > 0) & (votes >= torch.div(top, self.vote_threshold, rounding_mode="floor")[:, None])
            new[has] = torch.multinomial(winners[has].float(), 1, generator=self.generator).squeeze(1)
        else:  # as the official code: the reliable point whose given label the network finds likeliest
            given = self.noisy[index].to(logits.device)
            fit_to_label = F.cross_entropy(logits.float(), given, reduction="none").reshape(-1).to(ids.device)
            order = fit_to_label.argsort()
            order = order[reliable[order]]  # reliable points, lowest loss first
            rank = torch.arange(len(order), device=ids.device)
            first = torch.full((len(ids),), len(order), device=ids.device).scatter_reduce(
                0, cluster[order], rank, reduce="amin")
            has = first < len(order)
            new[has] = mode[order[first[has]]]
        assigned = new[cluster].view(len(index), -1)
        hit = assigned != IGNORE
        self.labels[index] = torch.where(hit, assigned, self.labels[index])
        self.corrected[index] |= hit


@register("defense", "pnal")
def pnal(*, queue: int = 4, tau: float = 0.05, warmup_epochs: int = 4, vote: bool = True, vote_threshold: int = 5,
         clustering: str = "dbscan", cluster_eps: float = 0.08, seed: int = 0) -> PNAL:
    """Noisy labels: PNAL (arXiv 2107.14230), history reliability + cluster-wise voting correction."""
    return PNAL(queue=queue, tau=tau, warmup_epochs=warmup_epochs, vote=vote, vote_threshold=vote_threshold,
                clustering=clustering, cluster_eps=cluster_eps, seed=seed)
