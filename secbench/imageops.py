"""Batched image operations for the image-to-image scenarios (watermark, backdoor), in pure torch.

Images are float ``(N, 3, H, W)`` in [0, 1] on any device. ``luma`` and ``sobel_magnitude`` are
differentiable; ``edge_mask`` is a threshold and is not. The degradations (``add_rain``,
``add_gaussian_noise``) draw every random number from the ``torch.Generator`` they are given and
build the degradation on the generator's device, so a seeded CPU generator gives bit-identical
images whether the images live on the CPU or on CUDA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as in Poison Ink's structure mask
EDGE_THRESHOLD = 28.0  # Poison Ink's ``mask_th`` on the 0-255 Sobel magnitude


def _check_rgb(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"images must be float (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")


def luma(images: torch.Tensor) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of ``(N, 3, H, W)`` images: ``(N, 1, H, W)``, same range."""
    _check_rgb(images)
    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device)
    return torch.einsum("nchw,c->nhw", images, weights).unsqueeze(1)


def sobel_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of the luma of ``(N, 3, H, W)`` images in [0, 1]: ``(N, 1, H, W)``.

    The luma is taken on the 0-255 scale and the magnitude is ``skimage.filters.sobel``'s (the
    Poison Ink recipe, whose threshold of 28 only means something on this scale): the [1, 0, -1]
    derivative across, the [1, 2, 1] / 4 smoothing along, and ``sqrt((Gx² + Gy²) / 2)``. A vertical
    step of height ``h`` (0-255) thus gives ``h / √2`` on the two columns beside it and 0 elsewhere.
    Borders replicate the edge pixel, which for a 3×3 kernel equals scikit-image ≥ 0.19's
    ``mode="reflect"`` exactly; earlier, 2-D-only versions set the outermost pixels to 0 instead.
    """
    padded = F.pad(luma(images) * 255, (1, 1, 1, 1), mode="replicate")
    # the separable kernels as slices: differencing first makes flat regions exactly 0, which the
    # rounding of a 3×3 convolution does not
    dx = padded[..., 2:] - padded[..., :-2]
    dy = padded[..., 2:, :] - padded[..., :-2, :]
    gx = (dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]) / 4
    gy = (dy[..., :-2] + 2 * dy[..., 1:-1] + dy[..., 2:]) / 4
    squared = (gx.square() + gy.square()) / 2
    # sqrt has an infinite derivative at 0, which flat regions hit: keep them out of it so gradients stay finite
    nonzero = squared > 0
    return torch.where(nonzero, squared.where(nonzero, 1.0).sqrt(), 0.0)


def edge_mask(images: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """Binary structure mask of ``(N, 3, H, W)`` images in [0, 1]: bool ``(N, 1, H, W)``.

    True where :func:`sobel_magnitude` (0-255 scale) is strictly above ``threshold``, the rule of
    Poison Ink's ``filters.sobel(gray) > 28``. Not differentiable; ``.float()`` it for a loss weight.
    """
    return sobel_magnitude(images) > threshold


def soft_edges(images: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """Soft structure map of ``(N, 3, H, W)`` images in [0, 1]: ``(N, 1, H, W)`` in [0, 1).

    ``m / (m + threshold)`` of the 0-255 :func:`sobel_magnitude` ``m`` (0 on flat regions, 0.5 at the
    :func:`edge_mask` threshold, towards 1 on strong edges), averaged over each 3×3 neighbourhood
    (replicated borders). Unlike the mask it degrades smoothly under the blur and resampling that a
    surrogate or a geometric transform brings, and an extractor with a stride-2 stage can redraw it.
    """
    magnitude = sobel_magnitude(images)
    strength = magnitude / (magnitude + threshold)
    return F.avg_pool2d(F.pad(strength, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def edge_chroma(images: torch.Tensor) -> torch.Tensor:
    """The colour of each image's structure, less its grey level: ``(N, 3)``.

    The mean RGB of ``(N, 3, H, W)`` images in [0, 1] weighted by :func:`soft_edges`, minus the mean of
    its three channels; zero for a grey (or flat) image.
    """
    weights = soft_edges(images)
    colour = (images * weights).sum((2, 3)) / weights.sum((2, 3)).clamp_min(1e-6)
    return colour - colour.mean(1, keepdim=True)


def _uniform(low_high: tuple[float, float], n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws from U[low, high] on the generator's device (float32)."""
    low, high = low_high
    if low > high:
        raise ValueError(f"a range must have low <= high, got {low_high}")
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device)


def _streak_kernels(length: torch.Tensor, angle: torch.Tensor, size: int) -> torch.Tensor:
    """Anti-aliased line kernels ``(N, 1, size, size)``: one of ``length`` pixels through the centre per
    image, ``angle`` degrees from vertical, with unit weight along the line (a drop stays as bright)."""
    radius = size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=length.dtype, device=length.device)
    y, x = offsets[:, None], offsets[None, :]
    theta = torch.deg2rad(angle)[:, None, None]
    along = x * theta.sin() + y * theta.cos()
    across = x * theta.cos() - y * theta.sin()
    # 1 px wide with linear fall-off across, half-pixel soft caps at the ends
    profile = (1 - across.abs()).clamp_min(0)
    caps = (length[:, None, None] / 2 + 0.5 - along.abs()).clamp(0, 1)
    return (profile * caps).unsqueeze(1)


def add_rain(
    images: torch.Tensor,
    *,
    generator: torch.Generator,
    density: tuple[float, float] = (0.004, 0.02),
    length: tuple[float, float] = (6.0, 16.0),
    angle: tuple[float, float] = (-30.0, 30.0),
    brightness: tuple[float, float] = (0.5, 0.9),
) -> torch.Tensor:
    """``(N, 3, H, W)`` images in [0, 1] with synthetic rain streaks added, clipped to [0, 1].

    Per image, a density (fraction of pixels that seed a drop), a streak length (pixels), an angle
    (degrees from vertical, positive falling toward the lower right) and a brightness (added intensity of a full
    streak) are drawn uniformly from the given ``(low, high)`` ranges; pass ``(v, v)`` to fix one.
    The streaks are sparse random-intensity noise motion-blurred along that line, the usual
    synthetic-rain recipe; the same generator state gives the same rain.
    """
    _check_rgb(images)
    n, _, h, w = images.shape
    drop_fraction = _uniform(density, n, generator)
    streak_length = _uniform(length, n, generator)
    streak_angle = _uniform(angle, n, generator)
    streak_brightness = _uniform(brightness, n, generator)
    size = 2 * math.ceil(streak_length.max().item() / 2) + 1
    # drops on a canvas one kernel larger than the image, so that streaks also enter from outside
    # and the rain is as dense at the borders as in the middle
    canvas = (n, h + size - 1, w + size - 1)
    seeded = torch.rand(canvas, generator=generator, device=generator.device) < drop_fraction[:, None, None]
    drops = seeded * torch.rand(canvas, generator=generator, device=generator.device)
    kernels = _streak_kernels(streak_length, streak_angle, size)
    # a grouped convolution blurs every image with its own kernel in one call
    streaks = F.conv2d(drops.unsqueeze(0), kernels, groups=n).transpose(0, 1).clamp(0, 1)
    rain = (streak_brightness[:, None, None, None] * streaks).to(images.device, images.dtype)
    return (images + rain).clamp(0, 1)


def add_gaussian_noise(images: torch.Tensor, *, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``images`` (float, [0, 1]) plus i.i.d. N(0, ``sigma``²) noise per pixel and channel, clipped to [0, 1]."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noise = torch.randn(images.shape, generator=generator, device=generator.device)
    return (images + sigma * noise.to(images.device, images.dtype)).clamp(0, 1)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] → uint8 (0-255), rounded to the nearest level and clipped."""
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)
