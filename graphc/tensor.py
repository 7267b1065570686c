"""Symbolic tensors and graph nodes.

A `Node` is one application of an op (a record in `graphc.ops.registry.OPS`) to input
tensors; a `Tensor` is one output of a node. Nodes are immutable and numbered in creation
order, which is therefore a topological order. Graph passes never mutate a node: they build
new ones (see graphc.passes), so a user's graph is never changed behind their back.
"""
from __future__ import annotations

import itertools
import threading
import weakref

import numpy as np

from . import dtypes as dt
from .errors import ScalarRangeError, ShapeError, user_location
from .shapes import fmt_shape, normalize_shape

_ids = itertools.count()
# One lock for all parameter state: a compiled call that reads or updates parameters holds
# it (one acquire per call, whatever the number of parameters), as do p.value reads/writes.
PARAMETER_LOCK = threading.RLock()


class Node:
    __slots__ = ("__weakref__", "attrs", "id", "inputs", "loc", "op", "outputs", "value")

    def __init__(self, op: str, inputs, attrs, loc: str, value=None):
        self.id = next(_ids)
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs)
        self.outputs: list[Tensor] = []
        self.loc = loc
        self.value = value  # constant array, or the Parameter of a parameter node

    @property
    def record(self):
        return _registry().get(self.op)

    def __repr__(self) -> str:
        return f"<Node {self.op} #{self.id} at {self.loc}>"


def _registry():
    """graphc.ops.registry, imported on first use (graphc.ops imports this module)."""
    global _REGISTRY
    if _REGISTRY is None:
        from .ops import registry

        _REGISTRY = registry
    return _REGISTRY


_REGISTRY = None


def make_node(op: str, inputs, attrs=None, loc: str | None = None, value=None) -> Node:
    """Create a node, infer its output types, and return it.

    A failing shape rule becomes a ShapeError naming the op, the operand shapes and the
    user's file:line.
    """
    from .ops.registry import get

    attrs = attrs or {}
    record = get(op)
    inputs = tuple(inputs)
    for t in inputs:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: operand {t!r} is not a graphc Tensor")
    loc = loc or user_location()
    try:
        types = record.infer([(t.shape, t.dtype) for t in inputs], attrs)
    except ShapeError as exc:  # (its subclass kept: a DTypeError is a TypeError too)
        shapes = ", ".join(f"{dt.SHORT[t.dtype]}{fmt_shape(t.shape)}" for t in inputs)
        raise type(exc)(f"{op}: {exc} (operands: {shapes or 'none'}) at {loc}") from None
    node = Node(op, inputs, attrs, loc, value)
    node.outputs = [Tensor(node, i, shape, dtype) for i, (shape, dtype) in enumerate(types)]
    return node


def apply(op: str, *inputs, loc=None, **attrs):
    """Create a node and return its single output (or the list, for multi-output ops)."""
    node = make_node(op, inputs, attrs, loc=loc)
    return node.outputs[0] if len(node.outputs) == 1 else list(node.outputs)


class Tensor:
    """A symbolic value: the output `index` of `node`, with a static shape and dtype.

    Dimensions that are None stand for the batch size N, bound when a compiled function is
    called.
    """

    __array_ufunc__ = None  # numpy array (op) Tensor defers to the Tensor's reflected operator
    __hash__ = object.__hash__

    def __init__(self, node: Node, index: int, shape, dtype: str):
        self.node = node
        self.index = index
        self.shape = tuple(shape)
        self.dtype = dtype
        self._name = None

    # --- description -------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        if self._name is not None:
            return self._name
        return self.node.attrs.get("name")

    @name.setter
    def name(self, value: str) -> None:
        self._name = checked_name(value, "tensor")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def op(self) -> str:
        return self.node.op

    def __repr__(self) -> str:
        name = f" name={self.name!r}" if self.name else ""
        return f"<Tensor {dt.SHORT[self.dtype]}{fmt_shape(self.shape)} {self.node.op}{name}>"

    def __bool__(self):
        raise TypeError(
            "a symbolic graphc Tensor has no truth value; use gc.where(cond, a, b) to branch "
            "on values at run time"
        )

    def __iter__(self):
        raise TypeError("a symbolic graphc Tensor is not iterable; index it or use gc.split")

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        if self.shape[0] is None:
            raise TypeError("len() of a tensor whose first dimension is the batch size N")
        return self.shape[0]

    # --- operators (defined in graphc.ops; imported lazily to avoid a cycle) ----------------
    def __add__(self, other):
        return _ops().add(self, other)

    def __radd__(self, other):
        return _ops().add(other, self)

    def __sub__(self, other):
        return _ops().sub(self, other)

    def __rsub__(self, other):
        return _ops().sub(other, self)

    def __mul__(self, other):
        return _ops().mul(self, other)

    def __rmul__(self, other):
        return _ops().mul(other, self)

    def __truediv__(self, other):
        return _ops().div(self, other)

    def __rtruediv__(self, other):
        return _ops().div(other, self)

    def __pow__(self, other):
        return _ops().pow(self, other)

    def __rpow__(self, other):
        return _ops().pow(other, self)

    def __matmul__(self, other):
        return _ops().matmul(self, other)

    def __rmatmul__(self, other):
        return _ops().matmul(other, self)

    def __neg__(self):
        return _ops().neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops().abs(self)

    def __lt__(self, other):
        return _ops().less(self, other)

    def __le__(self, other):
        return _ops().less_equal(self, other)

    def __gt__(self, other):
        return _ops().greater(self, other)

    def __ge__(self, other):
        return _ops().greater_equal(self, other)

    def __eq__(self, other):
        return _ops().equal(self, other)

    def __ne__(self, other):
        return _ops().not_equal(self, other)

    def __getitem__(self, index):
        return _ops().getitem(self, index)

    # --- method forms ----------------------------------------------------------------------
    @property
    def T(self):
        return _ops().transpose(self)

    def sum(self, axis=None, keepdims=False):
        return _ops().sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops().mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return _ops().max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return _ops().min(self, axis, keepdims)

    def argmax(self, axis=-1):
        return _ops().argmax(self, axis)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return _ops().reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = axes[0]
        return _ops().transpose(self, axes or None)

    def broadcast_to(self, shape):
        return _ops().broadcast_to(self, shape)

    def sum_to(self, shape):
        return _ops().sum_to(self, shape)

    def squeeze(self, axis=None):
        return _ops().squeeze(self, axis)

    def expand_dims(self, axis):
        return _ops().expand_dims(self, axis)

    def astype(self, dtype):
        return _ops().cast(self, dtype)

    def exp(self):
        return _ops().exp(self)

    def log(self):
        return _ops().log(self)

    def sqrt(self):
        return _ops().sqrt(self)

    def relu(self):
        return _ops().relu(self)

    def sigmoid(self):
        return _ops().sigmoid(self)

    def tanh(self):
        return _ops().tanh(self)

    def clip(self, lo, hi):
        return _ops().clip(self, lo, hi)

    # --- no value until it runs ----------------------------------------------------------
    def _no_value(self, what: str):
        hint = " (a Parameter's current value is p.value)" if self.op == "parameter" else ""
        raise TypeError(f"{what} of a symbolic graphc Tensor {self!r}: it has no value until "
                        f"it runs; compile it (gc.compile) or evaluate it with "
                        f"gc.eval(t, feeds){hint}")

    def __float__(self):
        self._no_value("float()")

    def __int__(self):
        self._no_value("int()")

    def __array__(self, dtype=None, copy=None):
        self._no_value("np.asarray()")

    def numpy(self):
        self._no_value(".numpy()")


def _ops():
    from . import ops

    return ops


# --- sources ---------------------------------------------------------------------------------
def checked_name(name, what: str) -> str | None:
    """A source's or tensor's name: a str or None (a clear TypeError for anything else)."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{what} name must be a str or None, not {type(name).__name__} "
                        f"{name!r} (at {user_location()})")
    return name


def placeholder(shape, dtype="float32", name: str | None = None) -> Tensor:
    """A graph input, fed when the compiled function is called. None dims are the batch N."""
    name = checked_name(name, "placeholder")
    try:
        shape = normalize_shape(shape)
    except ShapeError as exc:
        raise ShapeError(f"placeholder {name!r}: {exc} at {user_location()}") from None
    try:
        dtype = dt.canonical(dtype)
    except TypeError as exc:
        raise TypeError(f"placeholder {name!r}: {exc} (at {user_location()})") from None
    return make_node("placeholder", (), {"shape": shape, "dtype": dtype, "name": name}).outputs[0]


def constant(value, dtype=None) -> Tensor:
    """A constant tensor holding a copy of `value`."""
    dtype = None if dtype is None else dt.canonical(dtype)
    try:
        arr = np.array(value, dtype=dtype)
    except OverflowError:  # an int out of the dtype's range, in a list: said below
        arr = np.array(value, dtype=object)
    # ints default to int64; NumPy wraps a NumPy int silently and keeps too large a Python
    # int as an object
    for item in arr.flat if arr.dtype == object else [value]:
        why = dt.scalar_range_error(item, dtype or "int64")
        if why is not None:
            raise ScalarRangeError(f"constant: {why} at {user_location()}")
    if arr.dtype == np.float64 and dtype is None and not isinstance(value, np.ndarray):
        arr = arr.astype(np.float32)  # Python floats are float32 by default, as in JAX
    if arr.dtype.name not in dt.DTYPES:
        arr = arr.astype(dt.canonical(arr.dtype) if arr.dtype.kind != "i" else np.int64)
    arr.setflags(write=False)
    node = make_node(
        "constant", (), {"shape": arr.shape, "dtype": arr.dtype.name}, value=arr
    )
    return node.outputs[0]


def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """Turn a Python scalar, list or numpy array into a constant (a Tensor is returned as is).

    Python scalars are weakly typed: next to a tensor they take its dtype (see graphc.dtypes).
    A list of Python floats is float32, as gc.constant's; a NumPy array keeps its dtype.
    """
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, int, float, np.number, np.bool_)) and not isinstance(
        value, np.ndarray
    ):
        if like is not None:
            return constant(value, dt.weak_scalar_dtype(value, like.dtype))
        if isinstance(value, (bool, np.bool_)):
            return constant(value, "bool")
        if isinstance(value, (int, np.integer)):
            return constant(value, "int64")
        return constant(value, "float32")
    if isinstance(value, (np.ndarray, list, tuple)):
        arr = np.asarray(value)
        if arr.dtype.name not in dt.DTYPES:
            raise TypeError(f"cannot use an array of dtype {arr.dtype} in a graph; "
                            f"expected one of {', '.join(dt.DTYPES)}")
        # a list of Python floats is float32, as gc.constant's (and JAX's); an array keeps
        # its dtype
        return constant(arr if isinstance(value, np.ndarray) else value)
    raise TypeError(f"cannot use {type(value).__name__} {value!r} as a graphc tensor")


class Parameter(Tensor):
    """A tensor whose value persists across calls and is shared by every compiled function.

    `p.value` reads a copy of the current value; assigning checks shape and dtype and writes
    in place, so every compiled function that uses `p` sees the new value.
    """

    def __init__(self, value, name: str | None = None, dtype=None):
        name = checked_name(name, "Parameter")
        arr = np.array(value, dtype=None if dtype is None else dt.canonical(dtype), copy=True)
        if arr.dtype.name not in dt.DTYPES:
            raise TypeError(f"Parameter {name!r}: unsupported dtype {arr.dtype}; "
                            f"expected one of {', '.join(dt.DTYPES)}")
        arr = np.require(arr, requirements="C")  # (ascontiguousarray would make 0-d into 1-d)
        node = make_node(
            "parameter", (), {"shape": arr.shape, "dtype": arr.dtype.name, "name": name}
        )
        node.value = self
        super().__init__(node, 0, arr.shape, arr.dtype.name)
        node.outputs = [self]
        self._value = arr
        self.lock = PARAMETER_LOCK  # held by compiled functions while they read/update it
        self.mirror = None  # a device copy that may be newer (graphc.backends.cuda), or None
        # the host-backend Functions that read or update it: told when a device copy is made,
        # so that from then on they pull it before a call and mark it stale after an update
        self.users = weakref.WeakSet()

    @property
    def value(self) -> np.ndarray:
        with self.lock:
            return self.data.copy()

    @value.setter
    def value(self, new) -> None:
        arr = np.asarray(new)
        if arr.shape != self.shape:
            raise ValueError(
                f"Parameter {self.name!r}: new value has shape {arr.shape}, "
                f"expected {self.shape}"
            )
        if not np.can_cast(arr.dtype, self.dtype, "same_kind"):
            raise TypeError(
                f"Parameter {self.name!r}: cannot assign a {arr.dtype} value to a "
                f"{self.dtype} parameter"
            )
        with self.lock:
            np.copyto(self._value, arr, casting="same_kind")
            if self.mirror is not None:
                self.mirror.push(self._value)

    @property
    def data(self) -> np.ndarray:
        """The live buffer (no copy). Backends read and update it in place."""
        if self.mirror is not None:
            self.mirror.pull(self._value)
        return self._value

    def __repr__(self) -> str:
        return f"<Parameter {dt.SHORT[self.dtype]}{fmt_shape(self.shape)} name={self.name!r}>"
