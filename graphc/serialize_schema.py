"""What a saved graph may hold: every op's operand count and attributes, types and ranges.

A saved graph is untrusted input. Kernels are specialised on node attributes, so each one
must come from a closed set before a node is built: dtypes from graphc's table, dims as
ints >= 0 or null (the batch N), axes in range for the operand's rank. Each op declares its
schema in OP_SCHEMAS; an op without one cannot be loaded (fail closed), and
tests/test_hostile_load.py fails when a registered op has none.

A kind is a function kind(value, field, operands) -> the attribute's in-memory value, where
operands are the (shape, dtype) of the node's inputs; it raises Invalid when the JSON value
is not what graphc itself writes.
"""
from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field

from . import dtypes as dt

MAX_RANK = 32
MAX_ELEMENTS = 2**48  # per dim and per shape: far above real tensors, far below int64 overflow
MAX_TEXT = 4096       # characters of a name or source location
MAX_OPERANDS = 1 << 16
INT64 = (-(2**63), 2**63 - 1)

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlevel = 3  # a value 100k lists deep prints as [[[...]]], without recursing


def show(value) -> str:
    """A short, one-line repr of a JSON value for an error message."""
    return _short.repr(value)


class Invalid(Exception):
    """One thing wrong in a saved graph: where (node, field) and what was expected."""

    def __init__(self, field: str, message: str, node: str | None = None):
        super().__init__(message)
        self.field = field
        self.message = message
        self.node = node

    def where(self) -> str:
        parts = [self.node] if self.node else []
        if self.field:
            parts.append(f"field {self.field}")
        return ", ".join(parts)


# --- scalar checks ------------------------------------------------------------------------------
def integer(value, field: str, lo: int, hi: int, what: str) -> int:
    """An int in [lo, hi]; JSON true/false and 2.0 are not ints here."""
    if type(value) is not int or not lo <= value <= hi:
        raise Invalid(field, f"{show(value)} is not {what}")
    return value


def sequence(value, field: str, most: int) -> list:
    """A tuple as graphc writes it ({"t": [...]}) or a JSON list, of at most `most` items."""
    if isinstance(value, dict) and list(value) == ["t"]:
        value = value["t"]
    if not isinstance(value, list):
        raise Invalid(field, f"{show(value)} is not a list")
    if len(value) > most:
        raise Invalid(field, f"has {len(value)} items; at most {most} are allowed")
    return value


def _rank(operands, field: str) -> int:
    if not operands:
        raise Invalid(field, "names an axis, but the node has no operand")
    return len(operands[0][0])


# --- kinds --------------------------------------------------------------------------------------
def dims(value, field: str, operands=()) -> tuple:
    """A shape: ints >= 0 or null (the batch size N)."""
    out = []
    concrete = 1
    for i, d in enumerate(sequence(value, field, MAX_RANK)):
        if d is not None:
            concrete *= integer(d, f"{field}[{i}]", 0, MAX_ELEMENTS,
                                "a dimension (an int in [0, 2**48] or null for the batch N)")
        out.append(d)
    if concrete > MAX_ELEMENTS:
        raise Invalid(field, f"{show(value)} has {concrete} elements, more than 2**48")
    return tuple(out)


def dtype(value, field: str, operands=()) -> str:
    if not isinstance(value, str) or value not in dt.DTYPES:
        raise Invalid(field, f"{show(value)} is not a graphc dtype; expected one of "
                             f"{', '.join(dt.DTYPES)}")
    return value


def name(value, field: str, operands=()) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
        raise Invalid(field, f"{show(value)} is not a name (a string of at most {MAX_TEXT} "
                             f"characters, or null)")
    return value


def flag(value, field: str, operands=()) -> bool:
    if not isinstance(value, bool):
        raise Invalid(field, f"{show(value)} is not true or false")
    return value


def count(value, field: str, operands=()) -> int:
    return integer(value, field, 0, MAX_ELEMENTS, "a count (an int >= 0)")


def seed(value, field: str, operands=()) -> int:
    return integer(value, field, 0, 2**64 - 1, "a seed (an int in [0, 2**64))")


def sizes(value, field: str, operands=()) -> tuple:
    items = sequence(value, field, MAX_OPERANDS)
    if not items:
        raise Invalid(field, "is empty; a split has at least one part")
    return tuple(count(s, f"{field}[{i}]") for i, s in enumerate(items))


def int_pair(least: int) -> Callable:
    """Two ints >= least (a window's kernel, stride, pad or size)."""

    def kind(value, field: str, operands=()) -> tuple:
        items = sequence(value, field, 2)
        if len(items) != 2:
            raise Invalid(field, f"{show(value)} is not a pair")
        return tuple(integer(v, f"{field}[{i}]", least, MAX_ELEMENTS, f"an int >= {least}")
                     for i, v in enumerate(items))

    return kind


def axis(value, field: str, operands=()) -> int:
    rank = _rank(operands, field)
    return integer(value, field, 0, rank - 1,
                   f"an axis of the rank-{rank} operand (an int in [0, {rank}))")


def axes(value, field: str, operands=()) -> tuple:
    """Distinct axes of the first operand."""
    out = tuple(axis(a, f"{field}[{i}]", operands)
                for i, a in enumerate(sequence(value, field, MAX_RANK)))
    if len(set(out)) != len(out):
        raise Invalid(field, f"{show(value)} repeats an axis")
    return out


def permutation(value, field: str, operands=()) -> tuple:
    """Every axis of the first operand, once each."""
    rank = _rank(operands, field)
    out = axes(value, field, operands)
    if len(out) != rank:
        raise Invalid(field, f"{show(value)} is not a permutation of the {rank} axes")
    return out


def _index_item(item, field: str, operands, arrays: int) -> tuple:
    """One item of a getitem spec: ("none",), ("ellipsis",), ("slice", a, b, c), ("int", k)
    or ("array", k) where k counts the index operands that came before."""
    item = sequence(item, field, 4)
    kind = item[0] if item else None
    lengths = {"none": 1, "ellipsis": 1, "slice": 4, "int": 2, "array": 2}
    if not isinstance(kind, str) or kind not in lengths:
        raise Invalid(field, f"{show(item)} is not an index item; expected one of "
                             f"{', '.join(lengths)}")
    if len(item) != lengths[kind]:
        raise Invalid(field, f"{show(item)}: a {kind} item has {lengths[kind] - 1} values")
    if kind == "slice":
        bounds = [None if p is None else integer(p, f"{field}[{i + 1}]", *INT64, "an int64")
                  for i, p in enumerate(item[1:])]
        if bounds[2] == 0:
            raise Invalid(field, "slice step is zero")
        return ("slice", *bounds)
    if kind == "int":
        return ("int", integer(item[1], f"{field}[1]", *INT64, "an int64"))
    if kind == "array":
        integer(item[1], f"{field}[1]", arrays, arrays, f"{arrays} (index arrays in order)")
        if 1 + arrays >= len(operands) or not dt.is_int(operands[1 + arrays][1]):
            raise Invalid(field, f"index array {arrays} is not an integer operand of the node")
    return (kind, *item[1:])


def index(value, field: str, operands=()) -> tuple:
    """A getitem spec (graphc.ops.shape.encode_index), its arrays the operands after the
    first."""
    out = []
    arrays = 0
    for i, item in enumerate(sequence(value, field, MAX_RANK)):
        out.append(_index_item(item, f"{field}[{i}]", operands, arrays))
        arrays += out[-1][0] == "array"
    if arrays != len(operands) - 1:
        raise Invalid(field, f"names {arrays} index arrays; the node has {len(operands) - 1}")
    return tuple(out)


# --- the ops ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpSchema:
    """What a saved node of one op may hold: its operand count and attribute kinds."""

    fewest: int
    most: int
    attrs: dict[str, Callable] = field(default_factory=dict)


def _fixed(n: int, **attrs) -> OpSchema:
    return OpSchema(n, n, attrs)


def _variadic(**attrs) -> OpSchema:
    return OpSchema(1, MAX_OPERANDS, attrs)


_UNARY = ("neg", "exp", "log", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "sign")
_BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "less", "less_equal",
           "greater", "greater_equal", "equal", "not_equal", "matmul", "softmax_cross_entropy")
_REDUCE = ("sum", "max", "min")

_WINDOW = {"kernel": int_pair(1), "stride": int_pair(1), "pad": int_pair(0)}

OP_SCHEMAS: dict[str, OpSchema] = {
    "placeholder": _fixed(0, shape=dims, dtype=dtype, name=name),
    "parameter": _fixed(0, shape=dims, dtype=dtype, name=name),
    "constant": _fixed(0, shape=dims, dtype=dtype),
    **{op: _fixed(1) for op in _UNARY},
    **{op: _fixed(2) for op in _BINARY},
    "where": _fixed(3),
    "cast": _fixed(1, dtype=dtype),
    "softmax": _fixed(1, axis=axis),
    "log_softmax": _fixed(1, axis=axis),
    "softmax_cross_entropy_grad": _fixed(3),
    "one_hot": _fixed(1, classes=count, dtype=dtype),
    "random_uniform": _fixed(1, dtype=dtype, seed=seed),
    **{op: _fixed(1, axes=axes, keepdims=flag) for op in _REDUCE},
    "argmax": _fixed(1, axis=axis),
    "numel": _fixed(1, axes=axes, dtype=dtype),
    "reshape": _fixed(1, shape=dims),
    "transpose": _fixed(1, axes=permutation),
    "broadcast_to": _fixed(1, shape=dims),
    "sum_to": _fixed(1, shape=dims),
    "getitem": _variadic(spec=index),
    "getitem_grad": _variadic(spec=index, shape=dims),
    "concat": _variadic(axis=axis),
    "split": _fixed(1, sizes=sizes, axis=axis),
    "im2col": _fixed(1, **_WINDOW),
    "col2im": _fixed(1, size=int_pair(1), **_WINDOW),
    "matmul_shared": _fixed(2),
    "matmul_shared_t": _fixed(2),
    "matmul_batch_sum": _fixed(2),
    "max_pool2d": _fixed(1, **_WINDOW),
    "max_pool2d_grad": _fixed(2, **_WINDOW),
    "max_pool2d_select": _fixed(2, **_WINDOW),
    "avg_pool2d": _fixed(1, **_WINDOW),
    "avg_pool2d_grad": _fixed(1, size=int_pair(1), **_WINDOW),
}


def check_operand_count(op: str, n: int, field: str) -> None:
    schema = OP_SCHEMAS[op]
    if not schema.fewest <= n <= schema.most:
        want = (f"{schema.fewest}" if schema.fewest == schema.most
                else f"at least {schema.fewest}")
        raise Invalid(field, f"{op} takes {want} operands, the node lists {n}")


def check_attr_names(op: str, attrs: dict, field: str) -> None:
    """The node holds exactly the attributes its op declares."""
    declared = OP_SCHEMAS[op].attrs
    unexpected = sorted(set(attrs) - set(declared))
    missing = sorted(set(declared) - set(attrs))
    if unexpected:
        raise Invalid(f"{field}.{unexpected[0][:60]}",
                      f"{op} has no attribute {show(unexpected[0])}; expected "
                      f"{', '.join(declared) or 'none'}")
    if missing:
        raise Invalid(f"{field}.{missing[0]}", f"{op} needs attribute {missing[0]!r}")


def check_attrs(op: str, attrs: dict, operands, field: str) -> dict:
    """The node's attributes, each checked by its kind against the node's operands."""
    check_attr_names(op, attrs, field)
    kinds = OP_SCHEMAS[op].attrs
    return {key: kinds[key](value, f"{field}.{key}", operands) for key, value in attrs.items()}
