"""Compile graphc's hand-written CPU kernels ahead of time (`graphc compile --builtins`).

A first `gc.compile` pays Numba's compile of the hand-written kernels it uses (softmax cross
entropy ~1 s, each product loop ~0.3 s) on top of its own fused kernels. This compiles them
once, into the kernel cache, by compiling and running small training steps that reach every
one the way real plans do: float32 and float64, int32 and int64 labels, batches small enough
for graphc's own product loops and large enough for BLAS. Their signatures are then exactly
the ones a user's plan asks for, which a list of hand-made example arguments could miss.
"""
from __future__ import annotations

import numpy as np

FEATURES, HIDDEN, CLASSES = 8, 16, 5
BATCHES = (2, 300)  # 2: every product below its crossover (own loops); 300: all through BLAS


def _step(gc, dtype: str, label_dtype: str):
    """A training step and an evaluation function reaching every hand-written kernel."""
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, FEATURES), dtype=dtype, name="x")
    t = gc.placeholder((None,), dtype=label_dtype, name="t")
    W1 = gc.Parameter(rng.standard_normal((FEATURES, HIDDEN)).astype(dtype), name="W1")
    W2 = gc.Parameter(rng.standard_normal((HIDDEN, CLASSES)).astype(dtype), name="W2")
    logits = gc.relu(x @ W1) @ W2
    loss = gc.softmax_cross_entropy(logits, t)
    hits = gc.equal(gc.argmax(logits, axis=1), t)
    extra = [gc.sum(gc.softmax(logits, axis=1) * gc.one_hot(t, CLASSES)),
             gc.sum(gc.log_softmax(logits, axis=1))]
    params = [W1, W2]
    updates = [(p, p - 0.01 * g) for p, g in zip(params, gc.grad(loss, params))]
    step = gc.compile([x, t], [loss], updates=updates)
    evaluate = gc.compile([x, t], [loss, hits] + extra)
    return step, evaluate


def precompile(progress=None) -> list:
    """Compile (or load) every hand-written kernel for each dtype; returns what ran."""
    import graphc as gc

    done = []
    for dtype in ("float32", "float64"):
        for label_dtype in ("int32", "int64"):
            step, evaluate = _step(gc, dtype, label_dtype)
            rng = np.random.default_rng(1)
            for n in BATCHES:
                xv = rng.standard_normal((n, FEATURES)).astype(dtype)
                tv = rng.integers(0, CLASSES, n).astype(label_dtype)
                step(xv, tv)
                evaluate(xv, tv)
            done.append(f"{dtype} with {label_dtype} labels")
            if progress is not None:
                progress.advance(done[-1])
    return done
