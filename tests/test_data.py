"""graphc.data: Dataset and transforms, DataLoader batching and seeding, Spiral, Digits, and
MNIST/FashionMNIST read from small IDX files written here (gzipped or not, and damaged)."""
from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest

import graphc as gc
from graphc import data


class Squares(data.Dataset):
    def prepare(self):
        self.data = np.arange(10, dtype=np.float32).reshape(10, 1)
        self.label = np.arange(10) ** 2


def test_dataset_items_transforms_and_length():
    ds = Squares(transform=lambda x: x * 2, target_transform=lambda t: t + 1)
    assert len(ds) == 10
    x, t = ds[3]
    np.testing.assert_array_equal(x, [6.0])
    assert t == 10
    with pytest.raises(TypeError, match="index with an int"):
        ds["a"]


def test_transforms():
    img = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    out = data.Compose([data.AsType(), data.Normalize(mean=[0, 4, 8], std=2), data.Flatten()])(img)
    assert out.dtype == np.float32 and out.shape == (12,)
    np.testing.assert_array_equal(out, np.tile(np.arange(4) / 2, 3))
    assert data.AsType("int64")(np.ones(2)).dtype == np.int64


def test_dataloader_batches_every_example_once_per_epoch():
    loader = data.DataLoader(Squares(), batch_size=4, seed=0)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(x) for x, _ in batches] == [4, 4, 2]  # a short last batch
    xs = np.concatenate([x for x, _ in batches])[:, 0]
    ts = np.concatenate([t for _, t in batches])
    assert sorted(xs.tolist()) == list(range(10))
    np.testing.assert_array_equal(ts, xs.astype(int) ** 2)  # pairs stay together
    second = np.concatenate([x for x, _ in loader])[:, 0]
    assert not np.array_equal(xs, second)  # a new order each epoch
    again = np.concatenate([x for x, _ in data.DataLoader(Squares(), 4, seed=0)])[:, 0]
    np.testing.assert_array_equal(xs, again)  # the seed repeats it


def test_dataloader_options_and_errors():
    ordered = data.DataLoader(Squares(), 3, shuffle=False, drop_last=True)
    assert len(ordered) == 3
    assert [x[:, 0].tolist() for x, _ in ordered] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with_transform = data.DataLoader(Squares(transform=lambda x: x + 100), 5, shuffle=False)
    assert next(iter(with_transform))[0][:, 0].tolist() == [100, 101, 102, 103, 104]
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
            data.DataLoader(Squares(), bad)


def test_the_short_last_batch_runs_on_the_same_compiled_step():
    x = gc.placeholder((None, 1), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    total = gc.compile([x, t], gc.sum(x))
    sums = [float(total(xb, tb)) for xb, tb in data.DataLoader(Squares(), 4, seed=1)]
    assert len(sums) == 3 and sum(sums) == 45.0


def test_spiral():
    train, test = data.Spiral(train=True), data.Spiral(train=False)
    assert train.data.shape == (300, 2) and train.data.dtype == np.float32
    assert np.bincount(train.label).tolist() == [100, 100, 100]
    assert not np.array_equal(train.data, test.data)
    np.testing.assert_array_equal(train.data, data.spiral(100, 3, seed=1984)[0])


def test_digits_split_is_fixed_by_the_seed():
    train, test = data.Digits(train=True), data.Digits(train=False)
    assert len(train) + len(test) == 1797 and len(train) == round(1797 * 0.8)
    assert train.data.shape == (len(train), 64) and train.data.dtype == np.float32
    assert 0.0 <= train.data.min() and train.data.max() == 1.0
    assert train.label.dtype == np.int64
    from sklearn.datasets import load_digits

    full = load_digits()  # train and test together are the whole set, each image once
    both = np.concatenate([train.data, test.data]) * 16
    order = np.lexsort(both.T)
    np.testing.assert_array_equal(both[order], full.data[np.lexsort(full.data.T)])
    np.testing.assert_array_equal(data.Digits(train=True).data, train.data)
    assert not np.array_equal(data.Digits(train=True, seed=1).data, train.data)
    images = data.Digits(train=False, flatten=False)
    assert images.data.shape == (len(test), 1, 8, 8)
    np.testing.assert_array_equal(images.data.reshape(len(test), 64), test.data)


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"graphc\[digits\]"):
        data.Digits()


# --- IDX files ---------------------------------------------------------------------------------
def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder, n=5, gz=False, train=True):
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    prefix = "train" if train else "t10k"
    for name, arr in ((f"{prefix}-images-idx3-ubyte", images),
                      (f"{prefix}-labels-idx1-ubyte", labels)):
        raw = _idx(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz):
    images, labels = _write_mnist(tmp_path, 5, gz=gz)
    ds = data.MNIST(train=True, root=tmp_path)
    assert len(ds) == 5 and ds.data.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(ds.data[:, 0], images)
    np.testing.assert_array_equal(ds.label, labels)
    x, t = ds[2]  # DeZero's default transform: flat float32 in [0, 1]
    assert x.shape == (784,) and x.dtype == np.float32
    np.testing.assert_allclose(x, images[2].reshape(-1) / 255.0, rtol=1e-6)
    assert t == labels[2]


def test_mnist_and_fashion_from_graphc_data(tmp_path, monkeypatch):
    images, _ = _write_mnist(tmp_path, 3, train=False)
    monkeypatch.setenv("GRAPHC_DATA", str(tmp_path))
    for cls in (data.MNIST, data.FashionMNIST):
        ds = cls(train=False, transform=None)
        np.testing.assert_array_equal(ds[1][0][0], images[1])


def test_mnist_missing_files_say_which_and_where(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHC_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="pass root= or set GRAPHC_DATA"):
        data.MNIST()
    with pytest.raises(FileNotFoundError,
                       match=r"no train-images-idx3-ubyte in .*looked for .*"
                             r"train-images-idx3-ubyte and .*train-images-idx3-ubyte\.gz"):
        data.MNIST(root=tmp_path)


@pytest.mark.parametrize("damage, message", [
    ("magic", "bad magic number 0x00000903; expected 0x00000803"),
    ("short body", r"truncated: the header declares shape \(5, 28, 28\)"),
    ("short header", "truncated in the header"),
    ("tiny", "shorter than the 4-byte IDX magic number"),
    ("long", "longer than the header declares"),
    ("gz cut", "cannot read it as a gzipped IDX file"),
    ("count", "holds 5 images but .* 4 labels"),
    # dims whose product wraps in int64 (to -1: "read everything"; to 0; negative)
    ("wraps to -1", r"declares \(6700417, 1114129, 2471055\), .* more than graphc reads"),
    ("wraps to 0", r"declares \(4194304, 4194304, 4194304\), .* more than graphc reads"),
    ("wraps negative", r"declares \(2097152, 2097152, 2097152\), .* more than graphc reads"),
])
def test_mnist_damaged_files_are_clear_errors(tmp_path, damage, message):
    _images, labels = _write_mnist(tmp_path, 5)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = path.read_bytes()
    if damage == "magic":
        path.write_bytes(b"\x00\x00\x09\x03" + raw[4:])
    elif damage == "short body":
        path.write_bytes(raw[:-10])
    elif damage == "short header":
        path.write_bytes(raw[:9])
    elif damage == "tiny":
        path.write_bytes(raw[:3])
    elif damage == "long":
        path.write_bytes(raw + b"\x00")
    elif damage.startswith("wraps"):
        dims = {"wraps to -1": (6700417, 1114129, 2471055), "wraps to 0": (1 << 22,) * 3,
                "wraps negative": (1 << 21,) * 3}[damage]
        path.unlink()  # (a gzipped stream of zeros: the read would have inflated all of it)
        (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(
            bytes([0, 0, 0x08, 3]) + struct.pack(">3I", *dims) + bytes(1 << 20)))
    elif damage == "gz cut":
        path.unlink()
        (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw)[:-30])
    else:
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(labels[:4]))
    with pytest.raises(ValueError, match=message):
        data.MNIST(root=tmp_path)
