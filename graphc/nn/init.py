"""Weight initialisers, seeded by `gc.set_seed`.

Each call draws from its own NumPy generator, seeded from graphc's seed counter (the one
dropout uses): the same `gc.set_seed(s)` followed by the same model code gives the same
weights, in any process.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..random import next_seed

INITIALISERS = ("xavier", "he")


def check_init(init: str) -> str:
    if init not in INITIALISERS:
        raise ValueError(f"unknown initialiser {init!r}; expected one of "
                         f"{', '.join(INITIALISERS)}")
    return init


def normal(shape, fan_in: int, init: str, dtype) -> np.ndarray:
    """N(0, s^2) weights with s = sqrt(1/fan_in) ("xavier", as DeZero's Linear and Conv2d)
    or sqrt(2/fan_in) ("he", for ReLU nets: keeps the activations' variance per layer)."""
    scale = np.sqrt((2.0 if check_init(init) == "he" else 1.0) / max(fan_in, 1))
    rng = np.random.default_rng(next_seed())
    return (rng.standard_normal(shape) * scale).astype(dt.canonical(dtype))
