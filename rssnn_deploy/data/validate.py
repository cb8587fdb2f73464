"""Checks on a data set as a whole, whatever format it came from.

Each loader in ``datasets.py`` checks what its own format can get wrong (a truncated IDX
header, a float outside [0, 1], a label that is not an integer). What is checked here
holds for every source, and is checked where the commands load data (``training``,
``data.record``), before and after the loader runs:

* every image axis holds at least one value: ``x`` of shape (200, 1, 0, 8) is no image,
  and would otherwise end deep inside a reduction or a layer constructor. ``.npz`` files
  and ``.npy`` folders are looked at before loading, from the array headers alone (a
  float loader takes the minimum of every pixel first); every source again after.
* a test split holds only classes the training split teaches: a test label that never
  occurs in training would make the model one class wider than anything it learns and
  score 0 % on those samples without a word (:func:`check_test_labels`, for training).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterator, Sequence, Tuple, Union

import numpy as np

from rssnn_deploy.data.datasets import NAMED_DATASETS, Dataset, DatasetError, load_dataset

__all__ = ["check_sample_shape", "check_source_arrays", "check_dataset", "check_test_labels",
           "load_checked"]

PathLike = Union[str, Path]


def check_sample_shape(source: PathLike, name: str, shape: Sequence[int]) -> None:
    """One line when a sample axis (any axis after the first) of ``name`` is empty."""
    empty = [axis for axis, size in enumerate(shape) if axis > 0 and size == 0]
    if empty:
        raise DatasetError(f"{source}: '{name}' has shape {tuple(int(s) for s in shape)}: "
                           f"axis {empty[0]} is empty; every sample needs at least one "
                           f"value along each axis")


def check_source_arrays(source: PathLike) -> None:
    """The image arrays (names starting with ``x``) of a ``.npz`` file or a folder of
    ``.npy`` files, from their headers only; other sources are left to the loader, and
    an unreadable header to the loader's own error."""
    path = Path(source)
    for name, shape in _array_headers(path):
        if name.startswith("x"):
            check_sample_shape(path, name, shape)


def check_dataset(data: Dataset, source: PathLike) -> None:
    """Both splits of a loaded data set hold samples with no empty axis."""
    for name, x in (("x_train", data.x_train), ("x_test", data.x_test)):
        check_sample_shape(source, name, tuple(x.shape))


def check_test_labels(data: Dataset, source: PathLike) -> None:
    """Every test label occurs in the training split (the classes a model can learn)."""
    taught = np.unique(data.y_train.numpy())
    unseen = np.setdiff1d(np.unique(data.y_test.numpy()), taught)
    if unseen.size:
        shown = ", ".join(str(int(v)) for v in unseen[:10]) + (" …" if unseen.size > 10 else "")
        raise DatasetError(f"{source}: test label{'s' * (unseen.size > 1)} {shown} never "
                           f"occur{'s' * (unseen.size == 1)} in the training split "
                           f"(labels {_ranges(taught)}); a model cannot learn "
                           f"{'them' if unseen.size > 1 else 'it'}: relabel the data or "
                           f"move such samples into training")


def load_checked(source: PathLike, **options) -> Dataset:
    """:func:`~rssnn_deploy.data.datasets.load_dataset` with the checks of this module
    before and after (``options`` as there)."""
    if str(source) not in NAMED_DATASETS and Path(source).exists():
        check_source_arrays(source)
    data = load_dataset(source, **options)
    check_dataset(data, source)
    return data


def _array_headers(path: Path) -> Iterator[Tuple[str, Tuple[int, ...]]]:
    """(name, shape) of each array of a ``.npz`` file or a folder's ``.npy`` files."""
    try:
        if path.is_file() and path.suffix == ".npz" and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith(".npy"):
                        with archive.open(member) as handle:
                            yield member[:-4], _header_shape(handle)
        elif path.is_dir():
            for file in sorted(path.glob("*.npy")):
                with open(file, "rb") as handle:
                    yield file.stem, _header_shape(handle)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return          # the loader reports what is wrong with the file


def _header_shape(handle) -> Tuple[int, ...]:
    version = np.lib.format.read_magic(handle)
    read = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unknown .npy version {version}")
    shape, _, _ = read(handle)
    return tuple(shape)


def _ranges(values: np.ndarray) -> str:
    """'0–9' for a run of consecutive integers, else up to ten listed."""
    values = [int(v) for v in values]
    if values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{values[0]}–{values[-1]}"
    return ", ".join(map(str, values[:10])) + (" …" if len(values) > 10 else "")
