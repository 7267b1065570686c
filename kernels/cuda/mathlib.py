"""Scalar helpers the generated CUDA kernels call (device functions; in the simulator,
plain Python). Each keeps NumPy's NaN rules where CUDA's own functions differ."""
from __future__ import annotations

import math

from numba import cuda


@cuda.jit(device=True, inline=True)
def gmaximum(a, b):
    """np.maximum: NaN from either side (fmax would drop it)."""
    return a if (a > b or a != a) else b  # noqa: PLR0124 - NaN test


@cuda.jit(device=True, inline=True)
def gminimum(a, b):
    """np.minimum: NaN from either side."""
    return a if (a < b or a != a) else b  # noqa: PLR0124 - NaN test


@cuda.jit(device=True, inline=True)
def gsign(x):
    """np.sign: -1, 0 or 1 in x's type; NaN stays NaN."""
    if x > 0:
        return x - x + 1
    if x < 0:
        return x - x - 1
    return x


@cuda.jit(device=True, inline=True)
def gsigmoid(x):
    """1 / (1 + exp(-x)) through exp(-|x|), which never overflows (an exp that overflows
    raises in the simulator, where math.exp is Python's)."""
    z = math.exp(-abs(x))
    return 1 / (1 + z) if x >= 0 else z / (1 + z)
