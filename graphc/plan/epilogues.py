"""A plan pass that moves a convolution's bias and ReLU into the kernel computing its
product (an epilogue).

conv2d builds `matmul_shared` (W @ col[n] per image), a reshape to (N, OC, OH, OW), then
`add` of the bias reshaped to (OC, 1, 1); a ReLU usually follows. Scheduled as they are,
the add and ReLU are a fused kernel of their own: one more pass over the whole output,
which is written by the product, read back from memory and written again. The product
kernel can instead apply them to each image's product right after its GEMM, while that
image's (OC, OH*OW) block is still in cache: the same float operations, element by element,
in one pass.

The pattern, checked node by node (anything else is left as it was):
- a KernelStep `matmul_shared` whose output is read only by one reshape (a ViewStep) that
  keeps (N, OC) in front;
- that reshape read only by an `add` of a per-channel operand (OC values along axis 1,
  the same dtype), the add being the first node of a fused group with no reduction;
- the group starts with the add, then a `relu` of it that is the add's only reader; the
  group's other nodes (in training, the ReLU's gradient mask, computed from its output)
  stay a fused group of their own, after the product. Without a ReLU, only an add alone
  is taken: an add fused with other work would be read back by that work, saving nothing.
The fused step takes the group's place in the plan (its bias may be a view made after the
product), stores only the last node's output, and `graphc dump --optimized` notes it.
"""
from __future__ import annotations

from dataclasses import replace

from .steps import FusedGroup, KernelStep, ViewStep
from .updates import splice

KERNELS = {1: "matmul_shared_bias", 2: "matmul_shared_bias_relu"}  # by the nodes taken


def _per_channel(b, out) -> bool:
    """Whether b, broadcast against out (N, OC, ...), holds one value per channel."""
    if b.dtype != out.dtype or b.ndim > out.ndim or None in b.shape:
        return False
    shape = (1,) * (out.ndim - b.ndim) + tuple(b.shape)
    return shape[1] == out.shape[1] and all(d == 1 for i, d in enumerate(shape) if i != 1)


def _epilogue(g, step):
    """(view step, group, nodes taken) when step's product can take its bias (and ReLU)
    from the front of a fused group; the group keeps the rest of its nodes (in training,
    the ReLU's gradient mask), which must not read what stays in registers."""
    t = step.nodes[0].outputs[0]
    users = g.users.get(t, [])
    if len(step.nodes) != 1 or len(users) != 1 or id(t) in g.root_ids:
        return None
    view = g.step_of.get(users[0].outputs[0])
    u = users[0].outputs[0]
    if not isinstance(view, ViewStep) or u.ndim < 3 or u.shape[:2] != t.shape[:2]:
        return None
    readers = g.users.get(u, [])
    if len(readers) != 1 or id(u) in g.root_ids or readers[0].op != "add":
        return None
    add = readers[0]
    group = g.step_of.get(add.outputs[0])
    if not isinstance(group, FusedGroup) or group.nodes[0] is not add:
        return None
    if add.inputs[0] is not u or add.outputs[0].shape != u.shape or \
            not _per_channel(add.inputs[1], u):
        return None
    s = add.outputs[0]
    nodes = [add]
    relu = group.nodes[1] if len(group.nodes) > 1 else None
    if relu is not None and relu.op == "relu" and relu.inputs[0] is s and \
            [n.id for n in g.users.get(s, [])] == [relu.id] and id(s) not in g.root_ids and \
            id(s) not in g.update_ids:
        nodes.append(relu)
    rest = list(group.nodes[len(nodes):]) + ([group.epilogue] if group.epilogue else [])
    if len(nodes) == 1 and rest:
        return None  # the sum is read by the group's other work: no pass saved
    if any(x is s for n in rest for x in n.inputs):
        return None
    return view, group, nodes


def fuse_product_epilogues(plan):
    """Each convolution product followed by its bias (and ReLU) as one kernel step, in the
    place of the fused group that computed them (which keeps any other work it had)."""
    has_kernel = plan.options.has_kernel or (lambda what: False)
    if not has_kernel(KERNELS[1]):
        return plan
    g = plan.graph
    replaced: dict = {}  # step index -> the steps in its place
    for step in plan.steps:
        if not isinstance(step, KernelStep) or step.kernel != "matmul_shared":
            continue
        found = _epilogue(g, step)
        if found is None or not has_kernel(KERNELS[len(found[2])]):
            continue
        view, group, nodes = found
        if group.index in replaced:  # it took a mask already: its nodes are not g's now
            continue
        taken = "its bias and ReLU" if len(nodes) == 2 else "its bias"
        fused = KernelStep(group.index, step.nodes + tuple(nodes), step.notes + (
            f"{taken} applied by the product kernel, image by image while in cache",),
            kernel=KERNELS[len(nodes)], stores=(nodes[-1].outputs[0],))
        rest = group.nodes[len(nodes):]
        reader = _only_reader(g, group, rest)
        if reader is not None and reader.index not in replaced:  # (the ReLU's mask)
            moved = tuple(f"not fused with {n.op} (step" for n in rest)
            notes = tuple(x for x in reader.notes if not x.startswith(moved))
            replaced[reader.index] = [replace(reader, nodes=rest + reader.nodes, notes=notes)]
            rest = ()
        keep = [replace(group, nodes=rest, notes=())] if rest or group.epilogue is not None else []
        replaced[group.index] = [fused] + keep
        replaced[step.index] = replaced[view.index] = []
    return splice(plan, replaced)


def _only_reader(g, group, rest):
    """The later fused group that alone reads the nodes left in `group` (in training the
    ReLU's gradient mask, read by the backward's where), when they can move into it: the
    mask is then computed where it is used, from the stored ReLU output, instead of in a
    pass of its own that writes it and a later one that reads it back."""
    if not rest or group.epilogue is not None or group.post is not None:
        return None
    readers = set()
    for n in rest:
        t = n.outputs[0]
        if id(t) in g.root_ids or id(t) in g.update_ids:
            return None
        for u in g.users.get(t, []):
            if u not in rest:
                readers.add(g.step_of.get(u.outputs[0]))
    if len(readers) != 1:
        return None
    (reader,) = readers
    if not isinstance(reader, FusedGroup) or reader.shape != group.shape or \
            reader.index <= group.index or any(u is reader.epilogue for n in rest
                                               for u in g.users.get(n.outputs[0], [])):
        return None
    return reader
