"""Real indoor point clouds read from local disk in their usual layouts; nothing is ever downloaded.

``root`` defaults to :func:`~secbench.data.base.data_root` (``$SECBENCH_DATA``):

- ``s3dis``: ``<root>/Stanford3dDataset_v1.2_Aligned_Version/Area_<k>/<room>/Annotations/<class>_<i>.txt``,
  one file per object, rows ``x y z r g b`` (colour 0-255). Area ``test_area`` (5, the usual protocol)
  is the test split, the other areas the training split. The v1.2 release has a stray character in
  ``Area_5/hallway_6/Annotations/ceiling_1.txt`` (line 180389): the error names the row; fix it by
  hand, as PointNet's preparation does.
- ``scannet``: ScanNet v2's ``<root>/scans/<scene>/`` with ``<scene>_vh_clean_2.ply`` (coloured
  vertices), ``<scene>_vh_clean_2.labels.ply`` (the NYU40 id of each vertex, property ``label``),
  ``<scene>_vh_clean_2.0.010000.segs.json`` (over-segmentation) and, when present,
  ``<scene>.aggregation.json`` (the segments of each object). ``<root>/scannetv2_train.txt`` and
  ``scannetv2_val.txt`` give the train/test split; without them a fixed 80/20 split of the scanned
  spaces (``sceneXXXX``, so that rescans of one space stay together) is used.

Each room or scene is cut into blocks like DGCNN's S3DIS data (:func:`~secbench.data.points.room_blocks`).
With ``n_train``/``n_test`` the rooms are read in a seeded order only until they give that many blocks, of
which a random ``n`` are kept: a small subset never reads the whole dataset.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from secbench.data.base import SPLIT_SEED, TEST_FRACTION
from secbench.data.local import _malformed, _missing, _root
from secbench.data.points import PointSet, PointSplits, room_blocks, stack_rooms
from secbench.data.scenes import check_block_options, keep_blocks
from secbench.errors import SecbenchError
from secbench.registry import register

Room = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""xyz ``(P, 3)`` metres, rgb ``(P, 3)`` in [0, 1], labels and instances ``(P,)`` int64."""

OVERSAMPLE = 20  # points kept per block point: plenty to sample blocks from, and it bounds the cutting cost


def _blocks(room: Room, block_points: int, block_size: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`room_blocks` of a room thinned to at most :data:`OVERSAMPLE` × ``block_points`` points per
    block column of its floor plan."""
    extent = np.ptp(room[0][:, :2], axis=0)
    cap = OVERSAMPLE * block_points * int(np.prod(np.floor(extent / block_size) + 1))
    if len(room[0]) > cap:
        chosen = np.sort(rng.choice(len(room[0]), cap, replace=False))
        room = tuple(part[chosen] for part in room)
    return room_blocks(*room, block_points=block_points, rng=rng, block_size=block_size)


def _split(places: Sequence[Path], read: Callable[[Path], Room], n: int | None, stream: list[int],
           block_points: int, block_size: float) -> PointSet:
    """The blocks of the rooms ``places`` (each read by ``read``); with ``n``, only of as many rooms,
    taken in an order drawn from ``stream``, as give ``n`` blocks."""
    order = range(len(places)) if n is None else np.random.default_rng([*stream, 0]).permutation(len(places))
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    total = 0
    for k in order:
        if n is not None and total >= n:
            break
        room, rng = read(places[k]), np.random.default_rng([*stream, 1, int(k)])
        try:
            blocks.append(_blocks(room, block_points, block_size, rng))
        except SecbenchError as exc:  # too few points: say which room
            raise SecbenchError(f"{places[k]}: {exc}") from None
        total += len(blocks[-1][0])
    return keep_blocks(stack_rooms(blocks), n, np.random.default_rng([*stream, 2]))


def _splits(name: str, train: Sequence[Path], test: Sequence[Path], read: Callable[[Path], Room],
            classes: tuple[str, ...], source: str, seed: int, n_train: int | None, n_test: int | None,
            block_points: int, block_size: float) -> PointSplits:
    """Both splits; the test split is the same for every ``seed``."""
    if not (train and test):
        raise SecbenchError(f"{name}: found {len(train)} training and {len(test)} test rooms in {source}")
    return PointSplits(
        name,
        _split(train, read, n_train, [seed, 0], block_points, block_size),
        _split(test, read, n_test, [SPLIT_SEED, 1], block_points, block_size),
        classes,
        source,
    )


def _need(path: Path) -> Path:
    if not path.is_file():
        raise SecbenchError(f"{path} is missing: the dataset folder is incomplete")
    return path


# ---------------------------------------------------------------- S3DIS

S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
                 "bookcase", "board", "clutter")
_S3DIS_FOLDER = "Stanford3dDataset_v1.2_Aligned_Version"
_S3DIS_URL = "http://buildingparser.stanford.edu/dataset.html"
_ANNOTATION = re.compile(r"([A-Za-z]+)_\d+\.txt")


def _bad_rows(path: Path) -> str:
    """Why ``path`` is not rows of ``x y z r g b``: numpy's parser names the first bad row."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file: numpy warns, the message below says it
            np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        return str(exc)
    return "each row must hold 6 finite numbers x y z r g b"


def _xyzrgb(path: Path) -> np.ndarray:
    """One annotation file: ``(P, 6)`` float64 rows ``x y z r g b``."""
    import pandas as pd  # deferred: importing this package must stay cheap

    try:  # pandas reads 2-3 times faster than numpy, but pads short rows with NaN and names no bad row
        values = pd.read_csv(path, sep=r"\s+", header=None, dtype=np.float64).to_numpy()
    except (OSError, ValueError):  # pandas' parser and empty-file errors are ValueErrors
        values = None
    if values is None or values.shape[1] != 6 or not np.isfinite(values).all():
        raise _malformed(path, _bad_rows(path))
    if ((values[:, 3:] < 0) | (values[:, 3:] > 255)).any():
        raise _malformed(path, "colours must be in 0..255")
    return values


def _s3dis_room(room: Path) -> Room:
    """A room from its ``Annotations`` folder: one instance per file; classes S3DIS does not name
    (``stairs``) count as clutter, as in PointNet's and DGCNN's preparation."""
    folder = room / "Annotations"
    if not folder.is_dir():
        raise _malformed(room, "no Annotations folder")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise _malformed(folder, "no <class>_<i>.txt annotation files")
    values, labels, instances = [], [], []
    for instance, path in enumerate(files):
        match = _ANNOTATION.fullmatch(path.name)
        if match is None:
            raise _malformed(path, "an annotation file is named <class>_<i>.txt")
        name = match[1]
        values.append(_xyzrgb(path))
        label = S3DIS_CLASSES.index(name) if name in S3DIS_CLASSES else S3DIS_CLASSES.index("clutter")
        labels.append(np.full(len(values[-1]), label))
        instances.append(np.full(len(values[-1]), instance))
    table = np.concatenate(values)
    return table[:, :3], table[:, 3:] / 255, np.concatenate(labels), np.concatenate(instances)


@register("pointcloud", "s3dis")
def s3dis(
    *,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    root: str | None = None,
    block_points: int = 1024,
    block_size: float = 1.0,
    test_area: int = 5,
) -> PointSplits:
    """Stanford S3DIS (rooms of 6 office areas) from local files, 13 classes, cut into 1 m blocks.

    Blocks hold ``block_points`` points (channels :data:`~secbench.data.points.CHANNELS`); area
    ``test_area`` is the test split. ``n_train``/``n_test`` keep that many blocks (None: all);
    ``seed`` picks the training subset; the test split is the same for every seed.
    """
    check_block_options(block_points, block_size, n_train=n_train, n_test=n_test)
    base = _root(root)
    folder = base / _S3DIS_FOLDER
    if not folder.is_dir():
        how = f"request {_S3DIS_FOLDER}.zip at {_S3DIS_URL} and extract it under {base}"
        raise _missing("s3dis", folder, how)
    areas = sorted(p for p in folder.glob("Area_*") if p.is_dir())
    if folder / f"Area_{test_area}" not in areas:
        raise SecbenchError(f"s3dis: no Area_{test_area} in {folder} to test on; areas found: "
                            f"{', '.join(a.name for a in areas) or 'none'}")
    rooms = {area: sorted(p for p in area.iterdir() if p.is_dir()) for area in areas}
    train = [room for area in areas if area.name != f"Area_{test_area}" for room in rooms[area]]
    return _splits("s3dis", train, rooms[folder / f"Area_{test_area}"], _s3dis_room, S3DIS_CLASSES,
                   f"{_S3DIS_URL} (read from {folder}, test Area_{test_area})", seed, n_train, n_test,
                   block_points, block_size)


# ---------------------------------------------------------------- ScanNet v2

SCANNET_CLASSES = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
                   "bookshelf", "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain",
                   "toilet", "sink", "bathtub", "otherfurniture")
NYU40_IDS = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39])
"""The NYU40 id of each of :data:`SCANNET_CLASSES` (the ScanNet benchmark's 20); other ids are dropped."""
_SCANNET_URL = "http://www.scan-net.org/"

_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
              "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
              "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8"}
_PLY_ORDER = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": ""}


def read_ply_vertices(path: Path, needed: Sequence[str]) -> dict[str, np.ndarray]:
    """The ``needed`` properties of a PLY file's vertex element, ``(V,)`` each in the file's type.

    Reads ``ascii`` and binary files whose first element is ``vertex`` with scalar properties (as
    ScanNet writes them); anything else raises a one-line :class:`SecbenchError`.
    """
    try:
        with open(path, "rb") as f:
            if f.readline().strip() != b"ply":
                raise _malformed(path, "not a PLY file")
            order, elements, properties = None, [], []
            while (line := f.readline()) and line.strip() != b"end_header":
                words = line.decode("ascii", errors="replace").split()
                if words[:1] == ["format"] and len(words) > 1:
                    order = _PLY_ORDER.get(words[1])
                elif words[:1] == ["element"] and len(words) == 3:
                    elements.append((words[1], int(words[2])))
                elif words[:1] == ["property"] and len(elements) == 1 and elements[0][0] == "vertex":
                    if len(words) != 3 or words[1] not in _PLY_TYPES:
                        raise _malformed(path, f"unsupported vertex property {' '.join(words[1:])!r}")
                    properties.append((words[2], _PLY_TYPES[words[1]]))
            if not line:
                raise _malformed(path, "the header has no end_header")
            body = f.read()
    except OSError as exc:
        raise _malformed(path, exc) from None
    except ValueError:  # int() of an element count
        raise _malformed(path, "an element count is not an integer") from None
    if order is None:
        raise _malformed(path, "the format must be ascii, binary_little_endian or binary_big_endian")
    if not elements or elements[0][0] != "vertex":
        raise _malformed(path, "the first element must be vertex")
    names = [name for name, _ in properties]
    absent = [name for name in needed if name not in names]
    if absent:
        raise _malformed(path, f"no vertex propert{'y' if len(absent) == 1 else 'ies'} {', '.join(absent)}")
    count = elements[0][1]
    if order:  # binary: fixed-size records
        dtype = np.dtype([(name, order + kind) for name, kind in properties])
        if len(body) < count * dtype.itemsize:
            raise _malformed(path, f"{count} vertices declared, the file ends before them")
        table = np.frombuffer(body, dtype, count)
        return {name: table[name] for name in needed}
    tokens = body.split(maxsplit=count * len(names))[: count * len(names)]  # vertices come first
    try:
        values = np.array(tokens, dtype=np.float64).reshape(count, len(names))
    except ValueError:
        raise _malformed(path, f"expected {count} vertex rows of {len(names)} numbers") from None
    return {name: values[:, names.index(name)].astype(dict(properties)[name]) for name in needed}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _malformed(path, exc) from None
    if not isinstance(content, dict):
        raise _malformed(path, "expected a JSON object")
    return content


def _scannet_instances(folder: Path, vertices: int) -> np.ndarray:
    """The object of each vertex, ``(V,)`` int64: the aggregation's object of its segment, or (no
    aggregation file, or a segment in no object) an id of the segment's own."""
    name = folder.name
    segs_path = _need(folder / f"{name}_vh_clean_2.0.010000.segs.json")
    segments = _read_json(segs_path).get("segIndices")
    try:
        segments = np.asarray(segments, dtype=np.int64)
    except (TypeError, ValueError):
        segments = None
    if segments is None or segments.shape != (vertices,):
        raise _malformed(segs_path, f"segIndices must list the segment of each of the {vertices} vertices")
    ids, per_vertex = np.unique(segments, return_inverse=True)
    groups_path = folder / f"{name}.aggregation.json"
    groups = _read_json(groups_path).get("segGroups") if groups_path.is_file() else []
    if not isinstance(groups, list):
        raise _malformed(groups_path, "segGroups must be a list")
    object_of = {}
    for k, group in enumerate(groups):
        if not (isinstance(group, dict) and isinstance(group.get("segments"), list)):
            raise _malformed(groups_path, "every segGroups entry needs a segments list")
        object_of.update(dict.fromkeys(group["segments"], k))
    owner = np.array([object_of.get(int(s), len(groups) + i) for i, s in enumerate(ids)], dtype=np.int64)
    return owner[per_vertex]


def _scannet_scene(folder: Path) -> Room:
    """A scene's labelled vertices (those of the 20 benchmark classes)."""
    name = folder.name
    colours = ("red", "green", "blue")
    mesh = read_ply_vertices(_need(folder / f"{name}_vh_clean_2.ply"), ("x", "y", "z", *colours))
    labels_path = _need(folder / f"{name}_vh_clean_2.labels.ply")
    nyu40 = read_ply_vertices(labels_path, ("label",))["label"].astype(np.int64)
    vertices = len(mesh["x"])
    if len(nyu40) != vertices:
        raise _malformed(labels_path, f"{len(nyu40)} vertices, but the mesh has {vertices}")
    instances = _scannet_instances(folder, vertices)
    labels = np.full(vertices, -1)
    known = np.isin(nyu40, NYU40_IDS)
    labels[known] = np.searchsorted(NYU40_IDS, nyu40[known])
    xyz = np.stack([mesh[c] for c in ("x", "y", "z")], 1).astype(np.float64)
    rgb = np.clip(np.stack([mesh[c] for c in colours], 1) / 255, 0, 1)
    return xyz[known], rgb[known], labels[known], instances[known]


def _scannet_split(base: Path, scenes: list[str]) -> tuple[list[str], list[str]]:
    """Train and test scene names: the official lists when both are in ``base``, else a fixed split
    of the scanned spaces."""
    lists = [base / f"scannetv2_{part}.txt" for part in ("train", "val")]
    if all(path.is_file() for path in lists):
        present = set(scenes)
        train, test = ({line.strip() for line in path.read_text().splitlines()} & present for path in lists)
        return sorted(train), sorted(test)
    spaces = sorted({scene.rsplit("_", 1)[0] for scene in scenes})
    shuffled = np.random.default_rng(SPLIT_SEED).permutation(spaces)
    test_spaces = set(shuffled[: max(1, round(TEST_FRACTION * len(spaces)))])
    return ([s for s in scenes if s.rsplit("_", 1)[0] not in test_spaces],
            [s for s in scenes if s.rsplit("_", 1)[0] in test_spaces])


@register("pointcloud", "scannet")
def scannet(
    *,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    root: str | None = None,
    block_points: int = 1024,
    block_size: float = 1.0,
) -> PointSplits:
    """ScanNet v2 scenes from local files, the benchmark's 20 classes, cut into 1 m blocks.

    Blocks hold ``block_points`` points (channels :data:`~secbench.data.points.CHANNELS`); points of
    other classes are dropped. The official validation scenes are the test split. ``n_train``/``n_test``
    keep that many blocks (None: all); ``seed`` picks the training subset; the test split is the same
    for every seed.
    """
    check_block_options(block_points, block_size, n_train=n_train, n_test=n_test)
    base = _root(root)
    folder = base / "scans"
    if not folder.is_dir():
        how = f"get ScanNet v2 (terms of use at {_SCANNET_URL}) and put its scans folder under {base}"
        raise _missing("scannet", folder, how)
    train, test = _scannet_split(base, sorted(p.name for p in folder.iterdir() if p.is_dir()))
    return _splits("scannet", [folder / s for s in train], [folder / s for s in test], _scannet_scene,
                   SCANNET_CLASSES, f"{_SCANNET_URL} (read from {folder})", seed, n_train, n_test,
                   block_points, block_size)
