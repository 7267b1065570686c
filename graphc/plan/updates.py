"""Plan passes that fuse a parameter update into the step computing its last term.

An optimizer writes p_new = beta * p + alpha * x (SGD: beta = 1, alpha = -lr and x the
gradient; SGD with decoupled weight decay: beta = 1 - lr * wd; a momentum step p + v_new). When x is a 2-D matrix product read only by
this update, the product accumulates into p itself (BLAS gemm with beta=1, or the
small-matrix kernel): no gradient buffer, no extra pass over p. When x is the reduction at
the end of a fused kernel (a bias gradient), p += alpha * x runs after that kernel's loop.
The plan's `update_notes` say which updates were fused and why the others were not.
"""
from __future__ import annotations

from dataclasses import replace

from .. import dtypes as dt
from .steps import FusedGroup, MatmulStep, Update

# kernels that may fail a run-time check: nothing may be overwritten before they ran (a
# backend that runs getitem as a kernel checks its index arrays on the device; as a
# fallback step every op counts as checked anyway)
CHECKED_KERNELS = {"softmax_cross_entropy", "softmax_cross_entropy_grad",
                   "softmax_cross_entropy_fused", "one_hot", "getitem", "getitem_grad"}


def _scaled(t, group, users, step_of):
    """(tensor, c, mul node) when t is c * tensor, a mul with a scalar constant read only
    here, computed in `group` or in a fused group of its own; else (t, 1.0, None)."""
    node = t.node
    own = step_of.get(t)
    if node.op == "mul" and len(users.get(t, [])) == 1 and (
            node in group.nodes or (isinstance(own, FusedGroup) and own.epilogue is None and
                                    list(own.nodes) == [node])):
        consts = [x for x in node.inputs if x.node.op == "constant" and x.node.value.size == 1]
        others = [x for x in node.inputs if not any(x is c for c in consts)]
        if len(consts) == 1 and len(others) == 1:
            return others[0], float(consts[0].node.value.reshape(())), node
    return t, 1.0, None


def update_pattern(plan, v, param):
    """(groups, x, alpha, beta) when v = beta * param + alpha * x (a scaled sum of the
    parameter and one term, as an optimizer writes it: p - lr * g, p + (-lr) * g, p - g,
    decay * p - lr * g) is computed by fused groups of its own (the groups to remove when
    the update is fused); else a string: why not."""
    g = plan.graph
    group = g.step_of.get(v)
    if not isinstance(group, FusedGroup) or group.epilogue is not None or \
            v.node is not group.nodes[-1] or not dt.is_float(v.dtype):
        return "the new value is not computed by an elementwise kernel of its own"
    if g.users.get(v):
        return "the new value is read by other nodes"
    vn = v.node
    if vn.op not in ("add", "sub"):
        return "it is not a sum of the parameter and one term"
    terms = [_scaled(t, group, g.users, g.step_of) for t in vn.inputs]
    if vn.op == "sub":
        terms[1] = (terms[1][0], -terms[1][1], terms[1][2])
    mine = [i for i, (t, _, _) in enumerate(terms) if t is param]
    if len(mine) != 1:
        return "it is not a sum of the parameter and one term"
    (_, beta, p_mul), (x, alpha, x_mul) = terms[mine[0]], terms[1 - mine[0]]
    used = {n.id for n in (vn, p_mul, x_mul) if n is not None}
    groups = {g.step_of[n.outputs[0]] for n in (p_mul, x_mul) if n is not None} | {group}
    if {n.id for gr in groups for n in gr.nodes} != used:
        return "the term is not a constant times one tensor"
    return tuple(sorted(groups, key=lambda gr: gr.index)), x, alpha, beta


def update_is_safe(plan, param, v, index, groups) -> str | None:
    """Why param may not be overwritten at step `index` (None: it may): a later step may
    fail a check, read param, or an output or other update reads it. `groups`: the
    update's own groups, which the fusion removes."""
    g = plan.graph
    if sum(1 for w in plan.update_values if w is v) > 1:
        # (written in place into one parameter, the value would reach none of the others:
        # the end of the call copies only values that were not written in place)
        return "the same value is another parameter's update too"
    if g.last_checked > index:
        return "a later step checks its input at run time (a failed call must change nothing)"
    if g.read_after(param, index, skip={gr.index for gr in groups}):
        return "a later step reads the parameter"
    if any(w is not v for w in g.root_sources.get(id(param), ())):
        return "an output or another update reads the parameter"
    return None


def _renumber(steps) -> tuple:
    return tuple(step if step.index == i else replace(step, index=i)
                 for i, step in enumerate(steps))


def splice(plan, replaced: dict):
    """plan with each step whose index is in `replaced` swapped for the (possibly empty)
    list of steps there, renumbered; plan itself when nothing is replaced."""
    if not replaced:
        return plan
    steps = [new for s in plan.steps for new in replaced.get(s.index, [s])]
    return replace(plan, steps=_renumber(steps))


def fuse_gemm_updates(plan):
    """param + alpha * (A @ B) as a product accumulating into param."""
    g = plan.graph
    steps = list(plan.steps)
    notes = list(plan.update_notes)
    removed = set()
    for (param, _), v in zip(plan.program.updates, plan.update_values):
        found = update_pattern(plan, v, param)
        if isinstance(found, str):
            continue  # (said by fuse_reduction_updates)
        groups, m, alpha, beta = found
        mm = g.step_of.get(m)
        if not isinstance(mm, MatmulStep) or m.node.op != "matmul":
            continue
        if mm.update is not None or len(g.users.get(m, [])) != 1 or id(m) in g.root_ids or \
                m.shape != param.shape:
            notes.append(f"{param.name!r}: not fused: the product is read elsewhere too")
            continue
        # gemm and the small-matrix kernel write param while they read their operands
        if any(g.source_of(x) is param for x in (mm.a, mm.b)):
            notes.append(f"{param.name!r}: not fused: the product reads the parameter itself")
            continue
        why = update_is_safe(plan, param, v, mm.index, groups)
        if why is not None:
            notes.append(f"{param.name!r}: not fused into the product: {why}")
            continue
        steps[mm.index] = replace(mm, update=Update(param, alpha, v, beta))
        removed |= {gr.index for gr in groups}
        scale = "" if beta == 1 else f" (the parameter scaled by {beta!r} first)"
        notes.append(f"{param.name!r}: fused: the product accumulates {alpha!r} * A@B into "
                     f"it{scale}")
    return _with_fusions(plan, steps, removed, notes)


def _with_fusions(plan, steps, removed, notes):
    """The plan with fused steps in place, the updates' own groups gone, steps renumbered."""
    steps = _renumber([s for s in steps if s.index not in removed])
    return replace(plan, steps=steps, update_notes=tuple(notes))


def fuse_reduction_updates(plan):
    """param + alpha * sum_to(g) (a bias update) as a loop after the reducing kernel's."""
    g = plan.graph
    steps = list(plan.steps)
    notes = list(plan.update_notes)
    removed = set()
    into_products = {id(s.update.value) for s in steps if isinstance(s, MatmulStep) and
                     s.update is not None}
    for (param, _), v in zip(plan.program.updates, plan.update_values):
        if id(v) in into_products:
            continue
        found = update_pattern(plan, v, param)
        if isinstance(found, str):
            notes.append(f"{param.name!r}: not fused: {found}")
            continue
        groups, r, alpha, beta = found
        producer = g.step_of.get(r)
        if isinstance(producer, MatmulStep):
            continue  # fuse_gemm_updates said why not
        if not isinstance(producer, FusedGroup) or producer.epilogue is not r.node or \
                producer.post is not None or r.node.op not in ("sum", "sum_to") or \
                r.shape != param.shape or len(g.users.get(r, [])) != 1 or id(r) in g.root_ids:
            notes.append(f"{param.name!r}: not fused: its term is neither a product read "
                         f"only here nor a reduction at the end of a kernel")
            continue
        why = update_is_safe(plan, param, v, producer.index, groups)
        if why is not None:
            notes.append(f"{param.name!r}: not fused into the reduction: {why}")
            continue
        steps[producer.index] = replace(producer, post=Update(param, alpha, v, beta))
        removed |= {gr.index for gr in groups}
        notes.append(f"{param.name!r}: fused: {alpha!r} * the reduction is added after its "
                     f"loop")
    return _with_fusions(plan, steps, removed, notes)
