"""Shape helpers. A dimension is an int or None; None is the batch size N, bound per call."""
from __future__ import annotations

from .errors import ShapeError

Shape = tuple  # tuple[int | None, ...]
MAX_DIM = 2 ** 63  # a dimension is an int64, as NumPy's


def fmt_dim(d) -> str:
    return "N" if d is None else str(d)


def fmt_shape(shape) -> str:
    return "[" + ",".join(fmt_dim(d) for d in shape) + "]"


def is_int(value) -> bool:
    """An int or NumPy integer, not a bool (True is an int to Python, never a dim or axis)."""
    return hasattr(type(value), "__index__") and not isinstance(value, bool)


def normalize_shape(shape) -> tuple:
    """A shape as a tuple of ints >= 0 and None (the batch N); a ShapeError otherwise."""
    if is_int(shape) or shape is None:
        shape = (shape,)
    if isinstance(shape, (str, bytes, dict, set, frozenset)) or not hasattr(shape, "__iter__"):
        raise ShapeError(f"shape {shape!r} is not a tuple of ints and None")
    out = []
    for d in shape:
        if d is None:
            out.append(None)
        elif is_int(d):
            d = int(d)
            if not 0 <= d < MAX_DIM:
                raise ShapeError(f"dimension {d} in shape {tuple(shape)} is not in "
                                 f"[0, 2**63)")
            out.append(d)
        else:
            raise ShapeError(f"dimension {d!r} in shape {tuple(shape)} is not an int or None")
    return tuple(out)


def broadcast_shapes(*shapes) -> tuple:
    """numpy broadcasting, with None (the batch size N) broadcasting against 1 and None only."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(rank):
        dims = [s[len(s) - rank + axis] for s in shapes if len(s) - rank + axis >= 0]
        result = 1
        for d in dims:
            if d == 1:
                continue
            if result == 1:
                result = d
            elif result != d:
                shown = ", ".join(fmt_shape(s) for s in shapes)
                raise ShapeError(
                    f"shapes {shown} cannot be broadcast together "
                    f"(dimension {fmt_dim(result)} against {fmt_dim(d)})"
                )
        out.append(result)
    return tuple(out)


def normalize_axis(axis, rank: int, what: str = "axis") -> int:
    """One axis as a non-negative int: an int in [-rank, rank), counted from the end when
    negative (as in NumPy)."""
    if not is_int(axis):
        raise ShapeError(f"{what} {axis!r} is not an int")
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ShapeError(f"{what} {axis} is out of range for a tensor of rank {rank} "
                         f"(expected {-rank} <= {what} < {rank})")
    return axis % rank


def normalize_axes(axis, rank: int, what: str = "axis") -> tuple:
    """Sorted tuple of non-negative axes from an int, a tuple/list of ints, or None (all)."""
    if axis is None:
        return tuple(range(rank))
    if not isinstance(axis, (tuple, list)):
        return (normalize_axis(axis, rank, what),)
    out = [normalize_axis(a, rank, what) for a in axis]
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated {what} in {tuple(axis)}")
    return tuple(sorted(out))


def check_axes_attr(axes, rank: int) -> None:
    """An op's `axes` attr (already normalised when built through the API; from a loaded
    file, anything): distinct ints in [0, rank)."""
    if not isinstance(axes, (tuple, list)) or not all(is_int(a) for a in axes):
        raise ShapeError(f"axes {axes!r} are not a tuple of ints")
    if any(not 0 <= a < rank for a in axes) or len(set(axes)) != len(axes):
        raise ShapeError(f"axes {tuple(axes)} are not distinct axes of a rank-{rank} tensor")


def bind(shape, n: int | None) -> tuple:
    """Replace the batch dimension None by the bound batch size n."""
    return tuple(n if d is None else d for d in shape)


def size_parts(shape) -> tuple[int, int]:
    """(power of N, product of the concrete dims)."""
    power, prod = 0, 1
    for d in shape:
        if d is None:
            power += 1
        else:
            prod *= d
    return power, prod
