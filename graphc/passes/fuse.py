"""Elementwise fusion: partition a graph into the steps of a plan.

Steps, in execution order:
- `FusedGroup`: a maximal set of elementwise nodes over one domain shape, with broadcast
  operands and scalar constants folded in, and optionally one reduction (sum/max/min/sum_to)
  at its end as the epilogue; becomes one generated kernel.
- `MatmulStep`: a 2-D matrix product (BLAS, or a small-matrix kernel), with transposes of its
  operands absorbed as BLAS transpose flags.
- `KernelStep`: a hand-written kernel (softmax, log_softmax, softmax_cross_entropy, one_hot,
  argmax).
- `ViewStep`: a reshape of a contiguous buffer (no work).
- `FallbackStep`: any other op, run by its NumPy reference.
Where a producer and consumer were not fused, the consumer's step records why.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import dtypes as dt
from ..graph import toposort
from ..ops.registry import ELEMENTWISE, REDUCE, SOURCE

# reasons shown by `graphc dump --optimized`
WHY_REDUCTION = "a reduction in the middle"
WHY_SHAPE = "a shape change"
WHY_BLAS = "a BLAS call"
WHY_KERNEL = "a dedicated kernel"
WHY_ORDER = "it needs a value computed after the group started"
WHY_EPILOGUE = "the group already ends in a reduction"


@dataclass
class Step:
    index: int
    nodes: list
    notes: list = field(default_factory=list)

    @property
    def outputs(self) -> list:
        return [t for n in self.nodes for t in n.outputs]


@dataclass
class FusedGroup(Step):
    shape: tuple = ()
    epilogue: object = None  # a reduction node, or None

    @property
    def domain(self) -> tuple:
        return self.shape


@dataclass
class MatmulStep(Step):
    a: object = None
    b: object = None
    trans_a: bool = False
    trans_b: bool = False


@dataclass
class KernelStep(Step):
    kernel: str = ""


@dataclass
class ViewStep(Step):
    pass


@dataclass
class FallbackStep(Step):
    pass


DEDICATED = {"softmax", "log_softmax", "softmax_cross_entropy", "softmax_cross_entropy_grad",
             "one_hot", "argmax"}


def _dedicated_ok(node) -> bool:
    if node.op in ("softmax", "log_softmax"):
        return node.attrs["axis"] == len(node.inputs[0].shape) - 1 and node.inputs[0].ndim >= 1
    if node.op == "argmax":
        return node.attrs["axis"] == node.inputs[0].ndim - 1 and node.inputs[0].ndim == 2
    if node.op == "one_hot":
        return node.inputs[0].ndim == 1
    return node.op in ("softmax_cross_entropy", "softmax_cross_entropy_grad")


def _is_swap_transpose(t) -> bool:
    return t.node.op == "transpose" and t.node.attrs["axes"] == (1, 0)


def _reduction_axes(node):
    """(axes reduced, in the input's frame) for a fusable reduction node, else None."""
    x = node.inputs[0]
    if not dt.is_float(x.dtype):
        return None
    if node.op in ("sum", "max", "min"):
        return tuple(node.attrs["axes"])
    if node.op == "sum_to":
        from ..ops.shape import sum_to_axes

        drop, keep = sum_to_axes(x.shape, node.attrs["shape"])
        return drop + keep
    return None


def schedule(roots) -> list[Step]:
    """Partition the graph of `roots` into plan steps (see the module docstring)."""
    nodes = toposort(roots)
    users: dict = {}
    for node in nodes:
        for t in node.inputs:
            users.setdefault(t, []).append(node)

    def virtual(t) -> bool:
        """A broadcast_to / transpose that its consumers absorb instead of materialising."""
        us = users.get(t, [])
        if t.node.op == "broadcast_to":
            return bool(us) and all(u.record.group == ELEMENTWISE for u in us) and \
                not any(t is r for r in roots)
        if _is_swap_transpose(t):
            return bool(us) and all(u.op == "matmul" and u.inputs[0].ndim == 2 and
                                    u.inputs[1].ndim == 2 for u in us) and \
                not any(t is r for r in roots)
        return False

    steps: list[Step] = []
    step_of: dict = {}  # tensor -> step index that produces it
    group_of_node: dict = {}

    def ready_index(t) -> int:
        """The step that makes t available (-1 for sources); virtual tensors look through."""
        if t.node.op in ("placeholder", "parameter", "constant"):
            return -1
        if virtual(t):
            return ready_index(t.node.inputs[0])
        return step_of[t]

    def add(step: Step):
        steps.append(step)
        for n in step.nodes:
            group_of_node[n.id] = step
            for t in n.outputs:
                step_of[t] = step.index

    for node in nodes:
        record = node.record
        if record.group == SOURCE:
            continue
        out = node.outputs[0]
        if (node.op in ("broadcast_to",) or _is_swap_transpose(out)) and virtual(out):
            continue
        if record.group == ELEMENTWISE or node.op == "broadcast_to":
            target = _pick_group(node, steps, ready_index, group_of_node, virtual)
            if target is not None:
                target.nodes.append(node)
                group_of_node[node.id] = target
                step_of[out] = target.index
                continue
            step = FusedGroup(len(steps), [node], shape=out.shape)
            step.notes += _why_not_fused(node, steps, group_of_node, virtual)
            add(step)
            continue
        axes = _reduction_axes(node) if record.group == REDUCE or node.op == "sum_to" else None
        if axes is not None:
            x = node.inputs[0]
            producer = None if x.node.op in ("placeholder", "parameter", "constant") or \
                virtual(x) else group_of_node.get(x.node.id)
            if isinstance(producer, FusedGroup) and producer.epilogue is None and \
                    producer.shape == x.shape:
                producer.epilogue = node
                group_of_node[node.id] = producer
                step_of[out] = producer.index
                continue
            step = FusedGroup(len(steps), [], shape=x.shape, epilogue=node)
            add(step)
            group_of_node[node.id] = step  # add() registers members only
            step_of[out] = step.index
            continue
        if node.op == "reshape":
            add(ViewStep(len(steps), [node]))
            continue
        if node.op == "matmul" and node.inputs[0].ndim == 2 and node.inputs[1].ndim == 2:
            a, b = node.inputs
            ta, tb = virtual(a) and _is_swap_transpose(a), virtual(b) and _is_swap_transpose(b)
            step = MatmulStep(len(steps), [node], a=a.node.inputs[0] if ta else a,
                              b=b.node.inputs[0] if tb else b, trans_a=ta, trans_b=tb)
            add(step)
            continue
        if node.op == "softmax_cross_entropy_grad":
            fwd = _forward_sce(node, steps, ready_index)
            if fwd is not None:  # forward and backward in one pass over the logits
                fwd.nodes.append(node)
                fwd.kernel = "softmax_cross_entropy_fused"
                group_of_node[node.id] = fwd
                step_of[out] = fwd.index
                continue
        if node.op in DEDICATED and _dedicated_ok(node):
            add(KernelStep(len(steps), [node], kernel=node.op))
            continue
        add(FallbackStep(len(steps), [node]))
    return steps


def _forward_sce(grad_node, steps, ready_index):
    """The softmax_cross_entropy step over the same logits and labels, if the incoming
    gradient is ready before it runs."""
    x, t, g = grad_node.inputs
    for step in steps:
        if isinstance(step, KernelStep) and step.kernel == "softmax_cross_entropy":
            fx, ft = step.nodes[0].inputs
            if fx is x and ft is t and ready_index(g) < step.index:
                return step
    return None


def _pick_group(node, steps, ready_index, group_of_node, virtual):
    """The latest fused group `node` may join: same domain, no epilogue yet, and every
    operand from outside the group ready before the group runs."""
    out = node.outputs[0]
    candidates = []
    for t in node.inputs:
        g = group_of_node.get(t.node.id)
        if isinstance(g, FusedGroup) and g.shape == out.shape and not virtual(t) and \
                t.node is not g.epilogue:
            candidates.append(g)

    def inside(t, g):  # a member's value (the epilogue's result exists only after the loop)
        return group_of_node.get(t.node.id) is g and t.node is not g.epilogue

    for g in sorted(candidates, key=lambda g: -g.index):
        if all(inside(t, g) or ready_index(t) < g.index for t in node.inputs):
            return g
    return None


def _why_not_fused(node, steps, group_of_node, virtual) -> list[str]:
    notes = []
    out = node.outputs[0]
    for t in node.inputs:
        producer = group_of_node.get(t.node.id)
        if producer is None:
            continue
        if isinstance(producer, FusedGroup):
            if producer.epilogue is t.node:
                why = WHY_REDUCTION
            elif producer.shape != out.shape:
                why = WHY_SHAPE
            elif producer.epilogue is not None:
                why = WHY_EPILOGUE
            else:
                why = WHY_ORDER
        elif isinstance(producer, MatmulStep):
            why = WHY_BLAS
        elif isinstance(producer, KernelStep):
            why = WHY_KERNEL
        elif isinstance(producer, ViewStep):
            why = WHY_SHAPE
        else:
            why = f"{t.node.op} runs as a NumPy fallback"
        notes.append(f"not fused with {t.node.op} (step {producer.index}): {why}")
    return notes
