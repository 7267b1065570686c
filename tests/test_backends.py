"""Choosing a backend: clear errors for unknown or unavailable ones."""
import pytest

import graphc as gc


def test_unknown_backend_is_named():
    x = gc.placeholder((2,), name="x")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        gc.compile([x], x * 2.0, backend="tpu")


def test_cuda_backend_missing_is_a_clear_error():
    x = gc.placeholder((2,), name="x")
    with pytest.raises(ValueError, match="backend 'cuda' is not available"):
        gc.compile([x], x * 2.0, backend="cuda")


def test_unknown_cpu_option_is_named():
    x = gc.placeholder((2,), name="x")
    with pytest.raises(TypeError, match="unroll"):
        gc.compile([x], x * 2.0, backend="cpu", unroll=4)
