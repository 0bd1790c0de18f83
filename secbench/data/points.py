"""The in-memory contract of point-cloud segmentation data: rooms cut into blocks of N points.

PNAL's pipeline (arXiv 2107.14230, after DGCNN's S3DIS one) trains on fixed-size blocks cut from
rooms. Every point carries nine channels and three ids: its semantic label, the object instance it
belongs to (unique over the whole set: label noise flips whole instances) and, for the record, the
room it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from secbench.data.base import tensor_digest
from secbench.errors import SecbenchError

CHANNELS = ("x", "y", "z", "r", "g", "b", "room_x", "room_y", "room_z")
"""Point channels: block-centred metres (x, y; z above the floor), colour in [0, 1], and the position
normalised to the room's extent in [0, 1] (DGCNN's 9-channel S3DIS input)."""


@dataclass(frozen=True)
class PointSet:
    """``points``: float32 ``(B, 9, N)`` (channels :data:`CHANNELS`); ``labels``, ``instances``: int64 ``(B, N)``;
    ``rooms``: int64 ``(B,)``, the room each block was cut from."""

    points: torch.Tensor
    labels: torch.Tensor
    instances: torch.Tensor
    rooms: torch.Tensor

    def __post_init__(self) -> None:
        if self.points.dtype != torch.float32 or self.points.ndim != 3 or self.points.shape[1] != len(CHANNELS):
            raise ValueError(f"points must be float32 (B, {len(CHANNELS)}, N), got {self.points.dtype} "
                             f"{tuple(self.points.shape)}")
        b, _, n = self.points.shape
        for name in ("labels", "instances"):
            value = getattr(self, name)
            if value.dtype != torch.int64 or value.shape != (b, n):
                raise ValueError(f"{name} must be int64 ({b}, {n}), got {value.dtype} {tuple(value.shape)}")
        if self.rooms.shape != (b,):
            raise ValueError(f"rooms must be ({b},), got {tuple(self.rooms.shape)}")

    def __len__(self) -> int:
        return len(self.points)

    @property
    def device(self) -> torch.device:
        return self.points.device

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.points, self.labels, self.instances))

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> PointSet:
        index = torch.as_tensor(index, dtype=torch.long)
        return PointSet(self.points[index], self.labels[index], self.instances[index], self.rooms[index])

    def to(self, device: torch.device | str) -> PointSet:
        return PointSet(self.points.to(device), self.labels.to(device), self.instances.to(device),
                        self.rooms.to(device))

    def with_labels(self, labels: torch.Tensor) -> PointSet:
        """The same blocks with other per-point labels (noisy ones, or corrected ones)."""
        return PointSet(self.points, labels.to(self.labels.device), self.instances, self.rooms)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Points ``(b, 9, N)`` and labels ``(b, N)`` of the blocks ``index``."""
        return self.points[index], self.labels[index]


@dataclass(frozen=True)
class PointSplits:
    """A point-cloud dataset's fixed train/test split (rooms never straddle it)."""

    name: str
    train: PointSet
    test: PointSet
    classes: tuple[str, ...]
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def block_points(self) -> int:
        return int(self.train.points.shape[-1])

    def fingerprint(self) -> str:
        """sha256 over both splits' points, labels and instances."""
        return tensor_digest(t for part in (self.train, self.test) for t in (part.points, part.labels, part.instances))


def room_blocks(xyz: np.ndarray, rgb: np.ndarray, labels: np.ndarray, instances: np.ndarray, *,
                block_points: int, rng: np.random.Generator, block_size: float = 1.5,
                min_points: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut one room into ``block_size`` × ``block_size`` m columns on the floor plan and sample
    ``block_points`` points from each (with replacement only where a block has fewer).

    ``xyz``: ``(P, 3)`` metres with the floor at the room's lowest z; ``rgb``: ``(P, 3)`` in [0, 1];
    ``labels``, ``instances``: ``(P,)``. Blocks with fewer than ``min_points`` points are dropped.
    Returns ``points (B, 9, N)`` float32 and ``labels``, ``instances`` ``(B, N)`` int64.
    """
    if len(xyz) == 0:
        raise SecbenchError("a room has no points")
    low, high = xyz.min(0), xyz.max(0)
    extent = np.maximum(high - low, 1e-6)
    cells = np.floor((xyz[:, :2] - low[:2]) / block_size).astype(int)
    unique_cells, cell_of = np.unique(cells, axis=0, return_inverse=True)
    by_cell = np.argsort(cell_of.reshape(-1), kind="stable")  # each cell's points, in their original order
    starts = np.searchsorted(cell_of.reshape(-1)[by_cell], np.arange(len(unique_cells) + 1))
    points, block_labels, block_instances = [], [], []
    for i, cell in enumerate(unique_cells):
        members = by_cell[starts[i] : starts[i + 1]]
        if len(members) < min_points:
            continue
        chosen = rng.choice(members, block_points, replace=len(members) < block_points)
        centre = low[:2] + (cell + 0.5) * block_size
        local = xyz[chosen] - np.array([centre[0], centre[1], low[2]])
        normalised = (xyz[chosen] - low) / extent
        points.append(np.concatenate([local, rgb[chosen], normalised], 1).T)
        block_labels.append(labels[chosen])
        block_instances.append(instances[chosen])
    if not points:
        raise SecbenchError(f"a room gave no block with at least {min_points} points; lower min_points")
    return (np.stack(points).astype(np.float32), np.stack(block_labels).astype(np.int64),
            np.stack(block_instances).astype(np.int64))


def stack_rooms(rooms: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> PointSet:
    """One :class:`PointSet` from the :func:`room_blocks` of several rooms; instance ids are made unique
    over the set by offsetting each room's ids."""
    if not rooms:
        raise SecbenchError("no rooms to build a point set from")
    points, labels, instances, room_ids = [], [], [], []
    offset = 0
    for room, (p, y, inst) in enumerate(rooms):
        points.append(p)
        labels.append(y)
        instances.append(inst - inst.min() + offset)
        offset += int(inst.max() - inst.min()) + 1
        room_ids.append(np.full(len(p), room))
    return PointSet(torch.from_numpy(np.concatenate(points)), torch.from_numpy(np.concatenate(labels)),
                    torch.from_numpy(np.concatenate(instances)), torch.from_numpy(np.concatenate(room_ids)))


def jitter_blocks(points: torch.Tensor, generator: torch.Generator, *, translate: float = 0.01,
                  degrees: float = 15.0) -> torch.Tensor:
    """PNAL's training augmentation (torch-geometric's ``RandomTranslate(0.01)`` and ``RandomRotate(15)``
    about x, y and z): every point's block-centred xyz moved by up to ``translate`` metres per axis, then
    each block rotated by angles drawn uniformly in ±``degrees`` about each axis. ``points``: ``(B, 9, N)``."""
    b, _, n = points.shape
    xyz = points[:, :3] + (torch.rand(b, 3, n, generator=generator) * 2 - 1).to(points) * translate
    angles = ((torch.rand(b, 3, generator=generator) * 2 - 1) * math.radians(degrees)).to(points)
    cos, sin = angles.cos(), angles.sin()
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def rotation(axis: int) -> torch.Tensor:
        c, s = cos[:, axis], sin[:, axis]
        rows = {0: ((one, zero, zero), (zero, c, -s), (zero, s, c)),
                1: ((c, zero, s), (zero, one, zero), (-s, zero, c)),
                2: ((c, -s, zero), (s, c, zero), (zero, zero, one))}[axis]
        return torch.stack([torch.stack(row, -1) for row in rows], -2)  # (B, 3, 3)

    xyz = rotation(2) @ rotation(1) @ rotation(0) @ xyz
    return torch.cat([xyz, points[:, 3:]], 1)
