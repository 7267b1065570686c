"""graphc.optim: every optimizer and hook equals a NumPy re-implementation of DeZero's rule over
10 compiled steps; optimizer state lives in Parameters reused across `updates` calls."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim

STEPS = 10


def _problem():
    """Linear regression: loss = sum((x W + b - y)^2) / N, gradients known in closed form."""
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((16, 4)).astype(np.float32)
    yv = rng.standard_normal((16, 3)).astype(np.float32)
    W0 = rng.standard_normal((4, 3)).astype(np.float32)
    return xv, yv, W0


def _grads(xv, yv, W, b):
    r = xv @ W + b - yv
    n = len(xv)
    return [2 * xv.T @ r / n, 2 * r.sum(0) / n]


def _numpy_rules():
    """DeZero's update rules in float64 NumPy: name -> (make optimizer, rule(params, grads,
    state, t))."""
    def sgd(ps, gs, st, t):
        return [p - 0.1 * g for p, g in zip(ps, gs)]

    def momentum(ps, gs, st, t):
        vs = st.setdefault("v", [np.zeros_like(p) for p in ps])
        for i, g in enumerate(gs):
            vs[i] = 0.9 * vs[i] - 0.05 * g
        return [p + v for p, v in zip(ps, vs)]

    def adagrad(ps, gs, st, t):
        hs = st.setdefault("h", [np.zeros_like(p) for p in ps])
        for i, g in enumerate(gs):
            hs[i] = hs[i] + g * g
        return [p - 0.1 * g / (np.sqrt(h) + 1e-8) for p, g, h in zip(ps, gs, hs)]

    def adadelta(ps, gs, st, t):
        msg = st.setdefault("msg", [np.zeros_like(p) for p in ps])
        msdx = st.setdefault("msdx", [np.zeros_like(p) for p in ps])
        out = []
        for i, (p, g) in enumerate(zip(ps, gs)):
            msg[i] = 0.95 * msg[i] + 0.05 * g * g
            dx = np.sqrt((msdx[i] + 1e-6) / (msg[i] + 1e-6)) * g
            msdx[i] = 0.95 * msdx[i] + 0.05 * dx * dx
            out.append(p - dx)
        return out

    def adam(ps, gs, st, t):
        ms = st.setdefault("m", [np.zeros_like(p) for p in ps])
        vs = st.setdefault("v", [np.zeros_like(p) for p in ps])
        lr = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        out = []
        for i, (p, g) in enumerate(zip(ps, gs)):
            ms[i] += 0.1 * (g - ms[i])
            vs[i] += 0.001 * (g * g - vs[i])
            out.append(p - lr * ms[i] / (np.sqrt(vs[i]) + 1e-8))
        return out

    return {
        "SGD": (lambda: optim.SGD(lr=0.1), sgd),
        "MomentumSGD": (lambda: optim.MomentumSGD(lr=0.05), momentum),
        "AdaGrad": (lambda: optim.AdaGrad(lr=0.1), adagrad),
        "AdaDelta": (lambda: optim.AdaDelta(), adadelta),
        "Adam": (lambda: optim.Adam(alpha=0.01), adam),
    }


RULES = _numpy_rules()


def _compiled_run(opt, backend, hooks=(), freeze=False):
    xv, yv, W0 = _problem()
    layer = nn.Linear(3, in_size=4)
    layer.W.value = W0
    x = gc.placeholder((None, 4), name="x")
    y = gc.placeholder((None, 3), name="y")
    loss = gc.mean_squared_error(layer(x), y)
    for hook in hooks:
        opt.add_hook(hook)
    if freeze:
        opt.add_hook(optim.FreezeParam(layer.W))
    step = gc.compile([x, y], loss, updates=opt.updates(loss, layer), backend=backend)
    history = []
    for _ in range(STEPS):
        step(xv, yv)
        history.append([layer.W.value, layer.b.value])
    return history


def _numpy_run(rule, grad_hook=None, frozen=()):
    xv, yv, W0 = _problem()
    params = [W0.astype(np.float64), np.zeros(3)]
    state: dict = {}
    history = []
    for t in range(1, STEPS + 1):
        grads = _grads(xv.astype(np.float64), yv.astype(np.float64), *params)
        if grad_hook is not None:
            grads = grad_hook(params, grads)
        new = rule(params, grads, state, t)
        params = [p if i in frozen else q for i, (p, q) in enumerate(zip(params, new))]
        history.append(params)
    return history


def _assert_same(got, want):
    for k, (g, w) in enumerate(zip(got, want)):
        for name, a, b in zip(("W", "b"), g, w):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5,
                                       err_msg=f"{name} after step {k + 1}")


@pytest.mark.parametrize("name", list(RULES))
def test_optimizer_equals_numpy_over_ten_steps(name, backend):
    make, rule = RULES[name]
    got = _compiled_run(make(), backend)
    want = _numpy_run(rule)
    assert not np.allclose(got[-1][0], _problem()[2])  # it moved
    _assert_same(got, want)


def test_weight_decay_hook():
    def decay(params, grads):
        return [g + 0.01 * p for p, g in zip(params, grads)]

    got = _compiled_run(optim.SGD(lr=0.1), "cpu", hooks=[optim.WeightDecay(0.01)])
    _assert_same(got, _numpy_run(RULES["SGD"][1], decay))


def test_clip_grad_hook_scales_by_the_global_norm():
    def clip(params, grads):
        norm = np.sqrt(sum((g * g).sum() for g in grads))
        rate = 0.5 / (norm + 1e-6)
        return [g * rate for g in grads] if rate < 1 else grads

    xv, yv, W0 = _problem()
    assert np.sqrt(sum((g * g).sum() for g in _grads(xv, yv, W0, np.zeros(3)))) > 0.5
    got = _compiled_run(optim.SGD(lr=0.1), "cpu", hooks=[optim.ClipGrad(0.5)])
    _assert_same(got, _numpy_run(RULES["SGD"][1], clip))


def test_freeze_param_hook_leaves_those_parameters_alone():
    got = _compiled_run(optim.Adam(alpha=0.01), "cpu", freeze=True)
    np.testing.assert_array_equal(got[-1][0], _problem()[2])
    _assert_same(got, _numpy_run(RULES["Adam"][1], frozen={0}))


def test_freeze_param_of_a_lazy_layer_and_bad_items():
    model = nn.MLP((5, 2))
    opt = optim.SGD(1.0)
    opt.add_hook(optim.FreezeParam(model.layers[0]))  # its W does not exist yet
    x = gc.placeholder((None, 3), name="x")
    loss = gc.sum(model(x))
    updated = {id(p) for p, _ in opt.updates(loss, model)}
    assert id(model.layers[0].W) not in updated and id(model.layers[1].W) in updated
    with pytest.raises(TypeError, match="neither a layer nor a Parameter"):
        optim.FreezeParam(3)
    with pytest.raises(TypeError, match="not callable"):
        opt.add_hook("decay")


def test_state_is_parameters_made_once_and_reused():
    model = nn.Linear(2, in_size=3)
    opt = optim.Adam()
    x = gc.placeholder((None, 3), name="x")
    loss = gc.sum(model(x) ** 2)
    first = opt.updates(loss, model)
    second = opt.updates(gc.sum(model(x)), model)
    names = sorted(p.name for p, _ in first)
    assert names == ["W", "W.m", "W.v", "adam.t", "b", "b.m", "b.v"]
    assert {id(p) for p, _ in first} == {id(p) for p, _ in second}
    assert all(isinstance(p, gc.Parameter) for p in opt.state_params())
    step = gc.compile([x], loss, updates=first)
    for _ in range(3):
        step(np.ones((2, 3), np.float32))
    assert float(opt.t.value) == 3.0
    # the step count is state too: saved with the rest, a resumed run is the same run
    assert any(p is opt.t for p in opt.state_params())


def test_a_resumed_adam_run_equals_the_uninterrupted_one():
    def run(steps, state=None):
        gc.set_seed(0)
        model = nn.Linear(2, in_size=3)
        opt = optim.Adam(0.1)
        x = gc.placeholder((None, 3), name="x")
        loss = gc.sum(model(x) ** 2)
        step = gc.compile([x], loss, updates=opt.updates(loss, model))
        params = list(model.params()) + opt.state_params()
        if state is not None:
            for p, v in zip(params, state):
                p.value = v
        for _ in range(steps):
            step(np.ones((2, 3), np.float32))
        return [p.value for p in params]

    whole = run(6)
    resumed = run(3, run(3))
    for a, b in zip(whole, resumed):
        np.testing.assert_array_equal(a, b)


def test_hooks_check_their_arguments_where_they_are_given():
    with pytest.raises(TypeError, match="WeightDecay: rate must be a number.*test_optim.py"):
        optim.WeightDecay("x")
    with pytest.raises(ValueError, match="ClipGrad: max_norm must be finite"):
        optim.ClipGrad(float("inf"))


def test_setup_and_parameter_lists_as_the_model():
    W = gc.Parameter(np.ones(3, np.float32), name="W")
    unused = gc.Parameter(np.ones(3, np.float32), name="unused")
    loss = gc.sum(W * W)
    with pytest.raises(TypeError, match="call setup"):
        optim.SGD().updates(loss)
    ups = optim.SGD(0.5).setup([W, unused]).updates(loss)
    assert [p for p, _ in ups] == [W]  # a parameter the loss does not use is left alone
    gc.compile([], loss, updates=ups)()
    np.testing.assert_allclose(W.value, np.zeros(3))
    with pytest.raises(TypeError, match="item 0"):
        optim.SGD().updates(loss, [3])


# --- hyperparameters: checked when given, a schedule through a 0-d Parameter ------------------
@pytest.mark.parametrize("make, message", [
    (lambda: optim.SGD(lr="0.1"), "SGD: lr must be a number .*got str '0.1'"),
    (lambda: optim.Adam(alpha=None), "Adam: alpha must be a number .*got NoneType"),
    (lambda: optim.MomentumSGD(momentum=True), "MomentumSGD: momentum must be a number"),
    (lambda: optim.SGD(gc.Parameter(np.ones(2, np.float32))), "a 0-d float tensor"),
])
def test_a_bad_hyperparameter_is_refused_where_it_is_given(make, message):
    with pytest.raises(TypeError, match=message + ".*test_optim.py"):
        make()
    with pytest.raises(ValueError, match="lr must be finite"):
        optim.SGD(float("nan"))


def _one_layer():
    gc.set_seed(0)
    model = nn.Linear(3, in_size=2)
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    xv = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    return model, x, t, gc.softmax_cross_entropy(model(x), t), (xv, np.array([0, 1, 2, 0]))


def test_changing_a_number_after_the_step_is_built_warns_and_a_parameter_schedules():
    model, x, t, loss, feeds = _one_layer()
    opt = optim.SGD(0.1)
    step = gc.compile([x, t], loss, updates=opt.updates(loss, model))
    opt.lr = 0.1  # the same value: nothing to say
    with pytest.warns(UserWarning, match="SGD.lr was changed after updates\\(\\) built"):
        opt.lr = 0.0
    before = model.W.value
    step(*feeds)
    assert not np.array_equal(model.W.value, before)  # (the compiled step kept 0.1)

    lr = gc.Parameter(np.float32(0.1), name="lr")
    for make in (lambda: optim.SGD(lr), lambda: optim.Adam(alpha=lr)):
        opt = make()
        step = gc.compile([x, t], loss, updates=opt.updates(loss, model))
        lr.value = np.float32(0.0)
        before = model.W.value
        step(*feeds)
        np.testing.assert_array_equal(model.W.value, before)
        lr.value = np.float32(0.1)
        step(*feeds)
        assert not np.array_equal(model.W.value, before)


def test_updates_names_swapped_arguments_and_a_model_that_trains_nothing():
    model, x, t, loss, _ = _one_layer()
    with pytest.raises(TypeError, match="loss must be a graphc Tensor, got Linear .*other "
                                        "order"):
        optim.SGD(0.1).updates(model, loss)

    class Hidden(nn.Model):  # a layer where the model does not walk: a private attribute
        def __init__(self):
            self._inner = nn.Linear(3, in_size=2)

        def forward(self, x):
            return self._inner(x)

    hidden = Hidden()
    loss2 = gc.softmax_cross_entropy(hidden(x), t)
    with pytest.warns(UserWarning, match="none of them is a trainable parameter of the model"):
        assert optim.SGD(0.1).updates(loss2, hidden) == []
