"""SIG (Barni, Kallas, Tondi, arXiv 1902.11237): a horizontal sinusoid added to the image, clean-label.

``x'[i, j] = x[i, j] + Δ sin(2π j f / W)`` in every row and channel, clipped to the valid range;
BackdoorBench's defaults Δ = 40 (of 255) and f = 6. Clean-label: only images of the target class
are poisoned during training and their labels stay as they are; at test time the signal is added
to images of the other classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from attacks.backdoor.base import BackdoorAttack
from secbench.errors import SecbenchError
from secbench.registry import register


@register("attack", "sig")
@dataclass(kw_only=True)
class SIG(BackdoorAttack):
    """SIG (arXiv 1902.11237): additive horizontal sinusoid, delta 40/255, 6 periods; clean-label.

    Args:
        delta: amplitude in 0..255 pixel levels.
        frequency: periods across the image width.
    """

    name: ClassVar[str] = "sig"
    clean_label: ClassVar[bool] = True
    delta: float = 40.0
    frequency: float = 6.0

    def __post_init__(self) -> None:
        if self.delta <= 0 or self.frequency <= 0:
            raise SecbenchError(f"sig needs a positive delta and frequency, got {self.delta}, {self.frequency}")

    def signal(self, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The additive signal along the columns: float ``(W,)`` in [-delta/255, delta/255]."""
        columns = torch.arange(width, dtype=torch.float32, device=device)
        return self.delta / 255 * torch.sin(2 * math.pi * columns * self.frequency / width)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return (images + self.signal(images.shape[-1], images.device).to(images.dtype)).clamp(0, 1)
