"""graphc: a define-then-run deep-learning compiler.

Build a symbolic graph of tensor ops, differentiate it symbolically with `grad`, and
`compile` it to a flat plan of fused kernels.
"""
import os as _os

# Numba's OpenMP threads sleep between parallel kernels instead of spinning, so BLAS and
# prange threads never fight over the cores (set before Numba starts its thread pool; a
# user's own OMP_WAIT_POLICY wins).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import dtypes
from .autodiff import grad
from .errors import (
    FeedError,
    FeedTypeError,
    GradError,
    GraphcError,
    RuntimeCheckError,
    ShapeError,
)
from .function import Function, compile
from .ops import *
from .ops import __all__ as _ops_all
from .printing import dump
from .random import set_seed
from .serialize import load, save
from .tensor import Parameter, Tensor, as_tensor, constant, placeholder

__version__ = "0.1.0"

__all__ = [
    "Function", "FeedError", "FeedTypeError", "GradError", "GraphcError", "Parameter",
    "RuntimeCheckError", "ShapeError", "Tensor", "as_tensor", "compile", "constant", "dtypes",
    "dump", "grad", "load", "placeholder", "save", "set_seed",
] + list(_ops_all)
