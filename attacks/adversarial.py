"""Adversarial examples through torchattacks, behind one contract: ``attack(images, labels) -> adv``.

Images are ``(N, 3, H, W)`` floats in [0, 1]; models normalise inside, so no torchattacks
normalisation mode is used. ``eps`` is an L∞ radius in [0, 1] pixel units for the ε-bounded attacks
(FGSM, PGD, AutoAttack); CW (L2) and DeepFool are minimal-perturbation attacks and take no ε.
Every attack is built with an explicit seed: torchattacks' random starts draw from torch's global
generator, and its AutoAttack seeds from the clock unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchattacks
from torch import nn

from secbench.registry import register

AdversarialAttack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EPS_BOUNDED = ("fgsm", "pgd", "autoattack")


def _seeded(attack: torchattacks.Attack, seed: int) -> AdversarialAttack:
    def run(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return attack(images, labels)

    run.__doc__ = repr(attack)
    return run


@register("attack", "fgsm")
def fgsm(model: nn.Module, *, eps: float = 8 / 255, seed: int = 0) -> AdversarialAttack:
    """FGSM, one signed-gradient step of size eps (Goodfellow et al., arXiv 1412.6572)."""
    return _seeded(torchattacks.FGSM(model, eps=eps), seed)


@register("attack", "pgd")
def pgd(model: nn.Module, *, eps: float = 8 / 255, steps: int = 10, alpha: float | None = None,
        seed: int = 0) -> AdversarialAttack:
    """PGD-L∞ with a random start (Madry et al., arXiv 1706.06083); step alpha = eps/4 unless given."""
    return _seeded(torchattacks.PGD(model, eps=eps, alpha=alpha or eps / 4, steps=steps, random_start=True), seed)


@register("attack", "cw")
def cw(model: nn.Module, *, c: float = 1.0, kappa: float = 0.0, steps: int = 50, lr: float = 0.01,
       seed: int = 0) -> AdversarialAttack:
    """Carlini-Wagner L2 (arXiv 1608.04644): an unbounded, minimal-L2 perturbation."""
    return _seeded(torchattacks.CW(model, c=c, kappa=kappa, steps=steps, lr=lr), seed)


@register("attack", "deepfool")
def deepfool(model: nn.Module, *, steps: int = 50, overshoot: float = 0.02, seed: int = 0) -> AdversarialAttack:
    """DeepFool (Moosavi-Dezfooli et al., arXiv 1511.04599): minimal L2 step to the nearest boundary."""
    return _seeded(torchattacks.DeepFool(model, steps=steps, overshoot=overshoot), seed)


@register("attack", "autoattack")
def autoattack(model: nn.Module, *, eps: float = 8 / 255, num_classes: int = 10, version: str = "standard",
               seed: int = 0) -> AdversarialAttack:
    """AA-lite: torchattacks' AutoAttack (APGD-CE, APGD-T, FAB-T, Square), seeded, lighter than the reference.

    torchattacks runs APGD with 10 steps and 1 restart where the reference AutoAttack uses 100 and 5, so
    its robust accuracy is an upper bound on the reference's; tables label it AA-lite.
    """
    return _seeded(torchattacks.AutoAttack(model, norm="Linf", eps=eps, version=version, n_classes=num_classes,
                                           seed=seed), seed)
