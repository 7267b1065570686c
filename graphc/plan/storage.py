"""Plan passes that decide where values live: lowering fused groups to kernel specs, the
storage kind of every tensor, and kernels that write their output over a dying operand."""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import replace

from .steps import FallbackStep, FusedGroup, MatmulStep, ViewStep


def _lower_all(plan, aliases: dict, only=None) -> dict:
    """step index -> lowered group, for every fused group (or those in `only`; the others
    keep their lowering in plan.lowered)."""
    from .lower import lower_group

    g = plan.graph
    lowered = {} if only is None else dict(plan.lowered)
    for step in plan.steps:
        if isinstance(step, FusedGroup) and (only is None or step.index in only):
            lowered[step.index] = lower_group(
                step, g.needed_outside(step), g.virtual, plan.names,
                fastmath=plan.options.fastmath, aliases=aliases.get(step.index, ()),
                post=None if step.post is None else (step.post.alpha, step.post.beta))
    return lowered


def lower(plan):
    """Each fused group as a kernel spec: its loop nest, inputs, outputs and body."""
    return replace(plan, lowered=_lower_all(plan, {}))


def assign_storage(plan):
    """The kind of every materialised tensor: feed, param, const (sources), view (a
    reshape of another buffer), fresh (an output, allocated per call), arena (an
    intermediate in the shared arena), absorbed (an update a step applies itself),
    inplace (an update written straight into its parameter by the kernel computing it)."""
    g = plan.graph
    kinds = {}
    for node in plan.nodes:
        t = node.outputs[0]
        source = {"placeholder": "feed", "parameter": "param", "constant": "const"}
        if node.op in source:
            kinds[t] = source[node.op]
    for step in plan.steps:
        if isinstance(step, ViewStep):
            kinds[step.nodes[0].outputs[0]] = "view"
        elif isinstance(step, FallbackStep):
            for t in step.outputs:
                kinds[t] = "fresh"
        elif isinstance(step, MatmulStep) and step.update is not None:
            kinds[step.outputs[0]] = "absorbed"
        else:
            for t in g.writes(step):
                kinds[t] = "fresh" if id(t) in g.root_ids else "arena"
    plan = replace(plan, kinds=kinds)
    g = plan.graph
    inplace = {}
    for step in plan.steps:  # updates fused into a product or a reduction
        update = getattr(step, "update", None) or getattr(step, "post", None)
        if update is not None:
            kinds[update.value] = "inplace"
            inplace[id(update.value)] = update.param
    values = plan.update_values
    times_updated = Counter(id(v) for v in values)
    # outputs and the other updates read the parameter's old value after the steps
    read_at_end = {id(g.base(w)) for w in plan.out_tensors + values}
    for (param, _), v in zip(plan.program.updates, values):
        # an update kernel writes straight into its parameter when nothing reads the old
        # value after it and no check can fail after it
        step = g.step_of.get(v)
        if not isinstance(step, FusedGroup) or kinds.get(v) != "arena":
            continue
        if step.index <= g.last_checked or g.users.get(v) or times_updated[id(v)] > 1:
            continue
        if g.read_after(param, step.index) or id(param) in read_at_end:
            continue
        kinds[v] = "inplace"
        inplace[id(v)] = param
    return replace(plan, kinds=kinds, inplace_updates=inplace)


def _param_pairs(plan, low) -> list:
    """(output j, input i) for each output of a group that updates a parameter in place
    ("inplace") and reads that same parameter at the same index: the kernel then writes
    into its operand's array rather than getting the parameter twice (two arguments that
    overlap exactly sent LLVM's vector loop to its scalar fallback: 7x slower)."""
    pairs = []
    for j, t in enumerate(low.outputs):
        if plan.kinds.get(t) != "inplace":
            continue
        param = plan.inplace_updates.get(id(t))
        for i, (x, pattern) in enumerate(zip(low.inputs, low.in_patterns)):
            if x is param and all(pattern):
                pairs.append((j, i))
                break
    return pairs


def plan_inplace(plan):
    """Where a fused group's output can take the bytes of an operand that dies at that
    group (same shape and dtype, read at the same index), the kernel is generated to write
    into that operand itself: one array, so LLVM still vectorizes the loop (two arrays that
    overlap exactly would send it to its scalar fallback). A parameter updated in place by
    a group that reads it is written the same way (`_param_pairs`), whatever the options."""
    reuse = plan.options.inplace and plan.options.memory_reuse
    last = plan.graph.liveness()[1] if reuse else {}  # (only the reuse below reads it)
    kinds = plan.kinds
    aliases, pairs_of = {}, {}
    for step in plan.steps:
        if not isinstance(step, FusedGroup):
            continue
        low = plan.lowered[step.index]
        pairs = _param_pairs(plan, low)
        if not reuse:
            if pairs:
                aliases[step.index] = tuple(pairs)
            continue
        taken = {i for _, i in pairs}
        # the operands dying here, by type, in argument order: each output takes the first
        # free one of its type (a dict of queues, not a scan: a group may have 10k of each)
        dying: dict = {}
        for i, (x, pattern) in enumerate(zip(low.inputs, low.in_patterns)):
            if all(pattern) and kinds.get(x) == "arena" and last.get(x) == step.index \
                    and i not in taken:
                dying.setdefault((x.shape, x.dtype), deque()).append(i)
        for j, t in enumerate(low.outputs):
            free = dying.get((t.shape, t.dtype))
            if kinds.get(t) == "arena" and free:
                i = free.popleft()
                pairs.append((j, i))
                pairs_of[t] = low.inputs[i]
        if pairs:
            aliases[step.index] = tuple(pairs)
    if not aliases:
        return plan
    return replace(plan, lowered=_lower_all(plan, aliases, only=aliases),
                   inplace_pairs=pairs_of)
