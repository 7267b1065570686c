"""graphc: a define-then-run deep-learning compiler.

Build a symbolic graph of tensor ops, differentiate it symbolically with `grad`, and
`compile` it to a flat plan of fused kernels.
"""
import os as _os

# Numba's OpenMP threads sleep between parallel kernels instead of spinning, so BLAS and
# prange threads never fight over the cores (set before Numba starts its thread pool; a
# user's own OMP_WAIT_POLICY wins).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _kernels_from_a_clone() -> None:
    """Run from a clone (not installed), graphc.kernels is the repository's top-level
    kernels/ folder, which an install puts at graphc/kernels (pyproject's package-dir)."""
    import importlib.util
    import sys

    name = __name__ + ".kernels"
    here = _os.path.dirname(_os.path.abspath(__file__))
    if name in sys.modules or _os.path.isdir(_os.path.join(here, "kernels")):
        return
    folder = _os.path.join(_os.path.dirname(here), "kernels")
    spec = importlib.util.spec_from_file_location(
        name, _os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
    if spec is None:
        return  # neither installed nor a clone: the import of graphc.kernels will say so
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_kernels_from_a_clone()

from . import data, dtypes, nn, optim
from .autodiff import grad
from .errors import (
    FeedError,
    FeedTypeError,
    GradError,
    GraphcError,
    RuntimeCheckError,
    ShapeError,
)
from .evaluate import eval as eval  # (not in __all__: `import *` must not shadow the builtin)
from .function import Function, compile
from .kernels import __version__ as __version__  # (kept where the kernel cache reads it)
from .nn.mode import test_mode
from .ops import *
from .ops import __all__ as _ops_all
from .printing import dump
from .random import set_seed
from .serialize import load, save
from .tensor import Parameter, Tensor, as_tensor, constant, placeholder
from .training import fit as fit

__all__ = [
    "Function", "FeedError", "FeedTypeError", "GradError", "GraphcError", "Parameter",
    "RuntimeCheckError", "ShapeError", "Tensor", "as_tensor", "compile", "constant", "dtypes",
    "dump", "grad", "load", "placeholder", "save", "set_seed",
] + list(_ops_all)
__all__ += ["data", "nn", "optim", "test_mode"]
