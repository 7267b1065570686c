"""The Numba CPU target: how the neutral scalar form (scalar.py) is written in an njit kernel.

float32 and float64 exp, log, sigmoid and tanh call graphc.kernels.mathlib's vectorizable
helpers (~1-3 ulp; np.exp, np.log and np.tanh call libm, which does not vectorize), and
`a if c else b` its `select` (one LLVM select instruction); everything else is the NumPy
function Numba compiles, with NumPy's NaN and infinity behaviour.
"""
from __future__ import annotations

from .scalar import ANY, Target, Template, numba_binary, numba_casts

MATHLIB = "graphc.kernels.mathlib"

_TYPES = {"bool": "np.bool_", "int32": "np.int32", "int64": "np.int64",
          "float32": "np.float32", "float64": "np.float64"}


def _floats(source: str) -> dict:
    """The same NumPy template for both float dtypes (the op is float-only)."""
    return {"float32": Template(source), "float64": Template(source)}


def _float_signs() -> dict:
    """np.sign of a float: +1.0, -1.0, or x - x, which is +0.0 for either zero (NumPy's
    sign of -0.0 is +0.0; Numba's keeps -0.0) and NaN for NaN."""
    out = {}
    for dtype in ("float32", "float64"):
        t = _TYPES[dtype]
        out[dtype] = Template(f"select({{0}} > {t}(0.0), {t}(1.0), select({{0}} < {t}(0.0), "
                              f"{t}(-1.0), {{0}} - {{0}}))", helpers=("select",))
    return out


NUMBA_CPU = Target(
    name="numba_cpu",
    types=_TYPES,
    inf="np.inf",
    nan="np.nan",
    functions={
        "exp": {"float32": Template("fexp32({0})", helpers=("fexp32",)),
                "float64": Template("fexp64({0})", helpers=("fexp64",))},
        "sigmoid": {"float32": Template("fsigmoid32({0})", helpers=("fsigmoid32",)),
                    "float64": Template("(np.float64(1.0) / (np.float64(1.0) + fexp64(-{0})))",
                                        helpers=("fexp64",))},
        "log": {"float32": Template("flog32({0})", helpers=("flog32",)),
                "float64": Template("flog64({0})", helpers=("flog64",))},
        "sqrt": _floats("np.sqrt({0})"),
        "sin": _floats("np.sin({0})"),
        "cos": _floats("np.cos({0})"),
        "tanh": {"float32": Template("ftanh32({0})", helpers=("ftanh32",)),
                 "float64": Template("ftanh64({0})", helpers=("ftanh64",))},
        "abs": {ANY: Template("abs({0})")},
        "sign": {**_float_signs(), ANY: Template("np.sign({0})")},
        # NaN from either side, as NumPy; of two equal operands the first, as the neutral
        # form's maximum (Numba's np.maximum: one vmaxps for relu's maximum(x, 0))
        "maximum": {ANY: Template("np.maximum({0}, {1})")},
        "minimum": {ANY: Template("np.minimum({0}, {1})")},
        **numba_casts(_TYPES, select=True),
    },
    helpers={name: MATHLIB for name in (
        "fexp32", "fexp64", "flog32", "flog64", "fsigmoid32", "ftanh32", "ftanh64", "select",
        "flat_view", "fexp_nonpos32", "fsigmoid_nonneg32")},
    # the same bits with fewer instructions where the operand's sign is proved (W4's
    # exp(-t) and sigmoid(t) of t = relu(...): measured on a Zen 4, one thread, 16M
    # float32: 13.1 -> 11.8 ms)
    signed={("exp", "float32", "-"): Template("fexp_nonpos32({0})", helpers=("fexp_nonpos32",)),
            ("sigmoid", "float32", "+"): Template("fsigmoid_nonneg32({0})",
                                                  helpers=("fsigmoid_nonneg32",))},
    # one LLVM select: Numba lowers `a if c else b` to branches, which kept a masked
    # reduction's loop (a ReLU gradient summed for a bias) from vectorizing and mispredict
    # on a mask of real data (W3's bias gradient: 0.85 -> 0.48 ms)
    select=Template("select({0}, {1}, {2})", helpers=("select",)),
    binary=numba_binary(_TYPES),
)

# What every generated module imports, whatever its body: the loops use both.
PRELUDE = ("import numpy as np", "import numba")
