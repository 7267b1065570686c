"""Compile graphc's hand-written CPU kernels ahead of time (`graphc compile --builtins`).

A first `gc.compile` pays Numba's compile of the hand-written kernels it uses (softmax cross
entropy ~1 s, each product loop ~0.3 s, each convolution or pooling kernel ~1 s, the
implicit convolution ~3.4 s) on top of its own fused kernels. This compiles them once, into
the kernel cache, by compiling and running small steps that reach every one the way real
plans do: dense training steps in float32 and float64 with int32 and int64 labels, batches
small enough for graphc's own product loops and large enough for BLAS; then a small
convolutional network's training step and forward pass in each float dtype (im2col, col2im,
the per-image products, max and average pooling and their gradients, and in float32 the
implicit convolution). Their signatures are then exactly the ones a user's plan asks for,
which a list of hand-made example arguments could miss.
"""
from __future__ import annotations

import numpy as np

FEATURES, HIDDEN, CLASSES = 8, 16, 5
CASES = 6  # float32/float64 x int32/int64 labels, then the convolutions in each dtype
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


def _conv_step(gc, dtype: str):
    """A convolutional training step and a forward pass reaching every conv/pool kernel."""
    rng = np.random.default_rng(2)
    x = gc.placeholder((None, 3, 8, 8), dtype=dtype, name="x")
    t = gc.placeholder((None,), dtype="int64", name="t")
    W1 = gc.Parameter(rng.standard_normal((4, 3, 3, 3)).astype(dtype), name="W1")
    b1 = gc.Parameter(np.zeros(4, dtype), name="b1")
    W2 = gc.Parameter(rng.standard_normal((4, 4, 3, 3)).astype(dtype), name="W2")
    W3 = gc.Parameter(rng.standard_normal((16, CLASSES)).astype(dtype), name="W3")
    h = gc.max_pool2d(gc.relu(gc.conv2d(x, W1, b1, pad=1)), 2)          # 8x8 -> 4x4
    h = gc.avg_pool2d(gc.conv2d(h, W2, pad=1), 2)                       # 4x4 -> 2x2
    # (other windows than 2x2 take kernels of their own: ResNet's 3x3 stride 2 pad 1)
    h = h + gc.max_pool2d(h, 3, stride=1, pad=1)                        # 2x2 -> 2x2
    logits = h.reshape((-1, 16)) @ W3
    loss = gc.softmax_cross_entropy(logits, t)
    params = [W1, b1, W2, W3]
    updates = [(p, p - 0.01 * g) for p, g in zip(params, gc.grad(loss, params))]
    step = gc.compile([x, t], [loss], updates=updates)
    # forward only: the columns have no other reader, so float32 takes the implicit
    # convolution (K = 27, 36), with and without a bias and ReLU
    forward = gc.compile([x], [logits, gc.relu(gc.conv2d(x, W1, b1, pad=1)),
                               gc.conv2d(x, W1, b1, pad=1)])
    return step, forward


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
    for dtype in ("float32", "float64"):
        step, forward = _conv_step(gc, dtype)
        rng = np.random.default_rng(3)
        xv = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
        step(xv, rng.integers(0, CLASSES, 2))
        forward(xv)
        done.append(f"{dtype} convolutions")
        if progress is not None:
            progress.advance(done[-1])
    return done
