"""The dataset a checkpoint remembers: described, reloaded identically, checked, resolved."""
import numpy as np
import pytest

import rssnn_deploy  # noqa: F401
from rssnn_deploy.data.datasets import DatasetError, load_dataset
from rssnn_deploy.data.record import (describe_dataset, load_recorded, resolve_dataset,
                                         split_summary)


def _npz(path, n=50, test=False):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.integers(0, 256, (n, 5, 5), dtype=np.uint8), "y": np.arange(n) % 5}
    if test:
        arrays.update(x_test=arrays["x"][:10], y_test=arrays["y"][:10])
    np.savez(path, **arrays)
    return path


def test_record_reloads_the_same_split_and_subset(tmp_path):
    path = _npz(tmp_path / "d.npz")
    data = load_dataset(path, test_fraction=0.3, seed=4, subset=20)
    record = describe_dataset(path, data, test_fraction=0.3, seed=4, subset=20, full_train=35)
    assert record["format"] == "npz" and record["input_shape"] == [1, 5, 5]
    assert record["split"] == {"rule": "stratified", "test_fraction": 0.3, "seed": 4}
    assert record["sizes"] == {"train": 20, "test": 15, "train_before_subset": 35}
    again = load_recorded(record)
    assert np.array_equal(again.x_test.numpy(), data.x_test.numpy())
    assert np.array_equal(again.x_train.numpy(), data.x_train.numpy())
    assert "20 train (subset of 35), 15 test" in split_summary(record)


def test_record_of_a_source_with_its_own_test_set(tmp_path):
    path = _npz(tmp_path / "d.npz", test=True)
    record = describe_dataset(path, load_dataset(path), seed=9)
    assert record["split"] == {"rule": "the source's own test set"}
    assert "the source's own test set" in split_summary(record)


def test_changed_files_are_one_clear_line(tmp_path):
    path = _npz(tmp_path / "d.npz")
    record = describe_dataset(path, load_dataset(path))
    _npz(path, n=60)
    with pytest.raises(DatasetError, match="now gives train/test 48/12 .* recorded 40/10"):
        load_recorded(record, "run/checkpoint.pt")


def test_resolve_prefers_explicit_then_record_then_digits(tmp_path):
    path = _npz(tmp_path / "d.npz")
    record = describe_dataset(path, load_dataset(path, seed=3), seed=3)
    data, name = resolve_dataset(None, record, (1, 5, 5), "ckpt")
    assert name == str(path.resolve()) and len(data.y_test) == 10
    same, _ = resolve_dataset(str(path), record, (25,), "ckpt")   # recorded split kept
    assert np.array_equal(same.x_test.numpy(), data.x_test.numpy())
    digits, name = resolve_dataset(None, None, (1, 8, 8), "ckpt")
    assert name == "digits" and digits.in_shape == (1, 8, 8)
    with pytest.raises(DatasetError, match="ckpt: records no dataset and its input"):
        resolve_dataset(None, None, (1, 28, 28), "ckpt")
    with pytest.raises(DatasetError, match="samples are \\(1, 8, 8\\) but ckpt takes"):
        resolve_dataset("digits", None, (1, 5, 5), "ckpt")
