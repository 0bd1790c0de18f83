"""Blended (Chen, Liu, Li, Lu, Song, arXiv 1712.05526): the whole image alpha-blended with a key pattern.

``x' = (1 − α) x + α k``. The paper uses two keys, a Hello Kitty photo and a random-noise image whose
pixels are uniform over 0..255; toolkits ship the photo (BackdoorBench: ``hello_kitty.jpeg``, α 0.2
for training and test). secbench downloads nothing, so it uses the paper's random-noise key, drawn
once from the attack's seed at the images' size, with BackdoorBench's α = 0.2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from attacks.backdoor.base import BackdoorAttack
from secbench.errors import SecbenchError
from secbench.registry import register


@register("attack", "blended")
@dataclass(kw_only=True)
class Blended(BackdoorAttack):
    """Blended (arXiv 1712.05526): alpha 0.2 blend with a seeded uniform random-noise key.

    Args:
        alpha: blend weight of the key in [0, 1].
    """

    name: ClassVar[str] = "blended"
    alpha: float = 0.2
    _keys: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise SecbenchError(f"blended needs alpha in (0, 1], got {self.alpha}")

    def key(self, height: int, width: int) -> torch.Tensor:
        """The key pattern for ``(H, W)`` images: float ``(3, H, W)``, values k/255, k uniform in 0..255."""
        if (height, width) not in self._keys:
            generator = torch.Generator().manual_seed(self.seed)
            levels = torch.randint(0, 256, (3, height, width), generator=generator)
            self._keys[height, width] = levels.float() / 255
        return self._keys[height, width]

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        key = self.key(*images.shape[-2:]).to(images.device, images.dtype)
        return (1 - self.alpha) * images + self.alpha * key
