"""The op set. Each family module registers its ops in `registry.OPS` and defines the
user-facing functions; this package re-exports the functions."""
from . import source  # noqa: F401  (registers placeholder/parameter/constant)
from .base import cast
from .elementwise import (
    abs, add, clip, cos, div, equal, exp, greater, greater_equal, leaky_relu, less, less_equal,
    log, maximum, minimum, mul, neg, not_equal, pow, relu, sigmoid, sign, sin, sqrt, square,
    sub, tanh, where,
)
from .linalg import linear, matmul
from .nn import (
    accuracy, dropout, log_softmax, mean_squared_error, one_hot, softmax,
    softmax_cross_entropy,
)
from .reduce import argmax, max, mean, min, numel, sum
from .registry import OPS
from .shape import (
    broadcast_to, concat, expand_dims, getitem, reshape, split, squeeze, stack, sum_to,
    swapaxes, transpose, zeros,
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
