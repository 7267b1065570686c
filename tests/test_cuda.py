"""The cuda backend beyond the op table: training steps that match the cpu backend step for
step, parameters living on the device, batch sizes that never recompile, label checks, the
generated CUDA source, reductions' accuracy, and the error without a device.

Runs on a GPU where one is present, else in Numba's CUDA simulator (conftest switches it
on); every test id and the header line say which (`cuda-gpu` / `cuda-simulator`).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import CUDA_MODE

import graphc as gc
from graphc.backends.cuda.device import CudaUnavailableError

MODE = f"cuda-{CUDA_MODE}"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_header_says_the_mode(capsys):
    from graphc.kernels.cuda.launch import mode

    with capsys.disabled():
        print(f"\n[graphc cuda tests: {MODE}]")
    assert mode() == CUDA_MODE


# --- training steps against the cpu backend ---------------------------------------------------
def _mlp(params, x, t):
    (w1, b1), (w2, b2) = params
    h = gc.relu(gc.linear(x, w1, b1))
    return gc.softmax_cross_entropy(gc.linear(h, w2, b2), t)


def _cnn(params, x, t):
    (wc, bc), (w, b) = params
    h = gc.max_pool2d(gc.relu(gc.conv2d(x, wc, bc, pad=1)), 2)
    return gc.softmax_cross_entropy(gc.linear(h.reshape((-1, 2 * 2 * 2)), w, b), t)


def _train(model, shapes, x_shape, backend: str, steps: int, seed: int = 0):
    """Losses and final weights of `steps` SGD steps of `model` on `backend`."""
    rng = np.random.default_rng(seed)
    params = [tuple(gc.Parameter((0.5 * rng.standard_normal(s)).astype(np.float32), name=f"p{i}")
                    for i, s in enumerate(pair)) for pair in shapes]
    x = gc.placeholder((None,) + x_shape, name="x")
    t = gc.placeholder((None,), "int64", name="t")
    loss = model(params, x, t)
    flat = [p for pair in params for p in pair]
    grads = gc.grad(loss, flat)
    step = gc.compile([x, t], loss, updates=[(p, p - 0.1 * g) for p, g in zip(flat, grads)],
                      backend=backend)
    data = np.random.default_rng(seed + 1)
    losses = []
    for i in range(steps):
        n = 4 if i % 2 else 6  # two batch sizes: the cuda runner binds both, compiles once
        xv = data.standard_normal((n,) + x_shape).astype(np.float32)
        losses.append(float(step(xv, data.integers(0, 3, n))))
    return losses, [p.value for p in flat], step


@pytest.mark.parametrize("model, shapes, x_shape", [
    (_mlp, [((5, 8), (8,)), ((8, 3), (3,))], (5,)),
    (_cnn, [((2, 1, 3, 3), (2,)), ((8, 3), (3,))], (1, 4, 4)),
], ids=[f"mlp-{MODE}", f"cnn-{MODE}"])
def test_training_step_matches_cpu_step_for_step(model, shapes, x_shape):
    cpu_losses, cpu_weights, _ = _train(model, shapes, x_shape, "cpu", 4)
    losses, weights, step = _train(model, shapes, x_shape, "cuda", 4)
    np.testing.assert_allclose(losses, cpu_losses, rtol=2e-5, atol=1e-6)
    for w, c in zip(weights, cpu_weights):
        np.testing.assert_allclose(w, c, rtol=2e-5, atol=2e-6)
    assert cpu_losses[-1] < cpu_losses[0] + 1.0  # (it trains, not just runs)
    text = step.dump()
    assert "host fallbacks: 0" in text, text
    assert len(step.executable.runners) == 2  # N=6 and N=4, same kernels


# --- parameters on the device ----------------------------------------------------------------
def test_parameters_live_on_the_device_between_calls():
    w = gc.Parameter(np.ones((3, 2), np.float32), name="w")
    x = gc.placeholder((None, 3), name="x")
    y = gc.sum(x @ w)
    step = gc.compile([x], y, updates=[(w, w * 2.0)], backend="cuda")
    mirror = w.mirror
    assert mirror is not None and not mirror.device_newer
    xv = np.ones((2, 3), np.float32)
    assert float(step(xv)) == 12.0
    assert mirror.device_newer  # the host copy is stale until read
    np.testing.assert_array_equal(w.value, np.full((3, 2), 2.0))  # reads back
    assert not mirror.device_newer
    assert float(step(xv)) == 24.0
    w.value = np.zeros((3, 2))  # assigning uploads
    assert float(step(xv)) == 0.0
    runner = step.executable.runners[2]
    host_buffers = [id(h) for h, _ in runner.feeds]
    step(xv)
    assert [id(h) for h, _ in step.executable.runners[2].feeds] == host_buffers


@pytest.mark.parametrize("host", ["cpu", "numpy"])
@pytest.mark.parametrize("host_first", [True, False])
def test_a_parameter_shared_with_a_host_function_stays_in_step(host, host_first):
    """Train on the device, evaluate and train on the host, in turns: every function sees
    the other's updates (the cpu runner had kept reading the host array it was built with,
    and a host update had never reached the device copy). host_first: the host functions
    were compiled before the cuda one made the device copy."""
    w = gc.Parameter(np.ones((3, 2), np.float32), name="w")
    x = gc.placeholder((None, 3), name="x")
    y = gc.sum(x @ w)

    def host_fns():
        return (gc.compile([x], y, backend=host),
                gc.compile([x], y, updates=[(w, w + 1.0)], backend=host))

    if host_first:
        evaluate, host_step = host_fns()
    device_step = gc.compile([x], y, updates=[(w, w * 2.0)], backend="cuda")
    device_eval = gc.compile([x], y, backend="cuda")
    if not host_first:
        evaluate, host_step = host_fns()
    xv = np.ones((1, 3), np.float32)
    ref = np.ones((3, 2))
    for _ in range(2):
        assert float(evaluate(xv)) == ref.sum()
        assert float(device_step(xv)) == ref.sum()
        ref = ref * 2.0
        assert float(evaluate(xv)) == ref.sum()  # the device's update, read on the host
        assert float(host_step(xv)) == ref.sum()
        ref = ref + 1.0
        assert float(device_eval(xv)) == ref.sum()  # the host's update, read on the device
        assert float(evaluate(xv)) == ref.sum()
    np.testing.assert_array_equal(w.value, ref)
    # a function that shares no Parameter with a cuda function keeps its plain call
    v = gc.Parameter(np.ones(3, np.float32), name="v")
    plain = gc.compile([x], gc.sum(x * v), backend=host)
    assert "PRE" not in type(plain).__call__.source
    assert "PRE" in type(evaluate).__call__.source


def test_a_new_batch_size_binds_new_launches_without_recompiling():
    x = gc.placeholder((None, 4), name="x")
    f = gc.compile([x], gc.sum(gc.exp(x) * 2.0, 1), backend="cuda")
    kernels = dict(f.executable.kernels)
    for n in (1, 3, 9):
        xv = np.linspace(-1, 1, 4 * n, dtype=np.float32).reshape(n, 4)
        np.testing.assert_allclose(f(xv), (np.exp(xv) * 2).sum(1), rtol=1e-6)
    assert f.executable.kernels == kernels
    fns = {id(k.fns["partial"]) for k in kernels.values()}
    assert fns == {id(k.fns["partial"]) for k in f.executable.kernels.values()}


@pytest.mark.parametrize("where", ["one_hot", "getitem"])
def test_a_bad_computed_label_or_index_is_named_as_it_was(where):
    """Labels or indices computed on the device and checked before the last checking step:
    the message names the bad value (it had named whatever a later step wrote into the
    buffer before the run's one status read), as the cpu backend's does."""
    w = gc.Parameter(np.ones((2, 3), np.float32), name="w")
    e = gc.Parameter(np.ones((5, 3), np.float32), name="e")
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    i = gc.placeholder((None,), "int64", name="i")
    h = gc.relu(x @ w)
    if where == "one_hot":
        h = h * gc.one_hot(t * 2 + 1, 3)
        rows = e[i]
    else:
        rows = e[i * 2]
    loss = gc.sum((gc.exp(h) + 1.0) * rows) + gc.softmax_cross_entropy(h, t)
    gw, ge = gc.grad(loss, [w, e])
    updates = [(w, w - 0.5 * gw), (e, e - 0.1 * ge)]
    bad_t, bad_i = (np.array([0, 50]), np.array([0, 1])) if where == "one_hot" else \
        (np.array([0, 1]), np.array([0, 40]))
    want = "label 101 is outside" if where == "one_hot" else "index 80 is out of bounds"
    for backend in ("cpu", "cuda"):
        step = gc.compile([x, t, i], loss, updates=updates, backend=backend)
        with pytest.raises(gc.RuntimeCheckError, match=want):
            step(np.ones((2, 2), np.float32), bad_t, bad_i)
        np.testing.assert_array_equal(w.value, np.ones((2, 3)))
        np.testing.assert_array_equal(e.value, np.ones((5, 3)))


def test_a_bad_label_raises_and_leaves_the_parameters_alone():
    w = gc.Parameter(np.ones((2, 3), np.float32), name="w")
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    loss = gc.softmax_cross_entropy(x @ w, t)
    step = gc.compile([x, t], loss, updates=[(w, w - 0.5 * gc.grad(loss, w))], backend="cuda")
    with pytest.raises(gc.RuntimeCheckError, match=r"label 7 is outside \[0, 3\)"):
        step(np.ones((2, 2), np.float32), np.array([0, 7]))
    np.testing.assert_array_equal(w.value, np.ones((2, 3)))


# --- what the plan says -----------------------------------------------------------------------
def _engine() -> str:
    if CUDA_MODE == "gpu":
        from graphc.kernels.cuda.gemm import cublas_module

        return "cublas" if cublas_module() is not None else "tiled"
    return "tiled"


def test_dump_names_the_matmul_engine():
    x = gc.placeholder((None, 3), name="x")
    w = gc.constant(np.ones((3, 3), np.float32))
    f = gc.compile([x], gc.concat([x @ w, x], axis=1), backend="cuda")
    text = f.dump()
    assert f"matmul: {_engine()}" in text
    assert "host fallbacks: 0" in text and "launch: host fallback" not in text
    np.testing.assert_allclose(f(np.eye(3, dtype=np.float32)),
                               np.concatenate([np.ones((3, 3)), np.eye(3)], 1))


def test_an_op_without_a_device_kernel_still_runs_as_a_host_fallback(monkeypatch):
    """The safety net: an op no kernel takes (here concat, its kernel hidden) is run by its
    NumPy reference, and dump says so."""
    from graphc.backends.cuda import runtime

    has_kernel = runtime.has_kernel
    monkeypatch.setattr(runtime, "has_kernel",
                        lambda what: getattr(what, "op", None) != "concat" and has_kernel(what))
    x = gc.placeholder((None, 2), name="x")
    f = gc.compile([x], gc.concat([x * 2.0, x], axis=1), backend="cuda")
    text = f.dump()
    assert "launch: host fallback" in text and "host fallbacks: 1" in text
    xv = np.arange(4, dtype=np.float32).reshape(2, 2)
    np.testing.assert_array_equal(f(xv), np.concatenate([xv * 2, xv], 1))


def _fallbacks(inputs, outputs) -> list:
    text = gc.compile(inputs, outputs, backend="cuda").dump()
    assert "host fallbacks: " in text
    return [line for line in text.splitlines() if "launch: host fallback" in line]


def _case_graphs(case):
    """(inputs, forward outputs) of an op-table case at its first shape set, and the
    gradient graph's outputs (None when the case has no gradient)."""
    shapes = case.shapes[0]
    xs = [gc.placeholder(shape, "float32" if arg.is_float else arg.dtype, name=f"in{i}")
          for i, (arg, shape) in enumerate(zip(case.arg_list(), shapes))]
    out = case.build(*xs)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    floats = [x for x, arg in zip(xs, case.arg_list()) if arg.is_float]
    grads = None
    if case.grad and floats:
        total = gc.sum(outs[0])
        for o in outs[1:]:
            total = total + gc.sum(o)
        grads = gc.grad(total, floats)
    return xs, outs, grads


def _op_cases() -> list:
    from op_table import CASES

    return [pytest.param(c, id=f"{c.name}-{MODE}") for c in CASES]


@pytest.mark.parametrize("case", _op_cases())
def test_every_op_case_runs_on_the_device(case):
    """Forward and gradient graphs of every op-table case (first shape set): no host
    fallback left (compiling and binding only; tests/test_ops.py checks the values)."""
    xs, outs, grads = _case_graphs(case)
    assert _fallbacks(xs, outs) == [], f"{case.name}: forward"
    if grads is not None:
        assert _fallbacks(xs, grads) == [], f"{case.name}: gradient"


def test_generated_source_is_grid_stride_with_a_block_reduction():
    x = gc.placeholder((None, 5), name="x")
    f = gc.compile([x], gc.sum(gc.tanh(x), 0), backend="cuda")
    source = f.executable.describe(kernels=True)
    assert "for flat in range" not in source  # a reduction: partial + finish
    assert "cuda.shared.array" in source and "cuda.syncthreads()" in source
    assert "def partial(" in source and "def finish(" in source
    assert "compute capability" in source  # the cache key covers the device


# --- reductions ----------------------------------------------------------------------------------
def _sum_error(n: int) -> float:
    x = gc.placeholder((n,), name="x")
    f = gc.compile([x], gc.sum(x), backend="cuda")
    xv = np.full(n, 0.1, np.float32)
    want = xv.astype(np.float64).sum()
    return abs(float(f(xv)) - want) / want


def test_a_float32_sum_is_accumulated_accurately():
    # 65536 additions of 0.1 in float32 one after another are off by ~1e-4 relative
    assert _sum_error(1 << 16) < 1e-6


@pytest.mark.slow
def test_a_16m_float32_sum_is_within_1e_6_of_float64():
    assert _sum_error(1 << 24) < 1e-6


# --- without a device ---------------------------------------------------------------------------
def test_without_a_gpu_or_the_simulator_compile_names_what_is_missing():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("import numpy as np, graphc as gc\n"
            "x = gc.placeholder((2,), name='x')\n"
            "try:\n"
            "    gc.compile([x], x * 2.0, backend='cuda')\n"
            "    print('COMPILED')\n"
            "except Exception as e:\n"
            "    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=False).stdout
    if CUDA_MODE == "gpu":
        assert "COMPILED" in out
        return
    assert out.startswith(CudaUnavailableError.__name__), out
    assert "NUMBA_ENABLE_CUDASIM=1" in out and "no CUDA GPU" in out and "<string>:4" in out


def test_graphc_info_shows_the_device():
    out = subprocess.run([sys.executable, "-m", "graphc", "info"], cwd=ROOT, text=True,
                         capture_output=True, timeout=120, check=True).stdout
    assert "gpu compute capability" in out
    if CUDA_MODE == "simulator":
        assert "simulator" in out and "tiled shared-memory kernel" in out


@pytest.mark.parametrize("shapes", [((2, 3), (3, 2)), ((5, 33), (33, 3)), ((2, 3, 4), (4, 2))])
def test_a_bool_matmul_is_numpys_or_of_ands(shapes):
    """NumPy's bool product (any(a and b) along k) runs on the device: it had built and then
    failed at its first call (the device product took only float and int dtypes)."""
    rng = np.random.default_rng(3)
    a = gc.placeholder(shapes[0], "bool", name="a")
    b = gc.placeholder(shapes[1], "bool", name="b")
    av, bv = rng.random(shapes[0]) < 0.3, rng.random(shapes[1]) < 0.3
    for build in (lambda: a @ b, lambda: a @ gc.transpose(gc.transpose(b))):
        got = gc.compile([a, b], build(), backend="cuda")(av, bv)
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, av @ bv)


def test_an_int32_sum_wraps_on_the_device_as_numpys():
    """NumPy's int32 sum wraps in int32; the device's int64 partial had been stored into
    the int32 output unwrapped (the simulator refused it with an OverflowError)."""
    x = gc.placeholder((2, 3), "int32", name="x")
    xv = np.array([[2**31 - 1, 1, 5], [-2**31, -1, -7]], np.int32)
    builds = [gc.sum(x), gc.sum(x, axis=1), gc.sum(x, axis=0, keepdims=True)]
    if hasattr(gc, "sum_to"):
        builds.append(gc.sum_to(x, (1, 3)))
    for y in builds:
        got = gc.compile([x], y, backend="cuda")(xv)
        want = gc.compile([x], y, backend="numpy")(xv)
        assert got.dtype == want.dtype == np.int32
        np.testing.assert_array_equal(got, want)
