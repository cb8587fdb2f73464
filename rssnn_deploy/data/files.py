"""Loaders of the formats users bring as files: MNIST-style IDX (gzipped or not), CIFAR-10
python batches, ``.npz`` archives and ``.npy`` folders, image folders (Pillow)."""
from __future__ import annotations

import gzip
import struct
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from rssnn_deploy.data.base import (
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
    IMAGE_SUFFIXES,
    MAX_CLASSES,
    MNIST_FILES,
    Dataset,
    DatasetError,
    as_dataset,
    check_classes,
    check_sample_shape,
    split_dataset,
)
from rssnn_deploy.data.pickled import (
    PickledDataError,
    read_cifar_batch,
)
from rssnn_deploy.fileio import PathLike

__all__ = ["read_idx", "npy_names", "class_dirs", "load_idx_dataset", "load_mnist_dir",
           "load_cifar10_dir", "load_npz_dataset", "load_npy_dir", "image_folder_classes", "load_image_folder"]


#: IDX type code → big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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
    return as_dataset(x_tr, y_tr, x_te, y_te)


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
    return as_dataset(x_tr, y_tr, x_te, y_te)


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
        check_classes(path, y)
        return split_dataset(x, y, test_fraction, seed, str(path))
    if has_test != (True, True):
        raise DatasetError(f"{path}: 'x_test' and 'y_test' must come together")
    x_te, y_te = _npz_pair(path, arrays["x_test"], arrays["y_test"], "x_test", "y_test")
    if x.shape[1:] != x_te.shape[1:]:
        raise DatasetError(f"{path}: 'x_test' samples are {x_te.shape[1:]} but 'x' samples "
                           f"are {x.shape[1:]}")
    check_classes(path, y)
    return as_dataset(x, y, x_te, y_te)


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
    check_sample_shape(path, name, x.shape)      # before min/max reduce over no pixels
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


def npy_names(path: Path) -> Optional[Dict[str, str]]:
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
    names = npy_names(path)
    if names is None:
        raise DatasetError(f"{path}: needs x.npy and y.npy (or x_train.npy and y_train.npy)")
    arrays = {}
    for name, key in names.items():
        try:
            arrays[key] = np.load(path / name, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DatasetError(f"{path / name}: not a readable .npy array ({err})") from None
    return _arrays_dataset(path, arrays, test_fraction, seed)


def class_dirs(path: Path) -> List[Path]:
    """Class sub-directories of an image folder (of ``path/train`` when split), sorted."""
    root = path / "train" if (path / "train").is_dir() and (path / "test").is_dir() else path
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [d for d in dirs if any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir())]


def image_folder_classes(path: PathLike) -> List[str]:
    """Class names of an image folder in label order (sorted directory names)."""
    return [d.name for d in class_dirs(Path(path))]


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
        return as_dataset(x_tr, y_tr, x_te, y_te)
    x, y = _read_images(path, classes)
    return split_dataset(x, y, test_fraction, seed, str(path))


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
