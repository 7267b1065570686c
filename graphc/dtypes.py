"""The dtypes graphc supports, their short names, and the promotion rule.

Promotion follows a simple lattice, as in JAX: bool < int32 < int64 < float32 < float64, and a
binary op takes the larger of its operands. Python scalars are "weak": they take the other
operand's dtype (a Python float against an integer tensor gives float32).
"""
from __future__ import annotations

import numpy as np

DTYPES = ("bool", "int32", "int64", "float32", "float64")
SHORT = {"bool": "bool", "int32": "i32", "int64": "i64", "float32": "f32", "float64": "f64"}
_RANK = {name: i for i, name in enumerate(DTYPES)}


def canonical(dtype) -> str:
    """Normalise a dtype given as a string, numpy dtype or Python type to graphc's name."""
    if isinstance(dtype, str) and dtype in _RANK:  # the common case, on every node built
        return dtype
    if dtype is float:
        return "float32"
    if dtype is int:
        return "int64"
    if dtype is bool:
        return "bool"
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise TypeError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}") from exc
    if name not in _RANK:
        raise TypeError(f"unsupported dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return name


def is_float(dtype: str) -> bool:
    return dtype in ("float32", "float64")


def is_int(dtype: str) -> bool:
    return dtype in ("int32", "int64")


def promote(*dtypes: str) -> str:
    """The result dtype of an elementwise op over tensors of these dtypes."""
    return max(dtypes, key=_RANK.__getitem__)


def weak_scalar_dtype(value, other: str) -> str:
    """The dtype a Python scalar takes when it meets a tensor of dtype `other`."""
    if isinstance(value, (bool, np.bool_)):
        return other
    if isinstance(value, (int, np.integer)):
        return other if other != "bool" else "int64"
    return other if is_float(other) else "float32"


def scalar_range_error(value, dtype: str) -> str | None:
    """Why the Python (or NumPy) int `value` cannot be a `dtype` scalar, or None when it
    can: an int outside the integer dtype's range would wrap or overflow."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or \
            dtype == "bool":
        return None
    if is_float(dtype):  # ints beyond float64's range have no float at all
        if abs(int(value)) < 2 ** 1024:
            return None
        lo, hi = f"{np.finfo(dtype).min:.4g}", f"{np.finfo(dtype).max:.4g}"
    else:
        lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
        if lo <= int(value) <= hi:
            return None
    digits = str(abs(int(value)))
    shown = ("-" if value < 0 else "") + (digits if len(digits) <= 40 else
                                          f"{digits[0]}.{digits[1:4]}e+{len(digits) - 1}")
    wider = {"int32": "; use int64 (cast the tensor)", "int64": "; use float64 (cast the tensor)"}
    return f"the int {shown} is out of range for {dtype} [{lo}, {hi}]{wider.get(dtype, '')}"


def to_numpy(dtype: str) -> np.dtype:
    return np.dtype(dtype)
