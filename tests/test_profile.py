"""Function.profile and `graphc profile`: a row per plan step (per node on the numpy
backend) that names what it runs and the user's line, times that add up to the call, and
parameters and random streams left as they were. Nothing here asserts a speed."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import OP_BACKENDS, backend_id

import graphc as gc
from graphc.cli import main as cli_main
from graphc.errors import FeedError
from graphc.profile import END, FEEDS

THIS_FILE = __file__.rsplit("/", 1)[-1]


def _mlp_step(backend, hidden=8, seed=0):
    """A 6-hidden-8-3 SGD step and its parameters (a twin built with the same seed is
    the same step)."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder((None, 6), "float32", name="x")
    t = gc.placeholder((None,), "int64", name="t")
    w1 = gc.Parameter(rng.standard_normal((6, hidden)).astype(np.float32) * 0.3, name="w1")
    b1 = gc.Parameter(np.zeros(hidden, np.float32), name="b1")
    w2 = gc.Parameter(rng.standard_normal((hidden, 3)).astype(np.float32) * 0.3, name="w2")
    params = [w1, b1, w2]
    loss = gc.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2, t)
    updates = [(p, p - 0.5 * g) for p, g in zip(params, gc.grad(loss, params))]
    return gc.compile([x, t], loss, updates=updates, backend=backend), params


def _feeds(n=5):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("backend", OP_BACKENDS, ids=backend_id)
def test_profile_rows_cover_the_plan_and_leave_parameters_as_they_were(backend):
    f, params = _mlp_step(backend)
    twin, _ = _mlp_step(backend)
    x, t = _feeds()
    before = [p.value for p in params]
    prof = f.profile(x, t, repeat=3)
    for p, value in zip(params, before):
        np.testing.assert_array_equal(p.value, value, err_msg=f"profile changed {p.name}")
    # the next call is the step's first: the same loss and update as the twin's first call
    np.testing.assert_array_equal(f(x, t), twin(x, t))
    if backend == "numpy":
        assert len(prof.rows) == 1 + sum(1 for n in f.executable.nodes if n.op not in (
            "placeholder", "parameter", "constant"))
    else:
        keys = [r.step for r in prof.rows]
        steps = [s.index for s in f.executable.plan.steps]
        assert keys == ([FEEDS] if backend == "cuda" else []) + steps + [END]
    assert prof.rows[-1].step == END
    assert all(r.seconds >= 0 for r in prof.rows)
    assert prof.seconds == pytest.approx(sum(r.seconds for r in prof.rows))
    assert prof.seconds > 0
    assert prof.n == 5 and prof.repeat == 3 and prof.backend == backend
    # every step names what it runs and the line of this file that made it
    named = [r for r in prof.rows if r.step not in (END, FEEDS)]
    assert named and all(f"{THIS_FILE}:" in r.where for r in named), named
    assert any("matmul" in r.what for r in named)
    assert any("softmax_cross_entropy" in r.what for r in named)
    text = str(prof)
    assert text.splitlines()[0].startswith(f"profile: {backend} backend, batch size 5")
    assert len(text.splitlines()) == 2 + len(prof.rows)
    assert prof.top(2) == sorted(prof.rows, key=lambda r: r.seconds, reverse=True)[:2]


def test_profile_names_the_products_operands_and_the_updates_they_fuse():
    f, _ = _mlp_step("cpu")
    prof = f.profile(*_feeds(7), repeat=2)
    text = str(prof)
    assert "[7,6]" in text and "[6,8]" in text, text   # x @ w1 at batch 7
    for row in prof.rows:  # a product's row gives its rate: 2 M N K over its time
        if row.what.startswith("matmul %0[7,6] @"):
            rate = 2 * 7 * 6 * 8 / row.seconds / 1e9
            assert f"({rate:.1f} GFLOP/s)" in row.what, row.what
    for name in ("w1", "w2"):
        assert f"updates {name} in place" in text, text


def test_profile_leaves_random_streams_as_they_were():
    x = gc.placeholder((None, 64), "float32", name="x")
    y = gc.dropout(x, 0.5, seed=5)
    f = gc.compile([x], y)
    twin = gc.compile([x], y)
    ones = np.ones((4, 64), np.float32)
    f.profile(ones, repeat=4)
    np.testing.assert_array_equal(f(ones), twin(ones))
    np.testing.assert_array_equal(f(ones), twin(ones))


@pytest.mark.parametrize("kwargs, word", [
    ({"repeat": 0}, "repeat must be a whole number >= 1, got 0"),
    ({"repeat": 2.5}, "repeat must be a whole number >= 1, got 2.5"),
    ({"repeat": True}, "repeat must be a whole number >= 1, got True"),
    ({"warmup": 0}, "warmup must be a whole number >= 1, got 0"),
    ({"repeat": np.float64(3.0)}, f"repeat must be a whole number >= 1, got {np.float64(3.0)!r}"),
    ({"repeat": np.array(3.7)}, "repeat must be a whole number >= 1, got an array of shape ()"),
    ({"repeat": np.array([2, 3])}, "got an array of shape (2,)"),
    ({"warmup": np.bool_(True)}, f"warmup must be a whole number >= 1, got {np.bool_(True)!r}"),
])
def test_a_bad_repeat_is_named_at_the_users_line(kwargs, word):
    f, _params = _mlp_step("cpu")
    x, t = _feeds()
    with pytest.raises(ValueError) as info:
        f.profile(x, t, **kwargs)
    assert word in str(info.value) and f"{THIS_FILE}:" in str(info.value)


def test_numpy_integer_counts_are_taken():
    f, _params = _mlp_step("cpu")
    prof = f.profile(*_feeds(), repeat=np.int64(2), warmup=np.int32(1))
    assert prof.repeat == 2 and type(prof.repeat) is int


def test_an_input_named_repeat_is_told_to_go_positionally():
    x = gc.placeholder((None, 3), "float32", name="repeat")
    f = gc.compile([x], gc.relu(x).sum())
    feed = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError) as info:
        f.profile(repeat=feed)
    msg = str(info.value)
    assert "got an array of shape (2, 3)" in msg and f"{THIS_FILE}:" in msg, msg
    assert "profile's own keyword" in msg and "positionally" in msg, msg
    assert f.profile(feed, repeat=2).n == 2


@pytest.mark.parametrize("backend", OP_BACKENDS, ids=backend_id)
def test_profiling_many_batch_sizes_binds_no_runner(backend):
    """Profiling is not a call: it keeps no runner, so sizes profiled one after another
    never grow the function's runners (bound at MAX_RUNNERS for calls)."""
    f, _params = _mlp_step(backend)
    f(*_feeds(4))
    before = dict(f.executable.runners)
    for n in range(1, 12):
        f.profile(*_feeds(n), repeat=1)
    assert f.executable.runners.keys() == before.keys()
    assert all(f.executable.runners[k] is before[k] for k in before)


def test_bad_feeds_are_refused_as_by_a_call_and_change_nothing():
    f, params = _mlp_step("cpu")
    before = [p.value for p in params]
    with pytest.raises(FeedError, match="input 'x'"):
        f.profile(np.zeros((5, 7), np.float32), np.zeros(5, np.int64))
    with pytest.raises(FeedError, match="missing input"):
        f.profile(np.zeros((5, 6), np.float32))
    for p, value in zip(params, before):
        np.testing.assert_array_equal(p.value, value)


MODEL = '''
import numpy as np
import graphc as gc

def model():
    x = gc.placeholder((None, 16), "float32", name="x")
    w = gc.Parameter(np.ones((16, 4), np.float32), name="w")
    return gc.relu(x @ w).sum()
'''


def test_cli_profile_prints_a_row_per_step(tmp_path, capsys):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    assert cli_main(["profile", f"{path}:model", "--batch", "9", "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("profile: cpu backend, batch size 9, mean of 3 calls")
    assert "matmul %0[9,16] @ %1[16,4]" in out and "model.py:8" in out, out
    assert "outputs and updates after the last step" in out


STEP = '''
import numpy as np
import graphc as gc

W = gc.Parameter(np.ones((16, 4), np.float32), name="w")

def step():
    x = gc.placeholder((None, 16), "float32", name="x")
    loss = gc.relu(x @ W).sum()
    (g,) = gc.grad(loss, [W])
    return gc.compile([x], loss, updates=[(W, W - 0.1 * g)])
'''


def test_cli_profile_takes_a_compiled_training_step(tmp_path, capsys):
    path = tmp_path / "step.py"
    path.write_text(STEP)
    assert cli_main(["profile", f"{path}:step", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "updates w in place" in out, out


@pytest.mark.parametrize("args, words", [
    (["--repeat", "0"], "expected a number >= 1, got '0'"),
    (["--batch", "x"], "expected a whole number, got 'x'"),
])
def test_cli_profile_names_a_bad_option(tmp_path, capsys, args, words):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    with pytest.raises(SystemExit):
        cli_main(["profile", f"{path}:model", *args])
    assert words in capsys.readouterr().err
