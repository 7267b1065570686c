"""The worked examples of backpropagation, as tests, on every backend.

Each one has a value worked out by hand (or in closed form) that the compiled gradient graph
must reproduce.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.testing import check_grad


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _scalars(*names, dtype="float64"):
    return [gc.placeholder((), dtype, name=n) for n in names]


def test_compile_api_positional_keyword_and_single_output(backend):
    x = gc.placeholder((None, 3), name="x")
    W = gc.placeholder((3, 2), name="W")
    loss = gc.sum(x @ W)
    gx, gW = gc.grad(loss, [x, W])
    f = gc.compile([x, W], [loss, gx, gW], backend=backend)
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    Wv = np.ones((3, 2), np.float32)
    by_position = f(xv, Wv)
    by_name = f(W=Wv, x=xv)
    assert isinstance(by_position, tuple) and len(by_position) == 3
    for a, b in zip(by_position, by_name):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(by_position[0], 30.0)
    single = gc.compile([x, W], loss, backend=backend)(xv, Wv)
    assert isinstance(single, np.ndarray) and single.shape == ()


def test_sum_times_product(backend):
    """f(x, y, z) = (x + y) z at x = -2, y = 5, z = -4."""
    x, y, z = _scalars("x", "y", "z")
    f = (x + y) * z
    grads = gc.grad(f, [x, y, z])
    out = gc.compile([x, y, z], [f, *grads], backend=backend)(-2.0, 5.0, -4.0)
    np.testing.assert_allclose(out, [-12.0, -4.0, -4.0, 3.0])


def test_sigmoid_neuron(backend):
    """f = σ(w0·x0 + w1·x1 + w2) with w = [2, -3, -3], x = [-1, -2]: the dot product is 1."""
    w = gc.placeholder((3,), "float64", name="w")
    x = gc.placeholder((2,), "float64", name="x")
    f = gc.sigmoid(w[0] * x[0] + w[1] * x[1] + w[2])
    dw, dx = gc.grad(f, [w, x])
    wv, xv = np.array([2.0, -3.0, -3.0]), np.array([-1.0, -2.0])
    f_v, dw_v, dx_v = gc.compile([w, x], [f, dw, dx], backend=backend)(wv, xv)
    s = _sigmoid(1.0)
    ddot = (1 - s) * s
    np.testing.assert_allclose(f_v, s, rtol=1e-12)
    np.testing.assert_allclose(dx_v, [wv[0] * ddot, wv[1] * ddot], rtol=1e-12)
    np.testing.assert_allclose(dw_v, [xv[0] * ddot, xv[1] * ddot, ddot], rtol=1e-12)


def test_sigmoid_neuron_as_a_matrix_product(backend):
    w = gc.placeholder((3,), "float64", name="w")
    x = gc.placeholder((2,), "float64", name="x")
    f = gc.sigmoid(w[:2] @ x + w[2])
    dw, dx = gc.grad(f, [w, x])
    dw_v, dx_v = gc.compile([w, x], [dw, dx], backend=backend)(
        np.array([2.0, -3.0, -3.0]), np.array([-1.0, -2.0]))
    ddot = (1 - _sigmoid(1.0)) * _sigmoid(1.0)
    np.testing.assert_allclose(dx_v, [2 * ddot, -3 * ddot], rtol=1e-12)
    np.testing.assert_allclose(dw_v, [-ddot, -2 * ddot, ddot], rtol=1e-12)


def _staged(x, y):
    """f(x, y) = (x + σ(y)) / (σ(x) + (x + y)²): x is used three times, y twice."""
    return (x + gc.sigmoid(y)) / (gc.sigmoid(x) + (x + y) ** 2)


def test_staged_computation_gradients_add_up(backend):
    x, y = _scalars("x", "y")
    f = _staged(x, y)
    dx, dy = gc.grad(f, [x, y])
    f_v, dx_v, dy_v = gc.compile([x, y], [f, dx, dy], backend=backend)(3.0, -4.0)

    xv, yv = 3.0, -4.0
    num = xv + _sigmoid(yv)
    den = _sigmoid(xv) + (xv + yv) ** 2
    dnum_dx, dnum_dy = 1.0, _sigmoid(yv) * (1 - _sigmoid(yv))
    dden_dx = _sigmoid(xv) * (1 - _sigmoid(xv)) + 2 * (xv + yv)
    dden_dy = 2 * (xv + yv)
    np.testing.assert_allclose(f_v, num / den, rtol=1e-12)
    np.testing.assert_allclose(dx_v, (dnum_dx * den - num * dden_dx) / den**2, rtol=1e-12)
    np.testing.assert_allclose(dy_v, (dnum_dy * den - num * dden_dy) / den**2, rtol=1e-12)
    check_grad(_staged, np.array(3.0), np.array(-4.0), backend=backend)


def test_max_routes_the_gradient_and_mul_swaps_inputs(backend):
    a, b = _scalars("a", "b")
    upstream = 2.0
    ga_max, gb_max = gc.grad(gc.maximum(a, b), [a, b], seed=upstream)
    ga_mul, gb_mul = gc.grad(a * b, [a, b], seed=upstream)
    f = gc.compile([a, b], [ga_max, gb_max, ga_mul, gb_mul], backend=backend)
    np.testing.assert_allclose(f(3.0, 5.0), [0.0, upstream, upstream * 5.0, upstream * 3.0])
    np.testing.assert_allclose(f(7.0, -1.0), [upstream, 0.0, upstream * -1.0, upstream * 7.0])


@pytest.mark.parametrize("reduction", ["sum", "masked-mean"])
def test_masking_does_not_dilute_gradients(reduction, backend):
    """A loss masked with where gives W the gradient of the loss over the kept rows only."""
    x = gc.placeholder((None, 3), "float64", name="x")
    keep = gc.placeholder((None,), "bool", name="keep")
    W = gc.placeholder((3, 2), "float64", name="W")
    sq = (x @ W) ** 2
    masked = gc.sum(gc.where(keep[:, None], sq, 0.0))
    plain = gc.sum(sq)
    if reduction == "masked-mean":
        masked = masked / gc.sum(gc.cast(keep, "float64"))
        plain = gc.mean(gc.sum(sq, 1))
    g_masked = gc.compile([x, keep, W], gc.grad(masked, W), backend=backend)
    g_plain = gc.compile([x, W], gc.grad(plain, W), backend=backend)

    rng = np.random.default_rng(0)
    xv, Wv = rng.standard_normal((6, 3)), rng.standard_normal((3, 2))
    keep_v = np.array([True, False, True, True, False, False])
    np.testing.assert_allclose(g_masked(xv, keep_v, Wv), g_plain(xv[keep_v], Wv), rtol=1e-12)


def test_split_then_add_back_has_a_gradient_of_ones(backend):
    x = gc.placeholder((None, 4), "float64", name="x")
    left, right = gc.split(x, 2, axis=1)
    y = gc.sum(gc.concat([right, left], axis=1) + gc.concat([left, right], axis=1)) / 2.0
    gx = gc.grad(y, x)
    np.testing.assert_allclose(gc.compile([x], gx, backend=backend)(np.zeros((3, 4))),
                               np.ones((3, 4)))


def test_split_parts_summed_have_a_gradient_of_ones(backend):
    x = gc.placeholder((2, 4), "float64", name="x")
    a, b = gc.split(x, 2, axis=1)
    gx = gc.grad(gc.sum(a + b), x)
    np.testing.assert_array_equal(gc.compile([x], gx, backend=backend)(np.ones((2, 4))),
                                  np.ones((2, 4)))


def test_matmul_gradient_shapes_and_values(backend):
    """x: (2, 3), W: (3, 4): ∂sum(xW)/∂x = 1·Wᵀ has x's shape, ∂/∂W = xᵀ·1 has W's."""
    x = gc.placeholder((2, 3), "float64", name="x")
    W = gc.placeholder((3, 4), "float64", name="W")
    gx, gW = gc.grad(gc.sum(x @ W), [x, W])
    assert gx.shape == (2, 3) and gW.shape == (3, 4)
    rng = np.random.default_rng(1)
    xv, Wv = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    gx_v, gW_v = gc.compile([x, W], [gx, gW], backend=backend)(xv, Wv)
    ones = np.ones((2, 4))
    np.testing.assert_allclose(gx_v, ones @ Wv.T, rtol=1e-12)
    np.testing.assert_allclose(gW_v, xv.T @ ones, rtol=1e-12)


# --- a 3-layer net without bias: loss = mean((Y - σ(Xβ1)β2)²) -----------------------------------
N_SAMPLES, P, D = 100, 3, 2


def _net_data(dtype):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N_SAMPLES, P)).astype(dtype)
    Y = rng.standard_normal((N_SAMPLES, 1)).astype(dtype)
    beta1 = rng.standard_normal((P, D)).astype(dtype)
    beta2 = rng.standard_normal((D, 1)).astype(dtype)
    return X, Y, beta1, beta2


def _net_loss(X, Y, beta1, beta2):
    return gc.mean((Y - gc.sigmoid(X @ beta1) @ beta2) ** 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_three_layer_net_matches_closed_form(dtype, backend):
    X = gc.placeholder((None, P), dtype, name="X")
    Y = gc.placeholder((None, 1), dtype, name="Y")
    beta1 = gc.placeholder((P, D), dtype, name="beta1")
    beta2 = gc.placeholder((D, 1), dtype, name="beta2")
    loss = _net_loss(X, Y, beta1, beta2)
    g1, g2 = gc.grad(loss, [beta1, beta2])
    f = gc.compile([X, Y, beta1, beta2], [loss, g1, g2], backend=backend)
    Xv, Yv, b1v, b2v = _net_data(dtype)
    loss_v, g1_v, g2_v = f(Xv, Yv, b1v, b2v)

    X64, Y64, b1, b2 = (a.astype(np.float64) for a in (Xv, Yv, b1v, b2v))
    H = _sigmoid(X64 @ b1)
    R = Y64 - H @ b2                     # (n, 1): the mean is over all n·1 elements
    n = N_SAMPLES
    tol = {"rtol": 1e-12} if dtype == "float64" else {"rtol": 1e-4, "atol": 1e-6}
    np.testing.assert_allclose(loss_v, np.mean(R**2), **tol)
    np.testing.assert_allclose(g2_v, -2 * H.T @ R / n, **tol)
    np.testing.assert_allclose(g1_v, -2 * X64.T @ ((R @ b2.T) * H * (1 - H)) / n, **tol)


def test_three_layer_net_passes_check_grad(backend):
    Xv, Yv, b1v, b2v = _net_data(np.float64)
    X, Y = gc.constant(Xv), gc.constant(Yv)
    check_grad(lambda b1, b2: _net_loss(X, Y, b1, b2), b1v, b2v, backend=backend)


# --- gradients of gradients ----------------------------------------------------------------------
def _scalar_function(x):
    return gc.sum(x ** 3 * gc.sin(x)) + gc.sum(x) ** 2


def test_hessian_vector_product_matches_finite_differences(backend):
    x = gc.placeholder((3,), "float64", name="x")
    v = gc.placeholder((3,), "float64", name="v")
    g = gc.grad(_scalar_function(x), x)
    hvp = gc.grad(gc.sum(g * v), x)
    f_g = gc.compile([x], g, backend=backend)
    f_hvp = gc.compile([x, v], hvp, backend=backend)
    xv, vv = np.array([0.3, -1.2, 0.8]), np.array([1.0, 0.5, -2.0])
    eps = 1e-5
    numeric = (f_g(xv + eps * vv) - f_g(xv - eps * vv)) / (2 * eps)
    np.testing.assert_allclose(f_hvp(xv, vv), numeric, rtol=1e-6, atol=1e-8)

    # closed form: H = diag(6x sin x + 6x² cos x - x³ sin x) + 2·11ᵀ
    hess = np.diag(6 * xv * np.sin(xv) + 6 * xv**2 * np.cos(xv) - xv**3 * np.sin(xv)) + 2.0
    np.testing.assert_allclose(f_hvp(xv, vv), hess @ vv, rtol=1e-12)


def test_hessian_vector_product_through_softmax_cross_entropy(backend):
    logits = gc.placeholder((None, 4), "float64", name="logits")
    labels = gc.placeholder((None,), "int64", name="labels")
    v = gc.placeholder((None, 4), "float64", name="v")
    g = gc.grad(gc.softmax_cross_entropy(logits, labels), logits)
    hvp = gc.grad(gc.sum(g * v), logits)
    f_g = gc.compile([logits, labels], g, backend=backend)
    f_hvp = gc.compile([logits, labels, v], hvp, backend=backend)
    rng = np.random.default_rng(3)
    lv, tv, vv = rng.standard_normal((3, 4)), np.array([0, 3, 1]), rng.standard_normal((3, 4))
    eps = 1e-5
    numeric = (f_g(lv + eps * vv, tv) - f_g(lv - eps * vv, tv)) / (2 * eps)
    np.testing.assert_allclose(f_hvp(lv, tv, vv), numeric, rtol=1e-6, atol=1e-9)


def test_second_derivative_of_tanh_passes_check_grad(backend):
    def first_derivative(x):
        return gc.grad(gc.sum(gc.tanh(x) * x), x)

    check_grad(first_derivative, np.array([0.2, -0.7, 1.1]), backend=backend)


def test_gradient_with_respect_to_an_unreached_tensor_is_zeros(backend):
    x = gc.placeholder((None, 3), "float64", name="x")
    unused = gc.placeholder((None, 2), "float64", name="unused")
    W = gc.placeholder((3, 2), "float64", name="W")
    gx, g_unused, gW = gc.grad(gc.sum(x * 2.0), [x, unused, W])
    assert g_unused.shape == (None, 2) and gW.shape == (3, 2)
    f = gc.compile([x, unused, W], [gx, g_unused, gW], backend=backend)
    gx_v, g_unused_v, gW_v = f(np.ones((4, 3)), np.ones((4, 2)), np.ones((3, 2)))
    np.testing.assert_array_equal(gx_v, np.full((4, 3), 2.0))
    np.testing.assert_array_equal(g_unused_v, np.zeros((4, 2)))
    np.testing.assert_array_equal(gW_v, np.zeros((3, 2)))


def test_gradient_of_an_int_output_or_wrt_an_int_tensor_raises():
    x = gc.placeholder((3,), "float32", name="x")
    i = gc.placeholder((3,), "int64", name="i")
    with pytest.raises(TypeError, match="int64"):
        gc.grad(gc.sum(x * i), i)
    with pytest.raises(TypeError, match="int64"):
        gc.grad(gc.sum(i), x)
    with pytest.raises(gc.GradError, match="scalar"):
        gc.grad(x * 2.0, x)
