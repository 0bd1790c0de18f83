"""Augmentation attacks on a watermarked image-to-image model, with albumentations.

The thief trains a surrogate on (input, watermarked output) pairs collected from the owner's API and
augments every pair with ONE sampled transform applied to both images (``additional_targets``), so
that the surrogate still learns the task while the watermark loses the fixed pixel positions a
spatially-consistent extractor relies on (arXiv 2108.02360). Each pair draws its own parameters.

Default strengths follow the design-proposal attack grid in ``shared/reference/watermarking.md``
("Attack grid and metrics"); the paper's own ranges are not available in the sources consulted.
Each range is sampled uniformly per pair; every option can be overridden (a fixed grid point is
a degenerate range, e.g. ``scale=(0.75, 0.75)``).

=========== ====================================== ============================ ===========================
attack      albumentations transform               default strength             why
=========== ====================================== ============================ ===========================
aug-none    (none)                                 —                            control: plain surrogate
aug-flip    HorizontalFlip + VerticalFlip          each flip with ``p=0.5``     grid: horizontal/vertical
aug-crop    RandomResizedCrop (back to H×W)        area ``scale=(0.5, 1.0)``    grid: keep 90/75/50 % area
aug-rotate  Rotate, reflect border                 ``degrees=45`` (±45°)        grid: ±15/30/45°
aug-resize  Downscale (area down, bilinear up)     factor ``scale=(0.5, 1.0)``  grid: ×0.5, ×0.75
aug-jpeg    ImageCompression (JPEG)                ``quality=(50, 90)``         grid: Q 90/70/50
aug-noise   GaussNoise (std / 255)                 ``std=(0.01, 0.03)``         grid: σ 0.01/0.03
aug-blur    GaussianBlur                           ``sigma=(0.4, 1.5)`` px      not in grid: corruptions'
                                                                                CIFAR-10-C blur range
aug-combo   crop + rotate + flip                   the three defaults above     grid: combinations
=========== ====================================== ============================ ===========================

Notes: RandomResizedCrop keeps albumentations' aspect-ratio range 3/4–4/3; the grid's 90° rotation
needs ``degrees=90``; its ×1.5 resize (up, then down) is close to lossless and is not covered. Every transform and every ``Compose`` is
built with ``strict=True``: a wrong argument name is an error, not a silent default.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from secbench.registry import register

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations phones home on import otherwise
import albumentations as A  # noqa: E402
import cv2  # noqa: E402

# (H, W) of the images -> the transforms of one attack; the size is needed to crop back to H×W
Builder = Callable[[tuple[int, int]], list[A.BasicTransform]]
AUGMENTATIONS = ("aug-none", "aug-flip", "aug-crop", "aug-rotate", "aug-resize", "aug-jpeg", "aug-noise",
                 "aug-blur", "aug-combo")


class PairAugmentation:
    """``(inputs, targets)`` uint8 ``(N, 3, H, W)`` → the same shapes, pair i transformed with one
    parameter draw shared by ``inputs[i]`` and ``targets[i]``.

    One random stream per image size, seeded with ``seed``: the same sequence of calls gives the
    same outputs, and successive calls (batches, epochs) keep drawing fresh parameters.
    """

    def __init__(self, build: Builder, seed: int):
        self.build, self.seed = build, seed
        self._composes: dict[tuple[int, int], A.Compose] = {}

    def compose(self, size: tuple[int, int]) -> A.Compose:
        """The albumentations pipeline for ``(H, W)`` images, built once so that its random stream carries on."""
        if size not in self._composes:
            self._composes[size] = A.Compose(self.build(size), additional_targets={"target": "image"},
                                             seed=self.seed, strict=True)
        return self._composes[size]

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if inputs.shape != targets.shape or inputs.dtype != torch.uint8 or targets.dtype != torch.uint8:
            raise ValueError(f"need two uint8 (N, 3, H, W) batches of one shape, got {inputs.dtype} "
                             f"{tuple(inputs.shape)} and {targets.dtype} {tuple(targets.shape)}")
        transform = self.compose((inputs.shape[2], inputs.shape[3]))
        arrays = (inputs.permute(0, 2, 3, 1).cpu().numpy(), targets.permute(0, 2, 3, 1).cpu().numpy())
        pairs = [transform(image=np.ascontiguousarray(x), target=np.ascontiguousarray(y))
                 for x, y in zip(*arrays, strict=True)]
        return _batch([p["image"] for p in pairs]), _batch([p["target"] for p in pairs])

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """Unpaired use: uint8 ``(N, 3, H, W)`` → the same shape, each image with its own parameter draw."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"need a uint8 (N, 3, H, W) batch, got {images.dtype} {tuple(images.shape)}")
        transform = self.compose((images.shape[2], images.shape[3]))
        arrays = images.permute(0, 2, 3, 1).cpu().numpy()
        return _batch([transform(image=np.ascontiguousarray(x))["image"] for x in arrays])


def _batch(images: list[np.ndarray]) -> torch.Tensor:
    """``N`` uint8 ``(H, W, 3)`` arrays → uint8 ``(N, 3, H, W)``."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _flip(p: float) -> list[A.BasicTransform]:
    return [A.HorizontalFlip(p=p, strict=True), A.VerticalFlip(p=p, strict=True)]


def _crop(size: tuple[int, int], scale: tuple[float, float], p: float) -> A.BasicTransform:
    return A.RandomResizedCrop(size=size, scale=scale, p=p, strict=True)


def _rotate(degrees: float, p: float) -> A.BasicTransform:
    # reflect, not a constant fill: a black corner would be an easy cue for the surrogate
    return A.Rotate(limit=(-degrees, degrees), border_mode=cv2.BORDER_REFLECT_101, p=p, strict=True)


@register("attack", "aug-none")
def aug_none(*, seed: int = 0) -> PairAugmentation:
    """No augmentation: the surrogate trains on the pairs as collected (the control)."""
    return PairAugmentation(lambda size: [], seed)


@register("attack", "aug-flip")
def aug_flip(*, p: float = 0.5, seed: int = 0) -> PairAugmentation:
    """Horizontal and vertical flip, each independently with probability ``p`` in [0, 1]."""
    return PairAugmentation(lambda size: _flip(p), seed)


@register("attack", "aug-crop")
def aug_crop(*, scale: tuple[float, float] = (0.5, 1.0), p: float = 1.0, seed: int = 0) -> PairAugmentation:
    """Random resized crop keeping a ``scale`` fraction (0, 1] of the area, resized back to H×W."""
    return PairAugmentation(lambda size: [_crop(size, scale, p)], seed)


@register("attack", "aug-rotate")
def aug_rotate(*, degrees: float = 45.0, p: float = 1.0, seed: int = 0) -> PairAugmentation:
    """Rotation by an angle uniform in ±``degrees``, reflected border, same size."""
    return PairAugmentation(lambda size: [_rotate(degrees, p)], seed)


@register("attack", "aug-resize")
def aug_resize(*, scale: tuple[float, float] = (0.5, 1.0), p: float = 1.0, seed: int = 0) -> PairAugmentation:
    """Resize down by a factor in ``scale`` ⊂ (0, 1] (area), then back up to H×W (bilinear)."""
    pair = {"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}
    return PairAugmentation(lambda size: [A.Downscale(scale_range=scale, interpolation_pair=pair, p=p,
                                                      strict=True)], seed)


@register("attack", "aug-jpeg")
def aug_jpeg(*, quality: tuple[int, int] = (50, 90), p: float = 1.0, seed: int = 0) -> PairAugmentation:
    """JPEG compression at a quality in ``quality`` ⊂ [1, 100]."""
    return PairAugmentation(lambda size: [A.ImageCompression(quality_range=quality, p=p, strict=True)], seed)


@register("attack", "aug-noise")
def aug_noise(*, std: tuple[float, float] = (0.01, 0.03), p: float = 1.0, seed: int = 0) -> PairAugmentation:
    """Additive Gaussian noise, std in ``std`` as a fraction of 255 (one noise draw for the pair)."""
    return PairAugmentation(lambda size: [A.GaussNoise(std_range=std, p=p, strict=True)], seed)


@register("attack", "aug-blur")
def aug_blur(*, sigma: tuple[float, float] = (0.4, 1.5), p: float = 1.0, seed: int = 0) -> PairAugmentation:
    """Gaussian blur, sigma in ``sigma`` pixels (kernel size derived from sigma)."""
    return PairAugmentation(lambda size: [A.GaussianBlur(blur_limit=0, sigma_limit=sigma, p=p, strict=True)], seed)


@register("attack", "aug-combo")
def aug_combo(*, scale: tuple[float, float] = (0.5, 1.0), degrees: float = 45.0, flip_p: float = 0.5,
              seed: int = 0) -> PairAugmentation:
    """Crop (area ``scale``), then rotation (±``degrees``), then flips (each with ``flip_p``)."""
    return PairAugmentation(lambda size: [_crop(size, scale, 1.0), _rotate(degrees, 1.0), *_flip(flip_p)], seed)
