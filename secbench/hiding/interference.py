"""The interference layer: random geometric transforms between embedder and extractor.

One sampled :class:`Transform` moves several batches identically (the marked image and its clean
cover), so the extractor's target can be recomputed from the transformed cover, as in Poison Ink's
``IN_GE.py`` and the structure-consistency watermark (arXiv 2108.02360). Rotation, crop and flips
are one affine resampling per image (bilinear, reflected border); resize is a down-then-up
resampling of the whole batch; noise is added to the marked image only. Everything is
differentiable, so gradients reach the embedder through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from secbench.errors import UnknownNameError

INTERFERENCES = ("rotate", "crop", "resize", "flip", "noise")


@dataclass(frozen=True)
class Transform:
    """One draw of the interference: ``theta`` ``(N, 2, 3)`` affine maps, a resize ``factor``, a noise σ."""

    theta: torch.Tensor | None
    factor: float | None
    noise_sigma: float

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → the same shape, geometrically transformed (no noise)."""
        if self.theta is not None:
            grid = F.affine_grid(self.theta.to(images), list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if self.factor is not None:
            size = images.shape[-2:]
            small = [max(1, round(s * self.factor)) for s in size]
            images = F.interpolate(images, size=small, mode="bilinear", antialias=True, align_corners=False)
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return images

    def noisy(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """:meth:`__call__` plus Gaussian noise: how the marked image reaches the extractor."""
        images = self(images)
        if self.noise_sigma:
            noise = torch.randn(images.shape, generator=generator, device=generator.device).to(images)
            images = images + self.noise_sigma * noise
        return images


class Interference:
    """Samples :class:`Transform` objects from the enabled ``ops`` (a subset of :data:`INTERFERENCES`).

    Strengths (defaults cover the augmentation attacks' default ranges in ``attacks/augment.py``):
    rotation uniform in ±``degrees``; a square crop keeping an area fraction uniform in
    ``crop_area``, at a uniform position, resized back; a resize factor uniform in ``resize``;
    horizontal and vertical flips each with probability 0.5; noise of std ``noise_sigma``
    (Poison Ink's 0.01).
    """

    def __init__(self, *, degrees: float = 45.0, crop_area: tuple[float, float] = (0.5, 1.0),
                 resize: tuple[float, float] = (0.5, 1.0), noise_sigma: float = 0.01) -> None:
        self.degrees, self.crop_area, self.resize, self.noise_sigma = degrees, crop_area, resize, noise_sigma

    def sample(self, n: int, ops: Sequence[str], generator: torch.Generator) -> Transform:
        for op in ops:
            if op not in INTERFERENCES:
                raise UnknownNameError("interference", op, INTERFERENCES)

        def uniform(low: float, high: float, size: int = n) -> torch.Tensor:
            return low + (high - low) * torch.rand(size, generator=generator, device=generator.device).cpu()

        theta = None
        if {"rotate", "crop", "flip"} & set(ops):
            angle = torch.deg2rad(uniform(-self.degrees, self.degrees)) if "rotate" in ops else torch.zeros(n)
            side = uniform(*self.crop_area).sqrt() if "crop" in ops else torch.ones(n)
            flips = (uniform(0, 1, 2 * n).view(n, 2) < 0.5).float() * -2 + 1 if "flip" in ops else torch.ones(n, 2)
            cos, sin = angle.cos(), angle.sin()
            # output → input coordinates in [-1, 1]: a scaled rotation of the flipped output, shifted
            # so that the sampled window stays inside the image
            linear = side[:, None, None] * torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
            linear = linear * flips[:, None, :]
            shift = (1 - side)[:, None] * uniform(-1, 1, 2 * n).view(n, 2)
            theta = torch.cat([linear, shift[:, :, None]], 2)
        factor = None
        if "resize" in ops:
            low, high = self.resize
            factor = low + (high - low) * torch.rand((), generator=generator, device=generator.device).item()
        return Transform(theta, factor, self.noise_sigma if "noise" in ops else 0.0)


