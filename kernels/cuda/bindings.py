"""Bindings of the hand-written CUDA kernels: the same records as the CPU's
(kernels/cpu/bindings.py: which op or fused pattern, when it applies, its arguments as views
of the step's inputs and outputs, whether it checks labels), naming launchers over device
arrays instead of njit functions. A checked launcher takes the plan's status array last.

Ops whose launches depend on their attributes and concrete shapes (an axis, an index, the
parts of a concat) are `Planned`: the runner calls the planner once per batch size with the
node's device arrays, and gets back what to launch (launch.Launches)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..cpu.bindings import Arg, Binding
from . import conv, nn, reduce, shape


@dataclass(frozen=True)
class Planned:
    """An op planned per batch size: `plan(inputs, outputs, attrs, status)` over device
    arrays returns a launch.Launches; `slots(node)` is the number of status entries it may
    set (`status` is that slice of the run's status array, read after the run's checking
    steps); `applies(node)` when it can run the node (None: always)."""

    name: str
    plan: Callable
    applies: Callable | None = None
    slots: Callable = lambda node: 0

    def applies_to(self, node) -> bool:
        return self.applies is None or bool(self.applies(node))

BINDINGS: dict[str, Binding | Planned] = {}


def binding_for(node) -> Binding | Planned | None:
    """The binding that runs `node` on the device, if one exists and applies."""
    b = BINDINGS.get(node.op)
    return b if b is not None and b.applies_to(node) else None


def _float(node) -> bool:
    return all(t.dtype in ("float32", "float64") for t in node.outputs)


def _exact(node) -> bool:
    """An integer or bool reduction (a float one is a generated fused kernel)."""
    return node.inputs[0].dtype not in ("float16", "float32", "float64")


def _index_arrays(node) -> int:
    return len(node.inputs) - 1


_IN, _OUT = Arg("in", 0), Arg("out", 0)
_LABELS = Arg("in", 1)
_WINDOW = tuple(Arg("attr", i, attr=key) for key in ("kernel", "stride", "pad") for i in (0, 1))
for _binding in [
    Binding("one_hot", nn.one_hot, (_IN, Arg("out", 0, "rows")), checked=True, labels=_IN),
    Binding("softmax_cross_entropy", nn.softmax_cross_entropy,
            (_IN, _LABELS, Arg("out", 0, "scalar")), checked=True, labels=_LABELS),
    Binding("softmax_cross_entropy_grad", nn.softmax_cross_entropy_grad,
            (_IN, _LABELS, Arg("in", 2, "scalar"), _OUT), checked=True, labels=_LABELS),
    Binding("softmax_cross_entropy_fused", nn.softmax_cross_entropy_fused,
            (_IN, _LABELS, Arg("in", 2, "scalar", node=1), Arg("out", 0, "scalar"),
             Arg("out", 0, node=1)), checked=True, labels=_LABELS),
    Binding("im2col", conv.im2col, (_IN, _OUT) + _WINDOW),
    Binding("col2im", conv.col2im, (_IN, _OUT) + _WINDOW),
    Binding("matmul_shared", conv.matmul_shared, (_IN, Arg("in", 1), _OUT), applies=_float),
    Binding("matmul_shared_t", conv.matmul_shared_t, (_IN, Arg("in", 1), _OUT),
            applies=_float),
    Binding("matmul_batch_sum", conv.matmul_batch_sum, (_IN, Arg("in", 1), _OUT),
            applies=_float),
    Binding("max_pool2d", conv.max_pool2d, (_IN, _OUT) + _WINDOW),
    Binding("max_pool2d_grad", conv.max_pool2d_grad, (_IN, Arg("in", 1), _OUT) + _WINDOW),
    Binding("max_pool2d_select", conv.max_pool2d_select, (_IN, Arg("in", 1), _OUT) + _WINDOW),
    Binding("avg_pool2d", conv.avg_pool2d, (_IN, _OUT) + _WINDOW),
    Binding("avg_pool2d_grad", conv.avg_pool2d_grad, (_IN, _OUT) + _WINDOW),
]:
    BINDINGS[_binding.name] = _binding


for _planned in [
    Planned("softmax", nn.plan_softmax),
    Planned("log_softmax", nn.plan_log_softmax),
    Planned("argmax", nn.plan_argmax),
    Planned("sum", reduce.plan_reduce("sum"), applies=_exact),
    Planned("max", reduce.plan_reduce("max"), applies=_exact),
    Planned("min", reduce.plan_reduce("min"), applies=_exact),
    Planned("sum_to", reduce.plan_sum_to, applies=_exact),
    Planned("transpose", shape.plan_transpose),
    Planned("concat", shape.plan_concat),
    Planned("split", shape.plan_split),
    Planned("getitem", shape.plan_getitem, slots=_index_arrays),
    Planned("getitem_grad", shape.plan_getitem_grad, slots=_index_arrays),
]:
    BINDINGS[_planned.name] = _planned
