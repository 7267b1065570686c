"""A plan as text, backend-neutral (`graphc dump --optimized --after PASS`): the passes run,
the fused updates, and every step with its nodes and, once assigned, where values live."""
from __future__ import annotations

from ..printing import comment_safe, node_line
from .steps import FallbackStep, FusedGroup, KernelStep, MatmulStep, ViewStep


def step_head(step) -> str:
    """One line naming what a step runs."""
    if isinstance(step, FusedGroup):
        members = [nd.op for nd in step.nodes]
        if step.epilogue is not None:
            members.append(f"{step.epilogue.op} (epilogue)")
        return f"fused kernel: {', '.join(members)}"
    if isinstance(step, MatmulStep):
        flags = "".join([" trans_a" if step.trans_a else "", " trans_b" if step.trans_b
                         else ""])
        return f"matmul{flags}"
    if isinstance(step, KernelStep):
        return f"kernel {step.kernel} (hand-written)"
    if isinstance(step, ViewStep):
        return "view (reshape, no copy)"
    if isinstance(step, FallbackStep):
        return f"NumPy fallback {step.nodes[0].op} (no kernel: runs the op's NumPy reference)"
    return step.kind


def update_lines(step, names) -> list:
    """The fused update a step applies, if any."""
    out = []
    product = ("product, accumulated into the parameter in place (BLAS gemm with beta=1, or "
               "the small-matrix kernel)")
    for update, what in ((getattr(step, "update", None), product),
                         (getattr(step, "post", None), "reduction, in place after the loop")):
        if update is not None:
            scale = "" if update.beta == 1 else f"{update.beta!r} * "
            out.append(f"      fused update: {names[update.value]} = {scale}"
                       f"{comment_safe(update.param.name)} + {update.alpha!r} * {what}")
    return out


def describe_plan(plan) -> str:
    names = plan.names
    last = plan.passes[-1] if plan.passes else "nothing"
    lines = [f"plan after {last}: {len(plan.steps)} steps",
             f"plan passes run: {', '.join(plan.passes)}"]
    lines += [f"update {comment_safe(note)}" for note in plan.update_notes]
    for step in plan.steps:
        lines.append(f"[{step.index}] {step_head(step)}")
        lines += update_lines(step, names)
        nodes = step.members if isinstance(step, FusedGroup) else step.nodes
        for node in nodes:
            where = ", ".join(f"{names[t]}->{plan.kinds[t]}" for t in node.outputs
                              if t in plan.kinds)
            lines.append(f"      {comment_safe(node_line(node, names))}"
                         + (f"    ; {where}" if where else "")
                         + f"  [{comment_safe(node.loc)}]")
        lines += [f"      note: {note}" for note in step.notes]
    return "\n".join(lines)
