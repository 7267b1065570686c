"""Transforms applied to one example (DeZero's transforms): plain callables on arrays."""
from __future__ import annotations

import numpy as np


class Compose:
    """Apply each transform in turn."""

    def __init__(self, transforms=()):
        self.transforms = list(transforms)

    def __call__(self, x):
        for f in self.transforms:
            x = f(x)
        return x


class Normalize:
    """(x - mean) / std; mean and std are scalars or per-channel sequences (channel first)."""

    def __init__(self, mean=0.0, std=1.0):
        self.mean, self.std = mean, std

    def _shaped(self, value, x):
        value = np.asarray(value, dtype=x.dtype if x.dtype.kind == "f" else np.float32)
        if value.ndim == 1 and x.ndim > 1:  # per channel: broadcast over the other axes
            value = value.reshape((-1,) + (1,) * (x.ndim - 1))
        return value

    def __call__(self, x):
        x = np.asarray(x)
        return (x - self._shaped(self.mean, x)) / self._shaped(self.std, x)


class Flatten:
    """Any shape -> 1-D."""

    def __call__(self, x):
        return np.asarray(x).reshape(-1)


class AsType:
    """Cast to `dtype` (float32 by default)."""

    def __init__(self, dtype="float32"):
        self.dtype = np.dtype(dtype)

    def __call__(self, x):
        return np.asarray(x).astype(self.dtype)


ToFloat = AsType
