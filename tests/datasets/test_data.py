"""Dataset loaders: every format from small fake files, and every error message."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

import rssnn_deploy  # noqa: F401
from rssnn_deploy.data.datasets import (MNIST_FILES, Dataset, DatasetError, detect_format,
                               image_folder_classes, load_dataset, load_npy_dir, subset_train,
                               load_idx_dataset, read_idx)


# ------------------------------------------------------------------------------ helpers


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist(directory, n_train=12, n_test=6, gz=False, size=5):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, array in arrays.items():
        payload = idx_bytes(array)
        name = MNIST_FILES[key] + (".gz" if gz else "")
        (directory / name).write_bytes(gzip.compress(payload) if gz else payload)
    return arrays


def write_cifar(directory, per_batch=4):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(),
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, per_batch)]}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def balanced_labels(n, classes=3):
    return (np.arange(n) % classes).astype(np.int64)


# ------------------------------------------------------------------------------- digits


def test_digits_default():
    data = load_dataset()
    assert isinstance(data, Dataset)
    x_tr, y_tr, x_te, y_te = data
    assert x_tr.shape[1:] == (1, 8, 8) and x_tr.dtype == torch.float32
    assert y_tr.dtype == torch.int64
    assert len(x_tr) + len(x_te) == 1797 and len(x_te) == 360
    assert 0.0 <= float(x_tr.min()) and float(x_tr.max()) <= 1.0 and float(x_tr.max()) == 1.0
    assert data.in_shape == (1, 8, 8) and data.num_classes == 10
    # stratified: every class is in the test split in proportion (≈ 36 each)
    counts = torch.bincount(y_te, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_digits_split_is_seeded():
    a, b, c = load_dataset(seed=0), load_dataset(seed=0), load_dataset(seed=1)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_test, c.x_test)


def test_unknown_names_and_missing_paths(tmp_path):
    with pytest.raises(DatasetError, match="never downloads"):
        load_dataset("fashion-mnist")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope.npz")
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(DatasetError, match=r"data\.csv.*unsupported file type '\.csv'"):
        load_dataset(tmp_path / "data.csv")
    with pytest.raises(DatasetError, match="directory holds no dataset rssnn-deploy reads: MNIST IDX files"):
        load_dataset(tmp_path)
    assert issubclass(DatasetError, ValueError)


# ---------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_directory(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    x_tr, y_tr, x_te, y_te = load_dataset(tmp_path)
    assert x_tr.shape == (12, 1, 5, 5) and x_te.shape == (6, 1, 5, 5)
    np.testing.assert_allclose(x_tr[:, 0].numpy(), arrays["train_images"] / 255.0, rtol=1e-6)
    assert y_te.tolist() == arrays["test_labels"].tolist()


def test_idx_explicit_paths_and_dtypes(tmp_path):
    write_mnist(tmp_path)
    paths = {k: tmp_path / v for k, v in MNIST_FILES.items()}
    data = load_idx_dataset(**paths)
    assert len(data.x_train) == 12
    wide = np.arange(6, dtype=np.int32).reshape(2, 3) * 100000
    (tmp_path / "wide.idx").write_bytes(idx_bytes(wide, 0x0C))
    assert np.array_equal(read_idx(tmp_path / "wide.idx"), wide)


def test_idx_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / MNIST_FILES["test_labels"]).unlink()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: file not found"):
        load_dataset(tmp_path)


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x01\x08\x01" + b"\x00" * 8)
    with pytest.raises(DatasetError, match=r"bad: bad IDX magic number 0x00010801"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DatasetError, match="bad IDX magic number 0x00000701"):
        read_idx(path)


def test_idx_truncated(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(idx_bytes(np.zeros((4, 3, 3), np.uint8))[:-5])
    with pytest.raises(DatasetError, match=r"short: IDX dimensions \(4, 3, 3\) need 36 data "
                                           r"bytes, file has 31"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match="too short for an IDX header"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DatasetError, match="announces 3 dimensions"):
        read_idx(path)


def test_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(10, np.uint8)))[:12])
    with pytest.raises(DatasetError, match="broken.gz: corrupt gzip"):
        read_idx(path)


def test_idx_label_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / MNIST_FILES["train_labels"]).write_bytes(idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte: 11 labels for 12 images"):
        load_dataset(tmp_path)


def test_idx_files_swapped(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / MNIST_FILES["train_images"]
    labels = tmp_path / MNIST_FILES["train_labels"]
    with pytest.raises(DatasetError, match=r"labels-idx1-ubyte: expected uint8 images shaped "
                                           r"\(N, H, W\), got uint8 \(12,\)"):
        load_idx_dataset(labels, images, tmp_path / MNIST_FILES["test_images"],
                         tmp_path / MNIST_FILES["test_labels"])


# ----------------------------------------------------------------------------- CIFAR-10


def test_cifar_directory(tmp_path):
    write_cifar(tmp_path)
    x_tr, y_tr, x_te, y_te = load_dataset(tmp_path)
    assert x_tr.shape == (20, 3, 32, 32) and x_te.shape == (4, 3, 32, 32)
    assert y_tr.dtype == torch.int64 and float(x_tr.max()) <= 1.0
    # channel-major layout of the CIFAR rows: the first 1024 values are the red plane
    raw = pickle.loads((tmp_path / "data_batch_1").read_bytes())[b"data"]
    np.testing.assert_allclose(x_tr[0, 0].numpy().ravel(), raw[0, :1024] / 255.0, rtol=1e-6)


def test_cifar_parent_directory(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    write_cifar(tmp_path / "cifar-10-batches-py")
    assert len(load_dataset(tmp_path).x_test) == 4


def test_cifar_missing_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3: file not found"):
        load_dataset(tmp_path)


def test_cifar_not_a_pickle(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"this is not a pickle")
    with pytest.raises(DatasetError, match="test_batch: not a CIFAR-10 python batch"):
        load_dataset(tmp_path)


def test_cifar_missing_key_and_bad_shape(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}))
    with pytest.raises(DatasetError, match="data_batch_2: missing key.*labels"):
        load_dataset(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DatasetError, match=r"data_batch_2: 'data' must be uint8 shaped "
                                           r"\(N, 3072\), got uint8 \(2, 100\)"):
        load_dataset(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}))
    with pytest.raises(DatasetError, match="data_batch_2: 'labels' must be 2 integers"):
        load_dataset(tmp_path)


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit()}))
    with pytest.raises(DatasetError, match="refusing to load global"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------------------------- npz


def test_npz_uint8_split(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (30, 6, 6), dtype=np.uint8)
    path = write_npz(tmp_path / "d.npz", x=x, y=balanced_labels(30))
    data = load_dataset(path, test_fraction=0.2)
    assert data.x_train.shape == (24, 1, 6, 6) and data.x_test.shape == (6, 1, 6, 6)
    assert torch.bincount(data.y_test).tolist() == [2, 2, 2]  # stratified
    assert float(data.x_train.max()) <= 1.0


def test_npz_float_flat_with_test_split(tmp_path):
    rng = np.random.default_rng(1)
    path = write_npz(tmp_path / "d.npz", x=rng.random((10, 7)), y=balanced_labels(10),
                     x_test=rng.random((4, 7)).astype(np.float32), y_test=balanced_labels(4))
    data = load_dataset(path)
    assert data.x_train.shape == (10, 7) and data.x_test.shape == (4, 7)
    assert data.x_train.dtype == torch.float32 and data.y_test.dtype == torch.int64


def test_npz_channels_last_is_moved(tmp_path):
    x = np.zeros((6, 4, 4, 3), np.uint8)
    x[..., 1] = 255
    path = write_npz(tmp_path / "d.npz", x=x, y=balanced_labels(6))
    data = load_dataset(path, test_fraction=0.5)
    assert data.x_train.shape[1:] == (3, 4, 4)
    assert float(data.x_train[:, 1].min()) == 1.0 and float(data.x_train[:, 0].max()) == 0.0


@pytest.mark.parametrize("arrays, match", [
    (dict(x=np.zeros((4, 3), np.uint8)), r"needs arrays 'x' and 'y', found x"),
    (dict(x=np.zeros((4, 3), np.uint8), y=np.zeros(5, np.int64)),
     r"'x' has 4 samples but 'y' has 5 labels"),
    (dict(x=np.zeros((4, 3), np.uint8), y=np.zeros((4, 2), np.int64)),
     r"'y' must be 1-D labels, got shape \(4, 2\)"),
    (dict(x=np.full((4, 3), 2.0), y=np.zeros(4, np.int64)),
     r"float 'x' must lie in \[0, 1\], found values in \[2, 2\]"),
    (dict(x=np.full((4, 3), np.nan), y=np.zeros(4, np.int64)), "'x' contains NaN or infinite"),
    (dict(x=np.zeros((4, 3), np.int16), y=np.zeros(4, np.int64)), "'x' has dtype int16"),
    (dict(x=np.zeros((4, 3), np.uint8), y=np.array([0.5, 1, 0, 1])),
     "'y' must hold integer class labels, got dtype float64"),
    (dict(x=np.zeros((4, 3), np.uint8), y=np.array([0, -1, 0, 1])), "'y' has negative label -1"),
    (dict(x=np.zeros((4, 1, 2, 3, 3), np.uint8), y=np.zeros(4, np.int64)),
     r"'x' must be shaped .* got \(4, 1, 2, 3, 3\)"),
    (dict(x=np.zeros((4, 3), np.uint8), y=np.zeros(4, np.int64),
          x_test=np.zeros((2, 3), np.uint8)), "'x_test' and 'y_test' must come together"),
    (dict(x=np.zeros((4, 3), np.uint8), y=np.zeros(4, np.int64),
          x_test=np.zeros((2, 5), np.uint8), y_test=np.zeros(2, np.int64)),
     r"'x_test' samples are \(5,\) but 'x' samples are \(3,\)"),
    (dict(x=np.zeros((0, 3), np.uint8), y=np.zeros(0, np.int64)), "'x' is empty"),
])
def test_npz_errors(tmp_path, arrays, match):
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=r"bad\.npz: " + match):
        load_dataset(path)


def test_npz_not_a_zip_and_object_arrays(tmp_path):
    path = tmp_path / "fake.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(DatasetError, match=r"fake\.npz: not a valid \.npz"):
        load_dataset(path)
    np.savez(path, x=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3, np.int64))
    with pytest.raises(DatasetError, match=r"fake\.npz: unreadable array"):
        load_dataset(path)


def test_bad_test_fraction():
    with pytest.raises(DatasetError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.5)


# ------------------------------------------------------------- .npy pairs, image folders


def _arrays(n=40, shape=(6, 6), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n) % classes


@pytest.mark.parametrize("names", [("x", "y"), ("x_train", "y_train")])
def test_npy_directory_with_and_without_test_part(tmp_path, names):
    x, y = _arrays()
    np.save(tmp_path / f"{names[0]}.npy", x)
    np.save(tmp_path / f"{names[1]}.npy", y)
    assert detect_format(tmp_path) == "npy"
    split = load_dataset(tmp_path, test_fraction=0.25, seed=1)
    assert (len(split.y_train), len(split.y_test)) == (30, 10)
    np.save(tmp_path / "x_test.npy", x[:7])
    np.save(tmp_path / "y_test.npy", y[:7])
    own = load_dataset(tmp_path)
    assert own.x_train.shape == (40, 1, 6, 6) and own.x_test.shape == (7, 1, 6, 6)
    assert torch.equal(own.x_test[0, 0], torch.from_numpy(x[0] / 255.0).float())


def test_npy_directory_errors(tmp_path):
    x, y = _arrays()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y[:5])
    with pytest.raises(DatasetError, match="40 samples but 'y' has 5"):
        load_dataset(tmp_path)
    np.save(tmp_path / "y.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="y.npy: not a readable .npy array"):
        load_npy_dir(tmp_path)


def _write_images(root, x, y, mode="L"):
    from PIL import Image
    for i, (img, label) in enumerate(zip(x, y)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        data = img if mode == "L" else np.stack([img, 255 - img, img // 2], axis=-1)
        Image.fromarray(data, mode=mode).save(folder / f"{i:03d}.png")


def test_image_folder_flat_is_split_and_exact(tmp_path):
    x, y = _arrays(n=20, classes=2)
    _write_images(tmp_path, x, y)
    assert detect_format(tmp_path) == "image-folder"
    assert image_folder_classes(tmp_path) == ["class_0", "class_1"]
    data = load_dataset(tmp_path, test_fraction=0.5)
    assert data.x_train.shape == (10, 1, 6, 6) and len(data.y_test) == 10
    pixels = sorted(np.round(data.x_train.numpy() * 255).astype(np.uint8).reshape(10, -1)
                    .tolist() + np.round(data.x_test.numpy() * 255).astype(np.uint8)
                    .reshape(10, -1).tolist())
    assert pixels == sorted(x.reshape(20, -1).tolist())


def test_image_folder_train_test_rgb(tmp_path):
    x, y = _arrays(n=12, classes=3)
    _write_images(tmp_path / "train", x, y, mode="RGB")
    _write_images(tmp_path / "test", x[:6], y[:6], mode="RGB")
    data = load_dataset(tmp_path)
    assert data.x_train.shape == (12, 3, 6, 6) and data.x_test.shape == (6, 3, 6, 6)
    assert data.num_classes == 3


def test_image_folder_mixed_sizes_is_one_line(tmp_path):
    from PIL import Image
    x, y = _arrays(n=4, classes=2)
    _write_images(tmp_path, x, y)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "class_1" / "odd.png")
    with pytest.raises(DatasetError, match="odd.png: image is"):
        load_dataset(tmp_path)


def test_unknown_directory_names_every_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="x.npy \\+ y.npy, or one sub-directory"):
        load_dataset(tmp_path)


def test_subset_is_seeded_stratified_and_keeps_test(tmp_path):
    data = load_dataset("digits")
    small = load_dataset("digits", subset=100)
    assert len(small.y_train) == 100 and torch.equal(small.y_test, data.y_test)
    assert np.bincount(small.y_train.numpy()).min() >= 9   # every class present
    again = subset_train(data, 100, seed=0)
    assert torch.equal(again.x_train, small.x_train)
    assert subset_train(data, 10 ** 6) is data
    with pytest.raises(DatasetError, match="subset must be >= 1"):
        subset_train(data, 0)
