"""The cpu backend (the default): fused Numba kernels, BLAS, preallocated buffers."""
from __future__ import annotations

from ...function import Program, register_backend
from .runtime import CpuExecutable


def describe_plan(outputs, kernels: bool = False, n=None) -> str:
    """The compiled plan of `outputs` as text (`graphc dump --optimized`)."""
    from ...graph import placeholders

    program = Program(placeholders(outputs), list(outputs), [], [])
    for node in __import__("graphc.graph", fromlist=["toposort"]).toposort(outputs):
        if node.op == "parameter":
            program.parameters.append(node.value)
    ex = CpuExecutable(program)
    return ex.describe(n, kernels)


register_backend("cpu", lambda program, optimize=True, **o: CpuExecutable(program, optimize, **o))

__all__ = ["CpuExecutable", "describe_plan"]
