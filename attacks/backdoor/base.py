"""The backdoor-attack contract: one trigger interface for every attack, acting on image tensors.

An attack is a keyword-only dataclass whose fields are its whole configuration (``describe()`` gives
them to the record and to cache keys), registered with ``@register("attack", name)``. Scenarios
build it with ``create("attack", name, seed=...)``, call ``prepare`` once on the clean training set,
then ``apply`` to any images: poisoning the training set, the test set, or a batch during training.
Label flipping, poison rates and the threat model live in :mod:`attacks.backdoor.poison`, not here,
so that every trigger serves every poisoning mode.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from secbench.data.base import ImageSet
from secbench.errors import UnknownNameError
from secbench.progress import Progress
from secbench.registry import get, list_names


class TrainingContext(Protocol):
    """What ``prepare`` may use of the run's context (``secbench.scenarios.base.RunContext`` has it)."""

    device: torch.device
    seed: int
    cache: Path  # shared across runs: a learned trigger is stored here and reused
    progress: Progress


@dataclass(kw_only=True)
class BackdoorAttack(abc.ABC):
    """A backdoor trigger. Subclasses set ``name`` and ``clean_label`` and implement ``apply``.

    Args:
        seed: every random choice of the trigger (a random key, a warping field) derives from it.
        noise_ratio: noise-mode images per poisoned image (WaNet's cross ratio): images that carry a
            perturbed trigger but keep their true label, so the model learns the exact trigger only.
            0 for attacks without a noise mode.

    Shape: ``apply`` maps float ``(N, 3, H, W)`` in [0, 1] to the same shape and range, on the
    images' device, and is deterministic: the same images give the same poisoned images.
    """

    name: ClassVar[str]
    clean_label: ClassVar[bool] = False  # poisons only target-class images and keeps every label

    seed: int = 0
    noise_ratio: float = 0.0

    def prepare(self, train: ImageSet, ctx: TrainingContext) -> None:  # noqa: B027  (an optional hook)
        """Learn (or load from ``ctx.cache``) whatever the trigger needs, from the clean training set.

        A no-op for fixed triggers; a learned trigger (an injection network) trains here once.
        """

    @abc.abstractmethod
    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """The poisoned version of float ``(N, 3, H, W)`` images in [0, 1]."""

    def noise(self, images: torch.Tensor) -> torch.Tensor:
        """Noise-mode images (same contract as ``apply``, random per call); only when ``noise_ratio > 0``."""
        raise NotImplementedError(f"{self.name} has no noise mode")

    def explain(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra named rows for the scenario's example picture of float ``(N, 3, H, W)`` clean ``images``:
        how the trigger is made (a learned trigger shows its trigger image and what its extractor
        recovers). None for fixed triggers, whose residual row says it all."""
        return {}

    def probes(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """Other poisonings than ``apply`` (same contract) that test what a backdoor keys on, by name;
        the scenario reports the ASR of each as ``<name>_asr``. None for fixed triggers, whose every
        pixel is the trigger."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The attack's name and options, for the record and for cache keys."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self) if f.init}}


def backdoor_attack_names() -> list[str]:
    """The registered attacks that are backdoor attacks (what ``--attack all`` runs), sorted."""
    def is_backdoor(name: str) -> bool:
        factory = get("attack", name).load()
        return isinstance(factory, type) and issubclass(factory, BackdoorAttack)

    return [name for name in list_names("attack") if is_backdoor(name)]


def backdoor_class(name: str) -> type[BackdoorAttack]:
    """The class registered as ``name``; a name that is not a backdoor attack is a user error."""
    if name not in backdoor_attack_names():
        raise UnknownNameError("backdoor attack", name, (*backdoor_attack_names(), "all"))
    return get("attack", name).load()
