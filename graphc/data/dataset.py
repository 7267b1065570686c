"""`Dataset` and `DataLoader` (DeZero's): examples as (x, t) pairs, batches as NumPy arrays.

A compiled step takes any batch size (N is symbolic), so the last, shorter batch of an
epoch runs with the same step: no recompile, no padding.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import user_location
from ..random import check_seed, next_seed


class Dataset:
    """A subclass fills `self.data` and `self.label` (arrays, first axis the example) in
    `prepare()`, or overrides `__getitem__`/`__len__`; it calls `super().__init__()`.

    `ds[i]` is `(transform(data[i]), target_transform(label[i]))`."""

    def __init__(self, train: bool = True, transform=None, target_transform=None):
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        self.data = None
        self.label = None
        self.prepare()

    def prepare(self) -> None:
        """Load or generate data and label (nothing by default)."""

    def __getitem__(self, index):
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"{type(self).__name__}: index with an int, got {index!r}")
        x = self.data[index]
        t = None if self.label is None else self.label[index]
        if self.transform is not None:
            x = self.transform(x)
        if self.target_transform is not None and t is not None:
            t = self.target_transform(t)
        return x, t

    def __len__(self) -> int:
        if self.data is None:
            raise TypeError(f"{type(self).__name__} has no data: fill self.data in prepare() "
                            f"or define __len__")
        return len(self.data)

    def batch(self, indices) -> tuple:
        """The examples at `indices` stacked into (x, t) arrays. Without transforms this is
        one fancy index; with them, one transform call per example (as DeZero)."""
        plain = (type(self).__getitem__ is Dataset.__getitem__ and self.transform is None
                 and self.target_transform is None and isinstance(self.data, np.ndarray))
        if plain:
            t = None if self.label is None else np.asarray(self.label)[indices]
            return self.data[indices], t
        items = [self[int(i)] for i in indices]
        x = np.stack([np.asarray(a) for a, _ in items])
        t = None if items and items[0][1] is None else np.stack([np.asarray(b) for _, b in items])
        return x, t


class DataLoader:
    """Iterate over `dataset` in (x, t) batches of `batch_size`; one pass is one epoch.

    shuffle: a new order every epoch, from a generator seeded by `seed` (default: from
    gc.set_seed's counter, so runs repeat). drop_last: leave out a short last batch."""

    def __init__(self, dataset, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 seed: int | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be an int >= 1, got "
                             f"{batch_size!r} (at {user_location()})")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rng = np.random.default_rng(next_seed() if seed is None else check_seed(seed))

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        batch = getattr(self.dataset, "batch", None)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if batch is not None:
                yield batch(idx)
            else:
                items = [self.dataset[int(i)] for i in idx]
                yield (np.stack([np.asarray(x) for x, _ in items]),
                       np.stack([np.asarray(t) for _, t in items]))
