"""Text form of a cpu plan (`graphc dump --optimized`): the plan passes run, every step with
its nodes and where their values live, the fused updates, why neighbours were not fused,
the arena's peak bytes, and with `kernels=True` the generated kernels and runner."""
from __future__ import annotations

from ...plan import FusedGroup
from ...plan.describe import comment_safe as comment
from ...plan.describe import step_head, update_lines
from ...printing import node_line
from .. import described_runner


def _head(ex, step) -> str:
    """The step's line, with the generated module and its variants for a fused group."""
    if not isinstance(step, FusedGroup):
        return step_head(step)
    low = ex.plan.lowered[step.index]
    return (f"fused kernel {ex.kernels[step.index].module}:{low.spec.name} rank "
            f"{low.spec.rank} (serial + parallel): {step_head(step).split(': ', 1)[1]}")


def describe(ex, n=None, kernels: bool = False) -> str:
    plan = ex.plan
    n, run, bound = described_runner(ex, n)
    names = plan.names
    mem = run.memory
    lines = [f"plan: {len(plan.steps)} steps, {len(plan.lowered)} generated kernels{bound}",
             f"plan passes: {', '.join(plan.passes)}",
             (f"memory: arena peak {mem.peak} bytes ({mem.naive} without reuse), "
              f"{len(mem.inplace)} buffers written in place")]
    for note in plan.update_notes:
        lines.append(f"update {comment(note)}")
    for step in plan.steps:
        lines.append(f"[{step.index}] {_head(ex, step)}")
        lines += update_lines(step, names)
        nodes = step.members if isinstance(step, FusedGroup) else step.nodes
        for node in nodes:
            outs = []
            for t in node.outputs:
                k = plan.kinds.get(t)
                where = k or "in registers"
                if k == "arena" and t in mem.offsets:
                    where = f"arena@{mem.offsets[t]}"
                    if t in mem.inplace:
                        where += f" (in place of {names[mem.inplace[t]]})"
                outs.append(f"{names[t]}->{where}")
            lines.append(f"      {comment(node_line(node, names))}    ; {', '.join(outs)}  "
                         f"[{comment(node.loc)}]")
        for note in step.notes:
            lines.append(f"      note: {note}")
    if kernels:
        from ...kernels.codegen.elementwise import render

        lines += ["", "# --- generated kernels ---"]
        for idx, low in plan.lowered.items():
            lines.append(f"# step {idx}: module {ex.kernels[idx].module}")
            lines.append(render(low.spec, comments=True))
        lines.append("# --- runner ---")
        lines.append(run.source)
    return "\n".join(lines)
