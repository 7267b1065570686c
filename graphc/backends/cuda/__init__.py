"""The cuda backend: the plan of the cpu backend on a CUDA device through numba.cuda (or in
Numba's CUDA simulator, NUMBA_ENABLE_CUDASIM=1). Fused groups become generated CUDA kernels
(kernels/codegen/numba_cuda.py), products run on cuBLAS or graphc's tiled kernel, the other
ops on hand-written kernels (kernels/cuda/), parameters stay on the device between calls."""
from __future__ import annotations

from .. import register_backend
from .device import CudaUnavailableError, device_info, unavailable_reason


def _factory(program, optimize=True, **options):
    from .runtime import CudaExecutable

    return CudaExecutable(program, optimize, **options)


register_backend("cuda", _factory)

__all__ = ["CudaUnavailableError", "device_info", "unavailable_reason"]
