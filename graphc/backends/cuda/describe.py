"""Text form of a cuda plan (`graphc dump --optimized` of a cuda function): the device and
how products run, the plan passes, every step with the launches it makes (kernel, grid and
block, or "host fallback"), where values live, and with `kernels=True` the generated CUDA
source."""
from __future__ import annotations

from ...plan import FusedGroup
from ...plan.describe import comment_safe as comment
from ...plan.describe import step_head, update_lines
from ...printing import node_line
from .. import described_runner
from .runner import HOST_FALLBACK


def describe(ex, n=None, kernels: bool = False) -> str:
    plan = ex.plan
    n, run, bound = described_runner(ex, n)
    mem = run.memory
    fallbacks = sum(1 for launch in run.launches if launch.how == HOST_FALLBACK)
    engine = "cuBLAS through nvmath-python" if ex.matmul == "cublas" else \
        "graphc's shared-memory kernel"
    lines = [(f"cuda plan on {ex.device}: {len(plan.steps)} steps, "
              f"{len(plan.lowered)} generated kernels{bound}"),
             f"matmul: {ex.matmul} ({engine})",
             f"plan passes: {', '.join(plan.passes)}",
             (f"memory: device arena peak {mem.peak} bytes ({mem.naive} without reuse), "
              f"{len(mem.inplace)} buffers written in place"),
             f"host fallbacks: {fallbacks}"]
    for note in plan.update_notes:
        lines.append(f"update {comment(note)}")
    for step in plan.steps:
        nodes = step.members if isinstance(step, FusedGroup) else step.nodes
        lines.append(f"[{step.index}] {step_head(step)}")
        for launch in run.launches:
            if launch.step == step.index:
                lines.append(f"      launch: {launch.how}")
        lines += update_lines(step, plan.names)
        for node in nodes:
            where = ", ".join(f"{plan.names[t]}->{plan.kinds.get(t) or 'in registers'}"
                              for t in node.outputs)
            lines.append(f"      {comment(node_line(node, plan.names))}    ; {where}  "
                         f"[{comment(node.loc)}]")
    if kernels:
        lines += ["", "# --- generated CUDA kernels ---"]
        for idx, kernel in ex.kernels.items():
            lines.append(f"# step {idx}: module {kernel.module}")
            lines.append(kernel.source)
    return "\n".join(lines)
