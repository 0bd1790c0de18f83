"""Label noise for point-cloud segmentation: the annotator as adversary, at an exact realised rate.

PNAL (arXiv 2107.14230) corrupts S3DIS the way annotators err: whole object instances get a wrong
class. Its generator stops near, not at, the nominal rate (about 0.80-0.87 × the rate, tuned per
seed); cleanlab users report the same gap (issue #977). Here the rate is exact: whole instances are
flipped, in random order, while they fit the budget of ``round(rate × points)`` flips, and the
remainder is one instance's spatially contiguous part (its points nearest a random point of it), so
the realised rate differs from ``rate`` by less than one point.

Kinds (registered as attacks ``noise-<kind>``):

- ``symmetric``: an instance's new class is uniform over the other classes (PNAL's type 1);
- ``asymmetric``: PNAL's type 2: an instance of a paired class (window↔wall, board↔door,
  bookcase↔table on S3DIS; by name, see :data:`PAIRS`) goes to its partner with probability 1/3,
  otherwise, like every unpaired class, to a uniformly random other class;
- ``point``: exactly ``round(rate × points)`` points, drawn uniformly, each to a random other class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from secbench.errors import SecbenchError
from secbench.registry import register

NOISE_KINDS = ("symmetric", "asymmetric", "point")
# Confusable class pairs by name, first match wins, a class in one pair at most: PNAL's S3DIS pairs,
# then their analogues in the procedural scenes (no board there) and ScanNet (bookshelf, no bookcase).
PAIRS = (("window", "wall"), ("board", "door"), ("bookcase", "table"), ("bookshelf", "table"), ("door", "cabinet"))
PARTNER_PROBABILITY = 1 / 3


def class_pairs(classes: tuple[str, ...]) -> dict[int, int]:
    """Class index → partner index for the :data:`PAIRS` present in ``classes`` (both directions)."""
    index = {name: i for i, name in enumerate(classes)}
    partner: dict[int, int] = {}
    for a, b in PAIRS:
        if a in index and b in index and index[a] not in partner and index[b] not in partner:
            partner[index[a]], partner[index[b]] = index[b], index[a]
    return partner


@dataclass(frozen=True)
class LabelNoise:
    """Corrupt per-point labels at the exact rate ``rate`` (in [0, 1)) of noise ``kind``."""

    kind: str
    rate: float
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise SecbenchError(f"unknown noise kind {self.kind!r}; valid: {', '.join(NOISE_KINDS)}")
        if not 0 <= self.rate < 1:
            raise SecbenchError(f"a noise rate lies in [0, 1), got {self.rate}")

    def __call__(self, labels: torch.Tensor, instances: torch.Tensor, positions: torch.Tensor,
                 classes: tuple[str, ...]) -> torch.Tensor:
        """Noisy copy of ``labels`` (int64, any shape); ``instances``: the same shape, object ids;
        ``positions``: ``(*labels.shape, 3)``, coordinates consistent within an instance."""
        if len(classes) < 2:
            raise SecbenchError("label noise needs at least two classes")
        rng = np.random.default_rng(self.seed)
        clean = labels.reshape(-1).cpu().numpy()
        noisy = clean.copy()
        budget = round(self.rate * len(clean))
        if self.kind == "point":
            chosen = rng.choice(len(clean), budget, replace=False)
            noisy[chosen] = _other_class(clean[chosen], len(classes), rng)
        else:
            partner = class_pairs(classes) if self.kind == "asymmetric" else {}
            inst = instances.reshape(-1).cpu().numpy()
            where = positions.reshape(-1, 3).cpu().numpy()
            self._flip_instances(noisy, clean, inst, where, budget, partner, len(classes), rng)
        return torch.from_numpy(noisy).view(labels.shape).to(labels.device)

    @staticmethod
    def _flip_instances(noisy: np.ndarray, clean: np.ndarray, inst: np.ndarray, where: np.ndarray, budget: int,
                        partner: dict[int, int], num_classes: int, rng: np.random.Generator) -> None:
        """Flip whole instances, in random order, while they fit ``budget``; then part of the first that did not."""
        ids, first, members_of = np.unique(inst, return_index=True, return_inverse=True)
        order = np.argsort(members_of, kind="stable")
        starts = np.searchsorted(members_of[order], np.arange(len(ids) + 1))
        flipped, partial = 0, None
        for i in rng.permutation(len(ids)):
            members = order[starts[i] : starts[i + 1]]
            if flipped + len(members) <= budget:
                noisy[members] = _instance_target(clean[first[i]], partner, num_classes, rng)
                flipped += len(members)
            elif partial is None:
                partial = members
            if flipped == budget:
                return
        assert partial is not None and len(partial) > budget - flipped  # the first misfit is larger than the rest
        # the instance's points nearest one of them: a contiguous part of the object, as an annotator's stroke
        seed_point = where[rng.choice(partial)]
        part = partial[np.argsort(((where[partial] - seed_point) ** 2).sum(1), kind="stable")[: budget - flipped]]
        noisy[part] = _instance_target(clean[part[0]], partner, num_classes, rng)


def _other_class(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random class other than each of ``labels``."""
    return (labels + rng.integers(1, num_classes, size=labels.shape)) % num_classes


def _instance_target(label: int, partner: dict[int, int], num_classes: int, rng: np.random.Generator) -> int:
    if label in partner and rng.random() < PARTNER_PROBABILITY:
        return partner[label]
    return int(_other_class(np.array([label]), num_classes, rng)[0])


def realised_rate(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """The fraction of points whose label differs from the clean one."""
    return (clean != noisy).float().mean().item()


def _factory(kind: str):
    def build(*, rate: float, seed: int = 0) -> LabelNoise:
        return LabelNoise(kind, rate, seed)

    return build


register("attack", "noise-symmetric", summary="label noise: whole instances to a uniformly random other class "
         "(PNAL type 1), exact rate")(_factory("symmetric"))
register("attack", "noise-asymmetric", summary="label noise: paired classes to their partner w.p. 1/3, else "
         "random (PNAL type 2), exact rate")(_factory("asymmetric"))
register("attack", "noise-point", summary="label noise: uniformly chosen points to a random other class, "
         "exact rate")(_factory("point"))
