"""A procedural 10-class shape dataset over natural-photo backgrounds, generated in seconds.

Each image holds one filled shape of a random colour, size, position and rotation, drawn with
anti-aliased edges (coverage from a signed distance function) over a dimmed random crop of a
photo bundled with scikit-image / scikit-learn. The classes are chosen so that no rotation
maps one onto another, and shapes are scaled to similar areas so that the amount of object
colour in an image says little about the class: only the outline does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import torch
from PIL import Image

from secbench.data.base import DataSplits, ImageSet, make_splits
from secbench.data.patches import PHOTOS, dataset_size, photo, random_crops
from secbench.errors import SecbenchError
from secbench.registry import register

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Signed distances (negative inside) of shapes about the unit circle; after Inigo Quilez's
# "2D distance functions". Inexact ones (max/min of exact ones) are still exact near the edge,
# which is all the anti-aliasing needs.


def _length(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(x * x + y * y)


def _box(x: np.ndarray, y: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    dx, dy = np.abs(x) - half_w, np.abs(y) - half_h
    return _length(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)


def _triangle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Equilateral, circumradius 1, centred on its centroid."""
    k, r = np.sqrt(3.0), np.sqrt(3.0) / 2  # r: half the side
    x, y = np.abs(x) - r, y + r / k
    fold = x + k * y > 0
    x, y = np.where(fold, (x - k * y) / 2, x), np.where(fold, (-k * x - y) / 2, y)
    x = x - np.clip(x, -2 * r, 0)
    return -_length(x, y) * np.sign(y)


def _star(x: np.ndarray, y: np.ndarray, inner: float = 0.5) -> np.ndarray:
    """Five points on the unit circle; ``inner`` sets how deep the notches are."""
    k1x, k1y = 0.809016994375, -0.587785252292  # (cos 36°, -sin 36°): the star's mirror lines
    x = np.abs(x)
    for kx, ky in ((k1x, k1y), (-k1x, k1y)):
        d = 2 * np.maximum(kx * x + ky * y, 0)
        x, y = x - d * kx, y - d * ky
    x, y = np.abs(x), y - 1
    bax, bay = -inner * k1y, inner * k1x - 1
    h = np.clip((x * bax + y * bay) / (bax * bax + bay * bay), 0, 1)
    return _length(x - bax * h, y - bay * h) * np.sign(y * bax - x * bay)


def _heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    s = 0.6  # the unit heart spans about 1.2 x 1.1; shrink it to about the unit circle
    x, y = np.abs(x) * s, y * s + 0.55
    lobe = _length(x - 0.25, y - 0.75) - np.sqrt(2) / 4
    h = np.maximum(x + y, 0) / 2
    tip = np.sqrt(np.minimum(x * x + (y - 1) ** 2, (x - h) ** 2 + (y - h) ** 2))
    return np.where(x + y > 1, lobe, tip * np.sign(x - y)) / s


SHAPES: dict[str, Sdf] = {
    "circle": lambda x, y: _length(x, y) - 1,
    "ring": lambda x, y: np.abs(_length(x, y) - 0.72) - 0.28,
    "semicircle": lambda x, y: np.maximum(_length(x, y + 0.42) - 1, -(y + 0.42)),
    "crescent": lambda x, y: np.maximum(_length(x, y) - 1, 0.78 - _length(x - 0.5, y)),
    "triangle": _triangle,
    "square": lambda x, y: _box(x, y, 0.72, 0.72),
    "star": _star,
    "cross": lambda x, y: np.minimum(_box(x, y, 1, 0.3), _box(x, y, 0.3, 1)),
    "bar": lambda x, y: _box(x, y, 1, 0.28),
    "heart": _heart,
}

AREA = (0.07, 0.16)  # object area as a fraction of the image
MAX_RADIUS = 0.46  # of the image side: every object fits whole inside the image
CONTRAST = (0.25, 0.6)  # background contrast kept, so the photo never hides the object
MIN_COLOUR_DISTANCE = 0.4  # RGB distance in [0, 1] units between object and background mean
CHUNK = 1024  # images rendered at once: bounds the float temporaries to a few tens of MB


@cache
def _geometry() -> tuple[np.ndarray, np.ndarray]:
    """Area and radius (farthest inside point from the origin) of every unit shape, measured on a grid."""
    axis, step = np.linspace(-1.5, 1.5, 600, endpoint=False, retstep=True)
    x, y = np.meshgrid(axis + step / 2, axis + step / 2)
    areas, radii = [], []
    for sdf in SHAPES.values():
        inside = sdf(x, y) < 0
        areas.append(inside.sum() * step * step)
        radii.append(_length(x[inside], y[inside]).max())
    return np.array(areas), np.array(radii)


@cache
def _backgrounds(img_size: int) -> list[np.ndarray]:
    """Every bundled photo resized so that its short side is 2, 4 and 8 times ``img_size``:
    a crop then shows anything from a broad scene to fine texture."""
    levels = []
    for name in PHOTOS:
        image = Image.fromarray(photo(name))
        for factor in (2, 4, 8):
            ratio = factor * img_size / min(image.size)
            size = (round(image.width * ratio), round(image.height * ratio))
            levels.append(np.asarray(image.resize(size, Image.Resampling.BILINEAR)))
    return levels


def _coverage(
    labels: np.ndarray, centre: np.ndarray, angle: np.ndarray, scale: np.ndarray, size: int
) -> np.ndarray:
    """Anti-aliased object coverage in [0, 1], ``(N, size, size)``: a pixel's signed distance to the
    outline (in pixels) mapped through a one-pixel ramp approximates its covered fraction."""
    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    alpha = np.empty((len(labels), size, size), dtype=np.float32)
    for k, sdf in enumerate(SHAPES.values()):
        m = np.flatnonzero(labels == k)
        dx = grid[None, None, :] - centre[m, 0, None, None]
        dy = grid[None, :, None] - centre[m, 1, None, None]
        cos, sin, s = (v[m, None, None] for v in (np.cos(angle), np.sin(angle), scale))
        distance = sdf((cos * dx + sin * dy) / s, (cos * dy - sin * dx) / s) * s
        alpha[m] = np.clip(0.5 - distance, 0, 1)
    return alpha


def render(labels: np.ndarray, rng: np.random.Generator, img_size: int = 32) -> np.ndarray:
    """Images of the shapes ``labels`` (indices into :data:`SHAPES`): uint8 ``(N, 3, img_size, img_size)``."""
    n, size = len(labels), img_size
    areas, radii = _geometry()
    angle = rng.uniform(0, 2 * np.pi, n)
    scale = np.minimum(  # pixels per shape unit: equal areas unless the object would not fit
        np.sqrt(rng.uniform(*AREA, n) * size * size / areas[labels]), MAX_RADIUS * size / radii[labels]
    )
    radius = radii[labels] * scale
    centre = radius[:, None] + rng.random((n, 2)) * (size - 2 * radius)[:, None]

    levels = _backgrounds(size)
    crops = random_crops(levels, rng.integers(len(levels), size=n), size, rng)
    mean = crops.mean(axis=(2, 3), dtype=np.float32)[:, :, None, None] / 255
    contrast = rng.uniform(*CONTRAST, (n, 1, 1, 1)).astype(np.float32)
    colour = rng.random((n, 3))
    while (near := np.linalg.norm(colour - mean[:, :, 0, 0], axis=1) < MIN_COLOUR_DISTANCE).any():
        colour[near] = rng.random((near.sum(), 3))
    colour = colour.astype(np.float32)[:, :, None, None]

    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        alpha = _coverage(labels[part], centre[part], angle[part], scale[part], size)[:, None]
        image = crops[part] * (contrast[part] / 255) + mean[part] * (1 - contrast[part])  # dimmed photo
        image += alpha * (colour[part] - image)
        out[part] = image * 255 + 0.5  # the cast to uint8 truncates: + 0.5 rounds
    return out


def _generate(n: int, rng: np.random.Generator, img_size: int) -> ImageSet:
    labels = np.arange(n) % len(SHAPES)  # balanced to within one image per class
    rng.shuffle(labels)
    images = render(labels, rng, img_size)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


@register("dataset", "shapes")
def shapes(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None, img_size: int = 32
) -> DataSplits:
    """Ten procedural shapes of random colour, size, place and rotation over photo crops.

    Images are uint8 ``(N, 3, img_size, img_size)``; classes are balanced. Defaults: 10,000 train
    and 2,000 test images, drawn from independent random streams of ``seed``.
    """
    if img_size < 16:
        raise SecbenchError(f"shapes: img_size must be at least 16, got {img_size}")
    train = _generate(dataset_size(n_train, 10_000), np.random.default_rng([seed, 0]), img_size)
    test = _generate(dataset_size(n_test, 2_000), np.random.default_rng([seed, 1]), img_size)
    return make_splits(
        "shapes", train, test, tuple(SHAPES), "procedural shapes over scikit-image/scikit-learn photos"
    )
