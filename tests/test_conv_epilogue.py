"""A convolution's bias and ReLU applied by the kernel computing its product
(graphc.plan.epilogues): which plans take it, and that it changes no bit of the result."""
from __future__ import annotations

import numpy as np
import pytest
from graphc.kernels.cpu import conv

import graphc as gc


def _inputs(seed=0, n=3, c=4, oc=5, hw=6):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((oc, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize("images", [1, 5])  # one GEMM per image serially, or by image
def test_the_epilogue_gives_the_bits_of_separate_add_and_relu(images, monkeypatch):
    monkeypatch.setattr(conv, "SPLIT_MIN_NS", 0.0)  # (5 images: split, however small)
    rng = np.random.default_rng(images)
    w = rng.standard_normal((6, 12)).astype(np.float32)
    col = rng.standard_normal((images, 12, 10)).astype(np.float32)
    col[0, 3, 4] = np.nan                       # a NaN product: ReLU keeps NaN
    col[-1, :, 7] = np.inf                      # +-inf products
    bias = rng.standard_normal(6).astype(np.float32)
    product = np.empty((images, 6, 10), np.float32)
    conv.matmul_shared(w, col, product)
    summed = product + bias[:, None]
    out = np.full((images, 6, 2, 5), 7.0, np.float32)
    conv.matmul_shared_bias(w, col, out, bias.reshape(6, 1, 1))
    np.testing.assert_array_equal(out.reshape(summed.shape), summed)
    conv.matmul_shared_bias_relu(w, col, out, bias.reshape(6, 1, 1))
    np.testing.assert_array_equal(out.reshape(summed.shape), np.maximum(summed, 0))
    assert np.isnan(out[0]).any()


def _kernels(f) -> list:
    return [line.split()[2] for line in f.dump().splitlines()
            if line.lstrip().startswith("[") and " kernel " in line and "hand-written" in line]


# C*3*3 = 9 columns: the step choosing by the batch between im2col + the product kernel and
# the implicit kernel; 36: the implicit kernel (graphc.plan.implicit)
PRODUCT = {1: "conv2d_by_batch", 4: "conv2d_implicit"}


@pytest.mark.parametrize("c", [1, 4])
def test_conv_relu_runs_as_one_product_kernel_and_matches_numpy(c):
    x, w, b = _inputs(c=c)
    xp = gc.placeholder((None, c, 6, 6), name="x")
    y = gc.relu(gc.conv2d(xp, gc.constant(w), gc.constant(b), pad=1))
    f = gc.compile([xp], y, backend="cpu")
    assert PRODUCT[c] + "_bias_relu" in _kernels(f)
    assert "its bias and ReLU applied by the product kernel" in f.dump()
    ref = gc.compile([xp], y, backend="numpy")
    np.testing.assert_allclose(f(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c", [1, 4])
def test_conv_without_relu_takes_the_bias_alone(c):
    x, w, b = _inputs(1, c=c)
    xp = gc.placeholder((None, c, 6, 6), name="x")
    y = gc.conv2d(xp, gc.constant(w), gc.constant(b), stride=2)
    f = gc.compile([xp], y, backend="cpu")
    assert PRODUCT[c] + "_bias" in _kernels(f)
    ref = gc.compile([xp], y, backend="numpy")
    np.testing.assert_allclose(f(x), ref(x), rtol=1e-5, atol=1e-5)
    # an add fused with other work (tanh) keeps its group: taking it out saves no pass
    g = gc.compile([xp], gc.tanh(y), backend="cpu")
    assert PRODUCT[c] in _kernels(g) and PRODUCT[c] + "_bias" not in _kernels(g)
    np.testing.assert_allclose(g(x), np.tanh(ref(x)), rtol=1e-5, atol=1e-5)


def test_a_pre_activation_read_elsewhere_is_not_fused_away():
    x, w, b = _inputs(2)
    xp = gc.placeholder((None, 4, 6, 6), name="x")
    y = gc.conv2d(xp, gc.constant(w), gc.constant(b), pad=1)
    f = gc.compile([xp], [y, gc.relu(y)], backend="cpu")  # y itself is an output
    assert not any("_bias" in k for k in _kernels(f))
    got, ref = f(x), gc.compile([xp], [y, gc.relu(y)], backend="numpy")(x)
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)


def test_a_training_step_fuses_the_forward_and_trains_as_the_numpy_backend():
    """The ReLU's gradient reads its output, so the pre-activation is never stored and the
    forward bias + ReLU stay in the product kernel in training too; the gradient's mask is
    computed in the backward kernel that uses it."""
    x, w, b = _inputs(3)
    rng = np.random.default_rng(4)
    t = rng.integers(0, 3, 3)
    fc = rng.standard_normal((5 * 3 * 3, 3)).astype(np.float32) * 0.1
    losses = {}
    for backend in ("cpu", "numpy"):
        params = [gc.Parameter(w.copy()), gc.Parameter(b.copy()), gc.Parameter(fc.copy())]
        xp = gc.placeholder((None, 4, 6, 6), name="x")
        tp = gc.placeholder((None,), "int64", name="t")
        h = gc.max_pool2d(gc.relu(gc.conv2d(xp, params[0], params[1], pad=1)), 2)
        loss = gc.softmax_cross_entropy(h.reshape((-1, 45)) @ params[2], tp)
        grads = gc.grad(loss, params)
        step = gc.compile([xp, tp], loss, updates=[(p, p - 0.1 * g)
                                                    for p, g in zip(params, grads)],
                          backend=backend)
        if backend == "cpu":
            assert "matmul_shared_bias_relu" in _kernels(step)
            # the ReLU's mask moved into the backward's kernel that reads it
            assert ":greater_where" in step.dump() and ":greater " not in step.dump()
        losses[backend] = ([float(step(x, t)) for _ in range(3)], [p.value for p in params])
    np.testing.assert_allclose(losses["cpu"][0], losses["numpy"][0], rtol=1e-5)
    for a, r in zip(losses["cpu"][1], losses["numpy"][1]):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5)
