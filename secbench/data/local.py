"""Real datasets read from local disk in their usual layouts; nothing is ever downloaded.

``root`` defaults to :func:`~secbench.data.base.data_root` (``$SECBENCH_DATA``) and follows
torchvision's layouts, so a folder torchvision has filled works as is:

- ``cifar10``: ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
- ``cifar100``: ``<root>/cifar-100-python/{train, test, meta}``
- ``svhn``: ``<root>/{train,test}_32x32.mat``
- ``gtsrb``: ``<root>/gtsrb/GTSRB/Training/<class>/*.ppm``, ``<root>/gtsrb/GTSRB/Final_Test/Images/*.ppm``
  and ``<root>/gtsrb/GT-final_test.csv``
- ``imagefolder``: ``<path>/{train,test}/<class>/<image>``, or ``<path>/<class>/<image>`` split 80/20

CIFAR's python batches are pickles, and torchvision reads them with plain ``pickle.load``, which
runs whatever code a tampered file names. They are read here with an unpickler that can only
rebuild dicts, lists, strings, numbers and numpy arrays.
"""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps

from secbench.data.base import DataSplits, ImageSet, data_root, fixed_split, make_splits, subsample
from secbench.errors import SecbenchError
from secbench.registry import register

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder


def _root(root: str | None) -> Path:
    return Path(root).expanduser() if root else data_root()


def _missing(name: str, path: Path, how: str) -> SecbenchError:
    return SecbenchError(
        f"{name} not found at {path}; {how} (or set SECBENCH_DATA to the folder that holds it)"
    )


def _malformed(path: Path, problem: object) -> SecbenchError:
    return SecbenchError(f"cannot read {path}: {' '.join(str(problem).split())}")  # the CLI shows one line


class _Found(NamedTuple):
    """A dataset as read from disk, before subsampling."""

    train: ImageSet
    test: ImageSet
    classes: Sequence[str]
    source: str


def _finish(name: str, found: _Found, seed: int, n_train: int | None, n_test: int | None) -> DataSplits:
    if not (len(found.train) and len(found.test)):
        raise SecbenchError(f"{name}: found {len(found.train)} training and {len(found.test)} test images")
    train, test = subsample(found.train, n_train, seed), subsample(found.test, n_test, seed)
    return make_splits(name, train, test, tuple(found.classes), found.source)


# ---------------------------------------------------------------- CIFAR-10 / CIFAR-100

# Rebuild arrays with this numpy's own functions, whichever module path the file names
# (numpy.core in files written by numpy 1, numpy._core by numpy 2): the ones ndarray pickles itself with.
_RECONSTRUCT = np.empty(1).__reduce_ex__(2)[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]
_SCALAR = np.int64(0).__reduce__()[0]
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    **{(f"{core}.multiarray", "_reconstruct"): _RECONSTRUCT for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): _SCALAR for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): _FROMBUFFER for core in ("numpy.core", "numpy._core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes under protocol 2
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise SecbenchError(f"refusing to load {module}.{name}: a data file may only hold numpy arrays")
        return _SAFE_GLOBALS[module, name]


def _unpickle(path: Path) -> dict[bytes, Any]:
    """A CIFAR python file (a pickled dict written by Python 2, hence byte-string keys)."""
    if not path.is_file():
        raise SecbenchError(f"{path} is missing: the dataset folder is incomplete")
    try:
        with open(path, "rb") as f:
            content = _ArrayUnpickler(f, encoding="bytes").load()
    except SecbenchError as exc:
        raise SecbenchError(f"{path}: {exc}") from None
    except Exception as exc:  # a damaged pickle can fail in nearly any way
        raise _malformed(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(content, dict):
        raise _malformed(path, f"expected a dict, found {type(content).__name__}")
    return content


def _entry(content: dict[bytes, Any], key: bytes, path: Path) -> Any:
    if key not in content:
        raise _malformed(path, f"no {key!r} entry")
    return content[key]


@dataclass(frozen=True)
class _Cifar:
    name: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: bytes
    names_key: bytes
    archive: str


_CIFAR10 = _Cifar(
    name="cifar10",
    folder="cifar-10-batches-py",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    meta="batches.meta",
    label_key=b"labels",
    names_key=b"label_names",
    archive="cifar-10-python.tar.gz",
)
_CIFAR100 = _Cifar(
    name="cifar100",
    folder="cifar-100-python",
    train=("train",),
    test=("test",),
    meta="meta",
    label_key=b"fine_labels",
    names_key=b"fine_label_names",
    archive="cifar-100-python.tar.gz",
)
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _cifar_batch(path: Path, label_key: bytes, num_classes: int) -> ImageSet:
    batch = _unpickle(path)
    data, labels = _entry(batch, b"data", path), np.asarray(_entry(batch, label_key, path))
    if not (
        isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape == (len(labels), 3 * 32 * 32)
    ):
        raise _malformed(path, f"expected uint8 data of shape ({len(labels)}, 3072) to match the labels")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or ((labels < 0) | (labels >= num_classes)).any():
        raise _malformed(path, f"labels must be integers in [0, {num_classes})")
    return ImageSet(torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels.astype(np.int64)))


def _read_cifar(spec: _Cifar, root: str | None) -> _Found:
    base = _root(root)
    folder = base / spec.folder
    if not folder.is_dir():
        raise _missing(
            spec.name, folder, f"download {spec.archive} from {_CIFAR_URL} and extract it under {base}"
        )
    meta_path = folder / spec.meta
    names = _entry(_unpickle(meta_path), spec.names_key, meta_path)
    if not (isinstance(names, list) and all(isinstance(n, bytes) for n in names)):
        raise _malformed(meta_path, f"{spec.names_key!r} must be a list of names")
    classes = [n.decode() for n in names]

    def part(files: tuple[str, ...]) -> ImageSet:
        batches = [_cifar_batch(folder / f, spec.label_key, len(classes)) for f in files]
        return ImageSet(torch.cat([b.images for b in batches]), torch.cat([b.labels for b in batches]))

    return _Found(part(spec.train), part(spec.test), classes, f"{_CIFAR_URL} (read from {folder})")


@register("dataset", "cifar10")
def cifar10(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None, root: str | None = None
) -> DataSplits:
    """CIFAR-10 from local files: 50k/10k 32×32 RGB photos, 10 classes.

    Images are uint8 ``(N, 3, 32, 32)``; ``seed`` only picks stratified subsets for ``n_train``/``n_test``.
    """
    return _finish("cifar10", _read_cifar(_CIFAR10, root), seed, n_train, n_test)


@register("dataset", "cifar100")
def cifar100(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None, root: str | None = None
) -> DataSplits:
    """CIFAR-100 from local files: 50k/10k 32×32 RGB photos, 100 (fine) classes.

    Images are uint8 ``(N, 3, 32, 32)``; ``seed`` only picks stratified subsets for ``n_train``/``n_test``.
    """
    return _finish("cifar100", _read_cifar(_CIFAR100, root), seed, n_train, n_test)


# ---------------------------------------------------------------- SVHN

_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


def _svhn_split(path: Path) -> ImageSet:
    """One ``.mat`` file: ``X`` uint8 ``(32, 32, 3, N)`` and ``y`` ``(N, 1)`` in 1..10, where 10 stands for 0."""
    import scipy.io  # deferred: importing this package must stay cheap

    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
        x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    except Exception as exc:  # scipy reports damaged files with many exception types
        raise _malformed(path, f"{type(exc).__name__}: {exc}") from None
    if not (x.dtype == np.uint8 and x.ndim == 4 and x.shape[:3] == (32, 32, 3) and x.shape[3] == len(y)):
        raise _malformed(path, f"expected X uint8 (32, 32, 3, {len(y)}), got {x.dtype} {x.shape}")
    if y.dtype.kind not in "iuf" or not np.isin(y, np.arange(11)).all():
        raise _malformed(path, "y must hold digit labels 1..10")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    return ImageSet(images, torch.from_numpy((y % 10).astype(np.int64)))


def _read_svhn(root: str | None) -> _Found:
    # The same scipy read as torchvision's SVHN, minus its md5 check, which rejects every copy
    # but the official files (scipy's .mat reader does not unpickle).
    base = _root(root)
    paths = [base / f"{split}_32x32.mat" for split in ("train", "test")]
    for path in paths:
        if not path.is_file():
            how = f"download train_32x32.mat and test_32x32.mat from {_SVHN_URL} into {base}"
            raise _missing("svhn", path, how)
    train, test = (_svhn_split(path) for path in paths)
    return _Found(train, test, [str(d) for d in range(10)], f"{_SVHN_URL} (read from {base})")


@register("dataset", "svhn")
def svhn(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None, root: str | None = None
) -> DataSplits:
    """SVHN house numbers from local .mat files: 73k/26k 32×32 RGB photos, 10 digits.

    Images are uint8 ``(N, 3, 32, 32)``; labels 0..9. ``seed`` only picks stratified subsets.
    """
    return _finish("svhn", _read_svhn(root), seed, n_train, n_test)


# ---------------------------------------------------------------- image files: GTSRB, image folders


def _check_img_size(img_size: int) -> None:
    if img_size < 8:
        raise SecbenchError(f"img_size must be at least 8, got {img_size}")


def _decode(items: Sequence[tuple[Image.Image, int]], img_size: int, where: Path) -> ImageSet:
    """Every ``(image, label)`` of a torchvision dataset, centre-cropped to a square and resized to
    ``img_size``: uint8 ``(N, 3, img_size, img_size)``."""
    images = np.empty((len(items), img_size, img_size, 3), dtype=np.uint8)
    labels = np.empty(len(items), dtype=np.int64)
    try:
        for i in range(len(items)):
            image, labels[i] = items[i]
            images[i] = ImageOps.fit(image.convert("RGB"), (img_size, img_size), Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # PIL names the file it could not decode
        raise _malformed(where, exc) from None
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels))


_GTSRB_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
_GTSRB_CLASSES = 43


def _read_gtsrb(root: str | None, img_size: int) -> _Found:
    from torchvision.datasets import GTSRB  # deferred: importing this package must stay cheap

    base = _root(root) / "gtsrb"
    for path in (
        base / "GTSRB" / "Training",
        base / "GTSRB" / "Final_Test" / "Images",
        base / "GT-final_test.csv",
    ):
        if not path.exists():
            zips = "GTSRB-Training_fixed.zip, GTSRB_Final_Test_Images.zip and GTSRB_Final_Test_GT.zip"
            raise _missing("gtsrb", path, f"download {zips} from {_GTSRB_URL} and extract them under {base}")
    parts = []
    for split in ("train", "test"):
        try:
            dataset = GTSRB(str(base.parent), split=split, download=False)
        except (OSError, ValueError, KeyError) as exc:  # an unreadable csv or class folder
            raise _malformed(base, f"{type(exc).__name__}: {exc}") from None
        parts.append(_decode(dataset, img_size, base))
    train, test = parts
    if (torch.cat([train.labels, test.labels]) >= _GTSRB_CLASSES).any():
        raise _malformed(base, f"class ids must be below {_GTSRB_CLASSES}")
    classes = [f"{i:05d}" for i in range(_GTSRB_CLASSES)]  # the names of the training class folders
    return _Found(train, test, classes, f"{_GTSRB_URL} (read from {base})")


@register("dataset", "gtsrb")
def gtsrb(
    *,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    root: str | None = None,
    img_size: int = 32,
) -> DataSplits:
    """German traffic signs from local files: 39k/12.6k photos, 43 classes.

    Images are uint8 ``(N, 3, img_size, img_size)``, each sign photo centre-cropped to a square and
    resized. ``seed`` only picks stratified subsets for ``n_train``/``n_test``.
    """
    _check_img_size(img_size)
    return _finish("gtsrb", _read_gtsrb(root, img_size), seed, n_train, n_test)


def _image_folder(path: Path) -> ImageFolder:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path))
    except (OSError, ValueError) as exc:  # no class folders, or a class without images
        raise _malformed(path, exc) from None


def _read_imagefolder(path: str, img_size: int) -> _Found:
    base = Path(path).expanduser()
    if not base.is_dir():
        raise SecbenchError(
            f"imagefolder not found at {base}; expected {base}/<class>/<image> "
            f"or {base}/train/<class>/<image> and {base}/test/<class>/<image>"
        )
    if not ((base / "train").is_dir() and (base / "test").is_dir()):
        folder = _image_folder(base)
        return _Found(*fixed_split(_decode(folder, img_size, base)), folder.classes, str(base))
    train_folder, test_folder = _image_folder(base / "train"), _image_folder(base / "test")
    classes = train_folder.classes
    unknown = sorted(set(test_folder.classes) - set(classes))
    if unknown:
        raise SecbenchError(f"imagefolder {base}: test classes {unknown} have no training folder")
    train = _decode(train_folder, img_size, base / "train")
    test = _decode(test_folder, img_size, base / "test")
    # test labels index the test folder's own sorted classes (it may lack some): map them onto training's
    to_train = torch.tensor([classes.index(c) for c in test_folder.classes])
    return _Found(train, ImageSet(test.images, to_train[test.labels]), classes, str(base))


@register("dataset", "imagefolder")
def imagefolder(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None, path: str, img_size: int = 32
) -> DataSplits:
    """Your images: PATH/{train,test}/<class>/*, or PATH/<class>/* split 80/20.

    Images are uint8 ``(N, 3, img_size, img_size)``, each centre-cropped to a square and resized;
    classes are the sorted folder names. ``seed`` only picks stratified subsets.
    """
    _check_img_size(img_size)
    return _finish("imagefolder", _read_imagefolder(path, img_size), seed, n_train, n_test)
