"""Scalar helpers the generated CUDA kernels call (device functions; in the simulator,
plain Python). Each keeps NumPy's NaN rules where CUDA's own functions differ."""
from __future__ import annotations

import math

from numba import cuda


@cuda.jit(device=True, inline=True)
def gmaximum(a, b):
    """The neutral form's maximum: NaN from either side (fmax would drop it), and of two
    equal operands (-0.0 and +0.0) the first."""
    return a if (a >= b or a != a) else b  # noqa: PLR0124 - NaN test


@cuda.jit(device=True, inline=True)
def gminimum(a, b):
    """The neutral form's minimum: NaN from either side; of two equal operands the first."""
    return a if (a <= b or a != a) else b  # noqa: PLR0124 - NaN test


@cuda.jit(device=True, inline=True)
def gsign(x):
    """np.sign of an integer (floats have a template of their own, in their own type:
    codegen/numba_cuda.py): -1, 0 or 1."""
    if x > 0:
        return x - x + 1
    if x < 0:
        return x - x - 1
    return x - x


@cuda.jit(device=True, inline=True)
def gsigmoid(x):
    """1 / (1 + exp(-x)) through exp(-|x|), which never overflows (an exp that overflows
    raises in the simulator, where math.exp is Python's)."""
    z = math.exp(-abs(x))
    return 1 / (1 + z) if x >= 0 else z / (1 + z)
