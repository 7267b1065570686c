"""Bindings of the hand-written kernels: one record per kernel, beside the kernels
themselves (nn.py, conv.py). A binding says which op (or fused pattern) a kernel implements, when it
applies, how its arguments are laid out as views of the step's inputs and outputs, and
whether it returns a status to check. The backend derives both the warm-up arguments and
the runner's call from this one record.

Adding an op with a kernel of its own: its op record (graphc.ops), its kernel, and its
binding (`register_binding`); nothing else.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from . import nn


@dataclass(frozen=True)
class Arg:
    """One argument: an input or output of node `node` of the step (0: the first node),
    number `index`, passed as `view`: "as_is", "rows" (2-D: every leading dim merged, the
    last kept) or "scalar" (a 0-d value as a 1-element array); or (role "attr") the int
    `node.attrs[attr][index]`, for what shapes cannot tell a kernel (a stride, a pad)."""

    role: str   # "in", "out" or "attr"
    index: int
    view: str = "as_is"
    node: int = 0
    attr: str = ""

    def attr_value(self, node) -> int:
        """The int an "attr" argument passes (int(): only a number reaches the runner)."""
        return int(node.attrs[self.attr][self.index])


class Lazy:
    """A kernel named by module and attribute, imported when a plan first runs it.

    The convolution and pooling kernels (conv.py, with tile.py and pool_lanes.py) took
    ~15 ms to import, paid by every compile of a plan without a convolution."""

    def __init__(self, module: str, attr: str):
        self.module, self.attr = module, attr

    def resolve(self):
        return getattr(importlib.import_module(f"{__package__}.{self.module}"), self.attr)


@dataclass(frozen=True)
class Binding:
    name: str           # the KernelStep's kernel: an op name, or a fused pattern's name
    target: object      # the @njit kernel, or a Lazy naming it
    args: tuple         # Arg records, in call order
    checked: bool = False  # returns a status: 0, or 1 + the row of an out-of-range label
    labels: Arg | None = None  # the labels a failed check reports
    applies: object = None     # node -> bool: when the kernel can run this node (None: always)

    @property
    def function(self):
        """The @njit kernel (a Lazy target imported on first use)."""
        return self.target.resolve() if isinstance(self.target, Lazy) else self.target

    def applies_to(self, node) -> bool:
        return self.applies is None or bool(self.applies(node))


BINDINGS: dict[str, Binding] = {}


def register_binding(binding: Binding) -> None:
    BINDINGS[binding.name] = binding


def binding_for(node) -> Binding | None:
    """The binding that runs `node`, if one exists and applies."""
    b = BINDINGS.get(node.op)
    return b if b is not None and b.applies_to(node) else None


def _last_axis(node) -> bool:
    x = node.inputs[0]
    return x.ndim >= 1 and node.attrs["axis"] == x.ndim - 1


_IN, _OUT = Arg("in", 0), Arg("out", 0)
_LABELS = Arg("in", 1)
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
    # forward and backward in one pass over the logits: nodes (loss, its gradient)
    Binding("softmax_cross_entropy_fused", nn.softmax_cross_entropy_fused,
            (_IN, _LABELS, Arg("in", 2, "scalar", node=1), Arg("out", 0, "scalar"),
             Arg("out", 0, node=1)), checked=True, labels=_LABELS),
]:
    register_binding(_binding)


# convolution and pooling: arrays, then the window as ints (kh, kw, sh, sw, ph, pw)
_WINDOW = tuple(Arg("attr", i, attr=key) for key in ("kernel", "stride", "pad") for i in (0, 1))
for _binding in [
    Binding("im2col", Lazy("conv", "im2col"), (_IN, _OUT) + _WINDOW),
    Binding("col2im", Lazy("conv", "col2im"), (_IN, _OUT) + _WINDOW),
    Binding("matmul_shared", Lazy("conv", "matmul_shared"), (_IN, Arg("in", 1), _OUT)),
    # a convolution's product with its bias (and ReLU) as an epilogue: nodes (matmul_shared,
    # add, relu) of graphc.plan.epilogues; the bias is the add's second operand
    Binding("matmul_shared_bias", Lazy("conv", "matmul_shared_bias"),
            (_IN, Arg("in", 1), Arg("out", 0, node=1), Arg("in", 1, node=1))),
    Binding("matmul_shared_bias_relu", Lazy("conv", "matmul_shared_bias_relu"),
            (_IN, Arg("in", 1), Arg("out", 0, node=2), Arg("in", 1, node=1))),
    # im2col folded into the product (graphc.plan.implicit): nodes (im2col, matmul_shared
    # [, add [, relu]]); x is im2col's input, the window its attributes
    Binding("conv2d_implicit", Lazy("conv", "conv2d_implicit"),
            (_IN, Arg("in", 0, node=1), Arg("out", 0, node=1)) + _WINDOW),
    Binding("conv2d_implicit_bias", Lazy("conv", "conv2d_implicit_bias"),
            (_IN, Arg("in", 0, node=1), Arg("out", 0, node=2), Arg("in", 1, node=2)) + _WINDOW),
    Binding("conv2d_implicit_bias_relu", Lazy("conv", "conv2d_implicit_bias_relu"),
            (_IN, Arg("in", 0, node=1), Arg("out", 0, node=3), Arg("in", 1, node=2))
            + _WINDOW),
    # the same below graphc.plan.implicit.MIN_K, choosing by the batch: the column buffer
    # (im2col's output) is kept for batches the implicit kernel loses on
    Binding("conv2d_by_batch", Lazy("conv", "conv2d_by_batch"),
            (_IN, Arg("in", 0, node=1), _OUT, Arg("out", 0, node=1)) + _WINDOW),
    Binding("conv2d_by_batch_bias", Lazy("conv", "conv2d_by_batch_bias"),
            (_IN, Arg("in", 0, node=1), _OUT, Arg("out", 0, node=2), Arg("in", 1, node=2))
            + _WINDOW),
    Binding("conv2d_by_batch_bias_relu", Lazy("conv", "conv2d_by_batch_bias_relu"),
            (_IN, Arg("in", 0, node=1), _OUT, Arg("out", 0, node=3), Arg("in", 1, node=2))
            + _WINDOW),
    Binding("matmul_shared_t", Lazy("conv", "matmul_shared_t"), (_IN, Arg("in", 1), _OUT)),
    Binding("matmul_batch_sum", Lazy("conv", "matmul_batch_sum"), (_IN, Arg("in", 1), _OUT)),
    Binding("max_pool2d", Lazy("conv", "max_pool2d"), (_IN, _OUT) + _WINDOW),
    Binding("max_pool2d_grad", Lazy("conv", "max_pool2d_grad"),
            (_IN, Arg("in", 1), _OUT) + _WINDOW),
    Binding("max_pool2d_select", Lazy("conv", "max_pool2d_select"),
            (_IN, Arg("in", 1), _OUT) + _WINDOW),
    Binding("avg_pool2d", Lazy("conv", "avg_pool2d"), (_IN, _OUT) + _WINDOW),
    Binding("avg_pool2d_grad", Lazy("conv", "avg_pool2d_grad"), (_IN, _OUT) + _WINDOW),
]:
    register_binding(_binding)
