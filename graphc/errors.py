"""Errors graphc raises, and the user source location each graph node remembers."""
from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class GraphcError(Exception):
    """Base class of graphc's own errors."""


class ShapeError(GraphcError, ValueError):
    """A shape or dtype mismatch found while the graph is built."""


class DTypeError(ShapeError, TypeError):
    """An operand of a dtype the op does not take (`-b` on a bool tensor, as NumPy refuses
    it), found while the graph is built. A TypeError as in NumPy, and a ShapeError like
    graphc's other build-time type mismatches."""


class ScalarRangeError(ShapeError, OverflowError):
    """A Python int that does not fit the dtype it would take (int32 tensor + 2**40), found
    while the graph is built. An OverflowError as in NumPy."""


class GradError(GraphcError, TypeError):
    """A gradient that cannot be taken (non-float tensor, non-scalar output without seed)."""


class FeedError(GraphcError, ValueError):
    """A compiled function was called with a missing, unknown or ill-shaped input."""


class FeedTypeError(GraphcError, TypeError):
    """A compiled function was called with a value whose dtype cannot be cast safely."""


class RuntimeCheckError(GraphcError, ValueError):
    """A check inside a running plan failed (label out of range, index out of range)."""


_INSIDE: dict[str, bool] = {}  # co_filename -> whether it is a file of the graphc package


def _inside_graphc(filename: str) -> bool:
    inside = _INSIDE.get(filename)
    if inside is None:
        inside = _INSIDE[filename] = os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)
    return inside


def user_location() -> str:
    """Return "file:line" of the first stack frame outside the graphc package (called for
    every node built, so each file's answer is remembered)."""
    frame = sys._getframe(1)
    while frame is not None:
        if not _inside_graphc(frame.f_code.co_filename):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"
