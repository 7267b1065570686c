"""Loading the kernels a plan calls: one generated module per fused group (through the
on-disk cache), and the hand-written kernels, compiled ahead of the first call on empty
arrays of the right types (so their cost shows at compile time and in GRAPHC_LOG=compile)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...kernels.cpu.bindings import BINDINGS
from ...plan import FusedGroup, KernelStep


@dataclass
class LoadedKernel:
    """A fused group's generated module: its entry points, compiled variants so far."""

    module: str
    source: str
    fns: dict                                 # "serial" / "parallel" -> dispatcher
    warmed: set = field(default_factory=set)  # variants compiled (or loaded) already


def dummy_args(low) -> list:
    """Arrays of the types a fused kernel is called with, on empty loops."""
    from ...kernels.codegen.elementwise import size_source

    spec = low.spec
    args = [] if size_source(spec) else [0] * spec.rank
    args += [np.zeros((1,) * spec.rank, d) for d, _ in spec.inputs]
    aliased = {j for j, _ in spec.aliases}
    args += [np.zeros((1,) * spec.rank, d) for j, (_, d) in enumerate(spec.outputs)
             if j not in aliased]
    if spec.reduce is not None:
        args.append(np.zeros((1,) * spec.rank, low.reduce_out.dtype))
    if spec.post is not None:
        args.append(np.zeros((1,) * spec.rank, low.reduce_out.dtype))
    return args


def arg_types(args) -> tuple:
    """(dtype, rank) of each argument: what a kernel's compiled signature depends on."""
    return tuple((np.asarray(a).dtype.name, np.ndim(a)) for a in args)


def warm_variant(kernel: LoadedKernel, low, variant: str, kernel_log: list) -> None:
    """Compile one variant of a fused kernel ahead of its first real call."""
    if variant in kernel.warmed:
        return
    from ...kernels.cache import warm

    info = warm(kernel.fns[variant], *dummy_args(low))
    info["kernel"] = f"{low.spec.name} ({variant})"
    _log_kernel(info, kernel_log)
    kernel.warmed.add(variant)


def _log_kernel(info: dict, kernel_log: list) -> None:
    kernel_log.append(info)  # (graphc.kernels.cache prints the GRAPHC_LOG=compile line)


def fused_sources(plan) -> dict:
    """step index -> generated source of every fused group of the plan (render is memoized:
    a long chain cut into groups of one structure renders once)."""
    from ...kernels.codegen.elementwise import render

    return {s.index: render(plan.lowered[s.index].spec, comments=False)
            for s in plan.steps if isinstance(s, FusedGroup)}


def load_kernels(plan, kernel_log: list, progress=None, sources=None) -> dict:
    """step index -> LoadedKernel for every fused group; the serial variant compiled now.
    `progress` (graphc.progress.CompileProgress) advances per kernel compiled."""
    from ...kernels.cache import load_kernel, sibling
    from ...kernels.codegen.elementwise import helper_modules

    sources = fused_sources(plan) if sources is None else sources
    loaded, same = {}, {}  # same: (source, argument types) -> the LoadedKernel shared
    for step in plan.steps:
        if not isinstance(step, FusedGroup):
            continue
        low = plan.lowered[step.index]
        source = sources[step.index]
        args = dummy_args(low)
        key = (source, arg_types(args))
        kernel = same.get(key)
        if kernel is None:
            fns = {}
            fns["serial"], info = load_kernel(source, "serial", deps=helper_modules(low.spec))
            # one module file and one Numba cache for both entry points
            fns["parallel"] = sibling(fns["serial"], "parallel")
            kernel = same[key] = LoadedKernel(info.get("module", "?"), source, fns)
            warm_variant(kernel, low, "serial", kernel_log)
            if progress is not None and kernel_log and \
                    kernel_log[-1].get("status") == "compiled":
                progress.advance(low.spec.name)
        loaded[step.index] = kernel
    return loaded


def matmul_function(step) -> str:
    """The small-matrix kernel of a MatmulStep: mm_nn, mm_nt, mm_tn or mm_tt."""
    return "mm_" + ("t" if step.trans_a else "n") + ("t" if step.trans_b else "n")


def binding_dummy_args(binding, step) -> list:
    """Empty arrays of the types a hand-written kernel is called with (from its binding)."""
    args = []
    for arg in binding.args:
        node = step.nodes[arg.node]
        if arg.role == "attr":
            args.append(np.int64(arg.attr_value(node)))  # typed as the runner's int
            continue
        t = node.inputs[arg.index] if arg.role == "in" else node.outputs[arg.index]
        rank = {"rows": 2, "scalar": 1}.get(arg.view, len(t.shape))
        args.append(np.zeros((1 if arg.view == "scalar" else 0,) * rank, t.dtype))
    return args


def hand_written_calls(plan) -> list:
    """(kernel, dummy args) for each distinct hand-written kernel signature the plan calls.
    Products are left to their first call: whether one takes graphc's loops or BLAS
    depends on the batch size, and compiling both would double the wait."""
    done, calls = set(), []
    for step in plan.steps:
        if isinstance(step, KernelStep):
            binding = BINDINGS[step.kernel]
            fn, args = binding.function, binding_dummy_args(binding, step)
            key = (fn, arg_types(args))
            if key not in done:
                done.add(key)
                calls.append((fn, args))
    return calls


def compile_jobs(plan, sources: dict, calls: list) -> list:
    """The kernels this plan still has to compile (fused and hand-written), as jobs for
    compile_jobs.run_job; with the product kernels of its first calls when there are any."""
    from ...kernels.cache import is_compiled
    from ...kernels.codegen.elementwise import helper_modules
    from . import compile_jobs as cj

    jobs, seen = [], set()
    for step in plan.steps:
        if isinstance(step, FusedGroup) and sources[step.index] not in seen:
            seen.add(sources[step.index])
            low = plan.lowered[step.index]
            deps = helper_modules(low.spec)
            if not is_compiled(sources[step.index], "serial", deps):
                jobs.append(cj.fused_job(sources[step.index], deps, dummy_args(low)))
    for fn, args in calls:
        job = cj.hand_job(fn, args)
        if job is not None and cj.pending(job, fn):
            jobs.append(job)
    if jobs:
        jobs += [job for job in cj.matmul_jobs(plan) if cj.pending(job)]
    return jobs


def warm_hand_written(plan, progress=None, calls=None) -> list:
    """Compile (or load) the hand-written kernels the plan calls; returns their log. Their
    Numba cache lives in graphc's checked cache folder (not beside the installed modules),
    so `graphc cache clear` and the permission check cover it."""
    from ...kernels.cache import use_graphc_cache, warm

    use_graphc_cache()
    log_ = []
    for fn, args in hand_written_calls(plan) if calls is None else calls:
        info = warm(fn, *args)
        info["kernel"] = f"{getattr(fn, '__module__', '?')}.{fn.__name__}"
        _log_kernel(info, log_)
        if progress is not None and info.get("status") == "compiled":
            progress.advance(fn.__name__)
    return log_
