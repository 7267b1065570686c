"""Bindings of the hand-written CUDA kernels: the same records as the CPU's
(kernels/cpu/bindings.py: which op or fused pattern, when it applies, its arguments as views
of the step's inputs and outputs, whether it checks labels), naming launchers over device
arrays instead of njit functions. A checked launcher takes the plan's status array last."""
from __future__ import annotations

from ..cpu.bindings import Arg, Binding
from . import conv, nn

BINDINGS: dict[str, Binding] = {}


def binding_for(node) -> Binding | None:
    """The binding that runs `node` on the device, if one exists and applies."""
    b = BINDINGS.get(node.op)
    return b if b is not None and b.applies_to(node) else None


def _last_axis(node) -> bool:
    x = node.inputs[0]
    return x.ndim >= 1 and node.attrs["axis"] == x.ndim - 1


def _float(node) -> bool:
    return all(t.dtype in ("float32", "float64") for t in node.outputs)


_IN, _OUT = Arg("in", 0), Arg("out", 0)
_LABELS = Arg("in", 1)
_WINDOW = tuple(Arg("attr", i, attr=key) for key in ("kernel", "stride", "pad") for i in (0, 1))
for _binding in [
    Binding("softmax", nn.softmax_rows, (Arg("in", 0, "rows"), Arg("out", 0, "rows")),
            applies=_last_axis),
    Binding("log_softmax", nn.log_softmax_rows, (Arg("in", 0, "rows"), Arg("out", 0, "rows")),
            applies=_last_axis),
    Binding("argmax", nn.argmax_rows, (_IN, _OUT),
            applies=lambda n: n.inputs[0].ndim == 2 and n.attrs["axis"] == 1),
    Binding("one_hot", nn.one_hot, (_IN, _OUT), checked=True, labels=_IN,
            applies=lambda n: n.inputs[0].ndim == 1),
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
