"""Eager conveniences: gc.eval, the one-line error of float()/np.asarray()/.numpy() on a symbolic
tensor, and gc.fit's loop and progress display."""
from __future__ import annotations

import io

import numpy as np
import pytest

import graphc as gc
from graphc import data, evaluate, nn, optim, training


def test_eval_evaluates_without_compile_and_caches_per_graph():
    x = gc.placeholder((None, 3), name="x")
    W = gc.Parameter(np.ones((3, 2), np.float32), name="W")
    y = x @ W
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(gc.eval(y, {x: xv}), xv @ np.ones((3, 2)))
    total, doubled = gc.eval([gc.sum(y), y * 2], {"x": xv})  # by name too
    assert float(total) == 30.0 and doubled.shape == (2, 2)
    entries = len(evaluate._cache)
    W.value = np.zeros((3, 2), np.float32)  # a cached function reads the new value
    np.testing.assert_array_equal(gc.eval(y, {x: xv}), np.zeros((2, 2)))
    assert len(evaluate._cache) == entries
    assert float(gc.eval(gc.sum(W + 1))) == 6.0  # no placeholders: no feeds


def test_eval_errors():
    x = gc.placeholder((None, 3), name="x")
    with pytest.raises(gc.FeedError, match=r"no value for placeholder 'x' \(created at "
                                           r".*test_eval.py"):
        gc.eval(gc.sum(x))
    with pytest.raises(TypeError, match="item 1 is 3"):
        gc.eval([gc.sum(x), 3], {x: np.ones((1, 3))})


@pytest.mark.parametrize("convert", [float, int, np.asarray, lambda t: t.numpy()])
def test_a_symbolic_tensor_has_no_value_and_says_what_to_do(convert):
    loss = gc.sum(gc.placeholder((None, 3), name="x"))
    with pytest.raises(TypeError, match=r"no value until it runs; compile it \(gc.compile\) "
                                        r"or evaluate it with gc.eval"):
        convert(loss)
    W = gc.Parameter(np.ones(2, np.float32), name="W")
    with pytest.raises(TypeError, match="p.value"):
        convert(W)


def _spiral_step():
    gc.set_seed(0)
    model = nn.MLP((10, 3))
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    logits = model(x)
    loss, acc = gc.softmax_cross_entropy(logits, t), gc.accuracy(logits, t)
    step = gc.compile([x, t], [loss, acc], updates=optim.SGD(1.0).updates(loss, model))
    return step, gc.compile([x, t], [loss, acc]), gc.compile([x, t], loss)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_fit_averages_over_samples_and_evaluates():
    step, evaluate_fn, loss_only = _spiral_step()
    loader = data.DataLoader(data.Spiral(), 64, seed=0)  # 300 = 4 x 64 + 44
    test_loader = data.DataLoader(data.Spiral(train=False), 100, shuffle=False)
    quiet = io.StringIO()
    history = gc.fit(step, loader, epochs=3, eval=(evaluate_fn, test_loader), stream=quiet)
    assert quiet.getvalue() == ""  # not a terminal: no bar
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert set(history[0]) == {"epoch", "loss", "accuracy", "seconds", "samples_per_s",
                               "test_loss", "test_accuracy"}
    assert history[-1]["loss"] < history[0]["loss"]
    test_set = data.Spiral(train=False)
    want = evaluate_fn(test_set.data, test_set.label)
    np.testing.assert_allclose(history[-1]["test_loss"], float(want[0]), rtol=1e-5)
    np.testing.assert_allclose(history[-1]["test_accuracy"], float(want[1]), rtol=1e-5)
    one = gc.fit(loss_only, loader, epochs=1, stream=quiet)
    assert "accuracy" not in one[0] and one[0]["loss"] > 0


def test_fit_progress_bar_on_a_terminal_only(monkeypatch):
    step, _, _ = _spiral_step()
    loader = data.DataLoader(data.Spiral(), 100, seed=0)
    monkeypatch.setattr(training, "make_bar",
                        lambda total, desc, stream: training.TextBar(total, desc, stream))
    tty = Terminal()
    gc.fit(step, loader, epochs=2, stream=tty)
    out = tty.getvalue()
    assert "\repoch 1/2 [" in out and "3/3 loss" in out and "samples/s" in out
    assert out.count("\n") == 2 and "epoch 2/2: loss" in out  # one summary line per epoch
    off = Terminal()
    gc.fit(step, loader, epochs=1, stream=off, progress=False)
    assert off.getvalue() == ""


def test_fit_rejects_non_scalar_outputs():
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    per_row = gc.compile([x, t], x * 2)
    with pytest.raises(TypeError, match=r"output 0 of the step has shape \(100, 2\)"):
        gc.fit(per_row, data.DataLoader(data.Spiral(), 100), stream=io.StringIO())


def test_fit_uses_tqdm_when_it_is_installed(monkeypatch):
    import sys
    import types

    calls = []

    class FakeTqdm:
        def __init__(self, total, desc, file, leave):
            calls.append(("new", total, desc))

        def set_postfix(self, values, refresh):
            calls.append(("postfix", sorted(values)))

        def update(self, n):
            calls.append(("update", n))

        def set_postfix_str(self, text):
            calls.append(("summary", text))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeTqdm))
    step, _, _ = _spiral_step()
    gc.fit(step, data.DataLoader(data.Spiral(), 150, seed=0), epochs=1, stream=Terminal())
    assert calls[0] == ("new", 2, "epoch 1/1")
    assert ("postfix", ["accuracy", "loss", "samples/s"]) in calls
    assert calls.count(("update", 1)) == 2 and calls[-1] == ("close",)
    assert calls[-2][0] == "summary" and "samples/s" in calls[-2][1]
