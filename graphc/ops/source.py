"""Source ops: placeholder (fed per call), parameter (persistent state), constant."""
from __future__ import annotations

from .registry import SOURCE, Op, register


def _source_infer(types, attrs):
    return [(tuple(attrs["shape"]), attrs["dtype"])]


def _no_reference(values, attrs, ctx):
    raise RuntimeError("source nodes are bound by the backend, not evaluated")


register(Op("placeholder", SOURCE, _source_infer, _no_reference, differentiable=False,
            doc="an input fed at each call"))
register(Op("parameter", SOURCE, _source_infer, _no_reference, differentiable=False,
            doc="persistent state shared by compiled functions"))
register(Op("constant", SOURCE, _source_infer, _no_reference, differentiable=False,
            doc="a constant array"))
