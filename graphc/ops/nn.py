"""Neural-network ops: softmax, log_softmax, softmax_cross_entropy, one_hot, dropout, losses."""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..errors import ShapeError, user_location
from ..shapes import check_axes_attr, is_int, normalize_axis
from ..tensor import Tensor, apply, as_tensor
from .base import cast
from .registry import NN, RANDOM, Op, not_differentiable, register


def _softmax_infer(types, attrs):
    (shape, dtype), = types
    if not dt.is_float(dtype):
        raise ShapeError(f"needs a float tensor, got {dtype}")
    check_axes_attr((attrs["axis"],), len(shape))
    return [(shape, dtype)]


def _shifted(x, axis):
    return x - x.max(axis=axis, keepdims=True)


def _softmax_ref(values, attrs, ctx):
    # over an empty axis: an empty result (softmax of nothing is nothing, as in PyTorch)
    if values[0].shape[attrs["axis"]] == 0:
        return [values[0].copy()]
    e = np.exp(_shifted(values[0], attrs["axis"]))
    return [e / e.sum(axis=attrs["axis"], keepdims=True)]


def _log_softmax_ref(values, attrs, ctx):
    if values[0].shape[attrs["axis"]] == 0:
        return [values[0].copy()]
    shifted = _shifted(values[0], attrs["axis"])
    return [shifted - np.log(np.exp(shifted).sum(axis=attrs["axis"], keepdims=True))]


def _softmax_vjp(node, grads):
    """dx = y * (g - sum(g * y, axis))."""
    from .elementwise import mul, sub
    from .reduce import sum as rsum

    (g,) = grads
    y = node.outputs[0]
    s = rsum(mul(g, y), node.attrs["axis"], keepdims=True)
    return [mul(y, sub(g, s))]


def _log_softmax_vjp(node, grads):
    """dx = g - softmax(x) * sum(g, axis)."""
    from .elementwise import mul, sub
    from .reduce import sum as rsum

    (g,) = grads
    axis = node.attrs["axis"]
    p = apply("softmax", node.inputs[0], axis=axis)
    return [sub(g, mul(p, rsum(g, axis, keepdims=True)))]


register(Op("softmax", NN, _softmax_infer, _softmax_ref, _softmax_vjp))
register(Op("log_softmax", NN, _softmax_infer,
            _log_softmax_ref, _log_softmax_vjp))


def _sce_infer(types, attrs):
    (ls, ld), (ts, td) = types
    if len(ls) != 2:
        raise ShapeError(f"logits must be (batch, classes), got rank {len(ls)}")
    if not dt.is_float(ld):
        raise ShapeError(f"logits must be float, got {ld}")
    if not dt.is_int(td):
        raise ShapeError(f"labels must be integer class indices, got {td}")
    if tuple(ts) != (ls[0],):
        raise ShapeError("labels must have shape (batch,) matching the logits")
    return [((), ld)]


def _check_labels(labels, classes, ctx):
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        ctx.fail(f"label {int(bad)} is outside [0, {classes})")


def _sce_ref(values, attrs, ctx):
    x, t = values
    _check_labels(t, x.shape[1], ctx)
    logp = _log_softmax_ref([x], {"axis": 1}, ctx)[0]
    # the mean over the batch: NaN over no rows, as NumPy's mean and PyTorch's cross_entropy
    picked = -logp[np.arange(x.shape[0]), t]
    return [picked.sum() / x.shape[0] if x.shape[0] else np.asarray(np.nan, x.dtype)]


def _sce_vjp(node, grads):
    """d logits = (softmax(x) - one_hot(t)) * g / N, as one op with a dedicated kernel."""
    (g,) = grads
    x, t = node.inputs
    return [apply("softmax_cross_entropy_grad", x, t, g), None]


register(Op("softmax_cross_entropy", NN, _sce_infer, _sce_ref, _sce_vjp,
            doc="mean over the batch of -log softmax(logits)[label]"))


def _sce_grad_infer(types, attrs):
    (ls, ld), (_ts, _td), (gs, _gd) = types
    _sce_infer(types[:2], attrs)
    if tuple(gs) != ():
        raise ShapeError("the incoming gradient of softmax_cross_entropy must be a scalar")
    return [(ls, ld)]


def _sce_grad_ref(values, attrs, ctx):
    x, t, g = values
    _check_labels(t, x.shape[1], ctx)
    p = _softmax_ref([x], {"axis": 1}, ctx)[0]
    p[np.arange(x.shape[0]), t] -= 1
    return [p * (g / max(x.shape[0], 1))]


def _sce_grad_vjp(node, grads):
    """Of z = (p - one_hot(t)) * g / N, p = softmax(x): dx = p * (u - sum(u * p, 1)) with
    u = gz * g / N (softmax's VJP), dg = sum(gz * (p - one_hot(t))) / N; built from other ops,
    so grad-of-grad works through the fused op. (Not by calling grad() on that composite:
    grad() follows g back to x where g depends on x, the gradient of a function of the loss,
    and that path is then counted twice, here and by the caller's grad.)"""
    from .elementwise import div, mul, sub
    from .reduce import numel
    from .reduce import sum as rsum

    (gz,) = grads
    x, t, g = node.inputs
    n = numel(x, 0, x.dtype)
    p = apply("softmax", x, axis=1)
    onehot = apply("one_hot", t, classes=x.shape[1], dtype=x.dtype)
    u = mul(gz, div(g, n))
    gx = mul(p, sub(u, rsum(mul(u, p), 1, keepdims=True)))
    gg = div(rsum(mul(gz, sub(p, onehot))), n)
    return [gx, None, gg]


register(Op("softmax_cross_entropy_grad", NN, _sce_grad_infer, _sce_grad_ref, _sce_grad_vjp,
            doc="gradient of softmax_cross_entropy w.r.t. the logits, one fused op"))


def check_classes(classes) -> int:
    """one_hot's depth: an int >= 1 (a bool, a float or a count below 1 is a mistake)."""
    if not is_int(classes):
        raise ShapeError(f"the number of classes must be an int >= 1, got {classes!r}")
    if classes < 1:
        raise ShapeError(f"the number of classes must be >= 1, got {classes}")
    return int(classes)


def _one_hot_infer(types, attrs):
    (shape, dtype), = types
    if not dt.is_int(dtype):
        raise ShapeError(f"one_hot needs integer labels, got {dtype}")
    check_classes(attrs["classes"])
    return [(tuple(shape) + (attrs["classes"],), attrs["dtype"])]


def _one_hot_ref(values, attrs, ctx):
    t = values[0]
    _check_labels(t, attrs["classes"], ctx)
    return [np.eye(attrs["classes"], dtype=attrs["dtype"])[t]]


register(Op("one_hot", NN, _one_hot_infer, _one_hot_ref, not_differentiable,
            differentiable=False))


def _uniform_infer(types, attrs):
    (shape, _dtype), = types
    seed = attrs["seed"]
    if not is_int(seed) or seed < 0:
        raise ShapeError(f"the seed must be an int >= 0, got {seed!r}")
    return [(shape, attrs["dtype"])]


def _uniform_ref(values, attrs, ctx):
    return [ctx.rng.random(values[0].shape, dtype=np.float64).astype(attrs["dtype"])]


register(Op("random_uniform", RANDOM, _uniform_infer, _uniform_ref, not_differentiable,
            differentiable=False,
            doc="uniform [0, 1) numbers of the operand's shape, drawn at run time"))


# --- user-facing functions ----------------------------------------------------------------------
def _axis(x, axis):
    return normalize_axis(axis, x.ndim)


def softmax(x, axis: int = -1) -> Tensor:
    x = as_tensor(x)
    return apply("softmax", x, axis=_axis(x, axis))


def log_softmax(x, axis: int = -1) -> Tensor:
    x = as_tensor(x)
    return apply("log_softmax", x, axis=_axis(x, axis))


def softmax_cross_entropy(logits, labels) -> Tensor:
    """Mean over the batch of the cross entropy of softmax(logits) and integer labels."""
    logits, labels = as_tensor(logits), as_tensor(labels)
    return apply("softmax_cross_entropy", logits, labels)


def one_hot(labels, classes: int, dtype="float32") -> Tensor:
    """Rows of the identity: labels (ints in [0, classes)) -> (..., classes) of `dtype`."""
    classes = check_classes(classes)
    return apply("one_hot", as_tensor(labels), classes=classes, dtype=dt.canonical(dtype))


def mean_squared_error(a, b) -> Tensor:
    """sum((a - b)^2) / batch size, as in DeZero."""
    from .elementwise import mul, sub
    from .reduce import numel
    from .reduce import sum as rsum

    d = sub(a, b)
    return rsum(mul(d, d)) / numel(d, 0, d.dtype)


def accuracy(logits, labels) -> Tensor:
    """Fraction of rows whose argmax equals the label (not differentiable)."""
    from .elementwise import equal
    from .reduce import argmax, mean

    logits, labels = as_tensor(logits), as_tensor(labels)
    return mean(cast(equal(argmax(logits, -1), cast(labels, "int64")), logits.dtype))


def check_dropout_ratio(ratio) -> float:
    """A dropout probability: a number in [0, 1] (1 drops everything, as PyTorch's p=1)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.integer, np.floating)) \
            or not 0 <= ratio <= 1:
        raise ValueError(f"dropout ratio must be a number in [0, 1], got {ratio!r} (at "
                         f"{user_location()})")
    return ratio


def dropout(x, ratio: float = 0.5, train=True, seed: int | None = None) -> Tensor:
    """Inverted dropout: in training, zero each element with probability `ratio` and scale the
    rest by 1/(1-ratio); in test mode, x unchanged. `train` is a bool or a bool scalar tensor
    (a placeholder, to switch per call). The mask is drawn at run time from a generator seeded
    by `seed` (default: a fresh seed per dropout node, from gc.set_seed)."""
    from ..random import check_seed, next_seed
    from .elementwise import div, less, mul, where

    x = as_tensor(x)
    check_dropout_ratio(ratio)
    seed = None if seed is None else check_seed(seed)
    if isinstance(train, bool) and not train or ratio == 0:
        return x
    if seed is None:
        seed = next_seed()
    u = apply("random_uniform", x, dtype=x.dtype, seed=seed)
    # (ratio 1 drops every element, as PyTorch's p=1, whose gradient is 0 too: x * 0, never
    # picked, in place of x / 0, whose gradient 0 / 0 had made it NaN)
    kept = mul(x, 0.0) if ratio == 1 else div(x, 1.0 - ratio)
    dropped = where(less(u, ratio), 0.0, kept)
    if isinstance(train, bool):
        return dropped
    return where(train, dropped, x)
