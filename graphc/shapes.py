"""Shape helpers. A dimension is an int or None; None is the batch size N, bound per call."""
from __future__ import annotations

from .errors import ShapeError

Shape = tuple  # tuple[int | None, ...]


def fmt_dim(d) -> str:
    return "N" if d is None else str(d)


def fmt_shape(shape) -> str:
    return "[" + ",".join(fmt_dim(d) for d in shape) + "]"


def normalize_shape(shape) -> tuple:
    if isinstance(shape, int) or shape is None:
        shape = (shape,)
    out = []
    for d in shape:
        if d is None:
            out.append(None)
        elif isinstance(d, (int,)) or hasattr(d, "__index__"):
            d = int(d)
            if d < 0:
                raise ShapeError(f"dimension {d} is negative in shape {tuple(shape)}")
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


def normalize_axes(axis, rank: int, what: str = "axis") -> tuple:
    """Sorted tuple of non-negative axes; None means all axes."""
    if axis is None:
        return tuple(range(rank))
    if isinstance(axis, int):
        axis = (axis,)
    out = []
    for a in axis:
        a = int(a)
        if not -rank <= a < rank:
            raise ShapeError(f"{what} {a} is out of range for a tensor of rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated {what} in {tuple(axis)}")
    return tuple(sorted(out))


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
