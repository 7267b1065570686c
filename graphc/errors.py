"""Errors graphc raises, and the user source location each graph node remembers."""
from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class GraphcError(Exception):
    """Base class of graphc's own errors."""


class ShapeError(GraphcError, ValueError):
    """A shape or dtype mismatch found while the graph is built."""


class GradError(GraphcError, TypeError):
    """A gradient that cannot be taken (non-float tensor, non-scalar output without seed)."""


class FeedError(GraphcError, ValueError):
    """A compiled function was called with a missing, unknown or ill-shaped input."""


class FeedTypeError(GraphcError, TypeError):
    """A compiled function was called with a value whose dtype cannot be cast safely."""


class RuntimeCheckError(GraphcError, ValueError):
    """A check inside a running plan failed (label out of range, index out of range)."""


def user_location() -> str:
    """Return "file:line" of the first stack frame outside the graphc package."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_PACKAGE_DIR + os.sep):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"
