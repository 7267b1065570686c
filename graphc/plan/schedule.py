"""Scheduling: partition an optimised graph into the steps of a plan (see steps.py), fusing
elementwise chains and their reductions. Where a producer and its consumer were not fused,
the consumer's step notes why (`graphc dump --optimized` shows it).

Steps are drafted as mutable `_Draft`s while the graph is walked, then frozen.
"""
from __future__ import annotations

import itertools

from .. import dtypes as dt
from ..graph import consumers, toposort
from ..ops.registry import ELEMENTWISE, REDUCE, SOURCE
from .steps import FallbackStep, FusedGroup, KernelStep, MatmulStep, ViewStep

# reasons shown by `graphc dump --optimized`
WHY_REDUCTION = "a reduction in the middle"
WHY_SHAPE = "a shape change"
WHY_BLAS = "a BLAS call"
WHY_KERNEL = "a dedicated kernel"
WHY_ORDER = "it needs a value computed after the group started"
WHY_EPILOGUE = "the group already ends in a reduction"
WHY_FULL = "the group is full"

# The most nodes one fused kernel takes. Numba's compile time grows faster than linearly in
# a kernel's length (a 400-op chain took 36 s, a 5,000-op one minutes), while fusing more
# than a few dozen ops saves no memory traffic worth having: each op already reads its
# operands from registers. Long chains are cut into kernels of this size, which share one
# cached compiled kernel whenever their structure repeats.
MAX_FUSED_NODES = 48
# siblings (other readers of an operand) whose groups an elementwise node may join: the
# first few (a tensor may have 10k readers, and each of them would look at all the others)
MAX_SIBLINGS = 16

class _Draft:
    """A step being built: its kind, nodes and fields, frozen by `freeze`."""

    def __init__(self, kind, index, nodes, **fields):
        self.kind = kind
        self.index = index
        self.nodes = list(nodes)
        self.notes: list = []
        self.fields = fields

    def freeze(self):
        return self.kind(self.index, tuple(self.nodes), tuple(self.notes), **self.fields)


def is_swap_transpose(t) -> bool:
    return t.node.op == "transpose" and t.node.attrs["axes"] == (1, 0)


def reduction_axes(node):
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


def schedule(roots, has_kernel=None) -> tuple:
    """Partition the graph of `roots` into plan steps (see the module docstring).

    has_kernel(node or pattern name) -> bool: whether the backend has a hand-written kernel
    for that node (a KernelStep), or for a fused pattern such as
    "softmax_cross_entropy_fused". None: no kernels (every other op is a fallback)."""
    has_kernel = has_kernel or (lambda what: False)
    nodes = toposort(roots)
    users = consumers(nodes)
    root_ids = {id(r) for r in roots}

    virtual_of: dict = {}  # tensor -> virtual(t), computed once: a tensor may have 10k users

    def virtual(t) -> bool:
        """A broadcast_to / transpose that its consumers absorb instead of materialising."""
        if t not in virtual_of:
            virtual_of[t] = _absorbed(t, users.get(t, []), root_ids)
        return virtual_of[t]

    drafts: list = []
    step_of: dict = {}  # tensor -> index of the step that produces it
    draft_of: dict = {}  # node id -> draft

    def ready_index(t) -> int:
        """The step that makes t available (-1 for sources); virtual tensors look through."""
        while virtual(t):
            t = t.node.inputs[0]
        if t.node.op in ("placeholder", "parameter", "constant"):
            return -1
        return step_of[t]

    sce_steps: dict = {}  # (id(logits), id(labels)) -> softmax_cross_entropy kernel drafts

    def add(draft):
        drafts.append(draft)
        if draft.kind is KernelStep and draft.fields["kernel"] == "softmax_cross_entropy":
            logits, labels = draft.nodes[0].inputs
            sce_steps.setdefault((id(logits), id(labels)), []).append(draft)
        for n in draft.nodes:
            draft_of[n.id] = draft
            for t in n.outputs:
                step_of[t] = draft.index

    def join(draft, node, epilogue=False):
        if epilogue:
            draft.fields["epilogue"] = node
        else:
            draft.nodes.append(node)
        draft_of[node.id] = draft
        step_of[node.outputs[0]] = draft.index

    for node in nodes:
        record = node.record
        if record.group == SOURCE:
            continue
        out = node.outputs[0]
        if (node.op == "broadcast_to" or is_swap_transpose(out)) and virtual(out):
            continue
        if record.group == ELEMENTWISE or node.op == "broadcast_to":
            target = _pick_group(node, ready_index, draft_of, virtual, users)
            if target is not None:
                join(target, node)
                continue
            draft = _Draft(FusedGroup, len(drafts), [node], shape=out.shape, epilogue=None)
            draft.notes += _why_not_fused(node, draft_of)
            add(draft)
            continue
        axes = reduction_axes(node) if record.group == REDUCE or node.op == "sum_to" else None
        if axes is not None:
            x = node.inputs[0]
            producer = None if x.node.op in ("placeholder", "parameter", "constant") or \
                virtual(x) else draft_of.get(x.node.id)
            if producer is not None and producer.kind is FusedGroup and \
                    producer.fields["epilogue"] is None and producer.fields["shape"] == x.shape:
                join(producer, node, epilogue=True)
                continue
            draft = _Draft(FusedGroup, len(drafts), [], shape=x.shape, epilogue=None)
            add(draft)
            join(draft, node, epilogue=True)
            continue
        if node.op == "reshape":
            add(_Draft(ViewStep, len(drafts), [node]))
            continue
        if node.op == "matmul" and node.inputs[0].ndim == 2 and node.inputs[1].ndim == 2:
            a, b = node.inputs
            ta, tb = virtual(a) and is_swap_transpose(a), virtual(b) and is_swap_transpose(b)
            add(_Draft(MatmulStep, len(drafts), [node], a=a.node.inputs[0] if ta else a,
                       b=b.node.inputs[0] if tb else b, trans_a=ta, trans_b=tb))
            continue
        if node.op == "softmax_cross_entropy_grad" and \
                has_kernel("softmax_cross_entropy_fused"):
            fwd = _forward_sce(node, sce_steps, ready_index)
            if fwd is not None:  # forward and backward in one pass over the logits
                join(fwd, node)
                fwd.fields["kernel"] = "softmax_cross_entropy_fused"
                continue
        if has_kernel(node):
            add(_Draft(KernelStep, len(drafts), [node], kernel=node.op))
            continue
        add(_Draft(FallbackStep, len(drafts), [node]))
    return tuple(d.freeze() for d in drafts)


def _absorbed(t, us, root_ids) -> bool:
    """Whether every user of t (a broadcast_to or a 2-D swap transpose) can absorb it."""
    if not us or id(t) in root_ids:
        return False
    if t.node.op == "broadcast_to":
        return all(u.record.group == ELEMENTWISE for u in us)
    if is_swap_transpose(t):
        return all(u.op == "matmul" and u.inputs[0].ndim == 2 and u.inputs[1].ndim == 2
                   for u in us)
    return False


def _forward_sce(grad_node, sce_steps, ready_index):
    """The softmax_cross_entropy step over the same logits and labels, if the incoming
    gradient is ready before it runs."""
    x, t, g = grad_node.inputs
    for draft in sce_steps.get((id(x), id(t)), ()):
        if draft.fields["kernel"] == "softmax_cross_entropy" and ready_index(g) < draft.index:
            return draft
    return None


def _pick_group(node, ready_index, draft_of, virtual, users):
    """The latest fused group `node` may join: same domain, not reading the group's
    epilogue, and every operand from outside the group ready before the group runs.

    The groups of its operands' producers are tried first; failing them, those of its
    siblings: earlier nodes reading one of its operands in full (an array of the node's
    own shape, not a broadcast constant). Without the siblings, a value read by two
    branches that meet again ((x+1)*(x-1), exp(-x)*tanh(x), the gradient of a fanned-out
    tensor) took two kernels and a pass over an intermediate, where the sibling's group
    reads that operand anyway."""
    out = node.outputs[0]

    def fits(g, t):
        return g is not None and g.kind is FusedGroup and g.fields["shape"] == out.shape and \
            not virtual(t) and t.node is not g.fields["epilogue"] and \
            len(g.nodes) < MAX_FUSED_NODES

    def inside(t, g):  # a member's value (the epilogue's result exists only after the loop)
        return draft_of.get(t.node.id) is g and t.node is not g.fields["epilogue"]

    def first_ready(candidates):
        for g in sorted(candidates, key=lambda g: -g.index):
            if all(inside(t, g) or ready_index(t) < g.index for t in node.inputs):
                return g
        return None

    producers = [g for t in node.inputs if fits(g := draft_of.get(t.node.id), t)]
    found = first_ready(producers)
    if found is not None:
        return found
    siblings = []
    for t in node.inputs:
        if t.shape != out.shape or virtual(t):
            continue
        for u in itertools.islice(users.get(t, ()), MAX_SIBLINGS):
            g = draft_of.get(u.id)
            if u is not node and fits(g, u.outputs[0]) and g not in siblings:
                siblings.append(g)
    return first_ready(siblings)


def _why_not_fused(node, draft_of) -> list[str]:
    notes = []
    out = node.outputs[0]
    for t in node.inputs:
        producer = draft_of.get(t.node.id)
        if producer is None:
            continue
        if producer.kind is FusedGroup:
            if producer.fields["epilogue"] is t.node:
                why = WHY_REDUCTION
            elif producer.fields["shape"] != out.shape:
                why = WHY_SHAPE
            elif producer.fields["epilogue"] is not None:
                why = WHY_EPILOGUE
            elif len(producer.nodes) >= MAX_FUSED_NODES:
                why = WHY_FULL
            else:
                why = WHY_ORDER
        elif producer.kind is MatmulStep:
            why = WHY_BLAS
        elif producer.kind is KernelStep:
            why = WHY_KERNEL
        elif producer.kind is ViewStep:
            why = WHY_SHAPE
        else:
            why = f"{t.node.op} runs as a NumPy fallback"
        notes.append(f"not fused with {t.node.op} (step {producer.index}): {why}")
    return notes
