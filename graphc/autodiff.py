"""Symbolic reverse-mode differentiation: the gradient is more graph, built from ops."""
from __future__ import annotations

from . import dtypes as dt
from .errors import GradError, user_location
from .graph import toposort
from .shapes import fmt_shape
from .tensor import Tensor, as_tensor


def grad(y: Tensor, wrt, seed: Tensor | None = None):
    """Gradients of `y` with respect to each tensor in `wrt`, as new graph tensors.

    y must be a scalar unless `seed` (a tensor of y's shape: the vector of a vector-Jacobian
    product) is given. A `wrt` that y does not depend on gets zeros. Gradients of gradients
    work: the result is ordinary graph.
    Returns a list when `wrt` is a list/tuple, else a single tensor.
    """
    try:
        return _grad(y, wrt, seed)
    except GradError as exc:
        raise GradError(f"{exc} (at {user_location()})") from None


def _grad(y, wrt, seed):
    single = isinstance(wrt, Tensor)
    try:
        wrt_list = [wrt] if single else list(wrt)
    except TypeError:  # (None, a number: not a tensor, and not a list of them)
        raise GradError(f"grad: wrt must be a graphc Tensor or a list of them, got "
                        f"{type(wrt).__name__}") from None
    if not isinstance(y, Tensor):
        raise GradError(f"grad: y must be a graphc Tensor, got {type(y).__name__}")
    if not dt.is_float(y.dtype):
        raise GradError(f"grad: cannot differentiate a {y.dtype} output")
    for w in wrt_list:
        if not isinstance(w, Tensor):
            raise GradError(f"grad: wrt entries must be graphc Tensors, got {type(w).__name__}")
        if not dt.is_float(w.dtype):
            raise GradError(f"grad: cannot take the gradient with respect to {w!r}: its dtype "
                            f"is {w.dtype}; only float tensors have gradients")
    if seed is None:
        if y.shape != ():
            raise GradError(f"grad: y has shape {fmt_shape(y.shape)}; it must be a scalar, or "
                            f"give seed= a tensor of its shape")
        seed = as_tensor(1.0, like=y)
    else:
        seed = as_tensor(seed, like=y)
        if seed.shape != y.shape:
            raise GradError(f"grad: seed has shape {fmt_shape(seed.shape)}, y has "
                            f"{fmt_shape(y.shape)}")

    from .ops import add, cast, zeros

    nodes = toposort([y])
    # only nodes on a path from some wrt tensor to y need gradients
    wrt_ids = {id(w) for w in wrt_list}
    needed: set[int] = set()
    for node in nodes:
        if any(id(t) in wrt_ids or t.node.id in needed for t in node.inputs):
            needed.add(node.id)

    grads: dict[Tensor, Tensor] = {y: cast(seed, y.dtype)}
    for node in reversed(nodes):
        if node.id not in needed or not node.inputs:
            continue
        out_grads = [grads.get(t) for t in node.outputs]
        if all(g is None for g in out_grads):
            continue
        in_grads = node.record.vjp(node, out_grads)
        for t, g in zip(node.inputs, in_grads):
            if g is None or not dt.is_float(t.dtype):
                continue
            if g.shape != t.shape:
                raise AssertionError(f"VJP of {node.op} gave {fmt_shape(g.shape)} "
                                     f"for an input of {fmt_shape(t.shape)}")
            g = cast(g, t.dtype)
            grads[t] = add(grads[t], g) if t in grads else g  # fan-out: gradients add up

    result = [grads[w] if w in grads else zeros(w.shape, w.dtype) for w in wrt_list]
    return result[0] if single else result
