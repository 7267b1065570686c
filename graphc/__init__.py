"""graphc: a define-then-run deep-learning compiler.

Build a symbolic graph of tensor ops, differentiate it symbolically with `grad`, and
`compile` it to a flat plan of fused kernels.
"""
from . import dtypes
from .autodiff import grad
from .errors import (
    FeedError, FeedTypeError, GradError, GraphcError, RuntimeCheckError, ShapeError,
)
from .function import Function, compile
from .ops import *  # noqa: F401,F403
from .ops import __all__ as _ops_all
from .printing import dump
from .random import set_seed
from .serialize import load, save
from .tensor import Parameter, Tensor, as_tensor, constant, placeholder

__version__ = "0.1.0"

__all__ = [
    "Function", "FeedError", "FeedTypeError", "GradError", "GraphcError", "Parameter",
    "RuntimeCheckError", "ShapeError", "Tensor", "as_tensor", "compile", "constant", "dtypes",
    "dump", "grad", "load", "placeholder", "save", "set_seed", *_ops_all,
]
