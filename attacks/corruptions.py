"""Common corruptions at five severities (Hendrycks & Dietterich, arXiv 1903.12261), with albumentations.

Severity values follow CIFAR-10-C's parameters where albumentations has the same operator, so that
numbers on 32×32 data are comparable in spirit; where the operator differs (shot noise is applied in
linear light by albumentations; blur is a Gaussian rather than a disk) the table says what is used.
Every transform is built with ``strict=True``: a wrong argument name is an error, not a silent default.

Detection (:func:`corrupt_with_boxes`) runs the same table inside a ``Compose`` with ``bbox_params``, so boxes
follow every transform; it adds :data:`GEOMETRIC` corruptions (zoom-out, rotation) that move boxes. They are
kept out of :data:`CORRUPTIONS` so that the classification suite's numbers keep their meaning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from secbench.registry import register

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations phones home on import otherwise
import albumentations as A  # noqa: E402
import cv2  # noqa: E402

# name -> (transform for one severity parameter, the five parameters from mild to severe)
CORRUPTIONS: dict[str, tuple[Callable[[Any], A.BasicTransform], tuple[Any, ...]]] = {
    # std as a fraction of the value range; CIFAR-10-C sigmas
    "gaussian-noise": (lambda s: A.GaussNoise(std_range=(s, s), p=1, strict=True), (0.04, 0.06, 0.08, 0.09, 0.10)),
    # poisson(x / scale) * scale, scale = 1 / CIFAR-10-C photon count (500, 250, 100, 75, 50)
    "shot-noise": (lambda s: A.ShotNoise(scale_range=(s, s), p=1, strict=True), (0.002, 0.004, 0.01, 0.0133, 0.02)),
    # Gaussian blur sigma in pixels (CIFAR-10-C uses a disk kernel of radius 0.3-1.5)
    "blur": (lambda s: A.GaussianBlur(blur_limit=0, sigma_limit=(s, s), p=1, strict=True), (0.4, 0.6, 0.8, 1.0, 1.5)),
    # kernel size in pixels, random direction
    "motion-blur": (lambda k: A.MotionBlur(blur_limit=(k, k), p=1, strict=True), (3, 5, 7, 9, 11)),
    # JPEG quality; CIFAR-10-C values
    "jpeg": (lambda q: A.ImageCompression(quality_range=(q, q), p=1, strict=True), (80, 65, 58, 50, 40)),
    # contrast factor c (x -> mean + c (x - mean)); CIFAR-10-C values
    "contrast": (lambda c: A.RandomBrightnessContrast(brightness_limit=(0, 0), contrast_limit=(c - 1, c - 1), p=1,
                                                      strict=True), (0.75, 0.5, 0.4, 0.3, 0.15)),
    # additive brightness as a fraction of the range; CIFAR-10-C values
    "brightness": (lambda b: A.RandomBrightnessContrast(brightness_limit=(b, b), contrast_limit=(0, 0), p=1,
                                                        strict=True), (0.05, 0.1, 0.15, 0.2, 0.3)),
    # down-scale factor, box down then nearest up; CIFAR-10-C values
    "pixelate": (lambda f: A.Downscale(scale_range=(f, f), p=1, strict=True,
                                       interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_NEAREST}),
                 (0.95, 0.9, 0.85, 0.75, 0.65)),
}
SEVERITIES = (1, 2, 3, 4, 5)
# Geometric corruptions for detection only (boxes move with the pixels); the border is filled black.
GEOMETRIC: dict[str, tuple[Callable[[Any], A.BasicTransform], tuple[Any, ...]]] = {
    # scale factor about the centre: objects shrink, more of them become small
    "zoom-out": (lambda f: A.Affine(scale=(f, f), p=1, strict=True), (0.9, 0.8, 0.7, 0.6, 0.5)),
    # degrees, one direction; boxes by the rotated inscribed ellipse (tighter than the rotated corners)
    "rotate": (lambda d: A.Affine(rotate=(d, d), rotate_method="ellipse", p=1, strict=True), (5, 10, 15, 20, 30)),
}
DETECTION_CORRUPTIONS = {**CORRUPTIONS, **GEOMETRIC}
MIN_VISIBILITY = 0.3  # a box cut by the border to less than this fraction of its area is dropped


def corrupt(images: torch.Tensor, name: str, severity: int, *, seed: int) -> torch.Tensor:
    """``images`` uint8 ``(N, 3, H, W)`` → the same, corrupted at ``severity`` (1-5), reproducibly per seed."""
    build, params = CORRUPTIONS[name]
    transform = A.Compose([build(params[severity - 1])], seed=seed, strict=True)
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([transform(image=np.ascontiguousarray(a))["image"] for a in arrays])
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def corrupt_with_boxes(images: torch.Tensor, labels: torch.Tensor, name: str, severity: int, *, seed: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Detection images and their boxes, corrupted together at ``severity`` (1-5), reproducibly per seed.

    ``images``: uint8 ``(N, 3, H, W)``; ``labels``: ``(N, M, 5)`` rows ``(class, x1, y1, x2, y2)`` in pixels,
    class -1 for padding. Returns the corrupted images and targets of the same layout (boxes clipped to the
    image; a box left with less than :data:`MIN_VISIBILITY` of its area is dropped, i.e. becomes padding).
    ``name`` is a key of :data:`DETECTION_CORRUPTIONS`.
    """
    build, params = DETECTION_CORRUPTIONS[name]
    bbox_params = A.BboxParams(format="pascal_voc", label_fields=["classes"], clip=True,
                               min_visibility=MIN_VISIBILITY)
    with warnings.catch_warnings():  # a pixel-level transform leaves boxes alone, which albumentations warns about
        warnings.filterwarnings("ignore", message="Got processor for bboxes")
        transform = A.Compose([build(params[severity - 1])], bbox_params=bbox_params, seed=seed, strict=True)
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    rows = labels.cpu().numpy()
    out_images, out_labels = [], np.zeros_like(rows)
    out_labels[:, :, 0] = -1
    for i, image in enumerate(arrays):
        keep = rows[i, :, 0] >= 0
        result = transform(image=np.ascontiguousarray(image), bboxes=rows[i, keep, 1:], classes=rows[i, keep, 0])
        out_images.append(result["image"])
        boxes = np.asarray(result["bboxes"], np.float32).reshape(-1, 4)
        out_labels[i, : len(boxes), 0] = np.asarray(result["classes"], np.float32)
        out_labels[i, : len(boxes), 1:] = boxes
    return torch.from_numpy(np.stack(out_images)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(out_labels)


class CorruptionSuite:
    """Callable over uint8 ``(N, 3, H, W)`` images → ``{(corruption, severity): corrupted images}``."""

    def __init__(self, names: tuple[str, ...], seed: int):
        self.names, self.seed = names, seed

    def one(self, images: torch.Tensor, name: str) -> dict[int, torch.Tensor]:
        """Every severity of one corruption, each with its own reproducible random stream."""
        offset = 1000 * tuple(CORRUPTIONS).index(name)
        return {s: corrupt(images, name, s, seed=self.seed + offset + s) for s in SEVERITIES}

    def __call__(self, images: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
        return {(n, s): x for n in self.names for s, x in self.one(images, n).items()}


@register("attack", "corruptions")
def corruptions(*, names: tuple[str, ...] = tuple(CORRUPTIONS), seed: int = 0) -> CorruptionSuite:
    """Common corruptions (noise, blur, JPEG, contrast, brightness, pixelate) at 5 severities (arXiv 1903.12261)."""
    unknown = set(names) - set(CORRUPTIONS)
    if unknown:
        from secbench.errors import UnknownNameError

        raise UnknownNameError("corruption", sorted(unknown)[0], CORRUPTIONS)
    return CorruptionSuite(tuple(names), seed)
