"""Point-cloud segmentation datasets: the procedural ``scenes`` and the local S3DIS and ScanNet loaders,
the latter on tiny files written here in the real on-disk formats."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from secbench import registry
from secbench.data.point_local import (
    NYU40_IDS,
    S3DIS_CLASSES,
    SCANNET_CLASSES,
    read_ply_vertices,
    s3dis,
    scannet,
)
from secbench.data.points import CHANNELS, PointSet, PointSplits
from secbench.data.scenes import CLASSES, scenes
from secbench.errors import SecbenchError

SMALL = {"rooms_train": 2, "rooms_test": 1, "block_points": 128}  # fast builds for the determinism tests


def check_contract(data: PointSplits, block_points: int, block_size: float) -> None:
    """Shapes, dtypes and ranges every point-cloud dataset keeps."""
    assert data.block_points == block_points
    for part in (data.train, data.test):
        b = len(part)
        assert b > 0 and part.points.shape == (b, len(CHANNELS), block_points)
        assert part.points.dtype == torch.float32
        assert part.labels.dtype == part.instances.dtype == torch.int64
        assert 0 <= int(part.labels.min()) and int(part.labels.max()) < data.num_classes
        xyz, rgb, room = part.points[:, :3], part.points[:, 3:6], part.points[:, 6:]
        assert xyz[:, :2].abs().max() <= block_size / 2 + 1e-4  # block-centred
        assert xyz[:, 2].min() >= 0  # above the room's lowest point
        assert 0 <= rgb.min() and rgb.max() <= 1
        assert 0 <= room.min() and room.max() <= 1 + 1e-6
        assert_instances_in_one_room(part)


def assert_instances_in_one_room(part: PointSet) -> None:
    rooms = part.rooms[:, None].expand_as(part.instances).reshape(-1).numpy()
    instances = part.instances.reshape(-1).numpy()
    pairs = np.unique(np.stack([instances, rooms]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1], "an instance id is shared by two rooms"


def labels_of_instances(part: PointSet) -> dict[int, set[int]]:
    pairs = np.unique(np.stack([part.instances.reshape(-1).numpy(), part.labels.reshape(-1).numpy()]), axis=1)
    found: dict[int, set[int]] = {}
    for instance, label in pairs.T:
        found.setdefault(int(instance), set()).add(int(label))
    return found


def raises_one_line(match: str, build, **kwargs) -> str:
    with pytest.raises(SecbenchError, match=match) as info:
        build(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- procedural scenes


@pytest.fixture(scope="module")
def default_scenes() -> PointSplits:
    return scenes()


def test_registry_lists_the_point_cloud_datasets_with_keyword_options():
    assert {"scenes", "s3dis", "scannet"} <= set(registry.list_names("pointcloud"))
    summaries = dict(registry.describe("pointcloud"))
    for name in ("scenes", "s3dis", "scannet"):
        params = inspect.signature(registry.get("pointcloud", name).load()).parameters
        assert all(p.kind is p.KEYWORD_ONLY for p in params.values()), name
        assert [params[k].default for k in ("seed", "n_train", "n_test")] == [0, None, None], name
        assert {"block_points", "block_size"} <= set(params), name
        assert summaries[name] and "\n" not in summaries[name]
    built = registry.create("pointcloud", "scenes", n_train=3, n_test=2, **SMALL)
    assert (len(built.train), len(built.test)) == (3, 2)


def test_default_scenes_keep_the_contract_and_show_every_class(default_scenes):
    check_contract(default_scenes, 1024, 1.5)
    assert default_scenes.classes == CLASSES == (
        "ceiling", "floor", "wall", "window", "door", "table", "chair", "cabinet", "bookcase", "lamp", "box")
    assert set(default_scenes.train.labels.unique().tolist()) == set(range(11))
    assert len(default_scenes.train.rooms.unique()) == 24 and len(default_scenes.test.rooms.unique()) == 8
    train_ids = set(default_scenes.train.instances.unique().tolist())
    assert len(train_ids) > 24 * 10  # floor, ceiling, 4 walls, openings and furniture in every room


def test_every_instance_has_one_class_and_the_room_shell_is_large(default_scenes):
    part = default_scenes.train
    assert all(len(labels) == 1 for labels in labels_of_instances(part).values())
    instances, labels = part.instances.reshape(-1).numpy(), part.labels.reshape(-1).numpy()
    sizes = np.bincount(instances)
    label_of = np.zeros(len(sizes), dtype=np.int64)
    label_of[instances] = labels
    present = sizes > 0
    shell = present & (label_of <= CLASSES.index("wall"))
    furniture = present & (label_of >= CLASSES.index("table"))
    assert np.median(sizes[shell]) > 5 * np.median(sizes[furniture])
    floors = present & (label_of == CLASSES.index("floor"))
    assert sizes[floors].min() > np.median(sizes[furniture])


def test_scenes_are_deterministic_and_the_test_rooms_never_change_with_seed():
    a, b, other = scenes(seed=3, **SMALL), scenes(seed=3, **SMALL), scenes(seed=4, **SMALL)
    assert a.fingerprint() == b.fingerprint()
    for x, y in ((a.test.points, other.test.points), (a.test.labels, other.test.labels),
                 (a.test.instances, other.test.instances)):
        assert torch.equal(x, y)
    assert not torch.equal(a.train.points, other.train.points)
    # a room does not depend on how many are built: the first rooms of a bigger build are the same blocks
    bigger = scenes(seed=3, **{**SMALL, "rooms_train": 3})
    first = bigger.train.rooms < 2
    assert torch.equal(bigger.train.points[first], a.train.points)


def test_block_counts_are_honoured_and_more_rooms_are_built_when_needed():
    few = scenes(n_train=7, n_test=4, **SMALL)
    assert (len(few.train), len(few.test)) == (7, 4)
    many = scenes(n_train=80, **{**SMALL, "rooms_train": 1})
    assert len(many.train) == 80 and len(many.train.rooms.unique()) > 1
    check_contract(many, 128, 1.5)


@pytest.mark.parametrize("options",
                         [{"block_points": 0}, {"block_size": 0.0}, {"n_train": 0}, {"rooms_test": 0}])
def test_bad_scene_options_raise_one_line(options):
    raises_one_line("must be positive", scenes, **{**SMALL, **options})


# ---------------------------------------------------------------- S3DIS

S3DIS_FILES = ("ceiling_1", "floor_1", "wall_1", "wall_2", "chair_1", "stairs_1")  # stairs count as clutter


def write_s3dis(root: Path, rooms: dict[str, int], points: int = 40) -> Path:
    """Rooms ``{"Area_k/name": seed}`` of 1 m × 1 m; each annotation file's points carry its index in
    their red channel, so a point's file can be read back from its colour."""
    folder = root / "Stanford3dDataset_v1.2_Aligned_Version"
    for room, seed in rooms.items():
        annotations = folder / room / "Annotations"
        annotations.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for k, name in enumerate(S3DIS_FILES):
            xyz = rng.uniform(0, 0.95, (points, 3)) + [10.0, -3.0, 1.0]  # aligned rooms are not at the origin
            rgb = np.column_stack([np.full(points, k), rng.integers(0, 256, (points, 2))])
            lines = [f"{x:.3f} {y:.3f} {z:.3f} {r} {g} {b}"
                     for (x, y, z), (r, g, b) in zip(xyz, rgb, strict=True)]
            (annotations / f"{name}.txt").write_text("\n".join(lines) + "\n")
        (folder / room / f"{room.split('/')[1]}.txt").write_text("")  # the whole-room file, not read
    return folder


def test_s3dis_reads_annotations_with_area_5_as_the_test_split(tmp_path):
    write_s3dis(tmp_path, {"Area_1/office_1": 0, "Area_2/hallway_1": 1, "Area_2/office_2": 2,
                           "Area_5/office_1": 3})
    data = s3dis(root=str(tmp_path), block_points=64)
    check_contract(data, 64, 1.0)
    assert data.classes == S3DIS_CLASSES and data.num_classes == 13
    assert len(data.train.rooms.unique()) == 3 and len(data.test) == 1
    file_of = (data.train.points[:, 3] * 255).round().long()  # the annotation file each point came from
    names = [name.split("_")[0] for name in S3DIS_FILES]
    expected = torch.tensor([S3DIS_CLASSES.index(n if n in S3DIS_CLASSES else "clutter") for n in names])
    assert torch.equal(data.train.labels, expected[file_of])
    for labels in labels_of_instances(data.train).values():
        assert len(labels) == 1
    # one instance per file and room: two walls are two instances
    first_room = data.train.rooms[:, None] == 0
    walls = data.train.instances[(data.train.labels == S3DIS_CLASSES.index("wall")) & first_room]
    assert len(walls.unique()) == 2

    again = s3dis(root=str(tmp_path), block_points=64, seed=1, n_train=2)
    assert len(again.train) == 2 and torch.equal(again.test.points, data.test.points)
    assert len(s3dis(root=str(tmp_path), block_points=64, test_area=2).test) == 2


def test_s3dis_errors_are_one_line(tmp_path):
    raises_one_line("s3dis not found at .*Stanford3dDataset", s3dis, root=str(tmp_path / "nowhere"))
    folder = write_s3dis(tmp_path, {"Area_1/office_1": 0, "Area_5/office_1": 1})
    raises_one_line("no Area_4", s3dis, root=str(tmp_path), test_area=4)

    bad = folder / "Area_1/office_1/Annotations/chair_1.txt"
    bad.write_text(bad.read_text().replace("\n", "\n1.0 2.0 3x0 4 5 6\n", 1))  # S3DIS's own Area_5 has one
    message = raises_one_line("cannot read .*chair_1.txt", s3dis, root=str(tmp_path))
    assert "3x0" in message and "row" in message
    bad.write_text("1 2 3 4 5\n" * 50)
    raises_one_line("chair_1.txt", s3dis, root=str(tmp_path))
    bad.write_text("1 2 3 400 5 6\n" * 50)
    raises_one_line("colours must be in 0..255", s3dis, root=str(tmp_path))

    bad.unlink()
    (folder / "Area_1/office_1/Annotations").rename(folder / "Area_1/office_1/annotations_old")
    raises_one_line("office_1: no Annotations folder", s3dis, root=str(tmp_path))


# ---------------------------------------------------------------- ScanNet

VERTEX = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
          ("alpha", "u1")]
NYU40 = np.array([1, 2, 5, 39, 0, 13])  # wall, floor, chair, otherfurniture, then two not of the 20


def ply_header(fmt: str, vertices: int, properties: list[tuple[str, str]], faces: int = 0) -> bytes:
    names = {"<f4": "float", "u1": "uchar", "<u2": "ushort"}
    lines = ["ply", f"format {fmt} 1.0", "comment written by the test", f"element vertex {vertices}"]
    lines += [f"property {names[kind]} {name}" for name, kind in properties]
    if faces:
        lines += [f"element face {faces}", "property list uchar int vertex_indices"]
    return ("\n".join([*lines, "end_header"]) + "\n").encode()


def write_scene(scans: Path, name: str, seed: int, *, aggregation: bool = True) -> np.ndarray:
    """A ScanNet scene of 300 vertices: a binary little-endian mesh with faces, an ascii labels ply,
    30 segments of 10 consecutive vertices (segment ``k`` has NYU40 id ``NYU40[k % 6]``) and an
    aggregation grouping the wall segments 0 and 6 into one object. Vertex ``i`` is coloured
    (i % 256, i // 256, 10 * seed).
    Returns the NYU40 id of each vertex."""
    folder = scans / name
    folder.mkdir(parents=True)
    n = 300
    rng = np.random.default_rng(seed)
    index = np.arange(n)
    mesh = np.zeros(n, dtype=VERTEX)
    for axis, (low, high) in zip("xyz", ((2.0, 2.9), (-1.0, -0.1), (0.0, 2.5)), strict=True):
        mesh[axis] = rng.uniform(low, high, n)
    mesh["red"], mesh["green"], mesh["blue"], mesh["alpha"] = index % 256, index // 256, 10 * seed, 255
    faces = np.zeros(n - 2, dtype=[("count", "u1"), ("vertices", "<i4", (3,))])
    faces["count"], faces["vertices"] = 3, np.stack([index[:-2], index[1:-1], index[2:]], 1)
    header = ply_header("binary_little_endian", n, VERTEX, faces=len(faces))
    (folder / f"{name}_vh_clean_2.ply").write_bytes(header + mesh.tobytes() + faces.tobytes())

    nyu40 = NYU40[index // 10 % len(NYU40)]
    rows = [f"{v['x']} {v['y']} {v['z']} 0 0 0 255 {label}" for v, label in zip(mesh, nyu40, strict=True)]
    header = ply_header("ascii", n, [*VERTEX, ("label", "<u2")])
    (folder / f"{name}_vh_clean_2.labels.ply").write_bytes(header + ("\n".join(rows) + "\n").encode())
    segments = {"sceneId": name, "segIndices": (index // 10 * 3).tolist()}  # ids 0, 3, 6, ...: not 0..k
    (folder / f"{name}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segments))
    if aggregation:
        groups = [{"id": 0, "objectId": 0, "segments": [0, 18], "label": "wall"}]  # segment ids 3 k
        (folder / f"{name}.aggregation.json").write_text(json.dumps({"sceneId": name, "segGroups": groups}))
    return nyu40


def vertex_of(part: PointSet) -> torch.Tensor:
    """The vertex index each point came from, read back from its colour."""
    return (part.points[:, 3] * 255).round().long() + 256 * (part.points[:, 4] * 255).round().long()


def test_scannet_reads_meshes_labels_and_objects_with_the_official_split(tmp_path):
    scans = tmp_path / "scans"
    nyu40 = write_scene(scans, "scene0000_00", 0)
    write_scene(scans, "scene0000_01", 1, aggregation=False)
    write_scene(scans, "scene0001_00", 2)
    (tmp_path / "scannetv2_train.txt").write_text("scene0000_00\nscene0000_01\nscene0099_00\n")  # 0099 absent
    (tmp_path / "scannetv2_val.txt").write_text("scene0001_00\n")
    data = scannet(root=str(tmp_path), block_points=2048)  # with replacement: every point is in its block
    check_contract(data, 2048, 1.0)
    assert data.classes == SCANNET_CLASSES and data.num_classes == 20
    assert len(data.train.rooms.unique()) == 2 and len(data.test) == 1

    vertex = vertex_of(data.train)
    kept = torch.from_numpy(np.isin(nyu40, NYU40_IDS))
    assert kept[vertex].all()  # unannotated and non-benchmark points are dropped
    mapping = {1: 0, 2: 1, 5: 4, 39: 19}
    expected = torch.tensor([mapping.get(int(label), -1) for label in nyu40])
    assert torch.equal(data.train.labels, expected[vertex])
    for labels in labels_of_instances(data.train).values():
        assert len(labels) == 1

    def instances_of(room: int, vertices: range) -> set[int]:
        chosen = (data.train.rooms[:, None] == room) & (vertex >= vertices.start) & (vertex < vertices.stop)
        return set(data.train.instances[chosen].tolist())

    wall_a, wall_b, wall_c = range(0, 10), range(60, 70), range(120, 130)  # segments 0, 6 and 12
    assert len(instances_of(0, wall_a)) == 1 and instances_of(0, wall_a) == instances_of(0, wall_b)
    assert instances_of(0, wall_a).isdisjoint(instances_of(0, wall_c))  # a segment in no object: its own
    assert instances_of(1, wall_a).isdisjoint(instances_of(1, wall_b))  # no aggregation: one per segment


def test_scannet_without_split_lists_keeps_the_rescans_of_a_space_together(tmp_path):
    scans = tmp_path / "scans"
    names = ["scene0000_00", "scene0000_01", "scene0001_00", "scene0002_00", "scene0003_00"]
    for k, name in enumerate(names):
        write_scene(scans, name, k)
    data = scannet(root=str(tmp_path), block_points=64)
    assert len(data.train) + len(data.test) == 5  # each tiny scene gives one block
    assert len(data.test) in (1, 2)  # one space of four is held out
    scene_of = {part: set((p.points[:, 5, 0] * 255 / 10).round().long().tolist()) for part, p in
                (("train", data.train), ("test", data.test))}
    assert ({0, 1} <= scene_of["train"]) or ({0, 1} <= scene_of["test"])  # the two scans of scene0000
    assert len(scannet(root=str(tmp_path), block_points=64, n_train=2).train) == 2


def test_read_ply_vertices_reads_binary_and_ascii_alike(tmp_path):
    write_scene(tmp_path, "scene0000_00", 0)
    folder = tmp_path / "scene0000_00"
    binary = read_ply_vertices(folder / "scene0000_00_vh_clean_2.ply", ("x", "red"))
    ascii_ = read_ply_vertices(folder / "scene0000_00_vh_clean_2.labels.ply", ("x", "label"))
    assert binary["x"].dtype == np.float32 and binary["red"].dtype == np.uint8
    np.testing.assert_allclose(binary["x"], ascii_["x"], rtol=1e-6)
    assert ascii_["label"].dtype == np.uint16 and ascii_["label"][::10][:6].tolist() == NYU40.tolist()


def test_scannet_errors_are_one_line(tmp_path):
    raises_one_line("scannet not found at .*scans", scannet, root=str(tmp_path))
    scans = tmp_path / "scans"
    write_scene(scans, "scene0000_00", 0)
    write_scene(scans, "scene0001_00", 1)
    labels = scans / "scene0000_00/scene0000_00_vh_clean_2.labels.ply"
    original = labels.read_bytes()
    labels.write_bytes(original.replace(b"property ushort label\n", b""))
    raises_one_line("cannot read .*labels.ply: no vertex property label", scannet, root=str(tmp_path))
    labels.write_bytes(original)

    mesh = scans / "scene0001_00/scene0001_00_vh_clean_2.ply"
    header, _, body = mesh.read_bytes().partition(b"end_header\n")
    mesh.write_bytes(header + b"end_header\n" + body[:100])
    raises_one_line("cannot read .*vh_clean_2.ply: 300 vertices declared", scannet, root=str(tmp_path))
    mesh.write_bytes(b"solid stl\n")
    raises_one_line("not a PLY file", scannet, root=str(tmp_path))
    mesh.unlink()
    raises_one_line("vh_clean_2.ply is missing", scannet, root=str(tmp_path))
