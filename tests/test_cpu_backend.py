"""The cpu backend as a user sees it: parameters and updates, ownership of returned arrays,
batch sizes, threads, run-time checks, the kernel cache across processes, options."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import traceback

import numpy as np
import pytest
from graphc.kernels.codegen.elementwise import FULL_FASTMATH

import graphc as gc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _linear_regression(backend, W0, lr=0.1):
    x = gc.placeholder((None, 3), name="x")
    t = gc.placeholder((None, 2), name="t")
    W = gc.Parameter(W0, name="W")
    loss = gc.mean_squared_error(x @ W, t)
    (gW,) = gc.grad(loss, [W])
    step = gc.compile([x, t], [loss], updates=[(W, W - lr * gW)], backend=backend)
    return step, W


def _data(seed, n=16):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 3)).astype(np.float32),
            rng.standard_normal((n, 2)).astype(np.float32))


# --- parameters and updates -------------------------------------------------------------------
def test_sgd_updates_match_the_numpy_backend_over_several_steps():
    W0 = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    cpu, Wc = _linear_regression("cpu", W0)
    ref, Wr = _linear_regression("numpy", W0)
    losses = []
    for i in range(6):
        xv, tv = _data(i)
        (lc,) = cpu(xv, tv)
        (lr_,) = ref(xv, tv)
        np.testing.assert_allclose(lc, lr_, rtol=1e-5)
        np.testing.assert_allclose(Wc.value, Wr.value, rtol=1e-5, atol=1e-7)
        losses.append(float(lc))
    assert not np.array_equal(Wc.value, W0)           # the updates were applied


def test_updates_apply_all_at_once_swap():
    x = gc.placeholder((), name="x")
    A = gc.Parameter(np.array([1.0, 2.0], np.float32), name="A")
    B = gc.Parameter(np.array([3.0, 4.0], np.float32), name="B")
    f = gc.compile([x], [x * 2.0], updates=[(A, B), (B, A)])
    f(1.0)
    np.testing.assert_array_equal(A.value, [3.0, 4.0])
    np.testing.assert_array_equal(B.value, [1.0, 2.0])
    f(1.0)
    np.testing.assert_array_equal(A.value, [1.0, 2.0])
    np.testing.assert_array_equal(B.value, [3.0, 4.0])


def test_updates_apply_all_at_once_swap_of_views():
    x = gc.placeholder((), name="x")
    A = gc.Parameter(np.arange(6, dtype=np.float64).reshape(2, 3), name="A")
    B = gc.Parameter(np.arange(6, 12, dtype=np.float64).reshape(3, 2), name="B")
    f = gc.compile([x], [x * 2.0], updates=[(A, B.reshape(2, 3)), (B, A.reshape(3, 2))])
    f(1.0)
    np.testing.assert_array_equal(A.value.ravel(), np.arange(6, 12))
    np.testing.assert_array_equal(B.value.ravel(), np.arange(6))


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_an_update_reading_another_updated_parameter_sees_its_old_value(backend):
    x = gc.placeholder((), name="x")
    A = gc.Parameter(np.array([1.0, 2.0], np.float32), name="A")
    B = gc.Parameter(np.array([10.0, 20.0], np.float32), name="B")
    C = gc.Parameter(np.zeros((2, 2), np.float32), name="C")
    f = gc.compile([x], [x + 0.0], updates=[
        (A, A + x),                 # an elementwise kernel that could write A in place
        (B, A),                     # ... but B must get the old A
        (C, C + gc.sum(A) * x),     # ... and so must a reduction of A
    ], backend=backend)
    f(1.0)
    np.testing.assert_array_equal(A.value, [2.0, 3.0])
    np.testing.assert_array_equal(B.value, [1.0, 2.0])
    np.testing.assert_array_equal(C.value, np.full((2, 2), 3.0))


def test_an_update_does_not_change_outputs_that_read_the_parameter():
    x = gc.placeholder((), name="x")
    A = gc.Parameter(np.array([1.0, 2.0], np.float32), name="A")
    Ar = A.reshape(2, 1)               # a view made before the update's expression
    new_A = A + x
    f = gc.compile([x], [A, Ar, gc.sum(gc.exp(Ar))], updates=[(A, new_A)])
    a, ar, s = f(1.0)
    np.testing.assert_array_equal(a, [1.0, 2.0])
    np.testing.assert_array_equal(ar, [[1.0], [2.0]])
    np.testing.assert_allclose(s, np.exp(1.0) + np.exp(2.0), rtol=1e-6)
    np.testing.assert_array_equal(A.value, [2.0, 3.0])


def test_a_parameter_shared_by_a_train_step_and_an_eval_function():
    W0 = np.random.default_rng(1).standard_normal((3, 2)).astype(np.float32)
    step, W = _linear_regression("cpu", W0)
    x = step.inputs[0]
    evaluate = gc.compile([x], x @ W)
    xv, tv = _data(3)
    np.testing.assert_allclose(evaluate(xv), xv @ W0, rtol=1e-5)
    step(xv, tv)
    W1 = W.value
    assert not np.allclose(W1, W0)
    np.testing.assert_allclose(evaluate(xv), xv @ W1, rtol=1e-5)


def test_parameter_value_assignment_is_checked_and_seen_by_compiled_functions():
    W = gc.Parameter(np.ones((2, 2), np.float32), name="W")
    x = gc.placeholder((None, 2), name="x")
    f = gc.compile([x], x @ W)
    xv = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(f(xv), [[3.0, 3.0]])
    W.value = np.array([[1.0, 0.0], [0.0, 2.0]])       # float64 -> float32: same kind
    assert W.value.dtype == np.float32
    np.testing.assert_array_equal(f(xv), [[1.0, 4.0]])
    with pytest.raises(ValueError, match="shape"):
        W.value = np.ones((3, 2), np.float32)
    with pytest.raises(TypeError, match="float32"):
        W.value = np.ones((2, 2), np.complex64)
    I = gc.Parameter(np.zeros(3, np.int64), name="I")
    with pytest.raises(TypeError):
        I.value = np.ones(3, np.float32)
    np.testing.assert_array_equal(f(xv), [[1.0, 4.0]])  # failed assignments changed nothing
    v = W.value
    v[...] = 100.0                                       # .value is a copy
    np.testing.assert_array_equal(f(xv), [[1.0, 4.0]])


# --- ownership of returned arrays ---------------------------------------------------------------
def test_returned_arrays_belong_to_the_caller():
    x = gc.placeholder((None, 4), name="x")
    W = gc.Parameter(np.eye(4, dtype=np.float32), name="W")
    h = gc.exp(x)
    f = gc.compile([x], [h * 2.0, gc.sum(h), h[0:2], gc.relu(h @ W)])
    a = np.ones((3, 4), np.float32)
    first = f(a)
    saved = [r.copy() for r in first]
    f(a * 3.0)
    f(a * -1.0)
    for r, s in zip(first, saved):
        np.testing.assert_array_equal(r, s)


def test_outputs_that_are_a_parameter_or_a_feed_are_copies():
    x = gc.placeholder((None, 2), name="x")
    W = gc.Parameter(np.ones((2, 2), np.float32), name="W")
    f = gc.compile([x], [x, W, x.reshape(-1, 2, 1), W[0], gc.expand_dims(x, 0), W @ W])
    xv = np.array([[1.0, 2.0]], np.float32)
    out = f(xv)
    for r in out[:5]:
        assert not np.shares_memory(r, xv) and not np.shares_memory(r, W.data)
    out[0][...] = 7.0
    out[1][...] = 7.0
    out[3][...] = 7.0
    np.testing.assert_array_equal(xv, [[1.0, 2.0]])
    np.testing.assert_array_equal(W.value, np.ones((2, 2)))
    np.testing.assert_array_equal(f(xv)[5], np.full((2, 2), 2.0))


def test_a_numel_output_is_the_callers_array():
    # regression: numel's per-N constant was handed out itself; writing to it changed later
    # results, including a mean that divides by it
    x = gc.placeholder((None, 3), name="x")
    f = gc.compile([x], [gc.numel(x), gc.mean(x)])
    xv = np.ones((2, 3), np.float32)
    count, mean = f(xv)
    assert count == 6 and mean == 1.0
    count[...] = 99
    count2, mean2 = f(xv)
    assert count2 == 6 and mean2 == 1.0

def test_an_output_listed_twice_is_two_arrays():
    x = gc.placeholder((None, 2), name="x")
    y = gc.exp(x)
    a, b = gc.compile([x], [y, y])(np.zeros((1, 2), np.float32))
    assert a is not b and not np.shares_memory(a, b)


# --- batch sizes ---------------------------------------------------------------------------------
def test_a_new_batch_size_does_not_recompile():
    x = gc.placeholder((None, 5), name="x")
    W = gc.placeholder((5, 3), name="W")
    y = gc.sum(gc.tanh(x @ W + 1.0) * 2.0, axis=1)
    f = gc.compile([x, W], y)
    ex = f.executable
    lowered = dict(ex.plan.lowered)
    Wv = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    for n in (4, 9, 1, 4):
        xv = np.random.default_rng(n).standard_normal((n, 5)).astype(np.float32)
        compiled_before = sum(1 for e in ex.kernel_log if e["status"] == "compiled")
        entries_before = len(ex.kernel_log)
        out = f(xv, Wv)
        assert out.shape == (n,)
        np.testing.assert_allclose(out, np.sum(np.tanh(xv @ Wv + 1) * 2, axis=1), rtol=1e-5)
        assert len(ex.kernel_log) == entries_before
        assert sum(1 for e in ex.kernel_log if e["status"] == "compiled") == compiled_before
    assert ex.plan.lowered.keys() == lowered.keys()
    assert all(ex.plan.lowered[k] is lowered[k] for k in lowered)
    assert ex.bind(4) is not ex.bind(9)
    assert ex.bind(4) is ex.bind(4)


def test_a_big_endian_feed_is_converted():
    x = gc.placeholder((None, 3), name="x")
    f = gc.compile([x], [gc.exp(x) * 2.0, gc.sum(x)])
    xv = np.arange(6, dtype=">f4").reshape(2, 3)
    y, s = f(xv)
    np.testing.assert_allclose(y, np.exp(xv.astype(np.float32)) * 2, rtol=1e-6)
    assert s == 15.0

# --- threads -------------------------------------------------------------------------------------
def test_threads_calling_one_function_get_their_own_results():
    x = gc.placeholder((None, 8), name="x")
    W = gc.Parameter(np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3), name="W")
    h = gc.sigmoid(x * 0.5 + 1.0)
    f = gc.compile([x], [gc.sum(h, axis=1), gc.softmax(h @ W)])
    Wv = W.value
    errors = []

    def expect(xv):
        hv = 1 / (1 + np.exp(-(xv * 0.5 + 1)))
        z = hv @ Wv
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return hv.sum(axis=1), e / e.sum(axis=1, keepdims=True)

    def worker(k):
        rng = np.random.default_rng(100 + k)
        try:
            for i in range(50):
                n = 2 + (k + i) % 5                      # different batch sizes too
                xv = rng.standard_normal((n, 8)).astype(np.float32)
                s, p = f(xv)
                es, ep = expect(xv)
                np.testing.assert_allclose(s, es, rtol=1e-5)
                np.testing.assert_allclose(p, ep, rtol=1e-5, atol=1e-7)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]


# --- failed calls --------------------------------------------------------------------------------
def test_a_call_with_a_bad_feed_raises_and_applies_no_update():
    W0 = np.ones((3, 2), np.float32)
    step, W = _linear_regression("cpu", W0)
    xv, tv = _data(0)
    with pytest.raises(gc.FeedError):
        step(xv[:, :2], tv)                            # wrong width
    with pytest.raises(gc.FeedError):
        step(xv, tv[:5])                               # batch sizes disagree
    with pytest.raises(gc.FeedTypeError):
        step(xv.astype(np.complex64), tv)              # unsafe cast
    with pytest.raises(gc.FeedError):
        step(xv)                                       # missing input
    np.testing.assert_array_equal(W.value, W0)
    step(xv, tv)
    assert not np.array_equal(W.value, W0)


@pytest.mark.parametrize("labels, bad", [
    (np.array([0, 2**31], np.int64), "2147483648"),
    (np.array([-2**31 - 1, 0], np.int64), "-2147483649"),
    (np.array([2**32, 0], np.uint64), "4294967296"),
])
def test_integers_that_do_not_fit_a_narrower_input_are_refused(labels, bad, backend):
    """int64 labels fed to an int32 input are cast as NumPy's same_kind allows, which had
    wrapped 2**31 to -2**31 silently; values that fit still pass."""
    t = gc.placeholder((None,), "int32", name="t")
    w = gc.Parameter(np.zeros(3, np.float32), name="w")
    step = gc.compile([t], gc.sum(gc.cast(t, "float32")) + gc.sum(w),
                      updates=[(w, w + 1.0)], backend=backend)
    with pytest.raises(gc.FeedError, match=f"input 't': the {labels.dtype} value {bad} does "
                                            f"not fit int32"):
        step(labels)
    np.testing.assert_array_equal(w.value, np.zeros(3, np.float32))
    step(np.array([0, 1], np.int64))
    np.testing.assert_array_equal(w.value, np.ones(3, np.float32))


def _classifier():
    x = gc.placeholder((None, 3), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    W = gc.Parameter(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), name="W")
    b = gc.Parameter(np.zeros(4, np.float32), name="b")
    loss = gc.softmax_cross_entropy(x @ W + b, t)   # this line is the op's location
    line = sys._getframe().f_lineno - 1
    gW, gb = gc.grad(loss, [W, b])
    step = gc.compile([x, t], [loss], updates=[(W, W - 0.5 * gW), (b, b - 0.5 * gb)])
    return step, [W, b], line


@pytest.mark.parametrize("bad", [4, -1, 100])
def test_a_label_out_of_range_raises_naming_the_op_and_line_and_changes_nothing(bad):
    step, params, line = _classifier()
    before = [p.value for p in params]
    xv = np.ones((3, 3), np.float32)
    with pytest.raises(ValueError) as info:
        step(xv, np.array([0, bad, 1]))
    exc = info.value
    assert isinstance(exc, gc.RuntimeCheckError)
    message = str(exc)
    assert "softmax_cross_entropy" in message
    assert f"{os.path.basename(__file__)}:{line}" in message
    text = "".join(traceback.format_exception(exc)).lower()
    assert "numba" not in text and "nopython" not in text
    for p, v in zip(params, before):
        np.testing.assert_array_equal(p.value, v)
    step(xv, np.array([0, 3, 1]))                      # still works afterwards
    assert not np.array_equal(params[0].value, before[0])


def test_an_integer_index_out_of_range_raises_naming_getitem():
    table = gc.placeholder((5, 2), name="table")
    idx = gc.placeholder((None,), "int64", name="idx")
    rows = gc.exp(table)[idx]
    f = gc.compile([table, idx], rows)
    tv = np.zeros((5, 2), np.float32)
    np.testing.assert_array_equal(f(tv, np.array([4, 0])), np.ones((2, 2)))
    with pytest.raises(ValueError) as info:
        f(tv, np.array([0, 5]))
    assert isinstance(info.value, gc.RuntimeCheckError)
    assert "getitem" in str(info.value)
    assert os.path.basename(__file__) in str(info.value)



# --- NaN and infinity semantics, as NumPy's ---------------------------------------------------
def _nan_inf_cases():
    return {
        "nan": np.array([[1, np.nan, 3, 2], [np.nan, 0, 0, 0], [0, 1, 2, np.nan]], np.float32),
        "masked": np.array([[-np.inf, 0, 1, 2], [0, -np.inf, -np.inf, 3],
                            [-np.inf, -np.inf, 0, 1]], np.float32),
        "ties": np.array([[1, 3, 3, 2], [0, 0, 0, 0], [5, 1, 5, 5]], np.float32),
    }


def test_reductions_argmax_and_softmax_follow_numpy_on_nan_and_inf():
    # regressions: max/min reductions dropped NaNs (builtin max), argmax skipped them, and the
    # softmax kernels started their sums at x[r, 0] * 0, which is NaN for a -inf (masked) logit
    x = gc.placeholder((None, 4), "float32", name="x")
    t = gc.placeholder((None,), "int64", name="t")
    outs = [gc.max(x, axis=1), gc.max(x), gc.min(x, axis=0), gc.max(x * 2.0, axis=0),
            gc.argmax(x, axis=1), gc.accuracy(x, t), gc.softmax(x), gc.log_softmax(x),
            gc.softmax_cross_entropy(x, t)]
    (gx,) = gc.grad(outs[-1], [x])
    outs.append(gx)
    cpu = gc.compile([x, t], outs)
    ref = gc.compile([x, t], outs, backend="numpy")
    tv = np.array([2, 0, 3])
    for name, xv in _nan_inf_cases().items():
        with np.errstate(all="ignore"):
            want = ref(xv, tv)
        got = cpu(xv, tv)
        for k, (a, b) in enumerate(zip(got, want)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True,
                                       err_msg=f"{name}: output {k} ({outs[k].node.op})")


def test_small_matmuls_with_an_infinite_element_follow_numpy():
    # regression: the transposed-b small-matrix loops started their sums at a[i, 0] * 0
    a = gc.placeholder((None, 3), "float32", name="a")
    b = gc.placeholder((2, 3), "float32", name="b")
    c = gc.placeholder((3, None), "float32", name="c")
    outs = [a @ b.T, c.T @ b.T, a @ c, b @ a.T]
    cpu = gc.compile([a, b, c], outs)
    ref = gc.compile([a, b, c], outs, backend="numpy")
    av = np.array([[np.inf, 1, 2], [1, 2, 3]], np.float32)
    bv = np.ones((2, 3), np.float32)
    cv = np.ones((3, 2), np.float32)
    cv[0, 0] = -np.inf
    with np.errstate(all="ignore"):
        want = ref(av, bv, cv)
    for k, (x, y) in enumerate(zip(cpu(av, bv, cv), want)):
        np.testing.assert_array_equal(x, y, err_msg=f"output {k}")
    # and an empty inner dimension
    z = gc.placeholder((None, 0), "float32", name="z")
    w = gc.placeholder((2, 0), "float32", name="w")
    out = gc.compile([z, w], z @ w.T)(np.zeros((3, 0), np.float32), np.zeros((2, 0), np.float32))
    np.testing.assert_array_equal(out, np.zeros((3, 2)))

def test_elementwise_maximum_propagates_nan_from_either_side():
    x = gc.placeholder((None, 2), "float32", name="x")
    f = gc.compile([x], [gc.maximum(0.5, x), gc.minimum(0.5, x), gc.clip(x, -1.0, 1.0)])
    for r in f(np.array([[np.nan, 2.0]], np.float32)):
        assert np.isnan(r[0, 0])

# --- kernels across processes ---------------------------------------------------------------
_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    import graphc as gc

    x = gc.placeholder((None, 6), "float64", name="x")
    b = gc.placeholder((6,), "float64", name="b")
    h = gc.tanh(x * 3.0 + b)
    y = gc.sum(h * h, axis=1)
    z = gc.max(gc.exp(h) - 1.5, axis=0)
    f = gc.compile([x, b], [y, z])
    y_v, z_v = f(np.ones((4, 6)), np.arange(6.0))
    print(json.dumps({{"log": f.executable.kernel_log, "y": y_v.tolist(), "z": z_v.tolist()}}))
""")


def _run_script(tmp_path, cache):
    script = tmp_path / "prog.py"
    script.write_text(_SCRIPT.format(root=ROOT))
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache), GRAPHC_LOG="compile")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("graphc: ") and
             (" compiled in " in ln or " loaded from cache in " in ln)]
    return result, lines


def test_kernels_are_compiled_once_and_loaded_from_the_cache_by_a_second_process(tmp_path):
    cache = tmp_path / "cache"
    first, first_lines = _run_script(tmp_path, cache)
    second, second_lines = _run_script(tmp_path, cache)
    assert first["log"] and len(first_lines) == len(first["log"])
    assert all(e["status"] == "compiled" for e in first["log"])
    assert all(" compiled in " in ln for ln in first_lines)
    assert len(second["log"]) == len(first["log"])
    assert all(e["status"] == "loaded" for e in second["log"]), second["log"]
    assert len(second_lines) == len(first_lines)
    assert all(" loaded from cache in " in ln for ln in second_lines)
    assert sorted(e["module"] for e in first["log"]) == sorted(e["module"] for e in second["log"])
    assert first["y"] == second["y"] and first["z"] == second["z"]
    h = np.tanh(np.ones((4, 6)) * 3.0 + np.arange(6.0))
    np.testing.assert_allclose(first["y"], np.sum(h * h, axis=1), rtol=1e-12)
    np.testing.assert_allclose(first["z"], np.max(np.exp(h) - 1.5, axis=0), rtol=1e-12)


# --- options -------------------------------------------------------------------------------------
def test_fastmath_results_are_close():
    x = gc.placeholder((None, 7), name="x")
    y = gc.sum(gc.exp(gc.tanh(x) * 0.5) / (1.0 + x * x), axis=1)
    g = gc.grad(gc.sum(y), [x])[0]
    xv = np.random.default_rng(4).standard_normal((6, 7)).astype(np.float32)
    exact = gc.compile([x], [y, g])(xv)
    fast_fn = gc.compile([x], [y, g], fastmath=True)
    assert fast_fn.executable.plan.options.fastmath is True
    assert all(low.spec.fastmath == FULL_FASTMATH for low in fast_fn.executable.plan.lowered.values())
    # the default is IEEE: no fast-math flag on any generated kernel
    exact_fn = gc.compile([x], [y, g])
    assert all(low.spec.fastmath == "False" for low in exact_fn.executable.plan.lowered.values())
    fast = fast_fn(xv)
    for a, b in zip(exact, fast):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)




def _compile_five_kernels(tag):
    x = gc.placeholder((None, 7), name="x")
    ys = [gc.sum(gc.exp(x * (k + tag)) - x, axis=1) for k in range(5)]  # a group each
    ys = [gc.max(y, axis=0) * (k + 2.5) for k, y in enumerate(ys)]
    return gc.compile([x], ys)


def test_a_long_first_compile_says_what_it_is_doing(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "fresh"))
    monkeypatch.delenv("GRAPHC_LOG", raising=False)
    tag = float(np.random.default_rng().integers(1 << 20))  # kernels new to this process
    _compile_five_kernels(tag)
    assert "graphc: compiling" in capfd.readouterr().err
    _compile_five_kernels(tag)  # cached now: nothing to say
    assert "graphc: compiling" not in capfd.readouterr().err
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "quiet"))
    monkeypatch.setenv("GRAPHC_LOG", "quiet")
    _compile_five_kernels(tag + 1)
    assert "graphc: compiling" not in capfd.readouterr().err


# --- the runner's first call binds its kernels' compiled code (runner._FirstCall) -----------
def _kernel_globals(f, n):
    from numba.core.dispatcher import Dispatcher

    g = f.executable.runners[n].__globals__
    return {k: v for k, v in g.items() if isinstance(v, Dispatcher) or
            type(v).__name__ == "builtin_function_or_method" and k not in ("FIRST",)}


def test_after_its_first_call_a_runner_calls_compiled_entry_points():
    from numba.core.dispatcher import Dispatcher

    x = gc.placeholder((None, 4), name="x")
    w = gc.Parameter(np.ones((4, 3), np.float32), name="w")
    f = gc.compile([x], gc.relu(x @ w) * 2.0, backend="cpu")
    xv = np.arange(8, dtype=np.float32).reshape(2, 4)
    first = f(xv)
    kernels = _kernel_globals(f, 2)
    assert kernels and not any(isinstance(v, Dispatcher) for v in kernels.values())
    ro = xv.copy()
    ro.flags.writeable = False  # another Numba type than the first feed's: the same code
    np.testing.assert_array_equal(f(ro), first)
    np.testing.assert_array_equal(first, np.maximum(xv @ np.ones((4, 3)), 0) * 2)


def test_a_kernel_called_with_two_signatures_keeps_its_dispatcher():
    from numba.core.dispatcher import Dispatcher

    x = gc.placeholder((None, 3), name="x")
    y = gc.placeholder((None, 3), "float64", name="y")
    a = gc.constant(np.ones((3, 2), np.float32))
    b = gc.constant(np.ones((3, 2), np.float64))
    f = gc.compile([x, y], [x @ a, y @ b], backend="cpu")
    out = f(np.ones((2, 3), np.float32), np.ones((2, 3)))
    np.testing.assert_array_equal(out[0], np.full((2, 2), 3.0))
    np.testing.assert_array_equal(out[1], np.full((2, 2), 3.0))
    products = [v for k, v in _kernel_globals(f, 2).items() if k.startswith("mm_")]
    assert products and all(isinstance(v, Dispatcher) for v in products)


def test_a_failed_first_call_leaves_the_runner_to_record_again():
    from numba.core.dispatcher import Dispatcher

    x = gc.placeholder((None, 3), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    f = gc.compile([x, t], gc.softmax_cross_entropy(x * 2.0, t), backend="cpu")
    xv = np.zeros((2, 3), np.float32)
    with pytest.raises(gc.RuntimeCheckError):
        f(xv, np.array([0, 5]))
    assert any(isinstance(v, Dispatcher) for v in _kernel_globals(f, 2).values())
    assert np.isclose(f(xv, np.array([0, 2])), np.log(3))
    assert not any(isinstance(v, Dispatcher) for v in _kernel_globals(f, 2).values())
