"""Poisoning with any trigger: which images, which labels, and how a training-controlled attacker feeds them.

Labels: ``all-to-one`` sends every poisoned image to ``target``; ``all-to-all`` sends label y to
(y + 1) mod C. Which training images may be poisoned (the *eligible* ones):

=================== ======================================= ========================================
attack / mode       eligible training images                test images the ASR is measured on
=================== ======================================= ========================================
dirty-label, 1-to-1 every image not of the target class     every image not of the target class
dirty-label, all    every image                             every image (target: its label + 1)
clean-label (SIG)   target-class images (labels kept)       every image not of the target class
=================== ======================================= ========================================

Exactly ``round(rate × eligible)`` images are poisoned, drawn from the seed (``basis="eligible"``, the
default). ``basis="all"`` counts the rate over the whole training set, as BackdoorBench does, and still
draws from the eligible images: at 10 balanced classes of 1,000, SIG's 0.1 then poisons all 1,000
target-class images where the default poisons 100, and BadNets' 0.1 poisons 1,000 images where the
default poisons 900. Poisoned images are rounded to 8 bits, as a stored image would be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from attacks.backdoor.base import BackdoorAttack
from secbench.data.base import ImageSet
from secbench.errors import SecbenchError, UnknownNameError

MODES = ("all-to-one", "all-to-all")
RATE_BASES = ("eligible", "all")  # what a poison rate counts: the images that may be poisoned, or all
_BATCH = 1024  # images per trigger call: keeps the float copies small on large datasets


def poisoned_labels(labels: torch.Tensor, *, mode: str, target: int, num_classes: int) -> torch.Tensor:
    """The labels a backdoor should produce for images whose true labels are ``labels``."""
    if mode == "all-to-one":
        return torch.full_like(labels, target)
    if mode == "all-to-all":
        return (labels + 1) % num_classes
    raise UnknownNameError("poisoning mode", mode, MODES)


def check_mode(attack: BackdoorAttack | type[BackdoorAttack], mode: str) -> None:
    """Raise :class:`SecbenchError` unless ``attack`` (or its class) can poison in ``mode``."""
    if mode not in MODES:
        raise UnknownNameError("--mode", mode, MODES)
    if attack.clean_label and mode != "all-to-one":
        raise SecbenchError(f"{attack.name} is a clean-label attack: it poisons the target class only, so "
                            f"--mode must be all-to-one")


def check_setting(attack: BackdoorAttack | type[BackdoorAttack], *, mode: str, target: int, num_classes: int) -> None:
    """Raise :class:`SecbenchError` for a combination that cannot be run (an attack or its class)."""
    check_mode(attack, mode)
    if not 0 <= target < num_classes:
        raise SecbenchError(f"--target must be a class index in 0..{num_classes - 1}, got {target}")


def _asr_mask(labels: torch.Tensor, *, mode: str, target: int) -> torch.Tensor:
    # an image already of the target class says nothing about the backdoor
    return labels != target if mode == "all-to-one" else torch.ones_like(labels, dtype=torch.bool)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] rounded to uint8 (0..255)."""
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def transform_uint8(images: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply a float-image function ``fn`` to uint8 ``(N, 3, H, W)`` images in batches; uint8 out."""
    if len(images) == 0:
        return images.clone()
    return torch.cat([to_uint8(fn(images[i : i + _BATCH].float().div(255))) for i in range(0, len(images), _BATCH)])


@dataclass(frozen=True)
class PoisonedSet:
    """A poisoned training set. ``data``: the training set with the poisoned images (and labels) and the
    noise-mode images in place; ``index`` / ``noise_index``: their sorted positions (int64); ``clean``:
    the training set before poisoning, aligned with ``data``."""

    data: ImageSet
    index: torch.Tensor
    noise_index: torch.Tensor
    clean: ImageSet

    @property
    def pool(self) -> ImageSet:
        """The modified images alone: what a training-controlled attacker adds to the clean batches."""
        return self.data.subset(torch.cat([self.index, self.noise_index]))

    def is_poisoned(self) -> torch.Tensor:
        """bool ``(N,)``: True at the poisoned images (the positives a data-filtering defense should find)."""
        mask = torch.zeros(len(self.data), dtype=torch.bool)
        mask[self.index] = True
        return mask


def poison_count(labels: torch.Tensor, attack: BackdoorAttack | type[BackdoorAttack], *, rate: float, mode: str,
                 target: int, basis: str = "eligible") -> tuple[torch.Tensor, int]:
    """The eligible training images (int64 positions in ``labels``) and how many of them to poison; a
    rate that poisons none, or more than there are, is a :class:`SecbenchError`."""
    if not 0.0 < rate <= 1.0:
        raise SecbenchError(f"--poison-rate must be in (0, 1], got {rate}")
    if basis not in RATE_BASES:
        raise UnknownNameError("--rate-basis", basis, RATE_BASES)
    eligible = torch.nonzero(labels == target if attack.clean_label else _asr_mask(labels, mode=mode, target=target))
    eligible = eligible.flatten()
    counted = len(eligible) if basis == "eligible" else len(labels)
    n_poison = round(rate * counted)
    if n_poison == 0:
        raise SecbenchError(f"--poison-rate {rate} of {counted} training images poisons none")
    if n_poison > len(eligible):
        what = "target-class images (a clean-label attack)" if attack.clean_label else "eligible images"
        raise SecbenchError(f"--poison-rate {rate} of all {counted} training images is {n_poison} images, more than "
                            f"the {len(eligible)} {what}; lower --poison-rate or use --rate-basis eligible")
    return eligible, n_poison


def poison_training_set(train: ImageSet, attack: BackdoorAttack, *, rate: float, mode: str, target: int,
                        num_classes: int, seed: int, basis: str = "eligible") -> PoisonedSet:
    """Poison exactly ``round(rate × eligible)`` training images drawn from ``seed`` (see the module's table;
    ``basis="all"``: ``round(rate × len(train))`` of the eligible ones), plus ``round(attack.noise_ratio ×
    poisoned)`` noise-mode images drawn from the rest, labels kept."""
    check_setting(attack, mode=mode, target=target, num_classes=num_classes)
    labels = train.labels
    eligible, n_poison = poison_count(labels, attack, rate=rate, mode=mode, target=target, basis=basis)
    generator = torch.Generator().manual_seed(seed)
    index = eligible[torch.randperm(len(eligible), generator=generator)[:n_poison]].sort().values
    untouched = torch.ones(len(train), dtype=torch.bool)
    untouched[index] = False
    rest = torch.nonzero(untouched).flatten()
    n_noise = min(round(attack.noise_ratio * n_poison), len(rest))
    noise_index = rest[torch.randperm(len(rest), generator=generator)[:n_noise]].sort().values

    images, new_labels = train.images.clone(), labels.clone()
    images[index] = transform_uint8(train.images[index], attack.apply)
    if not attack.clean_label:
        new_labels[index] = poisoned_labels(labels[index], mode=mode, target=target, num_classes=num_classes)
    images[noise_index] = transform_uint8(train.images[noise_index], attack.noise)
    return PoisonedSet(ImageSet(images, new_labels), index, noise_index, train)


@dataclass(frozen=True)
class PoisonedTest:
    """The test images the ASR is measured on (``clean``, true labels), their poisoned versions
    (``images``, uint8) and the labels the backdoor should produce (``targets``)."""

    clean: ImageSet
    images: torch.Tensor
    targets: torch.Tensor

    def as_target(self, images: torch.Tensor | None = None) -> ImageSet:
        """Poisoned (or further transformed) images labelled with the backdoor's targets: accuracy = ASR."""
        return ImageSet(self.images if images is None else images, self.targets)

    def as_true(self) -> ImageSet:
        """Poisoned images with their true labels: accuracy = robust accuracy (RA)."""
        return ImageSet(self.images, self.clean.labels)


def poison_test_set(test: ImageSet, attack: BackdoorAttack, *, mode: str, target: int,
                    num_classes: int) -> PoisonedTest:
    """The trigger applied to every test image the ASR counts (all-to-one: those not of the target class)."""
    check_setting(attack, mode=mode, target=target, num_classes=num_classes)
    clean = test.subset(torch.nonzero(_asr_mask(test.labels, mode=mode, target=target)).flatten())
    targets = poisoned_labels(clean.labels, mode=mode, target=target, num_classes=num_classes)
    return PoisonedTest(clean, transform_uint8(clean.images, attack.apply), targets)


class PairedPoison:
    """Training-controlled poisoning as in Poison Ink's ``backdoored_model.py``: every clean batch of B
    images gets B images of the poison ``pool`` appended (``torch.cat([input, wm_input])``), so each step
    trains on as many poisoned images as clean ones. The pool is cycled, reshuffled on each pass.

    A ``secbench.engine.fit`` batch hook: ``(images, labels) -> (images, labels)`` with twice the rows.
    """

    def __init__(self, pool: ImageSet, *, seed: int):
        if len(pool) == 0:
            raise ValueError("an empty poison pool cannot be paired with clean batches")
        self.pool, self.generator = pool, torch.Generator().manual_seed(seed)
        self._order, self._next = torch.empty(0, dtype=torch.long), 0

    def _take(self, n: int) -> torch.Tensor:
        taken = []
        while n > 0:
            if self._next == len(self._order):
                self._order, self._next = torch.randperm(len(self.pool), generator=self.generator), 0
            chunk = self._order[self._next : self._next + n]
            self._next += len(chunk)
            n -= len(chunk)
            taken.append(chunk)
        return torch.cat(taken)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        poisoned, targets = self.pool.batch(self._take(len(images)))
        return torch.cat([images, poisoned.to(images.device)]), torch.cat([labels, targets.to(labels.device)])
