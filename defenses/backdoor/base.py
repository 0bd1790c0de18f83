"""The backdoor-defense contract: one interface for model inspection, input filtering and model repair.

A defense is a keyword-only dataclass registered with ``@register("defense", name)``; its fields are its
options; those named like a backdoor scenario config field (``nc_steps``, ``strip_n`` ...) are set from
it, the others keep their defaults (the papers' values). ``run``
gets a :class:`DefenseInputs` (a private copy of the backdoored model, the defender's clean budget, the
test sets the scenario scores on) and returns a :class:`DefenseResult`: the repaired model (or the
inspected one unchanged), or, for an input filter, which test inputs it lets through.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from attacks.backdoor.poison import PoisonedSet, PoisonedTest
from secbench.data.base import ImageSet
from secbench.engine import TrainConfig
from secbench.errors import UnknownNameError
from secbench.registry import get, list_names

if TYPE_CHECKING:  # the scenarios import the defenses, not the other way round
    from secbench.scenarios.base import RunContext


@dataclass(frozen=True)
class DefenseInputs:
    """What a defender holds. ``model``: its own copy of the backdoored model (in eval mode, may be changed
    in place); ``budget``: clean training images, the defender's clean data; ``finetune``: the recipe of
    any fine-tuning on ``budget``. ``test`` / ``poisoned_test`` and ``poisoned_train`` (with the recorded
    poisoned positions) are for scoring detections only; ``target``: the attack's target class (None for
    all-to-all), also for scoring only. ``retrain(kept)``: a fresh victim trained from scratch on ``kept``
    (a subset of ``poisoned_train.data``) with the victim's own recipe, for the training-data filters; None
    when the victim did not train on ``poisoned_train.data`` (training-controlled threat model)."""

    model: nn.Module
    budget: ImageSet
    finetune: TrainConfig
    num_classes: int
    test: ImageSet
    poisoned_test: PoisonedTest
    poisoned_train: PoisonedSet
    target: int | None
    retrain: Callable[[ImageSet], nn.Module] | None = None


@dataclass
class DefenseResult:
    """``model``: the model the defender deploys. ``accepted`` (input filters only): bool masks of the clean
    test images and of the poisoned test images the filter lets through, in the order of ``inputs.test``
    and ``inputs.poisoned_test``. ``metrics``: detection metrics, prefixed by the defense's short name,
    with ``higher_is_better``; ``derived``: non-numeric findings for the record (flagged labels ...)."""

    model: nn.Module
    metrics: dict[str, float] = field(default_factory=dict)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)
    accepted: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass(kw_only=True)
class BackdoorDefense(abc.ABC):
    """A backdoor defense. Subclasses set ``name`` and implement ``run``; ``seed`` drives every random choice.
    ``needs_training_set``: it filters the training set the victim trained on (so it does not apply when
    the attacker ran the training)."""

    name: ClassVar[str]
    needs_training_set: ClassVar[bool] = False
    seed: int = 0

    @abc.abstractmethod
    def run(self, inputs: DefenseInputs, ctx: RunContext) -> DefenseResult:
        """Inspect, filter or repair ``inputs.model``; artifacts (PNG, JSON) go to ``ctx.artifacts``."""

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """Its option fields, all but ``seed``."""
        return tuple(f.name for f in fields(cls) if f.init and f.name != "seed")


def defense_effectiveness(*, clean_acc_before: float, clean_acc_after: float, asr_before: float,
                          asr_after: float) -> float:
    """BackdoorBench's DER in [0, 1]: [max(0, ΔASR) − max(0, ΔCA) + 1] / 2 with ΔASR = ASR before − after
    and ΔCA = CA before − after, so a drop in ASR raises it and a drop in clean accuracy lowers it. (The
    toolkit's ``utils/metric.py`` adds the ΔCA term; its docstring and ``visual_metric.py`` subtract it.)"""
    return (max(0.0, asr_before - asr_after) - max(0.0, clean_acc_before - clean_acc_after) + 1) / 2


def backdoor_defense_names() -> list[str]:
    """The registered defenses that are backdoor defenses (what ``--defense all`` runs), sorted."""
    def is_backdoor(name: str) -> bool:
        factory = get("defense", name).load()
        return isinstance(factory, type) and issubclass(factory, BackdoorDefense)

    return [name for name in list_names("defense") if is_backdoor(name)]


def backdoor_defense_class(name: str) -> type[BackdoorDefense]:
    """The class registered as ``name``; a name that is not a backdoor defense is a user error."""
    if name not in backdoor_defense_names():
        raise UnknownNameError("backdoor defense", name, (*backdoor_defense_names(), "all"))
    return get("defense", name).load()
