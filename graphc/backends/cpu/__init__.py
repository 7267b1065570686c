"""The cpu backend (the default): the plan's fused groups as generated Numba kernels, BLAS
for products, hand-written kernels through their bindings, buffers from the memory plan."""
from __future__ import annotations

from .. import register_backend
from .runtime import CpuExecutable

register_backend("cpu", lambda program, optimize=True, **o: CpuExecutable(program, optimize, **o))

__all__ = ["CpuExecutable"]
