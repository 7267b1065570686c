"""W - lr * (A @ B) runs as one gemm(alpha=-lr, beta=1) into W on the cpu backend."""
import numpy as np
import pytest

import graphc as gc


def _mlp(rng, backend, extra_outputs=lambda params: []):
    x = gc.placeholder((None, 200), name="x")
    t = gc.placeholder((None,), "int32", name="t")
    W1 = gc.Parameter(rng.standard_normal((200, 96)).astype(np.float32) * 0.1, name="W1")
    b1 = gc.Parameter(np.zeros(96, np.float32), name="b1")
    W2 = gc.Parameter(rng.standard_normal((96, 200)).astype(np.float32) * 0.1, name="W2")
    params = [W1, b1, W2]
    loss = gc.softmax_cross_entropy(gc.relu(x @ W1 + b1) @ W2, t)
    grads = gc.grad(loss, params)
    step = gc.compile([x, t], [loss] + extra_outputs(params),
                      updates=[(p, p - 0.05 * g) for p, g in zip(params, grads)],
                      backend=backend)
    return step, params


@pytest.mark.parametrize("outputs", ["loss", "loss+W1"])
def test_sgd_steps_match_numpy_with_and_without_the_fused_update(outputs):
    extra = (lambda ps: []) if outputs == "loss" else (lambda ps: [ps[0]])
    steps = {}
    for backend in ("cpu", "numpy"):
        steps[backend] = _mlp(np.random.default_rng(0), backend, extra)
    data = np.random.default_rng(1)
    for _ in range(4):
        xv = data.standard_normal((300, 200)).astype(np.float32)
        tv = data.integers(0, 200, 300).astype(np.int32)
        got = steps["cpu"][0](xv, tv)
        want = steps["numpy"][0](xv, tv)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-6)
    for p, q in zip(steps["cpu"][1], steps["numpy"][1]):
        np.testing.assert_allclose(p.value, q.value, rtol=2e-4, atol=1e-6)
    plan = steps["cpu"][0].executable.describe(300)
    fused = plan.count("* product, accumulated")
    if outputs == "loss":
        assert fused == 2  # W1 and W2
    else:
        assert fused == 1  # W1 is also an output (read after the product): W2 only
    # b1's gradient is a sum over the batch: its update runs after that reduction's loop

    assert plan.count("* reduction, in place after the loop") == 1


def test_an_output_reading_the_parameter_sees_its_old_value():
    rng = np.random.default_rng(3)
    x = gc.placeholder((None, 128), name="x")
    W = gc.Parameter(rng.standard_normal((128, 128)).astype(np.float32) * 0.1, name="W")
    h = x @ W
    loss = gc.sum(h * h)
    (gW,) = gc.grad(loss, [W])
    # the second output reads W: whether or not the update is fused, it sees the old W
    f = gc.compile([x], [loss, gc.sum(W * 2.0)], updates=[(W, W - 0.01 * gW)])
    W0 = W.value
    xv = rng.standard_normal((300, 128)).astype(np.float32)
    _loss_v, s = f(xv)
    np.testing.assert_allclose(s, 2 * W0.sum(), rtol=1e-5)
    want = W0 - 0.01 * (2 * xv.astype(np.float64).T @ (xv.astype(np.float64) @ W0))
    np.testing.assert_allclose(W.value, want, rtol=1e-3, atol=1e-3)


def test_small_weights_accumulate_through_the_small_matrix_kernel():
    rng = np.random.default_rng(4)
    x = gc.placeholder((None, 8), name="x")
    W = gc.Parameter(rng.standard_normal((8, 8)).astype(np.float32), name="W")
    loss = gc.sum(gc.tanh(x @ W))
    (gW,) = gc.grad(loss, [W])
    for lr in (0.1, 1.0):  # 1.0: the multiplication is simplified away
        W.value = rng.standard_normal((8, 8)).astype(np.float32)
        W0 = W.value
        f = gc.compile([x], loss, updates=[(W, W - lr * gW)])
        assert "fused update" in f.executable.describe(16)
        assert "acc_tn(" in f.executable.bind(16).source  # 8*8*16 is below the crossover
        xv = rng.standard_normal((16, 8)).astype(np.float32)
        f(xv)
        g = xv.T @ (1 - np.tanh(xv @ W0) ** 2)
        np.testing.assert_allclose(W.value, W0 - lr * g, rtol=1e-4, atol=1e-5)


def test_bias_update_after_the_reduction_matches_numpy_and_respects_later_readers():
    rng = np.random.default_rng(5)
    x = gc.placeholder((None, 6), name="x")
    b = gc.Parameter(rng.standard_normal(6).astype(np.float32), name="b")
    loss = gc.sum(gc.tanh(x + b))
    (gb,) = gc.grad(loss, [b])
    for extra in ([], [gc.sum(b * 3.0)]):
        b.value = rng.standard_normal(6).astype(np.float32)
        b0 = b.value
        f = gc.compile([x], [loss] + extra, updates=[(b, b - 0.5 * gb)])
        xv = rng.standard_normal((40, 6)).astype(np.float32)
        out = f(xv)
        want = b0 - 0.5 * (1 - np.tanh(xv + b0) ** 2).sum(axis=0)
        np.testing.assert_allclose(b.value, want, rtol=1e-4, atol=1e-5)
        if extra:  # an output reads b: it must see the old value
            np.testing.assert_allclose(out[1], 3 * b0.sum(), rtol=1e-5)


def test_a_64_64_10_sgd_step_takes_vectorized_products_for_its_weight_gradients():
    # the user's first experiment (issue: batch 64 ran 2.5x slower than 65): every weight
    # gradient x.T @ g runs through BLAS or a small-matrix loop whose inner loop vectorizes
    import re

    import numba
    from graphc.kernels.cpu import nn

    from graphc.plan import MatmulStep

    rng = np.random.default_rng(0)
    x = gc.placeholder((None, 64), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    W1 = gc.Parameter(rng.standard_normal((64, 64)).astype(np.float32) * 0.1, name="W1")
    b1 = gc.Parameter(np.zeros(64, np.float32), name="b1")
    W2 = gc.Parameter(rng.standard_normal((64, 10)).astype(np.float32) * 0.1, name="W2")
    b2 = gc.Parameter(np.zeros(10, np.float32), name="b2")
    loss = gc.softmax_cross_entropy(gc.linear(gc.relu(gc.linear(x, W1, b1)), W2, b2), t)
    params = [W1, b1, W2, b2]
    step = gc.compile([x, t], loss,
                      updates=[(p, p - 0.1 * g) for p, g in zip(params, gc.grad(loss, params))])
    plan = step.executable.plan
    weight_grads = [s for s in plan.steps if isinstance(s, MatmulStep) and s.update]
    assert {s.update.param.name for s in weight_grads} == {"W1", "W2"}
    for batch in (1, 16, 64, 65, 128, 256):
        source = step.executable.bind(batch).source
        calls = [ln for ln in source.splitlines() if "in place" in ln and "matmul" in ln]
        assert len(calls) == 2, source
        assert all(ln.lstrip().startswith(("gemm(float32_gemm_addr, one_thread,", "acc_tn("))
                   for ln in calls), calls
        # every product of this step is below ONE_THREAD_MAX_MNK: one OpenBLAS thread
        # (from batch 128 OpenBLAS split them over two, and the step took twice as long)
        assert "all_threads" not in source, source
    # acc_tn takes x.T @ g through mm_tn: its inner loop must be a vector loop
    mm_tn = numba.njit(cache=False, error_model="numpy",
                       fastmath={"reassoc", "contract", "nsz"})(nn.mm_tn.py_func)
    a = np.zeros((64, 64), np.float32)
    mm_tn(a, a, np.zeros((64, 64), np.float32))
    (llvm,) = mm_tn.inspect_llvm().values()
    assert re.search(r"fadd[^\n]*<(8|16) x float>|fmul[^\n]*<(8|16) x float>", llvm)


def _product(line: str) -> str:
    """A runner line's product kernel: mm_*/acc_* (graphc's loops), gemm (OpenBLAS on its
    threads) or gemm_1t (on one thread)."""
    name, args = line.strip().split("(", 1)
    if name == "gemm":
        return "gemm_1t" if args.split(", ")[1] == "one_thread" else "gemm"
    return name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_batch_of_one_or_two_takes_the_loops_and_matches_numpy(dtype):
    """One or two rows (a GEMV) take graphc's loops whatever m*n*k (OpenBLAS's packing is
    never reused there: loops 0.3-0.7x its time up to 1024 x 1024); three rows take the
    size crossover again; an outer product (inner size 1) takes the loops in nn/tn."""
    from graphc.kernels.cpu.gemm_call import ONE_THREAD_MAX_MNK

    rng = np.random.default_rng(1)
    x = gc.placeholder((None, 512), dtype, name="x")
    W = gc.Parameter(rng.standard_normal((512, 1024)).astype(dtype) * 0.05, name="W")
    y = gc.sum(gc.relu(x @ W))
    (gw,) = gc.grad(y, [W])
    f = gc.compile([x], [y, gw], backend="cpu")

    def products(batch):
        src = f.executable.bind(batch).source
        return [_product(ln) for ln in src.splitlines() if "= matmul" in ln]

    assert products(1) == ["mm_nn", "mm_tn"]         # the GEMV and the outer product
    assert products(2)[0] == "mm_nn"
    # one BLAS thread below ONE_THREAD_MAX_MNK multiply-adds, the pool of them above
    limit = ONE_THREAD_MAX_MNK[dtype]
    for batch in (3, 4, 16):
        want = "gemm_1t" if batch * 512 * 1024 < limit else "gemm"
        assert products(batch)[0] == want and products(batch)[-1] == want, batch
    assert products(16) == ["gemm", "gemm"]
    for batch in (1, 2, 3):
        xv = rng.standard_normal((batch, 512)).astype(dtype)
        h = xv @ W.value
        got = f(xv)
        np.testing.assert_allclose(got[0], np.maximum(h, 0).sum(), rtol=1e-4)
        np.testing.assert_allclose(got[1], xv.T @ (h > 0).astype(dtype), rtol=1e-4,
                                   atol=1e-4)


def test_a_large_product_keeps_openblas_threads_and_a_small_one_runs_on_one():
    from graphc.kernels.cpu.gemm_call import ONE_THREAD_MAX_MNK

    limit = ONE_THREAD_MAX_MNK["float32"]
    x = gc.placeholder((None, 784), name="x")
    W = gc.Parameter(np.zeros((784, 1000), np.float32), name="W")
    V = gc.Parameter(np.zeros((1000, 10), np.float32), name="V")
    f = gc.compile([x], gc.relu(x @ W) @ V)
    assert 128 * 784 * 1000 >= limit > 128 * 1000 * 10
    source = f.executable.bind(128).source
    products = [_product(ln) for ln in source.splitlines() if "= matmul" in ln]
    assert products == ["gemm", "gemm_1t"], source


@pytest.mark.parametrize("kind", ["product", "reduction", "same text twice"])
def test_one_value_updating_two_parameters_reaches_both(kind):
    """W <- v and W2 <- v for one tensor v (or two equal expressions, which CSE merges):
    the value is not fused into the product or the reduction in place (it would reach W
    alone: W2 had kept its old value), and both parameters take it."""
    x = gc.placeholder((None, 3), name="x")
    g = gc.placeholder((None, 4), name="g")
    results = {}
    for backend in ("numpy", "cpu"):
        if kind == "reduction":
            W = gc.Parameter(np.ones(4, np.float32), name="b")
            W2 = gc.Parameter(np.zeros(4, np.float32), name="b2")
            v = v2 = W - 0.1 * gc.sum(g * 2.0, axis=0)
        else:
            W = gc.Parameter(np.ones((3, 4), np.float32), name="W")
            W2 = gc.Parameter(np.zeros((3, 4), np.float32), name="W2")
            v = W - 0.1 * gc.matmul(gc.transpose(x), g)
            v2 = v if kind == "product" else W - 0.1 * gc.matmul(gc.transpose(x), g)
        f = gc.compile([x, g], gc.sum(x), updates=[(W, v), (W2, v2)], backend=backend)
        f(np.ones((2, 3), np.float32), np.ones((2, 4), np.float32))
        results[backend] = (W.value, W2.value)
        if backend == "cpu":
            assert "the same value is another parameter's update too" in f.dump()
    np.testing.assert_allclose(results["cpu"][0], results["numpy"][0], rtol=1e-6)
    np.testing.assert_allclose(results["cpu"][1], results["numpy"][1], rtol=1e-6)
    np.testing.assert_allclose(results["cpu"][1], results["cpu"][0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("k", [2, 10, 15, 16, 40])
@pytest.mark.parametrize("update", [False, True])
def test_a_times_b_transposed_with_a_short_inner_size_multiplies_a_packed_copy(k, update, dtype):
    """A @ B.T with K < NT_PACK_BELOW_K copies B.T into a buffer of its own and multiplies
    that (OpenBLAS's nt kernels were 1.2-3.6x slower there): the same numbers, as a plain
    product and as a fused update W - lr * (A @ B.T)."""
    from graphc.backends.cpu.runner import NT_PACK_BELOW_K

    rng = np.random.default_rng(k)
    a = gc.placeholder((64 if update else None, k), dtype, name="a")
    b = gc.placeholder((300, k), dtype, name="b")
    w = gc.Parameter(rng.standard_normal((64, 300)).astype(dtype), name="w")
    w0 = w.value
    av = rng.standard_normal((64, k)).astype(dtype)
    bv = rng.standard_normal((300, k)).astype(dtype)
    product = a @ gc.transpose(b)
    if update:
        f = gc.compile([a, b], gc.sum(w), updates=[(w, w - 0.5 * product)])
        f(av, bv)
        np.testing.assert_allclose(w.value, w0 - 0.5 * (av @ bv.T), rtol=1e-5, atol=1e-5)
    else:
        f = gc.compile([a, b], product)
        np.testing.assert_allclose(f(av, bv), av @ bv.T, rtol=1e-5, atol=1e-5)
    (run,) = f.executable.runners.values()
    source = run.source
    assert ("packed_b" in source) == (k < NT_PACK_BELOW_K), source
