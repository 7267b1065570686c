"""The backend-neutral plan layer: an optimised graph becomes an immutable `Plan` (steps,
kernel specs, storage, fused updates) that every backend consumes.

    make_plan(program)                    the whole pipeline
    make_plan(program, upto="lower")      stop after a plan pass (`graphc dump --optimized
                                          --after PASS`)

PLAN_PASSES is the pipeline, in order; each pass is a function Plan -> Plan.
"""
from __future__ import annotations

from dataclasses import replace

from ..graph import toposort
from ..printing import names_for
from .epilogues import fuse_product_epilogues
from .implicit import fuse_implicit_convolutions
from .plan import Plan, PlanGraph, PlanOptions
from .schedule import schedule
from .steps import FallbackStep, FusedGroup, KernelStep, MatmulStep, Step, Update, ViewStep
from .storage import assign_storage, lower, plan_inplace
from .updates import fuse_gemm_updates, fuse_reduction_updates


def _schedule(plan: Plan) -> Plan:
    return replace(plan, steps=schedule(list(plan.roots), plan.options.has_kernel))


PLAN_PASSES = [
    ("schedule", _schedule),                       # fused groups, products, kernels, views
    ("fuse_product_epilogues", fuse_product_epilogues),  # conv bias (+ ReLU) in its product
    ("fuse_implicit_convolutions", fuse_implicit_convolutions),  # im2col into its product
    ("fuse_gemm_updates", fuse_gemm_updates),      # p + a * (A @ B) accumulates into p
    ("fuse_reduction_updates", fuse_reduction_updates),  # p + a * sum(g) after g's loop
    ("lower", lower),                              # each fused group as a kernel spec
    ("assign_storage", assign_storage),            # arena, per-call, in-place updates
    ("plan_inplace", plan_inplace),                # outputs over dying operands
]
PLAN_PASS_NAMES = [name for name, _ in PLAN_PASSES]


def make_plan(program, optimize: bool = True, options: PlanOptions | None = None,
              upto: str | None = None) -> Plan:
    """The plan of `program` (a graphc.backends.Program): the graph passes (when
    `optimize`), then PLAN_PASSES, up to and including the pass named `upto`."""
    options = options or PlanOptions()
    if upto is not None and upto not in PLAN_PASS_NAMES:
        raise ValueError(f"unknown plan pass {upto!r}; the plan passes are "
                         f"{', '.join(PLAN_PASS_NAMES)}")
    roots = program.roots
    if optimize:
        from ..passes import optimize as run_passes

        roots = run_passes(roots, fastmath=options.fastmath)
    nodes = toposort(roots)
    plan = Plan(program, tuple(roots), tuple(nodes), names_for(nodes), options)
    for name, run_pass in PLAN_PASSES:
        plan = run_pass(plan)
        plan = replace(plan, passes=plan.passes + (name,))
        if name == upto:
            break
    return plan


__all__ = [
    "PLAN_PASSES", "PLAN_PASS_NAMES", "FallbackStep", "FusedGroup", "KernelStep",
    "MatmulStep", "Plan", "PlanGraph", "PlanOptions", "Step", "Update", "ViewStep",
    "make_plan", "schedule",
]
