"""SimCLR's view augmentation (Chen et al. 2020, arXiv 2002.05709, appendix A), batched in torch.

Each call draws an independent transform per image: random resized crop, horizontal flip, colour
jitter (with probability 0.8) and grey conversion (0.2), the CIFAR recipe of the paper (jitter
strength 0.5, no blur). Two calls on the same batch give the two views of a positive pair.

Differences from torchvision's per-image transforms, all to keep one batched pass: the crop is an
affine resampling (bilinear) of a box drawn once, clipped to the image instead of re-drawn up to ten
times; the four jitters run in a fixed order (brightness, contrast, saturation, hue) rather than a
random one; hue is shifted by rotating chroma in YIQ space, the linear approximation of an HSV hue
shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from secbench.imageops import luma

# RGB → YIQ (NTSC): hue is the angle of the (I, Q) chroma vector.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


@dataclass(frozen=True)
class SimCLRAugment:
    """Per-image random views of ``(N, 3, H, W)`` floats in [0, 1]; output has the same shape and range.

    ``min_scale``: smallest crop area as a fraction of the image (SimCLR 0.08; 0.2 here as in the
    CIFAR recipes of MoCo and solo-learn, since a 32-pixel image has little left at 8%);
    ``strength``: colour jitter strength s (brightness, contrast, saturation 0.8 s, hue 0.2 s).
    """

    min_scale: float = 0.2
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.8
    strength: float = 0.5
    grey: float = 0.2

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = len(images)

        def uniform(low: float, high: float) -> torch.Tensor:  # one draw per image, on the images' device
            return (low + (high - low) * torch.rand(n, generator=generator)).to(images.device)

        def chance(p: float) -> torch.Tensor:
            return uniform(0, 1)[:, None, None, None] < p

        x = self._crop_flip(images, uniform)
        s = self.strength
        jittered = _colour_jitter(x, uniform(1 - 0.8 * s, 1 + 0.8 * s), uniform(1 - 0.8 * s, 1 + 0.8 * s),
                                  uniform(1 - 0.8 * s, 1 + 0.8 * s), uniform(-0.2 * s, 0.2 * s))
        x = torch.where(chance(self.jitter), jittered, x)
        return torch.where(chance(self.grey), luma(x).expand_as(x), x)

    def _crop_flip(self, images: torch.Tensor, uniform) -> torch.Tensor:
        """Random resized crop and flip as one affine grid: the box's side fractions ``w, h`` and its
        centre in [-1, 1] coordinates map the output grid onto the box."""
        area = uniform(self.min_scale, 1.0)
        log_ratio = uniform(math.log(self.ratio[0]), math.log(self.ratio[1]))
        w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
        h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
        cx, cy = (uniform(-1, 1) * (1 - w)), (uniform(-1, 1) * (1 - h))  # keeps the box inside the image
        sign = torch.where(uniform(0, 1) < self.flip, -1.0, 1.0).to(images.device)
        zero = torch.zeros_like(w)
        theta = torch.stack([torch.stack([w * sign, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)  # (N, 2, 3)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _colour_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                   hue: torch.Tensor) -> torch.Tensor:
    """torchvision's ColorJitter factors, one per image (``(N,)`` each; hue in turns), clamped after each step."""
    def per_image(v: torch.Tensor) -> torch.Tensor:
        return v[:, None, None, None]

    x = (x * per_image(brightness)).clamp(0, 1)
    grey_mean = luma(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (grey_mean + (x - grey_mean) * per_image(contrast)).clamp(0, 1)
    grey = luma(x)
    x = (grey + (x - grey) * per_image(saturation)).clamp(0, 1)
    yiq = torch.einsum("rc,nchw->nrhw", _YIQ.to(x), x)
    cos, sin = per_image(torch.cos(2 * math.pi * hue))[:, 0], per_image(torch.sin(2 * math.pi * hue))[:, 0]
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], 1)
    return torch.einsum("rc,nchw->nrhw", torch.linalg.inv(_YIQ).to(x), yiq).clamp(0, 1)
