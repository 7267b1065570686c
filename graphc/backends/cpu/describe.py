"""Text form of a compiled cpu plan: steps, fused groups with their member ops, generated
kernel names, buffer assignment, why neighbours were not fused, and peak bytes."""
from __future__ import annotations

from ...passes.fuse import FallbackStep, FusedGroup, KernelStep, MatmulStep, ViewStep
from ...printing import node_line

DEFAULT_N = 32


def describe(ex, n=None, kernels: bool = False) -> str:
    has_batch = any(None in t.shape for t in ex.program.inputs)
    if n is None:
        n = next(iter(ex._bound), DEFAULT_N if has_batch else None)
    run = ex.bind(n)
    names = ex.names
    lines = [f"plan: {len(ex.steps)} steps, {len(ex.lowered)} generated kernels"
             + (f" (shapes bound at N={n})" if has_batch else "")]
    mem = run.memory
    lines.append(f"memory: arena peak {mem.peak} bytes ({mem.naive} without reuse), "
                 f"{len(mem.inplace)} buffers written in place")
    for step in ex.steps:
        kind = type(step).__name__
        if isinstance(step, FusedGroup):
            low = ex.lowered[step.index]
            members = [nd.op for nd in step.nodes]
            if step.epilogue is not None:
                members.append(f"{step.epilogue.op} (epilogue)")
            lines.append(f"[{step.index}] fused kernel {low.module}:{low.spec.name} "
                         f"rank {low.spec.rank}: {', '.join(members)}")
        elif isinstance(step, MatmulStep):
            flags = "".join([" trans_a" if step.trans_a else "", " trans_b" if step.trans_b
                             else ""])
            lines.append(f"[{step.index}] matmul (BLAS or small-matrix kernel){flags}")
            if getattr(step, "update", None) is not None:
                param, alpha, v = step.update
                lines.append(f"      fused update: {names[v]} = {param.name} + {alpha!r} * "
                             f"product, accumulated into the parameter in place (BLAS gemm "
                             f"with beta=1, or the small-matrix kernel)")
        elif isinstance(step, KernelStep):
            lines.append(f"[{step.index}] kernel graphc.kernels.cpu.nn.{step.kernel}")
        elif isinstance(step, ViewStep):
            lines.append(f"[{step.index}] view (reshape, no copy)")
        elif isinstance(step, FallbackStep):
            lines.append(f"[{step.index}] numpy fallback {step.nodes[0].op}")
        else:  # pragma: no cover
            lines.append(f"[{step.index}] {kind}")
        for node in step.nodes + ([step.epilogue] if isinstance(step, FusedGroup) and
                                  step.epilogue is not None else []):
            outs = []
            for t in node.outputs:
                k = ex.kinds.get(t)
                where = k or "in registers"
                if k == "arena" and t in mem.offsets:
                    where = f"arena@{mem.offsets[t]}"
                    if t in mem.inplace:
                        where += f" (in place of {names[mem.inplace[t]]})"
                outs.append(f"{names[t]}->{where}")
            lines.append(f"      {node_line(node, names)}    ; {', '.join(outs)}  "
                         f"[{node.loc}]")
        post = getattr(step, "post", None)
        if post is not None:
            lines.append(f"      fused update: {names[post[2]]} = {post[0].name} + {post[1]!r}"
                         f" * reduction, in place after the loop")
        for note in step.notes:
            lines.append(f"      note: {note}")
    if kernels:
        lines.append("")
        lines.append("# --- generated kernels ---")
        from graphc.kernels.codegen.elementwise import render

        for idx, low in ex.lowered.items():
            lines.append(f"# step {idx}: module {low.module}")
            lines.append(render(low.spec, comments=True))
        lines.append("# --- runner ---")
        lines.append(run.source)
    return "\n".join(lines)
