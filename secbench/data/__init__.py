"""Datasets: every one is a registered factory returning :class:`DataSplits` of uint8 images.

Built-ins: ``digits``, ``shapes`` and ``patches`` are made from data bundled with scikit-learn /
scikit-image (always available offline); ``cifar10``, ``cifar100``, ``svhn``, ``gtsrb`` and
``imagefolder`` read local files and never download. Every factory takes ``seed``, ``n_train``
and ``n_test`` (None: the dataset's own size) plus its own options.

Point-cloud segmentation datasets (registry kind ``pointcloud``) return
:class:`~secbench.data.points.PointSplits` of fixed-size blocks instead: ``scenes`` (procedural
furnished rooms, :mod:`secbench.data.scenes`) and the local-disk ``s3dis`` and ``scannet``
(:mod:`secbench.data.point_local`).

Detection datasets (registry kind ``detection-dataset``) return
:class:`~secbench.data.detection.DetectionSplits` of images with boxes: ``objects`` (procedural outlines
over photos) and ``coco:PATH`` (a local COCO-format folder), :mod:`secbench.data.detection`.
"""

from __future__ import annotations

from secbench import registry
from secbench.data import detection, digits, local, patches, point_local, scenes, shapes  # noqa: F401 (self-registering)
from secbench.data.base import (
    DataSplits,
    ImageSet,
    channel_stats,
    check_spec,
    data_root,
    make_splits,
    subsample,
)
from secbench.errors import SecbenchError

__all__ = ["DataSplits", "ImageSet", "channel_stats", "check_spec", "data_root", "load_dataset", "make_splits",
           "subsample"]


def load_dataset(spec: str, *, min_classes: int = 2, **kwargs: object) -> DataSplits:
    """Build the dataset ``spec`` (a registered name, or ``imagefolder:PATH``) with ``kwargs``
    (``seed``, ``n_train``, ``n_test``, dataset options; None values are ignored). A classifier needs
    ``min_classes`` classes; a task that ignores labels (the watermark's photos) asks for 1."""
    name, folder = check_spec(spec)
    data = registry.create("dataset", name, **folder, **kwargs)
    if data.num_classes < min_classes:
        raise SecbenchError(f"{spec} has {data.num_classes} class (folder); a classifier needs at least {min_classes}")
    return data
