"""Property tests: random small graphs (elementwise ops, broadcasts, reductions, reshapes,
transposes, matmuls) and their gradients, compiled on the cpu backend with every pass on,
equal the numpy reference interpreter with no passes.

Every new graph structure compiles new kernels, so structures are drawn from a small
vocabulary (at most MAX_OPS ops on a (N, 4) value) and the examples are derandomized: a cold
kernel cache compiles the same, bounded set of kernels on every run.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import graphc as gc

C = 4
MAX_OPS = 3
RTOL = {"float32": 1e-4, "float64": 1e-10}
ATOL = {"float32": 1e-5, "float64": 1e-12}

# (name, needs): each op maps the current (N, C) value to a new (N, C) value
STEPS = [
    "add_bias", "mul_col", "sub_x", "scale", "relu", "sigmoid", "tanh", "exp_bounded",
    "where_pos", "where_cmp", "center_rows", "normalize_cols", "max_rows", "reshape_tanh",
    "matmul", "matmul_t", "gram",
]
# the final reduction: the output is cur, or cur reduced
FINALS = [None, ("sum", None, False), ("mean", 0, False), ("max", 1, False),
          ("sum", 1, True), ("mean", (0, 1), True)]


def _apply(step, cur, env):
    x, b, col, W = env["x"], env["b"], env["col"], env["W"]
    if step == "add_bias":
        return cur + b                                    # (C,) broadcast over rows
    if step == "mul_col":
        return cur * col                                  # (N, 1) broadcast over columns
    if step == "sub_x":
        return cur - x
    if step == "scale":
        return cur * 0.5 + 1.0                            # scalars
    if step == "relu":
        return gc.relu(cur)
    if step == "sigmoid":
        return gc.sigmoid(cur)
    if step == "tanh":
        return gc.tanh(cur)
    if step == "exp_bounded":
        return gc.exp(gc.tanh(cur))
    if step == "where_pos":
        return gc.where(cur > 0.0, cur, cur * 0.1)
    if step == "where_cmp":
        return gc.where(cur < b, b - cur, cur * col)
    if step == "center_rows":
        return cur - gc.mean(cur, axis=1, keepdims=True)  # reduction in the middle
    if step == "normalize_cols":
        return cur / (gc.sum(gc.sigmoid(cur), axis=0, keepdims=True) + 1.0)
    if step == "max_rows":
        return cur * gc.max(cur, axis=1, keepdims=True)
    if step == "reshape_tanh":
        return gc.tanh(cur.reshape(-1, 2, 2)).reshape(-1, C)
    if step == "matmul":
        return cur @ W
    if step == "matmul_t":
        return cur @ W.T
    if step == "gram":
        return x @ (cur.T @ x) * 0.1                      # transposed operand, (C, C) inner
    raise AssertionError(step)


def _build(steps, final, dtype):
    x = gc.placeholder((None, C), dtype, name="x")
    b = gc.placeholder((C,), dtype, name="b")
    col = gc.placeholder((None, 1), dtype, name="col")
    W = gc.placeholder((C, C), dtype, name="W")
    env = {"x": x, "b": b, "col": col, "W": W}
    cur = x
    for step in steps:
        cur = _apply(step, cur, env)
    if final is not None:
        kind, axis, keepdims = final
        cur = getattr(gc, kind)(cur, axis=axis, keepdims=keepdims)
    inputs = [x, b, col, W]
    loss = gc.sum(cur * cur) if cur.shape else cur * cur
    grads = gc.grad(loss, inputs)
    outputs = [cur] + [g for g in grads if g is not None]
    return inputs, outputs


def _feeds(dtype, n, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-2, 2, (n, C)).astype(dtype),
            rng.uniform(-1, 1, (C,)).astype(dtype),
            rng.uniform(0.5, 1.5, (n, 1)).astype(dtype),
            (rng.standard_normal((C, C)) * 0.5).astype(dtype)]


def _assert_close(got, want, dtype):
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=ATOL[dtype] * scale)


graphs = st.tuples(
    st.lists(st.sampled_from(STEPS), min_size=1, max_size=MAX_OPS),
    st.sampled_from(FINALS),
    st.sampled_from(["float32", "float64"]),
    st.integers(1, 5),                       # batch size N
    st.integers(0, 2**16),                   # data seed
)


# no shrinking: every shrink step compiles new kernels, and the examples are small already
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@given(graphs)
def test_random_graphs_and_gradients_match_the_reference(case):
    steps, final, dtype, n, seed = case
    inputs, outputs = _build(steps, final, dtype)
    cpu = gc.compile(inputs, outputs, backend="cpu")
    ref = gc.compile(inputs, outputs, backend="numpy", optimize=False)
    feeds = _feeds(dtype, n, seed)
    got = cpu(*feeds)
    want = ref(*feeds)
    assert len(got) == len(want) == len(outputs)
    for g, w in zip(got, want):
        _assert_close(g, w, dtype)
    # a second batch size through the same compiled function
    feeds2 = _feeds(dtype, n + 2, seed + 1)
    for g, w in zip(cpu(*feeds2), ref(*feeds2)):
        _assert_close(g, w, dtype)


# every vocabulary step at least once, in a few long chains (one compile each)
CHAINS = [STEPS[i::3] for i in range(3)]


@pytest.mark.parametrize("chain", CHAINS, ids=["+".join(c[:2]) for c in CHAINS])
def test_every_vocabulary_step_in_a_chain(chain):
    assert sorted(s for c in CHAINS for s in c) == sorted(STEPS)
    inputs, outputs = _build(chain, ("sum", 1, False), "float32")
    cpu = gc.compile(inputs, outputs)
    ref = gc.compile(inputs, outputs, backend="numpy")
    feeds = _feeds("float32", 3, 11)
    for g, w in zip(cpu(*feeds), ref(*feeds)):
        _assert_close(g, w, "float32")
