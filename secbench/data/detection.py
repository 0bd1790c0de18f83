"""Object-detection data: images with boxes, an embedded procedural set, COCO JSON export and import.

- :class:`DetectionSet`: uint8 images ``(N, 3, H, W)`` and padded targets ``(N, M, 5)`` rows
  ``(class, x1, y1, x2, y2)`` in pixels, class -1 for padding; it has the surface
  :func:`secbench.engine.fit` draws batches from.
- ``objects`` (registry kind ``detection-dataset``): 1–6 of the ten :mod:`~secbench.data.shapes` outlines per
  128×128 image, of random class, colour, rotation and size (circumscribed diameter log-uniform in 10–80 px,
  so small, medium and large objects each make up a good share), over dimmed crops of the bundled photos.
  Objects do not overlap much (their circles may touch, not cross by more than 20%), so every box shows its
  whole object. Boxes are the tight boxes of the rendered pixels (coverage ≥ 0.5).
- ``coco`` / ``coco:PATH``: a local COCO-format folder, ``PATH/annotations/<prefix>_<split>.json`` with the
  images in ``PATH/<split>/`` (or ``PATH/images/``); the ``train*`` file is the training split, the ``val*``
  or ``test*`` one the test split. Images are resized (not cropped) to ``img_size`` × ``img_size``, boxes with
  them. Crowd annotations are left out. A bad file, a missing image, a box outside its image, a zero-area box
  or an unknown category id raises one :class:`~secbench.errors.SecbenchError` naming the first bad entry.
- :func:`to_coco` writes a split as such a folder (PNG images), so the embedded set can be inspected with any
  COCO tool and read back with ``coco:PATH``.

COCO's size classes (small < 32², large > 96² px, for images of about 640 px) are scaled with the image: each
split carries ``area_thresholds`` (the two box sides, in pixels at the stored resolution) for the AP_s/m/l
breakdown. The embedded set uses 16 and 48 px (COCO's × 0.5): at COCO's own scale for 640-px images
(× 0.2) "small" would mean under 6 px, smaller than any outline one can still tell apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from secbench.data.base import DataSplits, ImageSet, check_spec
from secbench.data.local import _malformed, _root
from secbench.data.patches import dataset_size, random_crops
from secbench.data.shapes import CONTRAST, MIN_COLOUR_DISTANCE, SHAPES, _backgrounds, _geometry
from secbench.errors import SecbenchError
from secbench.registry import create, register

__all__ = ["DetectionSet", "DetectionSplits", "flip_boxes", "load_detection", "objects", "pad_targets", "to_coco"]

MAX_OBJECTS = 6
DIAMETER = (10.0, 80.0)  # circumscribed diameter of an object, px at 128 px, log-uniform
OVERLAP = 0.8  # two objects' centres stay at least this fraction of their radii's sum apart
COCO_AREA_SIDES = (32.0, 96.0)  # COCO's small/medium/large box sides, for ~640 px images


@dataclass(frozen=True)
class DetectionSet(ImageSet):
    """``images``: uint8 ``(N, 3, H, W)``; ``labels``: float32 ``(N, M, 5)`` rows ``(class, x1, y1, x2, y2)``,
    boxes in pixels, class -1 (and a zero box) for padding. ``batch`` gives float images and ``(B, M, 5)``."""

    def _check_labels(self) -> None:
        if self.labels.ndim != 3 or self.labels.shape[0] != len(self.images) or self.labels.shape[2] != 5:
            raise ValueError(f"labels must be ({len(self.images)}, M, 5), got {tuple(self.labels.shape)}")

    def objects(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``i``'s boxes ``(G, 4)`` float and classes ``(G,)`` int64, padding removed."""
        rows = self.labels[i].cpu().numpy()
        rows = rows[rows[:, 0] >= 0]
        return rows[:, 1:].astype(np.float64), rows[:, 0].astype(np.int64)


def pad_targets(boxes: list[np.ndarray], classes: list[np.ndarray], width: int | None = None) -> torch.Tensor:
    """Per-image boxes ``(G_i, 4)`` and classes ``(G_i,)`` → ``(N, M, 5)`` targets, padded with class -1."""
    m = max([width or 0, 1, *(len(c) for c in classes)])
    out = np.zeros((len(boxes), m, 5), np.float32)
    out[:, :, 0] = -1
    for i, (b, c) in enumerate(zip(boxes, classes, strict=True)):
        out[i, : len(c), 0], out[i, : len(c), 1:] = c, b
    return torch.from_numpy(out)


def flip_boxes(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip of each image with its boxes (probability 0.5, drawn from ``generator``):
    ``(N, C, H, W)`` images and ``(N, M, 5)`` targets → the same shapes; ``x1, x2`` become ``W - x2, W - x1``."""
    width = images.shape[-1]
    flip = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    moved = flip.to(labels.device)[:, None] & (labels[..., 0] >= 0)  # padding rows stay zero boxes
    out = labels.clone()
    out[..., 1] = torch.where(moved, width - labels[..., 3], labels[..., 1])
    out[..., 3] = torch.where(moved, width - labels[..., 1], labels[..., 3])
    return images, out


@dataclass(frozen=True)
class DetectionSplits(DataSplits):
    """A detection dataset's train/test split (``train`` and ``test`` are :class:`DetectionSet`).
    ``area_thresholds``: the box sides (px) below which a box is small and above which it is large, for
    AP_s / AP_m / AP_l."""

    area_thresholds: tuple[float, float] = (16.0, 48.0)


# ---------------------------------------------------------------- the embedded procedural set


def _place(count: int, diameters: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Centres ``(count, 2)`` of objects of the given circumscribed ``diameters``, inside the image and apart
    (:data:`OVERLAP`); an object that finds no room in 20 tries gets NaN (and is dropped)."""
    centres = np.full((count, 2), np.nan)
    radii = diameters / 2
    for k in range(count):
        for _ in range(20):
            c = radii[k] + rng.random(2) * (size - 2 * radii[k])
            placed = ~np.isnan(centres[:k, 0])
            gaps = np.linalg.norm(centres[:k][placed] - c, axis=1) - OVERLAP * (radii[:k][placed] + radii[k])
            if (gaps >= 0).all():
                centres[k] = c
                break
    return centres


def _draw(image: np.ndarray, label: int, centre: np.ndarray, angle: float, scale: float, radius: float,
          colour: np.ndarray) -> np.ndarray | None:
    """Composite one anti-aliased outline onto ``image`` (float ``(3, H, W)`` in [0, 1], in place); return its
    tight box ``(x1, y1, x2, y2)`` over pixels of coverage ≥ 0.5, or None if no pixel reaches it."""
    size = image.shape[-1]
    x0, y0 = (max(0, int(np.floor(v - radius - 1))) for v in centre)
    x1, y1 = (min(size, int(np.ceil(v + radius + 1))) for v in centre)
    dx = (np.arange(x0, x1) + 0.5)[None, :] - centre[0]
    dy = (np.arange(y0, y1) + 0.5)[:, None] - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    sdf = list(SHAPES.values())[label]
    alpha = np.clip(0.5 - sdf((cos * dx + sin * dy) / scale, (cos * dy - sin * dx) / scale) * scale, 0, 1)
    patch = image[:, y0:y1, x0:x1]
    patch += alpha[None] * (colour[:, None, None] - patch)
    rows, cols = np.nonzero(alpha >= 0.5)
    if len(rows) == 0:
        return None
    return np.array([x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1], np.float64)


def render_objects(n: int, rng: np.random.Generator, img_size: int = 128,
                   max_objects: int = MAX_OBJECTS) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """``n`` procedural detection images: uint8 ``(n, 3, S, S)``, per-image boxes ``(G, 4)`` and classes ``(G,)``."""
    areas, radii = _geometry()
    del areas
    scale_px = img_size / 128
    # photos at 1, 2 and 4 times the image side (shapes' own levels at half the size): scenes to textures,
    # at a quarter of the resizing cost of 2-8 times
    levels = _backgrounds(img_size // 2)
    crops = random_crops(levels, rng.integers(len(levels), size=n), img_size, rng).astype(np.float32) / 255
    mean = crops.mean(axis=(2, 3))  # (n, 3)
    contrast = rng.uniform(*CONTRAST, n).astype(np.float32)
    images = crops * contrast[:, None, None, None] + mean[:, :, None, None] * (1 - contrast[:, None, None, None])
    counts = rng.integers(1, max_objects + 1, n)
    all_boxes, all_classes = [], []
    for i in range(n):
        k = counts[i]
        labels = rng.integers(len(SHAPES), size=k)
        diameters = np.exp(rng.uniform(*np.log(DIAMETER), k)) * scale_px
        angles = rng.uniform(0, 2 * np.pi, k)
        centres = _place(k, diameters, img_size, rng)
        boxes, classes = [], []
        for j in range(k):
            colour = rng.random(3)
            while np.linalg.norm(colour - mean[i]) < MIN_COLOUR_DISTANCE:
                colour = rng.random(3)
            if np.isnan(centres[j, 0]):
                continue
            radius = diameters[j] / 2
            box = _draw(images[i], int(labels[j]), centres[j], angles[j], radius / radii[labels[j]], radius,
                        colour.astype(np.float32))
            if box is not None:
                boxes.append(box)
                classes.append(labels[j])
        all_boxes.append(np.array(boxes, np.float64).reshape(-1, 4))
        all_classes.append(np.array(classes, np.int64))
    return (images * 255 + 0.5).astype(np.uint8), all_boxes, all_classes


def _generate(n: int, rng: np.random.Generator, img_size: int, max_objects: int) -> DetectionSet:
    images, boxes, classes = render_objects(n, rng, img_size, max_objects)
    return DetectionSet(torch.from_numpy(images), pad_targets(boxes, classes, max_objects))


@register("detection-dataset", "objects")
def objects(*, seed: int = 0, n_train: int | None = None, n_test: int | None = None, img_size: int = 128,
            max_objects: int = MAX_OBJECTS) -> DetectionSplits:
    """1-6 procedural outlines of 10 classes per image over photo crops, with tight boxes (embedded, seconds).

    Defaults: 4,000 train and 500 test images of 128×128, from independent random streams of ``seed``.
    """
    if img_size < 64:
        raise SecbenchError(f"objects: img_size must be at least 64 (the detector's stride-32 level), got {img_size}")
    if max_objects < 1:
        raise SecbenchError(f"objects: max_objects must be at least 1, got {max_objects}")
    train = _generate(dataset_size(n_train, 4_000), np.random.default_rng([seed, 0]), img_size, max_objects)
    test = _generate(dataset_size(n_test, 500), np.random.default_rng([seed, 1]), img_size, max_objects)
    s = 0.5 * img_size / 128  # COCO's sides × 0.5 at 128 px, scaled with the image
    return DetectionSplits("objects", train, test, tuple(SHAPES),
                           "procedural outlines over scikit-image/scikit-learn photos",
                           area_thresholds=(COCO_AREA_SIDES[0] * s, COCO_AREA_SIDES[1] * s))


# ---------------------------------------------------------------- COCO JSON


def coco_dict(split: DetectionSet, classes: tuple[str, ...], file_names: list[str] | None = None) -> dict[str, Any]:
    """The COCO ``instances`` dict of ``split``: image ids 1..N, annotation ids from 1, category ids 1..K,
    boxes ``[x, y, w, h]``, ``area = w · h``."""
    h, w = split.images.shape[-2:]
    images, annotations = [], []
    for i in range(len(split)):
        images.append({"id": i + 1, "file_name": file_names[i] if file_names else f"{i:06d}.png",
                       "width": int(w), "height": int(h)})
        boxes, labels = split.objects(i)
        for box, label in zip(boxes, labels, strict=True):
            bw, bh = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                                "bbox": [float(box[0]), float(box[1]), bw, bh], "area": bw * bh, "iscrowd": 0})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def to_coco(data: DetectionSplits, folder: str | Path) -> Path:
    """Write both splits as a COCO folder: ``annotations/instances_{train,test}.json`` and PNGs in
    ``{train,test}/``. Returns ``folder``, which ``coco:FOLDER`` reads back."""
    folder = Path(folder)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    for split_name, split in (("train", data.train), ("test", data.test)):
        images = folder / split_name
        images.mkdir(exist_ok=True)
        names = [f"{i:06d}.png" for i in range(len(split))]
        for name, image in zip(names, split.images.permute(0, 2, 3, 1).cpu().numpy(), strict=True):
            Image.fromarray(image).save(images / name)
        payload = coco_dict(split, data.classes, names)
        (folder / "annotations" / f"instances_{split_name}.json").write_text(json.dumps(payload))
    return folder


def _bad(path: Path, what: str) -> SecbenchError:
    return _malformed(path, what)


def _number_list(value: Any, length: int) -> bool:
    return isinstance(value, list) and len(value) == length and all(
        isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in value)


def _read_coco_json(path: Path, image_dir: Path, img_size: int, categories: list[int] | None
                    ) -> tuple[DetectionSet, list[int], list[str], float]:
    """One annotation file, validated entry by entry; returns the set, the sorted category ids, their names and
    the mean resize factor (stored px per original px)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _malformed(path, exc) from None
    if not isinstance(content, dict) or not all(isinstance(content.get(k), list)
                                                for k in ("images", "annotations", "categories")):
        raise _bad(path, "expected a JSON object with lists images, annotations and categories")
    names: dict[int, str] = {}
    for k, cat in enumerate(content["categories"]):
        if not (isinstance(cat, dict) and isinstance(cat.get("id"), int)):
            raise _bad(path, f"categories[{k}] needs an integer id")
        names[cat["id"]] = str(cat.get("name", cat["id"]))
    ids = sorted(names) if categories is None else categories
    index_of = {c: k for k, c in enumerate(ids)}
    images: dict[int, dict[str, Any]] = {}
    for k, entry in enumerate(content["images"]):
        if not (isinstance(entry, dict) and isinstance(entry.get("id"), int) and isinstance(entry.get("file_name"), str)
                and isinstance(entry.get("width"), int) and isinstance(entry.get("height"), int)
                and entry["width"] > 0 and entry["height"] > 0):
            raise _bad(path, f"images[{k}] needs an integer id, a file_name and positive integer width and height")
        if not (image_dir / entry["file_name"]).is_file():
            raise _bad(path, f"image {entry['id']} ({entry['file_name']}): missing file {image_dir / entry['file_name']}")
        images[entry["id"]] = entry
    per_image: dict[int, list[tuple[list[float], int]]] = {i: [] for i in images}
    for k, ann in enumerate(content["annotations"]):
        if not (isinstance(ann, dict) and isinstance(ann.get("image_id"), int) and _number_list(ann.get("bbox"), 4)):
            raise _bad(path, f"annotations[{k}] needs an integer image_id and a bbox of 4 numbers")
        where = f"annotation {ann.get('id', k)} (image {ann['image_id']})"
        if ann["image_id"] not in images:
            raise _bad(path, f"{where}: no image with id {ann['image_id']}")
        if ann.get("category_id") not in index_of:
            raise _bad(path, f"{where}: unknown category id {ann.get('category_id')!r}; known: "
                             f"{', '.join(map(str, ids))}")
        x, y, w, h = ann["bbox"]
        if w <= 0 or h <= 0:
            raise _bad(path, f"{where}: zero-area box {ann['bbox']} (width and height must be positive)")
        image = images[ann["image_id"]]
        tol = 1e-3
        if x < -tol or y < -tol or x + w > image["width"] + tol or y + h > image["height"] + tol:
            raise _bad(path, f"{where}: box {ann['bbox']} lies outside the {image['width']}x{image['height']} image")
        if not ann.get("iscrowd", 0):
            per_image[ann["image_id"]].append(([x, y, x + w, y + h], index_of[ann["category_id"]]))
    order = sorted(images)
    pixels = np.empty((len(order), img_size, img_size, 3), np.uint8)
    boxes, classes, factors = [], [], []
    for n, image_id in enumerate(order):
        entry = images[image_id]
        try:
            with Image.open(image_dir / entry["file_name"]) as im:
                pixels[n] = np.asarray(im.convert("RGB").resize((img_size, img_size), Image.Resampling.BILINEAR))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise _malformed(image_dir / entry["file_name"], exc) from None
        sx, sy = img_size / entry["width"], img_size / entry["height"]
        factors.append((sx + sy) / 2)
        rows = per_image[image_id]
        boxes.append(np.array([r[0] for r in rows], np.float64).reshape(-1, 4) * [sx, sy, sx, sy])
        classes.append(np.array([r[1] for r in rows], np.int64))
    data = DetectionSet(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), pad_targets(boxes, classes))
    return data, ids, [names.get(c, str(c)) for c in ids], float(np.mean(factors)) if factors else 1.0


def _split_files(base: Path) -> tuple[Path, Path]:
    files = sorted((base / "annotations").glob("*.json"))
    split = {f: f.stem.rsplit("_", 1)[-1] for f in files}
    train = [f for f in files if split[f].startswith("train")]
    test = [f for f in files if split[f].startswith(("val", "test"))]
    if not (train and test):
        raise SecbenchError(f"coco: {base / 'annotations'} needs a *_train*.json and a *_val*.json or *_test*.json "
                            f"(found: {', '.join(f.name for f in files) or 'none'})")
    return train[0], test[0]


def _image_dir(base: Path, annotation: Path) -> Path:
    split = base / annotation.stem.rsplit("_", 1)[-1]
    return split if split.is_dir() else (base / "images" if (base / "images").is_dir() else base)


def _subset(data: DetectionSet, n: int | None, seed: int) -> DetectionSet:
    if n is None or n >= len(data):
        return data
    if n <= 0:
        raise SecbenchError(f"a dataset size must be positive, got {n}")
    return data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:n]))


@register("detection-dataset", "coco")
def coco(*, path: str | None = None, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
         img_size: int = 128) -> DetectionSplits:
    """A local COCO-format folder (annotations/*_train*.json and *_val*.json, images beside), resized to img_size."""
    base = Path(path).expanduser() if path else _root(None) / "coco"
    if not (base / "annotations").is_dir():
        raise SecbenchError(f"coco: no annotations folder in {base}; expected {base}/annotations/instances_train.json "
                            f"and instances_val.json (or _test), with the images in {base}/<split>/")
    train_file, test_file = _split_files(base)
    train, ids, names, factor = _read_coco_json(train_file, _image_dir(base, train_file), img_size, None)
    test, _, _, _ = _read_coco_json(test_file, _image_dir(base, test_file), img_size, ids)
    sides = (COCO_AREA_SIDES[0] * factor, COCO_AREA_SIDES[1] * factor)
    return DetectionSplits("coco", _subset(train, n_train, seed), _subset(test, n_test, seed), tuple(names),
                           f"COCO-format folder {base}", area_thresholds=sides)


def load_detection(spec: str, **kwargs: object) -> DetectionSplits:
    """Build the detection dataset ``spec``: a registered name (``objects``), or ``coco:PATH``."""
    name, folder = check_spec(spec, "detection-dataset", "coco")
    return create("detection-dataset", name, **folder, **kwargs)
