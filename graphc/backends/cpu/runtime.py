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

from ...kernels.cpu.bindings import BINDINGS, binding_for
from ...plan import PlanOptions, make_plan
from ...progress import CompileProgress
from .. import RunnerCache
from .compile_jobs import run_job, start_helper
from .kernels import (
    compile_jobs,
    fused_sources,
    hand_written_calls,
    load_kernels,
    warm_hand_written,
)


def has_kernel(what) -> bool:
    """Whether a hand-written kernel runs `what` (a node, or a fused pattern's name)."""
    return what in BINDINGS if isinstance(what, str) else binding_for(what) is not None


class CpuExecutable(RunnerCache):
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
        jobs = compile_jobs(self.plan, sources, calls)
        with CompileProgress(len(jobs)) as progress:  # says so when a first run waits
            queue, helper = start_helper(jobs)  # on two cores or more, shared with a helper
            early = {}
            for job in queue:
                info = run_job(job)
                early[info.get("key") or info.get("module")] = info
                progress.advance(job.get("name") or "fused kernel")
            if helper is not None:
                helper.wait()
                for job in queue.others():
                    progress.advance(job.get("name") or "fused kernel")
            # everything is compiled or cached now; these load it (and compile anything a
            # killed helper left undone)
            self.kernels = load_kernels(self.plan, self.kernel_log, None, sources)
            self.kernel_log += warm_hand_written(self.plan, None, calls)
        for i, entry in enumerate(self.kernel_log):  # what compiled above, not "memory"
            first = early.get(entry.get("key") or entry.get("module"))
            if entry.get("status") == "memory" and first is not None:
                self.kernel_log[i] = dict(entry, status=first["status"],
                                          seconds=first["seconds"])
        self.rngs = {n.id: np.random.default_rng(n.attrs["seed"])
                     for n in self.plan.nodes if n.op == "random_uniform"}
        self.runners: dict = {}
        self.compile_seconds = time.perf_counter() - start

    def new_runner(self, n):
        """The runner for batch size n, generated (bind() keeps it)."""
        from .runner import RunnerBuilder

        return RunnerBuilder(self, n).build()

    def profile(self, feeds, n, repeat: int, warmup: int) -> list:
        """ProfileRows of `repeat` calls on `feeds` (graphc.profile), through a runner of
        its own that reads the clock between steps (the bound runners are not touched)."""
        from ...profile import END, Ticks, plan_rows
        from .. import check_batch
        from .runner import RunnerBuilder

        check_batch(self.plan, n)
        ticks = Ticks([s.index for s in self.plan.steps] + [END])
        run = RunnerBuilder(self, n, ticks).build()
        for _ in range(warmup):
            run(*feeds)
        ticks.reset()
        for _ in range(repeat):
            run(*feeds)
        return plan_rows(self.plan, ticks.totals, n, repeat)

    def describe(self, n=None, kernels: bool = False) -> str:
        from .describe import describe

        return describe(self, n, kernels)
