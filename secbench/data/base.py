"""The in-memory data contract every dataset returns and every scenario consumes.

Images are kept as uint8 tensors ``(N, C, H, W)`` (0..255) so that a whole dataset fits on the
device; :meth:`ImageSet.batch` hands out float batches in [0, 1]. Normalisation lives inside
the models, never in the data (torchattacks expects [0, 1] inputs).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
import torch

from secbench import registry
from secbench.errors import SecbenchError


@dataclass(frozen=True)
class ImageSet:
    """``images``: uint8 ``(N, C, H, W)``; ``labels``: int64 ``(N,)`` (class, or source id for unlabeled data)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        self._check_labels()

    def _check_labels(self) -> None:
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must be ({len(self.images)},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.images, self.labels))

    # type(self): a subclass with other labels (detection boxes) keeps its type
    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> Self:
        index = torch.as_tensor(index, dtype=torch.long)
        return type(self)(self.images[index], self.labels[index])

    def to(self, device: torch.device | str) -> Self:
        return type(self)(self.images.to(device), self.labels.to(device))

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [0, 1] and labels for ``index``."""
        return self.images[index].float().div_(255), self.labels[index]

    def floats(self) -> torch.Tensor:
        """The whole set as float ``(N, C, H, W)`` in [0, 1]."""
        return self.images.float().div_(255)


@dataclass(frozen=True)
class DataSplits:
    """A dataset's fixed train/test split and what a model needs to know about it."""

    name: str
    train: ImageSet
    test: ImageSet
    classes: tuple[str, ...]
    source: str = ""  # where the pixels came from, for the record
    mean: tuple[float, ...] = field(default=(0.5, 0.5, 0.5))
    std: tuple[float, ...] = field(default=(0.25, 0.25, 0.25))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def img_size(self) -> int:
        return int(self.train.images.shape[-1])

    def fingerprint(self) -> str:
        """sha256 over both splits' pixels and labels: two runs saw the same data iff these match."""
        return tensor_digest(t for part in (self.train, self.test) for t in (part.images, part.labels))


def tensor_digest(tensors: Iterable[torch.Tensor]) -> str:
    """``sha256:<hex>`` over the bytes of ``tensors``, in order."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(np.ascontiguousarray(tensor.cpu().numpy()).tobytes())
    return "sha256:" + digest.hexdigest()


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``(N, C, H, W)`` images, in [0, 1] units."""
    x = images.float().div(255)
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())


def make_splits(name: str, train: ImageSet, test: ImageSet, classes: tuple[str, ...], source: str) -> DataSplits:
    """Build :class:`DataSplits` with normalisation statistics taken from the training split only."""
    mean, std = channel_stats(train.images)
    return DataSplits(name, train, test, classes, source, mean, std)


def subsample(data: ImageSet, n: int | None, seed: int) -> ImageSet:
    """A class-stratified random subset of ``n`` items (all of them when ``n`` is None or too large)."""
    if n is None or n >= len(data):
        return data
    if n <= 0:
        raise SecbenchError(f"a dataset size must be positive, got {n}")
    rng = np.random.default_rng(seed)
    labels = data.labels.numpy()
    chosen: list[np.ndarray] = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    quota[np.argsort(-(counts / counts.sum() * n - quota))[: n - quota.sum()]] += 1
    for cls, q in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == cls)
        chosen.append(rng.choice(members, size=min(q, len(members)), replace=False))
    return data.subset(np.sort(np.concatenate(chosen)))


SPLIT_SEED = 20240601  # the train/test split is part of the dataset: it never changes with ``seed``
TEST_FRACTION = 0.2


def fixed_split(data: ImageSet) -> tuple[ImageSet, ImageSet]:
    """The dataset's own stratified 80/20 train/test split: the same for every run and every ``seed``."""
    from sklearn.model_selection import train_test_split  # deferred: importing this package must stay cheap

    labels = data.labels.numpy()
    try:
        train, test = train_test_split(
            np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
        )
    except ValueError as exc:  # too few images for every class to appear on both sides
        raise SecbenchError(
            f"cannot split {len(labels)} images into train and test by class: {exc}"
        ) from None
    return data.subset(np.sort(train)), data.subset(np.sort(test))


def data_root() -> Path:
    """Where local datasets live: ``$SECBENCH_DATA``, else ``~/.secbench/data``."""
    return Path(os.environ.get("SECBENCH_DATA", Path.home() / ".secbench" / "data")).expanduser()


def check_spec(spec: str, kind: str = "dataset", folder: str | None = "imagefolder") -> tuple[str, dict[str, str]]:
    """The registry name and folder option of a dataset ``spec``: a name registered under ``kind``, or
    ``FOLDER:PATH`` (a local folder, read when the dataset loads; ``folder=None``: names only). A config calls it to reject a bad name
    before anything runs; an unknown name raises with the closest match."""
    name, sep, path = spec.partition(":")
    if sep and folder is not None and name == folder:
        if not path:
            raise SecbenchError(f"{folder}: needs a folder, as in {folder}:PATH")
        return folder, {"path": path}
    registry.get(kind, spec)
    return spec, {}
