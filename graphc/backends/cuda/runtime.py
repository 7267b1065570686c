"""The cuda backend's executable: the same Plan as the cpu backend (graphc.plan), with its
fused groups rendered by the numba.cuda target (kernels/codegen/numba_cuda.py) and loaded
through the on-disk kernel cache, products on cuBLAS or graphc's tiled kernel (chosen
here, once), and the hand-written CUDA kernels through their bindings.

Per batch size N (runner.py): device buffers laid out from the plan's memory plan, launch
sizes bound, and a list of launches; a new N never recompiles a kernel.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ...plan import FusedGroup, PlanOptions, make_plan
from .. import RunnerCache
from .device import device_key, mirror_of, require_device, simulated

RANDOM_OPS = ("random_uniform",)  # drawn by the device RNG (kernels/cuda/rng.py)
# emitted by the runner itself: the random draws, and a matmul with a 1-D or batched operand
# (a 2-D one is a MatmulStep) as 2-D products over views
RUNNER_OPS = RANDOM_OPS + ("matmul",)


def has_kernel(what) -> bool:
    """Whether the device runs `what` (a node, or a fused pattern's name) by a kernel."""
    from ...kernels.cuda.bindings import BINDINGS, binding_for

    if isinstance(what, str):
        return what in BINDINGS
    return what.op in RUNNER_OPS or binding_for(what) is not None


@dataclass(frozen=True)
class LoadedKernel:
    """A fused group's generated module and its kernels by entry name."""

    module: str
    source: str
    fns: dict


def load_kernels(plan, header: str) -> dict:
    """step index -> LoadedKernel for every fused group (through the kernel cache)."""
    from ...kernels.cache import load_kernel
    from ...kernels.codegen.numba_cuda import entries, helper_modules, render
    from ...kernels.cuda.launch import THREADS

    sim = simulated()
    loaded = {}
    for step in plan.steps:
        if not isinstance(step, FusedGroup):
            continue
        spec = plan.lowered[step.index].spec
        source = render(spec, simulated=sim, threads=THREADS, header=header, comments=False)
        fns, info = {}, {}
        for entry in entries(spec):
            fns[entry], info = load_kernel(source, entry, deps=helper_modules(spec, sim))
        loaded[step.index] = LoadedKernel(info.get("module", "?"), source, fns)
    return loaded


def matmul_engine() -> tuple:
    """("cublas", Cublas) on a real GPU with nvmath-python, else ("tiled", None): graphc's
    shared-memory kernel (the simulator, or no nvmath)."""
    from ...kernels.cuda.gemm import Cublas, cublas_module

    cublas = cublas_module()
    return ("cublas", Cublas(cublas)) if cublas is not None else ("tiled", None)


class CudaExecutable(RunnerCache):
    """A compiled plan on the cuda backend (see graphc.backends for the protocol)."""

    def __init__(self, program, optimize: bool = True, fastmath: bool = False,
                 memory_reuse: bool = True, inplace: bool = True, **options):
        if options:
            raise TypeError(f"unknown compile option(s) for the cuda backend: "
                            f"{sorted(options)}; it takes fastmath, memory_reuse, inplace")
        require_device(program.loc)
        start = time.perf_counter()
        self.program = program
        self.plan = make_plan(program, optimize,
                              PlanOptions(fastmath, memory_reuse, inplace, has_kernel=has_kernel))
        self.device = device_key()
        self.kernels = load_kernels(self.plan, f"graphc cuda kernel for {self.device}")
        self.matmul, self.cublas = matmul_engine()
        self.mirrors = {id(p): mirror_of(p) for p in program.parameters}
        self.constants = _upload_constants(self.plan)
        self.calls = {n.id: 0 for n in self.plan.nodes if n.op in RANDOM_OPS}
        self.runners: dict = {}
        self.compile_seconds = time.perf_counter() - start

    def new_runner(self, n):
        """The runner for batch size n, laid out (bind() keeps it)."""
        from .runner import DeviceRunner

        return DeviceRunner(self, n)

    def profile(self, feeds, n, repeat: int, warmup: int) -> list:
        """ProfileRows of `repeat` calls on `feeds` (graphc.profile): the bound runner for n
        if there is one, else one of its own that is not kept (profiling many sizes must not
        grow self.runners past Function's bound); each launch followed by a synchronise."""
        from ...profile import END, FEEDS, Ticks, plan_rows
        from .. import check_batch

        run = self.runners.get(n)
        if run is None:
            check_batch(self.plan, n)
            run = self.new_runner(n)
        ticks = Ticks([FEEDS] + [s.index for s in self.plan.steps] + [END])
        for _ in range(warmup):
            run(*feeds)
        ticks.reset()
        for _ in range(repeat):
            run.profile_call(ticks, *feeds)
        return plan_rows(self.plan, ticks.totals, n, repeat)

    def describe(self, n=None, kernels: bool = False) -> str:
        from .describe import describe

        return describe(self, n, kernels)


def _upload_constants(plan) -> dict:
    """node id -> the constant's device copy (uploaded once, at compile time)."""
    import numpy as np
    from numba import cuda

    return {node.id: cuda.to_device(np.array(node.value, copy=True))
            for node in plan.nodes if node.op == "constant"}
