"""Datasets: the bundled ones (digits, shapes, patches) and the local-disk loaders, the latter on
tiny files written here in the real on-disk formats."""

from __future__ import annotations

import inspect
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from secbench import registry
from secbench.data import DataSplits, ImageSet, load_dataset, subsample
from secbench.data.digits import digits
from secbench.data.local import cifar10, cifar100, gtsrb, imagefolder, svhn
from secbench.data.patches import PHOTOS, TEST_PHOTOS, patches, random_crops
from secbench.data.shapes import SHAPES, shapes
from secbench.errors import SecbenchError, UnknownNameError

BUILTIN = {"digits", "shapes", "patches", "cifar10", "cifar100", "svhn", "gtsrb", "imagefolder"}
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]  # one solid colour per class in image files


def check_splits(data: DataSplits, size: int) -> None:
    """The contract every dataset keeps: uint8 (N, 3, size, size) images, int64 labels naming a class."""
    assert data.img_size == size
    for part in (data.train, data.test):
        assert part.images.dtype == torch.uint8 and part.images.shape[1:] == (3, size, size)
        assert part.labels.dtype == torch.int64
        assert 0 <= int(part.labels.min()) and int(part.labels.max()) < data.num_classes
    assert len(data.mean) == len(data.std) == 3


def rows(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


# ---------------------------------------------------------------- registry contract


def test_every_dataset_takes_seed_and_sizes_and_has_a_summary():
    assert BUILTIN <= set(registry.list_names("dataset"))
    summaries = dict(registry.describe("dataset"))
    for name in BUILTIN:
        params = inspect.signature(registry.get("dataset", name).load()).parameters
        assert all(p.kind is p.KEYWORD_ONLY for p in params.values()), name
        defaults = [params[key].default for key in ("seed", "n_train", "n_test")]
        assert defaults == [0, None, None], name
        assert summaries[name] and "\n" not in summaries[name]


def test_load_dataset_errors_and_none_options():
    with pytest.raises(UnknownNameError, match="did you mean 'digits'"):
        load_dataset("digit")
    with pytest.raises(UnknownNameError, match="option"):
        load_dataset("digits", colour=True)
    with pytest.raises(SecbenchError, match="imagefolder:PATH"):
        load_dataset("imagefolder:")
    data = load_dataset("digits", n_train=None, img_size=None)  # None: the dataset's own defaults
    assert (len(data.train), data.img_size) == (1437, 32)


def test_subsample_keeps_class_proportions():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    data = ImageSet(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), labels)
    part = subsample(data, 20, seed=0)
    assert torch.bincount(part.labels).tolist() == [12, 6, 2]
    assert rows(part.images) <= rows(data.images) and len(rows(part.images)) == 20
    assert torch.equal(subsample(data, 20, seed=0).images, part.images)
    assert not torch.equal(subsample(data, 20, seed=1).images, part.images)
    assert subsample(data, None, seed=0) is data and subsample(data, 500, seed=0) is data
    with pytest.raises(SecbenchError):
        subsample(data, 0, seed=0)


# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def full_digits() -> DataSplits:
    return digits()


def test_digits_images(full_digits):
    check_splits(full_digits, 32)
    assert (len(full_digits.train), len(full_digits.test)) == (1437, 360)
    assert full_digits.classes == tuple("0123456789")
    images = full_digits.train.images
    assert int(images.min()) == 0 and int(images.max()) == 255
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])  # grey
    assert torch.bincount(full_digits.test.labels).min() >= 35  # stratified: ~36 of each digit
    assert digits(n_train=10, n_test=10, img_size=16).img_size == 16


def test_digits_split_is_fixed_disjoint_and_subsampled_by_seed(full_digits):
    assert digits(seed=7).fingerprint() == full_digits.fingerprint()  # seed never moves the split
    train, test = rows(full_digits.train.images), rows(full_digits.test.images)
    assert not train & test and len(train | test) == 1797  # the 8x8 digits are all distinct
    small = digits(n_train=100, n_test=50, seed=1)
    assert torch.bincount(small.train.labels).tolist() == [10] * 10
    assert rows(small.train.images) <= train and rows(small.test.images) <= test
    assert not torch.equal(digits(n_train=100, seed=2).train.images, small.train.images)


# ---------------------------------------------------------------- shapes


@pytest.fixture(scope="module")
def small_shapes() -> DataSplits:
    return shapes(n_train=200, n_test=100)


def test_shapes_images_are_balanced_and_deterministic(small_shapes):
    check_splits(small_shapes, 32)
    assert small_shapes.classes == tuple(SHAPES) and len(SHAPES) == 10
    assert torch.bincount(small_shapes.train.labels).tolist() == [20] * 10
    assert torch.bincount(small_shapes.test.labels).tolist() == [10] * 10
    assert shapes(n_train=200, n_test=100).fingerprint() == small_shapes.fingerprint()
    other = shapes(n_train=200, n_test=100, seed=1)
    assert not rows(other.train.images) & rows(small_shapes.train.images)
    # train and test come from independent streams: not one image in common
    assert not rows(small_shapes.train.images) & rows(small_shapes.test.images)
    assert shapes(n_train=20, n_test=10, img_size=48).img_size == 48


def test_shapes_rejects_bad_options():
    with pytest.raises(SecbenchError, match="img_size"):
        shapes(n_train=10, n_test=10, img_size=8)
    with pytest.raises(SecbenchError, match="positive"):
        shapes(n_train=0)


def test_shapes_default_size_is_fast_and_brightness_says_nothing_about_the_class():
    start = time.perf_counter()
    data = shapes()
    assert time.perf_counter() - start < 10
    assert (len(data.train), len(data.test)) == (10_000, 2_000)
    assert torch.bincount(data.train.labels).tolist() == [1000] * 10
    # equal object areas and class-blind colours: no class is brighter or more colourful than another
    brightness = data.train.floats().mean(dim=(2, 3))  # (N, 3)
    per_class = torch.stack([brightness[data.train.labels == k].mean(0) for k in range(10)])
    assert float((per_class.max(0).values - per_class.min(0).values).max()) < 0.03


# ---------------------------------------------------------------- patches


def test_patches_come_from_disjoint_photos():
    data = patches(n_train=60, n_test=30)
    check_splits(data, 64)
    assert data.classes == tuple(PHOTOS)
    train_photos = {data.classes[i] for i in data.train.labels.tolist()}
    test_photos = {data.classes[i] for i in data.test.labels.tolist()}
    assert test_photos == set(TEST_PHOTOS) and train_photos == set(PHOTOS) - set(TEST_PHOTOS)
    assert torch.bincount(data.test.labels).max() == 10  # as many patches from every test photo
    assert patches(n_train=60, n_test=30).fingerprint() == data.fingerprint()
    assert patches(n_train=60, n_test=30, seed=1).fingerprint() != data.fingerprint()
    assert patches(n_train=10, n_test=10, patch_size=32).img_size == 32
    with pytest.raises(SecbenchError, match="patch_size"):
        patches(patch_size=1000)


def test_random_crops_are_windows_of_their_source():
    rows_, cols = np.meshgrid(np.arange(120), np.arange(200), indexing="ij")
    source = np.stack([rows_, cols, np.zeros_like(rows_)], axis=2).astype(np.uint8)  # a pixel holds its place
    blank = np.zeros((40, 40, 3), dtype=np.uint8)
    which = np.array([0, 1] * 50)
    crops = random_crops([source, blank], which, 16, np.random.default_rng(0)).astype(int)
    assert crops.shape == (100, 3, 16, 16) and not crops[which == 1].any()
    row, col = crops[which == 0, 0], crops[which == 0, 1]
    assert (np.diff(row, axis=1) == 1).all()  # whole consecutive rows...
    steps = np.diff(col, axis=2)
    mirrored = steps[:, 0, 0] == -1
    assert ((steps == 1) | mirrored[:, None, None]).all() and ((steps == -1) | ~mirrored[:, None, None]).all()
    assert 0 < mirrored.sum() < len(mirrored)  # ...some of them mirrored left-right
    assert row.max() < 120 and col.max() < 200


# ---------------------------------------------------------------- CIFAR (hand-written pickles)


def write_pickle(path: Path, content: object, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(content, protocol=protocol))  # the real files: protocol-2 pickled dicts


def cifar_batch(n: int, num_classes: int, label_key: bytes, seed: int) -> dict[bytes, object]:
    data = np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [i % num_classes for i in range(n)]
    return {b"batch_label": b"batch", label_key: labels, b"data": data, b"filenames": [b"x.png"] * n}


def write_cifar10(root: Path, protocol: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    for i in range(1, 6):
        write_pickle(folder / f"data_batch_{i}", cifar_batch(10, 10, b"labels", seed=i), protocol)
    write_pickle(folder / "test_batch", cifar_batch(20, 10, b"labels", seed=0), protocol)
    names = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    write_pickle(folder / "batches.meta", names, protocol)
    return folder


@pytest.mark.parametrize("protocol", [2, 4, 5])  # 5 rebuilds arrays through numpy's _frombuffer
def test_cifar10_reads_the_python_batches(tmp_path, monkeypatch, protocol):
    folder = write_cifar10(tmp_path, protocol)
    monkeypatch.setenv("SECBENCH_DATA", str(tmp_path))
    data = cifar10()
    check_splits(data, 32)
    assert (len(data.train), len(data.test), data.num_classes) == (50, 20, 10)
    assert data.classes[3] == "class3" and str(folder) in data.source
    first = cifar_batch(10, 10, b"labels", seed=1)[b"data"]  # rows are R, G, B planes of 32x32, row-major
    assert torch.equal(data.train.images[:10], torch.from_numpy(first.reshape(10, 3, 32, 32)))
    assert data.train.labels[:10].tolist() == list(range(10))
    assert torch.bincount(cifar10(n_train=20, root=str(tmp_path)).train.labels).tolist() == [2] * 10


def test_cifar10_reads_files_written_by_numpy_1(tmp_path):
    folder = write_cifar10(tmp_path)
    expected = cifar10(root=str(tmp_path)).fingerprint()
    for path in folder.glob("*_batch*"):  # numpy 1 pickles arrays through numpy.core, numpy 2 numpy._core
        path.write_bytes(path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"numpy.core.multiarray\n_reconstruct" in (folder / "test_batch").read_bytes()
    assert cifar10(root=str(tmp_path)).fingerprint() == expected


def test_cifar100_reads_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    for split, n in (("train", 200), ("test", 100)):
        batch = cifar_batch(n, 100, b"fine_labels", seed=n) | {b"coarse_labels": [0] * n}
        write_pickle(folder / split, batch)
    write_pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]})
    data = cifar100(root=str(tmp_path))
    check_splits(data, 32)
    assert (len(data.train), len(data.test), data.num_classes) == (200, 100, 100)
    assert data.test.labels[:3].tolist() == [0, 1, 2] and data.classes[99] == "f99"


class Exploit:
    """Pickles as a call to ``os.system``: plain ``pickle.load`` would run the shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_cifar_refuses_a_pickle_that_would_run_code(tmp_path):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    write_pickle(folder / "data_batch_1", {b"data": Exploit(f"touch {marker}"), b"labels": [0]})
    with pytest.raises(SecbenchError, match=r"refusing to load (posix|nt)\.system") as err:
        cifar10(root=str(tmp_path))
    assert str(folder / "data_batch_1") in str(err.value)
    assert not marker.exists()
    pickle.loads((folder / "data_batch_1").read_bytes())  # proof the payload is live: plain pickle runs it
    assert marker.exists()


def test_cifar_missing_or_malformed_is_one_line_error(tmp_path):
    with pytest.raises(SecbenchError) as err:
        cifar10(root=str(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "cs.toronto.edu" in message
    assert "cifar-10-python.tar.gz" in message and "\n" not in message

    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:500])  # truncated
    with pytest.raises(SecbenchError, match="cannot read .*test_batch"):
        cifar10(root=str(tmp_path))
    write_pickle(folder / "test_batch", cifar_batch(20, 10, b"labels", seed=0) | {b"data": np.zeros((20, 7))})
    with pytest.raises(SecbenchError, match="uint8 data of shape"):
        cifar10(root=str(tmp_path))
    write_pickle(folder / "test_batch", {b"labels": [0]})
    with pytest.raises(SecbenchError, match="no b'data' entry"):
        cifar10(root=str(tmp_path))
    (folder / "test_batch").unlink()
    with pytest.raises(SecbenchError, match="test_batch is missing"):
        cifar10(root=str(tmp_path))


# ---------------------------------------------------------------- SVHN (.mat files)


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 30), ("test", 20)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10; 10 is the digit 0
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
        arrays[split] = x
    data = svhn(root=str(tmp_path))
    check_splits(data, 32)
    assert (len(data.train), len(data.test)) == (30, 20)
    assert data.train.labels[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert torch.equal(data.test.images[5], torch.from_numpy(arrays["test"][..., 5]).permute(2, 0, 1))

    wrong = {"X": np.zeros((8, 8, 3, 2), np.uint8), "y": np.ones((2, 1))}
    scipy.io.savemat(tmp_path / "test_32x32.mat", wrong)
    with pytest.raises(SecbenchError, match="expected X uint8"):
        svhn(root=str(tmp_path))
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(SecbenchError, match=f"svhn not found at {tmp_path / 'test_32x32.mat'}"):
        svhn(root=str(tmp_path))


# ---------------------------------------------------------------- GTSRB and image folders (image files)


def solid(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 36)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def assert_solid_by_class(part: ImageSet) -> None:
    for image, label in zip(part.images, part.labels.tolist(), strict=True):
        expected = torch.tensor(COLOURS[label], dtype=torch.uint8)[:, None, None].expand_as(image)
        assert torch.equal(image, expected)


def test_gtsrb_reads_torchvision_layout(tmp_path):
    base = tmp_path / "gtsrb"
    for k in range(3):
        folder = base / "GTSRB" / "Training" / f"{k:05d}"
        for j in range(4):
            solid(folder / f"00000_{j:05d}.ppm", COLOURS[k], size=(30 + 7 * j, 34))
        (folder / f"GT-{k:05d}.csv").write_text("Filename;ClassId\n")  # shipped beside the images; ignored
    lines = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, k in enumerate([2, 0, 1, 2, 2]):
        solid(base / "GTSRB" / "Final_Test" / "Images" / f"{i:05d}.ppm", COLOURS[k], size=(50, 45))
        lines.append(f"{i:05d}.ppm;50;45;5;5;45;40;{k}")
    (base / "GT-final_test.csv").write_text("\n".join(lines) + "\n")

    data = gtsrb(root=str(tmp_path), img_size=24)
    check_splits(data, 24)
    assert (len(data.train), len(data.test), data.num_classes) == (12, 5, 43)
    assert data.test.labels.tolist() == [2, 0, 1, 2, 2]
    assert_solid_by_class(data.train)
    assert_solid_by_class(data.test)

    (base / "GT-final_test.csv").unlink()
    with pytest.raises(SecbenchError, match="gtsrb not found at .*GT-final_test.csv.*sid.erda.dk"):
        gtsrb(root=str(tmp_path))


def test_imagefolder_with_train_and_test_folders(tmp_path):
    for k, name in enumerate(["cat", "dog", "fish"]):
        for j in range(3):
            solid(tmp_path / "train" / name / f"{j}.png", COLOURS[k])
    for k, name in [(0, "cat"), (2, "fish")]:  # no dog in the test set: fish must keep label 2
        solid(tmp_path / "test" / name / "0.png", COLOURS[k], size=(64, 20))
    data = load_dataset(f"imagefolder:{tmp_path}")
    check_splits(data, 32)
    assert data.classes == ("cat", "dog", "fish")
    assert sorted(data.test.labels.tolist()) == [0, 2]
    assert_solid_by_class(data.train)
    assert_solid_by_class(data.test)


def test_imagefolder_single_folder_is_split_80_20_by_class(tmp_path):
    for k, name in enumerate(["a", "b"]):
        for j in range(10):
            solid(tmp_path / name / f"{j}.png", COLOURS[k], size=(20 + j, 30))
    data = imagefolder(path=str(tmp_path), img_size=16)
    check_splits(data, 16)
    assert torch.bincount(data.train.labels).tolist() == [8, 8]
    assert torch.bincount(data.test.labels).tolist() == [2, 2]
    assert imagefolder(path=str(tmp_path), img_size=16, seed=3).fingerprint() == data.fingerprint()

    (tmp_path / "b" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(SecbenchError, match="broken.png"):
        imagefolder(path=str(tmp_path))
    with pytest.raises(SecbenchError, match=f"imagefolder not found at {tmp_path / 'nowhere'}"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
