"""Choosing a backend: clear errors for unknown or unavailable ones."""
import pytest

import graphc as gc


def test_unknown_backend_is_named():
    x = gc.placeholder((2,), name="x")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        gc.compile([x], x * 2.0, backend="tpu")


# (backend="cuda" without a GPU and without the simulator: tests/test_cuda.py, in a process
# of its own, since this suite runs the cuda backend in Numba's CUDA simulator)


def test_unknown_cpu_option_is_named():
    x = gc.placeholder((2,), name="x")
    with pytest.raises(TypeError, match="unroll"):
        gc.compile([x], x * 2.0, backend="cpu", unroll=4)
