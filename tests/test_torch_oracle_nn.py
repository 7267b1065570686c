"""PyTorch as the oracle of graphc's DeZero-style layer: the optimizers (and their hooks), the
layers of graphc.nn and the losses, each against torch with the same weights and data, on the
numpy and cpu backends. The whole module is skipped where torch is not installed.

Conventions where graphc (DeZero) and torch differ, and how torch is set up to express
graphc's documented rule (see each test's docstring for the details):

* Adam: graphc adds eps to sqrt(v) *after* folding both bias corrections into the step size
  (`lr_t = alpha sqrt(1 - beta2^t) / (1 - beta1^t)`, Kingma and Ba's "efficient version", as
  DeZero); torch adds eps to sqrt(v / (1 - beta2^t)). They agree when torch's eps at step t
  is `eps / sqrt(1 - beta2^t)`, which the test sets in torch's param group before each step.
* MomentumSGD: `v <- momentum v - lr g; p <- p + v` (DeZero's, Sutskever's form); torch's SGD
  keeps `buf <- momentum buf + g; p <- p - lr buf`. Equal for a constant lr; under an lr
  schedule graphc's velocity keeps the old rates, so the schedule test uses a torch-side
  formula and checks that torch.optim.SGD is then different.
* AdaDelta has no lr (torch's Adadelta with lr=1.0); defaults differ (rho 0.95 vs 0.9, Adam's
  hyperparameter is named alpha, AdaGrad's eps 1e-8 vs 1e-10): torch is given graphc's values.
* Weight decay is the WeightDecay hook, `g <- g + rate p` (L2, coupled), which is torch's
  `weight_decay=` for SGD, Adagrad, Adadelta and Adam (not AdamW's decoupled decay). Hooks run
  in the order added: ClipGrad then WeightDecay is torch's clip_grad_norm_ followed by a step
  with weight_decay (clipping the undecayed gradient); the reverse order has no torch
  spelling. ClipGrad's scale, max_norm / (norm + 1e-6) capped at 1, is clip_grad_norm_'s.
* Options torch has and graphc does not: nesterov, dampening, maximize, amsgrad, AdamW,
  Adagrad's lr_decay and initial_accumulator_value.
* Linear's W is (in, out) (torch's weight is its transpose); BatchNorm's `decay` is
  1 - torch's momentum and its eps defaults to 2e-5 (torch 1e-5); leaky_relu's slope
  defaults to 0.2 (torch 0.01); mean_squared_error is sum((a - b)^2) / batch size (DeZero's),
  torch's mse_loss(reduction="sum") / N, not its default mean over every element.
* BatchNorm on a (1, D) batch in train mode: torch refuses it (one value per channel), graphc
  normalises to beta (variance 0, the running variance's m/(m-1) taken as 1).
* Embedding ids go through getitem, NumPy's indexing: an id of -1 picks the last row where
  torch's Embedding raises (an id >= in_size fails at run time in both). Its docstring does
  not say which ids are valid, so this is not checked here.
* There are no activation layers: gc.relu, gc.tanh, ... are functions, used as layers in
  Sequential or MLP; they are checked as such.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim

torch = pytest.importorskip("torch")
F = torch.nn.functional

STEPS = 10
DTYPES = ["float64", "float32"]
TOL = {"float64": {"rtol": 1e-10, "atol": 1e-12}, "float32": {"rtol": 1e-5, "atol": 1e-6}}


def _t(value, grad=False):
    return torch.tensor(np.asarray(value), requires_grad=grad)


def _close(got, want, dtype, what, scale=1.0):
    tol = TOL[dtype]
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert np.shape(got) == want.shape, f"{what}: shape {np.shape(got)} != {want.shape}"
    np.testing.assert_allclose(got, want, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale,
                               err_msg=what)


# --- optimizers ---------------------------------------------------------------------------------
def _problem(dtype):
    """A 5-8-3 tanh MLP's weights in graphc's layout, 16 samples and their labels."""
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((5, 8)) * 0.5, rng.standard_normal(8) * 0.2,
               rng.standard_normal((8, 3)) * 0.5, rng.standard_normal(3) * 0.2]
    xv = rng.standard_normal((16, 5))
    tv = rng.integers(0, 3, 16)
    return [w.astype(dtype) for w in weights], xv.astype(dtype), tv


def _graphc_run(make_opt, hooks, dtype, backend, steps=STEPS, each_step=None):
    weights, xv, tv = _problem(dtype)
    model = nn.Sequential(nn.Linear(8, in_size=5, dtype=dtype), gc.tanh,
                          nn.Linear(3, in_size=8, dtype=dtype))
    for p, w in zip(model.params(), weights):
        p.value = w.copy()
    opt = make_opt()
    for hook in hooks(model):
        opt.add_hook(hook)
    x = gc.placeholder((None, 5), dtype, name="x")
    t = gc.placeholder((None,), "int64", name="t")
    loss = gc.softmax_cross_entropy(model(x), t)
    step = gc.compile([x, t], loss, updates=opt.updates(loss, model), backend=backend)
    history = []
    for k in range(1, steps + 1):
        if each_step is not None:
            each_step(opt, k)
        step(xv, tv)
        history.append([p.value.copy() for p in model.params()])
    return history


def _torch_loss(ps, xv, tv):
    W1, b1, W2, b2 = ps
    return F.cross_entropy(torch.tanh(_t(xv) @ W1 + b1) @ W2 + b2, _t(tv))


def _torch_run(make_opt, dtype, before=None, clip=None, trained=slice(None), steps=STEPS):
    """torch.optim on the same MLP; `before(opt, t)` adjusts the param groups before step t,
    `clip` is clip_grad_norm_'s max_norm, `trained` picks the parameters given to torch."""
    weights, xv, tv = _problem(dtype)
    ps = [_t(w, grad=True) for w in weights]
    opt = make_opt(ps[trained])
    history = []
    for k in range(1, steps + 1):
        opt.zero_grad()
        _torch_loss(ps, xv, tv).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ps[trained], clip)
        if before is not None:
            before(opt, k)
        opt.step()
        history.append([p.detach().numpy().copy() for p in ps])
    return history


def _adam_eps(eps, beta2):
    """graphc's Adam eps in torch's: eps / sqrt(1 - beta2^t) at step t (module docstring)."""
    def before(opt, t):
        for group in opt.param_groups:
            group["eps"] = eps / np.sqrt(1.0 - beta2 ** t)
    return before


def _none(model):
    return []


def _wd(rate):
    return lambda model: [optim.WeightDecay(rate)]


TO = torch.optim
# name -> (graphc optimizer, graphc hooks(model), torch optimizer(params), torch keywords)
OPTIMIZERS = {
    "SGD": (lambda: optim.SGD(lr=0.1), _none, lambda ps: TO.SGD(ps, lr=0.1), {}),
    "SGD-weight_decay": (lambda: optim.SGD(lr=0.1), _wd(0.05),
                         lambda ps: TO.SGD(ps, lr=0.1, weight_decay=0.05), {}),
    "SGD-clip": (lambda: optim.SGD(lr=0.1), lambda m: [optim.ClipGrad(0.05)],
                 lambda ps: TO.SGD(ps, lr=0.1), {"clip": 0.05}),
    "MomentumSGD": (lambda: optim.MomentumSGD(lr=0.05), _none,
                    lambda ps: TO.SGD(ps, lr=0.05, momentum=0.9), {}),
    "MomentumSGD-0.5-weight_decay": (
        lambda: optim.MomentumSGD(lr=0.1, momentum=0.5), _wd(0.02),
        lambda ps: TO.SGD(ps, lr=0.1, momentum=0.5, weight_decay=0.02), {}),
    "MomentumSGD-clip-weight_decay": (
        lambda: optim.MomentumSGD(lr=0.1),
        lambda m: [optim.ClipGrad(0.05), optim.WeightDecay(0.02)],
        lambda ps: TO.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.02), {"clip": 0.05}),
    "AdaGrad": (lambda: optim.AdaGrad(lr=0.1), _none,
                lambda ps: TO.Adagrad(ps, lr=0.1, eps=1e-8), {}),
    "AdaGrad-eps-weight_decay": (
        lambda: optim.AdaGrad(lr=0.05, eps=0.01), _wd(0.05),
        lambda ps: TO.Adagrad(ps, lr=0.05, eps=0.01, weight_decay=0.05), {}),
    "AdaDelta": (lambda: optim.AdaDelta(), _none,
                 lambda ps: TO.Adadelta(ps, lr=1.0, rho=0.95, eps=1e-6), {}),
    "AdaDelta-rho-eps-weight_decay": (
        lambda: optim.AdaDelta(rho=0.8, eps=1e-3), _wd(0.05),
        lambda ps: TO.Adadelta(ps, lr=1.0, rho=0.8, eps=1e-3, weight_decay=0.05), {}),
    "Adam": (lambda: optim.Adam(alpha=0.01), _none,
             lambda ps: TO.Adam(ps, lr=0.01, betas=(0.9, 0.999)),
             {"before": _adam_eps(1e-8, 0.999)}),
    "Adam-betas-eps-weight_decay": (
        lambda: optim.Adam(alpha=0.02, beta1=0.8, beta2=0.99, eps=1e-3), _wd(0.05),
        lambda ps: TO.Adam(ps, lr=0.02, betas=(0.8, 0.99), weight_decay=0.05),
        {"before": _adam_eps(1e-3, 0.99)}),
    "Adam-freeze-first-layer": (
        lambda: optim.Adam(alpha=0.01), lambda m: [optim.FreezeParam(m.layers[0])],
        lambda ps: TO.Adam(ps, lr=0.01), {"before": _adam_eps(1e-8, 0.999),
                                          "trained": slice(2, None)}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch_optim_step_by_step(name, dtype, backend):
    make, hooks, make_torch, keywords = OPTIMIZERS[name]
    got = _graphc_run(make, hooks, dtype, backend)
    want = _torch_run(make_torch, dtype, **keywords)
    start = _problem(dtype)[0]
    moved = [not np.allclose(w, p, rtol=1e-3, atol=1e-4) for w, p in zip(start, got[-1])]
    assert moved == ([False, False, True, True] if "freeze" in name else [True] * 4)
    names = ("W1", "b1", "W2", "b2")
    for k, (g, w) in enumerate(zip(got, want), 1):
        for pname, a, b in zip(names, g, w):
            _close(a, b, dtype, f"{name}: {pname} after step {k}")


def test_clipping_is_active_in_the_clip_cases():
    """The ClipGrad cases above clip: the first step's global gradient norm is over ten
    times their max_norm, 0.05."""
    weights, xv, tv = _problem("float64")
    ps = [_t(w, grad=True) for w in weights]
    _torch_loss(ps, xv, tv).backward()
    assert float(torch.sqrt(sum((p.grad ** 2).sum() for p in ps))) > 0.5


def test_adam_eps_convention_differs_from_torch_default():
    """With a large eps, torch's Adam with a constant eps (its own rule) ends elsewhere than
    graphc's: the per-step eps mapping of the Adam cases is needed, and it is the difference."""
    got = _graphc_run(lambda: optim.Adam(alpha=0.02, eps=1e-3), _none, "float64", "numpy")
    plain = _torch_run(lambda ps: TO.Adam(ps, lr=0.02, eps=1e-3), "float64")
    mapped = _torch_run(lambda ps: TO.Adam(ps, lr=0.02, eps=1e-3), "float64",
                        before=_adam_eps(1e-3, 0.999))
    assert not np.allclose(got[-1][0], plain[-1][0], rtol=1e-6, atol=0)
    np.testing.assert_allclose(got[-1][0], mapped[-1][0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_lr_schedule_momentum_is_dezeros_and_adams_is_torchs(backend):
    """A 0-d Parameter as lr, changed before every step. MomentumSGD's velocity holds
    -lr * g of past steps (DeZero's rule), so a torch-side formula is the oracle and
    torch.optim.SGD (lr applied to the whole buffer) is shown to differ; Adam's alpha
    schedule is torch's lr schedule exactly."""
    rates = [0.2 / k for k in range(1, STEPS + 1)]

    def schedule(opt, k):
        (opt.lr if isinstance(opt, optim.MomentumSGD) else opt.alpha).value = \
            np.float64(rates[k - 1])

    lr = gc.Parameter(np.float64(0.0), name="lr")
    got = _graphc_run(lambda: optim.MomentumSGD(lr=lr, momentum=0.9), _none, "float64",
                      backend, each_step=schedule)
    weights, xv, tv = _problem("float64")
    ps = [_t(w, grad=True) for w in weights]
    vs = [torch.zeros_like(p) for p in ps]
    for k in range(STEPS):
        grads = torch.autograd.grad(_torch_loss(ps, xv, tv), ps)
        with torch.no_grad():
            for p, v, g in zip(ps, vs, grads):
                v.mul_(0.9).sub_(rates[k] * g)
                p.add_(v)
        for pname, a, b in zip(("W1", "b1", "W2", "b2"), got[k], ps):
            _close(a, b, "float64", f"momentum schedule: {pname} after step {k + 1}")

    def torch_lr(opt, k):
        opt.param_groups[0]["lr"] = rates[k - 1]

    torch_sgd = _torch_run(lambda ps: TO.SGD(ps, lr=0.0, momentum=0.9), "float64",
                           before=torch_lr)
    assert not np.allclose(got[-1][0], torch_sgd[-1][0], rtol=1e-4, atol=0)

    alpha = gc.Parameter(np.float64(0.0), name="alpha")
    got = _graphc_run(lambda: optim.Adam(alpha=alpha), _none, "float64", backend,
                      each_step=schedule)
    eps = _adam_eps(1e-8, 0.999)
    want = _torch_run(lambda ps: TO.Adam(ps, lr=0.0), "float64",
                      before=lambda opt, k: (torch_lr(opt, k), eps(opt, k)))
    for k, (g, w) in enumerate(zip(got, want), 1):
        for pname, a, b in zip(("W1", "b1", "W2", "b2"), g, w):
            _close(a, b, "float64", f"Adam schedule: {pname} after step {k}")


# --- layers -------------------------------------------------------------------------------------
def _copy(pairs):
    """Copy each graphc Parameter's value into its torch twin, through the layout map."""
    with torch.no_grad():
        for p, tp, layout in pairs:
            tp.copy_(torch.from_numpy(np.ascontiguousarray(layout(p.value))))


def _same_layout(a):
    return a


def _check_layer(layer, torch_fn, pairs, xv, backend, dtype, mode="train", scale=1.0,
                 seed=1, name=None):
    """Forward and backward of `layer` against `torch_fn` (weights copied through `pairs`:
    (graphc Parameter, torch parameter, layout)): y, the input gradient (for float input)
    and every parameter gradient of sum(y * gy), gy random; a train-mode call's running
    statistics are applied by the compiled step. Returns graphc's output."""
    _copy(pairs)
    is_float = xv.dtype.kind == "f"
    xt = _t(xv, grad=is_float)
    yt = torch_fn(xt)
    gyv = np.random.default_rng(seed).standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(_t(gyv))

    x = gc.placeholder((None,) + xv.shape[1:], str(xv.dtype), name="x")
    with gc.test_mode() if mode == "test" else contextlib.nullcontext():
        y = layer(x)
    gy = gc.placeholder((None,) + gyv.shape[1:], dtype, name="gy")
    loss = gc.sum(y * gy)
    params = [p for p, _, _ in pairs]
    wrt = ([x] if is_float else []) + params
    grads = gc.grad(loss, wrt) if wrt else []
    updates = layer.state_updates(loss) if isinstance(layer, nn.Layer) else []
    step = gc.compile([x, gy], [y] + grads, updates=updates, backend=backend)
    y_v, *g_v = step(xv, gyv)
    name = name or (type(layer).__name__ if isinstance(layer, nn.Layer) else layer.__name__)
    _close(y_v, yt, dtype, f"{name} ({mode}): output", scale)
    if is_float:
        _close(g_v.pop(0), xt.grad, dtype, f"{name} ({mode}): input gradient", scale)
    for (p, tp, layout), g in zip(pairs, g_v):
        _close(layout(g), tp.grad, dtype, f"{name} ({mode}): gradient of {p.name}", scale)
    return y_v


def _input(shape, dtype, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)])
@pytest.mark.parametrize("nobias", [False, True])
def test_linear_matches_torch(shape, nobias, dtype, backend):
    gc.set_seed(0)
    layer = nn.Linear(4, in_size=5, nobias=nobias, dtype=dtype)
    ref = torch.nn.Linear(5, 4, bias=not nobias).to(getattr(torch, dtype))
    pairs = [(layer.W, ref.weight, np.transpose)]
    if not nobias:
        layer.b.value = _input(4, dtype, seed=5)
        pairs.append((layer.b, ref.bias, _same_layout))
    _check_layer(layer, ref, pairs, _input(shape, dtype), backend, dtype)


CONVS = [  # (kernel_size, stride, pad, nobias)
    (3, 1, 1, False), ((3, 2), (2, 1), (1, 0), False), (2, 2, 0, True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONVS, ids=str)
def test_conv2d_matches_torch(cfg, dtype, backend):
    kernel, stride, pad, nobias = cfg
    gc.set_seed(0)
    layer = nn.Conv2d(4, kernel, stride=stride, pad=pad, nobias=nobias, dtype=dtype,
                      in_channels=3)
    ref = torch.nn.Conv2d(3, 4, kernel, stride=stride, padding=pad, bias=not nobias)
    ref = ref.to(getattr(torch, dtype))
    pairs = [(layer.W, ref.weight, _same_layout)]
    if not nobias:
        layer.b.value = _input(4, dtype, seed=5)
        pairs.append((layer.b, ref.bias, _same_layout))
    _check_layer(layer, ref, pairs, _input((2, 3, 7, 6), dtype), backend, dtype, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", [(3, 1, 1, None), (3, 2, 1, None), (3, 2, 1, (8, 6)),
                                 ((2, 3), (2, 1), (0, 1), None)], ids=str)
def test_deconv2d_matches_torch_conv_transpose(cfg, dtype, backend):
    kernel, stride, pad, outsize = cfg
    gc.set_seed(0)
    layer = nn.Deconv2d(2, kernel, stride=stride, pad=pad, dtype=dtype, in_channels=3)
    layer.b.value = _input(2, dtype, seed=5)
    xv = _input((2, 3, 4, 3), dtype)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    smallest = ((4 - 1) * sh - 2 * ph + kh, (3 - 1) * sw - 2 * pw + kw)
    extra = (0, 0) if outsize is None else tuple(o - s for o, s in zip(outsize, smallest))
    ref = torch.nn.ConvTranspose2d(3, 2, kernel, stride=stride, padding=pad,
                                   output_padding=extra).to(getattr(torch, dtype))
    pairs = [(layer.W, ref.weight, _same_layout), (layer.b, ref.bias, _same_layout)]

    y = _check_layer(lambda x: layer(x, outsize=outsize), ref, pairs, xv, backend, dtype,
                     scale=4, name="Deconv2d")
    assert y.shape[2:] == (smallest if outsize is None else outsize)


POOLS = [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", POOLS, ids=str)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_matches_torch(kind, cfg, dtype, backend):
    """Stride defaults to the kernel in both; avg counts the padding (count_include_pad)."""
    kernel, stride, pad = cfg
    if kind == "max":
        layer = nn.MaxPool2d(kernel, stride, pad)
        ref = torch.nn.MaxPool2d(kernel, stride, pad)
    else:
        layer = nn.AvgPool2d(kernel, stride, pad)
        ref = torch.nn.AvgPool2d(kernel, stride, pad, count_include_pad=True)
    _check_layer(layer, ref, [], _input((2, 3, 7, 6), dtype), backend, dtype)


def _batchnorm_pair(shape, dtype, decay=0.9, eps=2e-5):
    layer = nn.BatchNorm(decay=decay, eps=eps, dtype=dtype)
    layer._create(shape[1])
    rng = np.random.default_rng(7)
    layer.gamma.value = (rng.random(shape[1]) + 0.5).astype(dtype)
    layer.beta.value = rng.standard_normal(shape[1]).astype(dtype)
    layer.avg_mean.value = rng.standard_normal(shape[1]).astype(dtype)
    layer.avg_var.value = (rng.random(shape[1]) + 0.5).astype(dtype)
    kind = torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d
    ref = kind(shape[1], eps=eps, momentum=1 - decay).to(getattr(torch, dtype))
    with torch.no_grad():
        ref.running_mean.copy_(_t(layer.avg_mean.value))
        ref.running_var.copy_(_t(layer.avg_var.value))
    pairs = [(layer.gamma, ref.weight, _same_layout), (layer.beta, ref.bias, _same_layout)]
    return layer, ref, pairs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["train", "test"])
@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 5, 6), (1, 3, 4, 4)])
def test_batchnorm_matches_torch_in_train_and_test_mode(shape, mode, dtype, backend):
    """decay = 1 - torch's momentum; the running variance is the unbiased one in both; test
    mode normalises with the running statistics, which then stay."""
    layer, ref, pairs = _batchnorm_pair(shape, dtype, decay=0.8, eps=1e-3)
    ref.train(mode == "train")
    before = layer.avg_mean.value.copy()
    _check_layer(layer, ref, pairs, _input(shape, dtype, scale=2.0) + 1, backend, dtype,
                 mode=mode, scale=10)
    _close(layer.avg_mean.value, ref.running_mean, dtype, "running mean")
    _close(layer.avg_var.value, ref.running_var, dtype, "running variance")
    assert np.array_equal(layer.avg_mean.value, before) == (mode == "test")


def test_batchnorm_of_a_single_row_is_beta_where_torch_refuses(backend):
    """(1, D) in train mode: torch raises; graphc gives beta (the documented convention)."""
    layer, ref, _ = _batchnorm_pair((1, 5), "float64")
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ref(_t(np.ones((1, 5))))
    x = gc.placeholder((None, 5), "float64", name="x")
    y = layer(x)
    got = gc.compile([x], y, updates=layer.state_updates(y), backend=backend)(
        _input((1, 5), "float64"))
    np.testing.assert_allclose(got, layer.beta.value[None], rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("mode", ["train", "test"])
def test_dropout_matches_torch(p, mode, dtype, backend):
    """torch's dropout: x * mask / (1 - p) (p=1: all zeros, gradient zero); in eval mode the
    identity. The random masks differ, so graphc's mask (its nonzero outputs) is fed to
    torch's formula, and its dropped fraction is checked."""
    xv = _input((40, 50), dtype) + 3.0  # no zeros: the mask is where y != 0
    random = mode == "train" and 0 < p < 1
    torch_fn = torch.nn.Dropout(p).train(mode == "train")  # deterministic unless random
    if random:
        x = gc.placeholder((None, 50), dtype, name="x")
        gc.set_seed(0)
        keep = gc.compile([x], nn.Dropout(p)(x), backend=backend)(xv) != 0
        assert abs((~keep).mean() - p) < 0.05

        def torch_fn(xt):
            return xt * (torch.from_numpy(keep).to(xt.dtype) / (1 - p))
    gc.set_seed(0)  # the same dropout seed: the same mask as above
    y = _check_layer(nn.Dropout(p), torch_fn, [], xv, backend, dtype, mode=mode)
    if random:
        np.testing.assert_array_equal(y != 0, keep)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_matches_torch(dtype, backend):
    """Repeated ids: W's gradient adds up their rows, as torch's."""
    gc.set_seed(0)
    layer = nn.Embedding(6, 4, dtype=dtype)
    ref = torch.nn.Embedding(6, 4).to(getattr(torch, dtype))
    ids = np.array([[0, 5, 2], [2, 2, 3]])
    _check_layer(layer, ref, [(layer.W, ref.weight, _same_layout)], ids, backend, dtype)


ACTIVATIONS = {  # name -> (graphc function, torch function)
    "relu": (gc.relu, torch.relu),
    "leaky_relu": (gc.leaky_relu, lambda x: F.leaky_relu(x, 0.2)),  # graphc's default slope
    "leaky_relu-0.01": (lambda x: gc.leaky_relu(x, 0.01), lambda x: F.leaky_relu(x, 0.01)),
    "sigmoid": (gc.sigmoid, torch.sigmoid),
    "tanh": (gc.tanh, torch.tanh),
    "softmax": (gc.softmax, lambda x: torch.softmax(x, -1)),
    "softmax-axis0": (lambda x: gc.softmax(x, 0), lambda x: torch.softmax(x, 0)),
    "log_softmax": (gc.log_softmax, lambda x: torch.log_softmax(x, -1)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_matches_torch(name, dtype, backend):
    """The activations (functions in graphc, used as layers in Sequential) at zeros, at
    moderate values and at large ones (saturation, overflow of exp)."""
    fn, torch_fn = ACTIVATIONS[name]
    xv = np.concatenate([np.zeros((1, 6)), _input((3, 6), "float64", scale=3),
                         [[-120.0, -30.0, -1e-3, 1e-3, 30.0, 120.0]]]).astype(dtype)
    _check_layer(fn, torch_fn, [], xv, backend, dtype, name=name)


def _torch_linear(layer, ref):
    return [(layer.W, ref.weight, np.transpose), (layer.b, ref.bias, _same_layout)]


TORCH_ACTIVATION = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_mlp_matches_torch(activation, backend):
    """MLP (float32: it has no dtype option) against torch's Linear-activation-Linear."""
    gc.set_seed(0)
    model = nn.MLP((7, 3), activation=getattr(gc, activation))
    model(gc.placeholder((None, 4), name="x"))
    for p in model.params():
        p.value = p.value + np.float32(0.1)  # nonzero biases
    ref = torch.nn.Sequential(torch.nn.Linear(4, 7), TORCH_ACTIVATION[activation](),
                              torch.nn.Linear(7, 3))
    pairs = _torch_linear(model.layers[0], ref[0]) + _torch_linear(model.layers[1], ref[2])
    _check_layer(model, ref, pairs, _input((5, 4), "float32"), backend, "float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_matches_torch(dtype, backend):
    gc.set_seed(0)
    seq = nn.Sequential(nn.Linear(6, in_size=4, dtype=dtype), gc.tanh, nn.BatchNorm(dtype=dtype),
                        gc.relu, nn.Linear(3, in_size=6, dtype=dtype))
    seq.layers[0].b.value = _input(6, dtype, seed=5)
    ref = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(),
                              torch.nn.BatchNorm1d(6, eps=2e-5, momentum=0.1), torch.nn.ReLU(),
                              torch.nn.Linear(6, 3)).to(getattr(torch, dtype))
    seq(gc.placeholder((None, 4), dtype, name="x0"))  # creates BatchNorm's parameters
    pairs = (_torch_linear(seq.layers[0], ref[0]) + _torch_linear(seq.layers[4], ref[4])
             + [(seq.layers[2].gamma, ref[2].weight, _same_layout),
                (seq.layers[2].beta, ref[2].bias, _same_layout)])
    _check_layer(seq, ref, pairs, _input((5, 4), dtype), backend, dtype, scale=10)
    _close(seq.layers[2].avg_mean.value, ref[2].running_mean, dtype, "running mean")
    _close(seq.layers[2].avg_var.value, ref[2].running_var, dtype, "running variance")


@pytest.mark.parametrize("mode", ["train", "test"])
def test_simple_cnn_matches_torch(mode, backend):
    """conv-relu-conv-relu-maxpool-linear-relu-dropout(0)-linear (float32: SimpleCNN has no
    dtype option), in both modes."""
    gc.set_seed(0)
    model = nn.SimpleCNN(num_classes=3, channels=(2, 3), hidden=5)
    model(gc.placeholder((None, 1, 6, 6), name="x"))
    for p in model.params():
        p.value = p.value + np.float32(0.05)
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(27, 5), torch.nn.ReLU(), torch.nn.Dropout(0.0),
        torch.nn.Linear(5, 3)).train(mode == "train")
    pairs = [(model.conv1.W, ref[0].weight, _same_layout), (model.conv1.b, ref[0].bias,
                                                            _same_layout),
             (model.conv2.W, ref[2].weight, _same_layout), (model.conv2.b, ref[2].bias,
                                                            _same_layout)]
    pairs += _torch_linear(model.fc, ref[6]) + _torch_linear(model.out, ref[9])
    _check_layer(model, ref, pairs, _input((2, 1, 6, 6), "float32"), backend, "float32",
                 mode=mode, scale=4)


# --- losses -------------------------------------------------------------------------------------
SCE_CASES = {  # name -> logits (labels: a fixed draw)
    "normal": lambda rng: rng.standard_normal((6, 4)) * 3,
    "large-logits": lambda rng: rng.standard_normal((6, 4)) * 1e4,
    "one-dominant": lambda rng: np.array([[1e4, 0.0, -1e4, 5.0]] * 2),
    "batch-of-1": lambda rng: rng.standard_normal((1, 4)),
    "one-class": lambda rng: rng.standard_normal((3, 1)),
    "minus-inf-logit": lambda rng: np.array([[0.0, -np.inf, 1.0, 2.0], [3.0, 0.5, -np.inf,
                                                                        -1.0]]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(SCE_CASES))
def test_softmax_cross_entropy_matches_torch(case, dtype, backend):
    rng = np.random.default_rng(4)
    lv = SCE_CASES[case](rng).astype(dtype)
    tv = np.array([0, 3, 1, 0, 2, 3][:len(lv)]) % lv.shape[1]
    logits = gc.placeholder((None, lv.shape[1]), dtype, name="logits")
    labels = gc.placeholder((None,), "int64", name="labels")
    loss = gc.softmax_cross_entropy(logits, labels)
    loss_v, g_v = gc.compile([logits, labels], [loss, gc.grad(loss, logits)],
                             backend=backend)(lv, tv)
    lt = _t(lv, grad=True)
    ref = F.cross_entropy(lt, _t(tv))
    ref.backward()
    assert np.isfinite(loss_v) and np.isfinite(g_v).all()
    _close(loss_v, ref, dtype, f"{case}: loss")
    _close(g_v, lt.grad, dtype, f"{case}: gradient")


def test_softmax_cross_entropy_of_an_empty_batch_is_nan_as_torch(backend):
    logits = gc.placeholder((None, 3), "float64", name="logits")
    labels = gc.placeholder((None,), "int64", name="labels")
    loss = gc.softmax_cross_entropy(logits, labels)
    loss_v, g_v = gc.compile([logits, labels], [loss, gc.grad(loss, logits)],
                             backend=backend)(np.zeros((0, 3)), np.zeros(0, np.int64))
    lt = _t(np.zeros((0, 3)), grad=True)
    ref = F.cross_entropy(lt, _t(np.zeros(0, np.int64)))
    ref.backward()
    assert np.isnan(loss_v) and np.isnan(ref.item())
    assert g_v.shape == tuple(lt.grad.shape) == (0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3), (5,), (1, 4), (1,), (2, 3, 4)])
def test_mean_squared_error_is_torchs_sum_over_the_batch_size(shape, dtype, backend):
    """DeZero's mean_squared_error: sum((a - b)^2) / N, N the first dimension: torch's
    mse_loss(reduction="sum") / N (its default mean divides by every element)."""
    av, bv = _input(shape, dtype), _input(shape, dtype, seed=1)
    a = gc.placeholder((None,) + shape[1:], dtype, name="a")
    b = gc.placeholder((None,) + shape[1:], dtype, name="b")
    loss = gc.mean_squared_error(a, b)
    loss_v, ga, gb = gc.compile([a, b], [loss] + gc.grad(loss, [a, b]), backend=backend)(av, bv)
    at, bt = _t(av, grad=True), _t(bv, grad=True)
    ref = F.mse_loss(at, bt, reduction="sum") / shape[0]
    ref.backward()
    _close(loss_v, ref, dtype, "loss")
    _close(ga, at.grad, dtype, "gradient of a")
    _close(gb, bt.grad, dtype, "gradient of b")
    mean = F.mse_loss(at, bt).item()
    assert np.isclose(loss_v, mean, rtol=1e-5) == (int(np.prod(shape[1:])) == 1)


def test_accuracy_matches_torch_argmax_ties_to_the_first(backend):
    lv = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0], [0.0, 1.0, 5.0], [4.0, 4.0, 4.0]])
    logits = gc.placeholder((None, 3), "float64", name="logits")
    labels = gc.placeholder((None,), "int64", name="labels")
    acc = gc.compile([logits, labels], gc.accuracy(logits, labels), backend=backend)
    for tv in (np.array([1, 0, 2, 0]), np.array([2, 1, 2, 2]), np.array([0, 0, 0, 1])):
        want = (torch.argmax(_t(lv), -1) == _t(tv)).double().mean().item()
        assert acc(lv, tv) == want
