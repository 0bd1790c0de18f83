"""Natural-image patches for image-to-image tasks (deraining, denoising, watermark carriers).

The photos are the ones bundled inside scikit-image and scikit-learn, so nothing is downloaded
(scikit-image's pooch-fetched images are left out on purpose). Train and test patches are cut
from disjoint source photos, so no test pixel is ever seen in training.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import torch

from secbench.data.base import DataSplits, ImageSet, make_splits
from secbench.errors import SecbenchError
from secbench.registry import register


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data  # deferred: importing this package must stay cheap

        image = getattr(data, name)()
        return image[0] if name == "stereo_motorcycle" else image  # (left, right, disparity)

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


# name -> loader; colour photos first, then grayscale photos and textures
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle": _skimage("stereo_motorcycle"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "camera": _skimage("camera"),
    "coins": _skimage("coins"),
    "moon": _skimage("moon"),
    "brick": _skimage("brick"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
}
TEST_PHOTOS = ("chelsea", "flower", "grass")  # a cat, a flower and a texture never seen in training


@cache
def photo(name: str) -> np.ndarray:
    """The bundled photo ``name`` as uint8 ``(H, W, 3)`` (grayscale replicated to 3 channels)."""
    image = PHOTOS[name]()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image.setflags(write=False)  # shared by every caller through the cache
    return image


def dataset_size(n: int | None, default: int) -> int:
    """``n``, or ``default`` when it is None; a size that is not positive is a user error."""
    if n is None:
        return default
    if n <= 0:
        raise SecbenchError(f"a dataset size must be positive, got {n}")
    return n


def random_crops(
    sources: list[np.ndarray], which: np.ndarray, size: int, rng: np.random.Generator, flip: bool = True
) -> np.ndarray:
    """One random ``size``×``size`` crop of the ``(H, W, C)`` image ``sources[which[i]]`` per ``i``,
    mirrored left-right at random when ``flip``: ``(N, C, size, size)`` with the sources' dtype."""
    n = len(which)
    corner = rng.random((n, 2))  # drawn for all crops up front so the result does not depend on grouping
    mirror = rng.random(n) < 0.5 if flip else np.zeros(n, dtype=bool)
    out = np.empty((n, sources[0].shape[2], size, size), dtype=sources[0].dtype)
    for s, image in enumerate(sources):
        members = np.flatnonzero(which == s)
        top, left = (corner[members] * (np.array(image.shape[:2]) - size + 1)).astype(int).T
        # a view of every window, (H-size+1, W-size+1, C, size, size): indexing it copies whole rows,
        # several times faster than gathering single pixels
        out[members] = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(0, 1))[top, left]
    out[mirror] = out[mirror, ..., ::-1]
    return out


def _cut(names: tuple[str, ...], n: int, patch_size: int, rng: np.random.Generator) -> ImageSet:
    which = np.arange(n) % len(names)  # as many patches from every photo (±1)
    rng.shuffle(which)
    crops = random_crops([photo(name) for name in names], which, patch_size, rng)
    labels = np.array([list(PHOTOS).index(name) for name in names])[which]
    return ImageSet(torch.from_numpy(crops), torch.from_numpy(labels.astype(np.int64)))


@register("dataset", "patches")
def patches(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None, patch_size: int = 64
) -> DataSplits:
    """Crops of bundled skimage/sklearn photos; train/test from disjoint photos (image-to-image).

    Images are uint8 ``(N, 3, patch_size, patch_size)``; the label is the source photo's index in
    ``classes``. Defaults: 2,000 train and 400 test patches, drawn from independent random
    streams of ``seed``.
    """
    smallest = min(min(photo(name).shape[:2]) for name in PHOTOS)
    if not 8 <= patch_size <= smallest:
        raise SecbenchError(f"patches: patch_size must be between 8 and {smallest}, got {patch_size}")
    train_photos = tuple(name for name in PHOTOS if name not in TEST_PHOTOS)
    train = _cut(train_photos, dataset_size(n_train, 2000), patch_size, np.random.default_rng([seed, 0]))
    test = _cut(TEST_PHOTOS, dataset_size(n_test, 400), patch_size, np.random.default_rng([seed, 1]))
    return make_splits("patches", train, test, tuple(PHOTOS), "scikit-image and scikit-learn bundled photos")
