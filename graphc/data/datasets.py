"""Data sets: Spiral (generated), Digits (scikit-learn's 8x8 digits), MNIST, FashionMNIST."""
from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from .dataset import Dataset
from .idx import find_file, read_idx
from .transforms import AsType, Compose, Flatten, Normalize

DEFAULT = object()  # "the data set's default transform" (None means no transform)


def spiral(n_per_class: int = 100, classes: int = 3, seed: int = 1984):
    """The spiral data set of DeZero's get_spiral: `classes` interleaved arms of
    `n_per_class` 2-d points each, shuffled. Returns (x float32 [N,2], t int64 [N])."""
    rng = np.random.default_rng(seed)
    rate = np.arange(n_per_class) / n_per_class         # 0 .. 1 along each arm
    xs, ts = [], []
    for j in range(classes):
        theta = j * 4.0 + 4.0 * rate + rng.standard_normal(n_per_class) * 0.2
        radius = rate
        xs.append(np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1))
        ts.append(np.full(n_per_class, j, dtype=np.int64))
    order = rng.permutation(n_per_class * classes)
    x = np.concatenate(xs).astype(np.float32)[order]
    t = np.concatenate(ts)[order]
    return x, t


class Spiral(Dataset):
    """DeZero's Spiral: 3 arms of 100 points; the train and test sets differ by seed."""

    def __init__(self, train: bool = True, transform=None, target_transform=None,
                 n_per_class: int = 100, classes: int = 3):
        self.n_per_class, self.classes = n_per_class, classes
        super().__init__(train, transform, target_transform)

    def prepare(self) -> None:
        self.data, self.label = spiral(self.n_per_class, self.classes,
                                       seed=1984 if self.train else 2020)


class Digits(Dataset):
    """The 8x8 handwritten digits that ship inside scikit-learn (1797 images), scaled to
    [0, 1], split 80/20 into train and test by a permutation seeded by `seed`. Images are
    flat (64,) float32, or (1, 8, 8) with flatten=False (for a CNN). Needs the `digits`
    extra: pip install "graphc[digits]"."""

    def __init__(self, train: bool = True, transform=None, target_transform=None,
                 flatten: bool = True, split: float = 0.8, seed: int = 0):
        if not 0 < split < 1:
            raise ValueError(f"Digits: split must be in (0, 1), got {split!r}")
        self.flatten, self.split, self.seed = flatten, split, seed
        super().__init__(train, transform, target_transform)

    def prepare(self) -> None:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError("Digits needs scikit-learn, which holds the data: install "
                              "graphc's digits extra (pip install \"graphc[digits]\") or "
                              "scikit-learn itself") from None
        digits = load_digits()
        x = (digits.data / 16.0).astype(np.float32)
        t = digits.target.astype(np.int64)
        order = np.random.default_rng(self.seed).permutation(len(x))
        cut = round(len(x) * self.split)
        idx = order[:cut] if self.train else order[cut:]
        self.data = x[idx] if self.flatten else x[idx].reshape(-1, 1, 8, 8)
        self.label = t[idx]


class MNIST(Dataset):
    """MNIST from its four IDX files (gzipped or not) in `root`, else in the folder named by
    the GRAPHC_DATA environment variable. data: (N, 1, 28, 28) uint8; the default transform
    (DeZero's) flattens each image to 784 float32 values in [0, 1]."""

    FILES: ClassVar[dict] = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                             False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

    def __init__(self, train: bool = True, transform=DEFAULT, target_transform=None,
                 root: str | None = None):
        self.root = root
        if transform is DEFAULT:
            transform = Compose([Flatten(), AsType("float32"), Normalize(0.0, 255.0)])
        super().__init__(train, transform, target_transform)

    def _folder(self) -> str:
        name = type(self).__name__
        root = self.root if self.root is not None else os.environ.get("GRAPHC_DATA")
        if not root:
            raise FileNotFoundError(f"{name}: no folder given: pass root= or set GRAPHC_DATA "
                                    f"to the folder that holds the IDX files "
                                    f"({', '.join(self.FILES[self.train])}, .gz or not)")
        return os.fspath(root)

    def prepare(self) -> None:
        name = type(self).__name__
        folder = self._folder()
        images_file, labels_file = (find_file(f, folder, name) for f in self.FILES[self.train])
        images = read_idx(images_file, 3)
        labels = read_idx(labels_file, 1)
        if len(images) != len(labels):
            raise ValueError(f"{name}: {images_file} holds {len(images)} images but "
                             f"{labels_file} {len(labels)} labels")
        self.data = images[:, None, :, :]
        self.label = labels.astype(np.int64)


class FashionMNIST(MNIST):
    """Fashion-MNIST: the same file names and format as MNIST (keep it in its own folder)."""

    LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
              "Sneaker", "Bag", "Ankle boot")
