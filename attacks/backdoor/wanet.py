"""WaNet (Nguyen & Tran, ICLR 2021, arXiv 2102.10369): an imperceptible, smooth warping of the image.

A random ``k × k`` field of 2-D offsets in [-1, 1], normalised to mean absolute value 1, is upsampled
bicubically to the image size and added, scaled by ``s / H``, to the identity sampling grid
(times ``grid_rescale``, clipped to [-1, 1]); the image is resampled through it (bilinear,
``align_corners=True``), as in the official release and BackdoorBench (k = 4, s = 0.5,
grid_rescale = 1). Noise mode ("cross" samples, cross ratio 2): the same grid plus independent
per-pixel offsets uniform in ±1/H, applied to other training images that keep their true label, so
the network must learn the exact warp rather than any warp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from attacks.backdoor.base import BackdoorAttack
from secbench.errors import SecbenchError
from secbench.registry import register


@register("attack", "wanet")
@dataclass(kw_only=True)
class WaNet(BackdoorAttack):
    """WaNet (arXiv 2102.10369): warping field k=4, s=0.5, with noise-mode (cross ratio 2) samples.

    Args:
        k: side of the random control grid.
        s: warping strength.
        grid_rescale: scale of the whole grid (below 1 keeps samples off the border).
        noise_ratio: noise-mode images per poisoned image (the paper's cross ratio).
    """

    name: ClassVar[str] = "wanet"
    k: int = 4
    s: float = 0.5
    grid_rescale: float = 1.0
    noise_ratio: float = 2.0
    _grids: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)
    _noise_generator: torch.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.k < 2 or self.s <= 0 or self.grid_rescale <= 0 or self.noise_ratio < 0:
            raise SecbenchError("wanet needs k >= 2, positive s and grid_rescale, and noise_ratio >= 0")
        # its own stream, so that noise images never change the warping field or the poisoned images
        self._noise_generator = torch.Generator().manual_seed(self.seed + 1)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """The warping grid for ``(H, W)`` images: float ``(1, H, W, 2)`` of (x, y) in [-1, 1]."""
        if (height, width) not in self._grids:
            generator = torch.Generator().manual_seed(self.seed)
            offsets = torch.rand(1, 2, self.k, self.k, generator=generator) * 2 - 1
            offsets = offsets / offsets.abs().mean()
            field_ = F.interpolate(offsets, size=(height, width), mode="bicubic", align_corners=True)
            field_ = field_.permute(0, 2, 3, 1)  # (1, H, W, 2): x (column) offset first, as grid_sample reads it
            rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
            identity = torch.stack((cols, rows), dim=2)[None]
            scale = torch.tensor([width, height], dtype=torch.float32)  # displacement in pixels of each axis
            self._grids[height, width] = ((identity + self.s * field_ / scale) * self.grid_rescale).clamp(-1, 1)
        return self._grids[height, width]

    def _warp(self, images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        grid = grid.to(images.device, images.dtype).expand(len(images), -1, -1, -1)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True).clamp(0, 1)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return self._warp(images, self.grid(*images.shape[-2:]))

    def noise(self, images: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        jitter = torch.rand(n, height, width, 2, generator=self._noise_generator) * 2 - 1
        scale = torch.tensor([width, height], dtype=torch.float32)
        return self._warp(images, (self.grid(height, width) + jitter / scale).clamp(-1, 1))
