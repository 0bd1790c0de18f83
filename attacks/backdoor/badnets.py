"""BadNets (Gu, Dolan-Gavitt, Garg, arXiv 1708.06733): a small patch stamped at a fixed position.

Default trigger: a 3×3 white square in the bottom-right corner, BackdoorBox's CIFAR-10 default
(``pattern[-3:, -3:] = 255`` with weight 1). Every pixel outside the patch is left untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from attacks.backdoor.base import BackdoorAttack
from secbench.errors import SecbenchError
from secbench.registry import register


@register("attack", "badnets")
@dataclass(kw_only=True)
class BadNets(BackdoorAttack):
    """BadNets (arXiv 1708.06733): a 3×3 white patch in the bottom-right corner.

    Args:
        patch_size: side of the square patch in pixels.
        value: the patch's intensity in [0, 1], the same in every channel (1.0: white).
    """

    name: ClassVar[str] = "badnets"
    patch_size: int = 3
    value: float = 1.0

    def __post_init__(self) -> None:
        if self.patch_size < 1 or not 0.0 <= self.value <= 1.0:
            raise SecbenchError(f"badnets needs patch_size >= 1 and value in [0, 1], got {self.patch_size}, "
                                f"{self.value}")

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        if p > min(images.shape[-2:]):
            raise SecbenchError(f"a {p}-pixel patch does not fit {tuple(images.shape[-2:])} images")
        poisoned = images.clone()
        poisoned[..., -p:, -p:] = self.value
        return poisoned
