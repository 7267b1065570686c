"""Gradient checking against central finite differences in float64."""
from __future__ import annotations

import numpy as np

from .autodiff import grad
from .tensor import placeholder


def numeric_grad(f, arrays, eps=1e-6):
    """Central differences of the scalar f(*arrays) with respect to every array."""
    grads = []
    for i, a in enumerate(arrays):
        g = np.zeros_like(a, dtype=np.float64)
        flat = a.reshape(-1)
        gflat = g.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            plus = float(f(*arrays))
            flat[j] = old - eps
            minus = float(f(*arrays))
            flat[j] = old
            gflat[j] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def check_grad(fn, *arrays, rtol=1e-5, atol=1e-6, eps=1e-6, backend="numpy", seed=None):
    """Check the symbolic gradient of `fn` against central differences, in float64.

    fn takes one graphc tensor per array and returns a tensor; a non-scalar result is reduced
    with a fixed random projection (sum(y * r)) so every output element is checked.
    Raises AssertionError naming the worst element, both values and the relative error.
    Returns the symbolic gradients (numpy arrays).
    """
    from . import function
    from .ops import mul
    from .ops import sum as gsum

    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    xs = [placeholder(a.shape, "float64", name=f"arg{i}") for i, a in enumerate(arrays)]
    y = fn(*xs)
    if y.shape != ():
        rng = np.random.default_rng(0 if seed is None else seed)
        proj = rng.standard_normal([1 if d is None else d for d in y.shape])
        y = gsum(mul(y, proj.astype(np.float64)))
    grads = grad(y, xs)
    f_val = function.compile(xs, y, backend=backend)
    f_grad = function.compile(xs, grads, backend=backend)
    symbolic = [np.asarray(g, dtype=np.float64) for g in f_grad(*arrays)]
    numeric = numeric_grad(lambda *a: f_val(*a), [a.copy() for a in arrays], eps)
    for i, (s, n) in enumerate(zip(symbolic, numeric)):
        err = np.abs(s - n)
        bound = atol + rtol * np.maximum(np.abs(s), np.abs(n))
        if not np.all(err <= bound):
            k = int(np.argmax(err - bound))
            idx = np.unravel_index(k, s.shape) if s.shape else ()
            rel = err.flat[k] / max(abs(n.flat[k]), abs(s.flat[k]), 1e-300)
            raise AssertionError(
                f"check_grad: gradient of argument {i} (shape {s.shape}) is off at index "
                f"{idx}: symbolic {s.flat[k]!r}, numeric {n.flat[k]!r}, relative error "
                f"{rel:.3g} (rtol {rtol}, atol {atol})"
            )
    return symbolic
