"""Optimizer hooks (DeZero's): each maps the list of Slots (name, param, grad) to a new one
before the update rule runs. Add them with `opt.add_hook(hook)`."""
from __future__ import annotations

from .. import ops
from ..errors import user_location
from ..tensor import Parameter
from .optimizers import _hyper


class WeightDecay:
    """g <- g + rate * p (L2 regularisation of every trained parameter)."""

    def __init__(self, rate: float):
        self.rate = _hyper("WeightDecay", "rate", rate)

    def __call__(self, slots):
        return [s._replace(grad=s.grad + self.rate * s.param) for s in slots]


class ClipGrad:
    """Scale every gradient by max_norm / (norm + 1e-6) when the global L2 norm of all the
    gradients exceeds max_norm (computed in the graph, at run time)."""

    def __init__(self, max_norm: float):
        self.max_norm = _hyper("ClipGrad", "max_norm", max_norm)

    def __call__(self, slots):
        if not slots:
            return slots
        total = None
        for s in slots:
            sq = ops.sum(s.grad * s.grad)
            total = sq if total is None else total + ops.cast(sq, total.dtype)
        rate = ops.minimum(self.max_norm / (ops.sqrt(total) + 1e-6), 1.0)
        return [s._replace(grad=s.grad * ops.cast(rate, s.grad.dtype)) for s in slots]


class FreezeParam:
    """Leave the parameters of the given layers (or the given Parameters) unchanged. The
    layers' parameters are looked up when the step is built, so a lazily sized layer may be
    frozen before its first call."""

    def __init__(self, *layers):
        for item in layers:
            if not isinstance(item, Parameter) and not hasattr(item, "params"):
                raise TypeError(f"FreezeParam: {item!r} is neither a layer nor a Parameter "
                                f"(at {user_location()})")
        self.layers = layers

    def __call__(self, slots):
        frozen = set()
        for item in self.layers:
            frozen.update([id(item)] if isinstance(item, Parameter)
                          else (id(p) for p in item.params()))
        return [s for s in slots if id(s.param) not in frozen]
