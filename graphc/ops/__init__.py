"""The op set. Each family module registers its ops in `registry.OPS` and defines the
user-facing functions; this package re-exports the functions."""
import functools

from .. import dtypes as _dt
from ..errors import ShapeError, user_location
from ..shapes import fmt_shape
from ..tensor import Tensor
from . import source  # noqa: F401  (registers placeholder/parameter/constant)
from .base import cast
from .conv import avg_pool2d, col2im, conv2d, deconv2d, im2col, max_pool2d
from .elementwise import (
    abs,
    add,
    clip,
    cos,
    div,
    equal,
    exp,
    greater,
    greater_equal,
    leaky_relu,
    less,
    less_equal,
    log,
    maximum,
    minimum,
    mul,
    neg,
    not_equal,
    pow,
    relu,
    sigmoid,
    sign,
    sin,
    sqrt,
    square,
    sub,
    tanh,
    where,
)
from .linalg import linear, matmul
from .nn import (
    accuracy,
    dropout,
    log_softmax,
    mean_squared_error,
    one_hot,
    softmax,
    softmax_cross_entropy,
)
from .reduce import argmax, max, mean, min, numel, sum
from .registry import OPS
from .shape import (
    broadcast_to,
    concat,
    expand_dims,
    getitem,
    reshape,
    split,
    squeeze,
    stack,
    sum_to,
    swapaxes,
    transpose,
    zeros,
)

__all__ = [
    "OPS", "abs", "accuracy", "add", "argmax", "broadcast_to", "cast", "clip", "concat", "cos",
    "div", "dropout", "equal", "exp", "expand_dims", "getitem", "greater", "greater_equal",
    "leaky_relu", "less", "less_equal", "linear", "log", "log_softmax", "matmul", "max",
    "maximum", "mean", "mean_squared_error", "min", "minimum", "mul", "neg", "not_equal",
    "numel", "one_hot", "pow", "relu", "reshape", "sigmoid", "sign", "sin", "softmax",
    "softmax_cross_entropy", "split", "sqrt", "square", "squeeze", "stack", "sub", "sum",
    "sum_to", "swapaxes", "tanh", "transpose", "where", "zeros",
]
__all__ += ["avg_pool2d", "col2im", "conv2d", "deconv2d", "im2col", "max_pool2d"]


def _operands(args) -> str:
    tensors = []
    for a in args:
        if isinstance(a, Tensor):
            tensors.append(a)
        elif isinstance(a, (list, tuple)):
            tensors.extend(t for t in a if isinstance(t, Tensor))
    return ", ".join(f"{_dt.SHORT[t.dtype]}{fmt_shape(t.shape)}" for t in tensors) or "none"


def _located(fn):
    """Give a ShapeError raised before any node is made (a bad axis, reshape target, index,
    split) the op name, operand shapes and user file:line that make_node gives the others."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ShapeError as exc:
            loc = user_location()
            message = str(exc)
            if message.endswith(f" at {loc}"):
                raise
            message = message.removeprefix(f"{fn.__name__}: ")
            raise type(exc)(f"{fn.__name__}: {message} (operands: {_operands(args)}) "
                            f"at {loc}") from None

    return wrapper


for _name in __all__:
    if _name != "OPS":
        globals()[_name] = _located(globals()[_name])
