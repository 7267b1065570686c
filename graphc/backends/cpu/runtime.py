"""The cpu backend's executable: a Plan (graphc.plan) with its kernels loaded, and a
generated runner per batch size.

Compile time: make_plan -> one generated kernel module per fused group, loaded through the
on-disk cache (kernels.py) -> the hand-written kernels the plan calls, compiled or loaded.
Per batch size N (once per new N): shapes are bound, the arena is laid out, and a Python
runner is generated whose body is one prebound call per step (runner.py).
"""
from __future__ import annotations

import time

import numpy as np

from ...errors import RuntimeCheckError
from ...kernels.cpu.bindings import BINDINGS, binding_for
from ...ops.reduce import NO_IDENTITY, empty_reduction
from ...plan import PlanOptions, make_plan
from ...progress import CompileProgress
from ...shapes import bind as bind_shape
from .kernels import (
    fused_sources,
    hand_written_calls,
    load_kernels,
    pending_fused,
    pending_hand_written,
    warm_hand_written,
)


def has_kernel(what) -> bool:
    """Whether a hand-written kernel runs `what` (a node, or a fused pattern's name)."""
    return what in BINDINGS if isinstance(what, str) else binding_for(what) is not None


class CpuExecutable:
    """A compiled plan on the cpu backend (see graphc.backends for the protocol)."""

    def __init__(self, program, optimize: bool = True, fastmath: bool = False,
                 memory_reuse: bool = True, inplace: bool = True, **options):
        if options:
            raise TypeError(f"unknown compile option(s) for the cpu backend: {sorted(options)}")
        start = time.perf_counter()
        self.program = program
        options = PlanOptions(fastmath, memory_reuse, inplace, has_kernel=has_kernel)
        self.plan = make_plan(program, optimize, options)
        self.kernel_log: list = []
        sources, calls = fused_sources(self.plan), hand_written_calls(self.plan)
        pending = pending_fused(self.plan, sources) + pending_hand_written(calls)
        with CompileProgress(pending) as progress:  # says so when a first run must wait
            self.kernels = load_kernels(self.plan, self.kernel_log, progress, sources)
            self.kernel_log += warm_hand_written(self.plan, progress, calls)
        self.rngs = {n.id: np.random.default_rng(n.attrs["seed"])
                     for n in self.plan.nodes if n.op == "random_uniform"}
        self.runners: dict = {}
        self.compile_seconds = time.perf_counter() - start

    def bind(self, n):
        """The runner for batch size n (generated on first use)."""
        runner = self.runners.get(n)
        if runner is not None:
            return runner
        from .runner import RunnerBuilder

        for node in self.plan.nodes:  # max/min/argmax over an axis that is N, and N == 0
            if node.op in NO_IDENTITY:
                why = empty_reduction(node.op, node.attrs, bind_shape(node.inputs[0].shape, n))
                if why is not None:
                    raise RuntimeCheckError(f"{node.op}: {why} (node created at {node.loc})")
        runner = RunnerBuilder(self, n).build()
        self.runners[n] = runner
        return runner

    def run(self, feeds, n):
        return self.bind(n)(*feeds)

    def describe(self, n=None, kernels: bool = False) -> str:
        from .describe import describe

        return describe(self, n, kernels)
