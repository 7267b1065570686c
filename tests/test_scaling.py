"""Big graphs (issue 11): building, differentiating, optimising, scheduling and planning a
graph take O(n log n) time in its size n, and no stage recurses once per node (a 10k-deep
chain must not hit Python's recursion limit).

The scaling test checks a ratio of times, never a time: 10x the nodes may cost at most ~25x
the time (linear is 10x, quadratic 100x). The times are this process's CPU time (the work is
single-threaded Python), not wall-clock time: under `pytest -n 2` on 2 cores the other
worker's Numba compiles took the CPU from the 10k run for seconds (9.3 s against 6.4-7.4 s
alone, a 26.9x ratio in one CI run, 18x alone). Each size is timed three times and the
fastest run kept, which tames the rest of a busy machine's noise.
"""
from __future__ import annotations

import gc as pygc
import os
import sys
import time

import numpy as np
import pytest

import graphc as gc
from graphc.backends import Program
from graphc.backends.cpu.runtime import has_kernel
from graphc.plan import PlanOptions, make_plan
from graphc.plan.memory import plan_memory

MAX_RATIO = 25


def _chain(n: int) -> Program:
    """n elementwise ops, with the loss's gradient and an SGD update of W: half of them a
    chain of `+ x`, the 10k-add chain that took 507 s to compile (its gradient is one
    broadcast tensor read by every node), half a chain of `* W` (a gradient term per node,
    its forward values all kept for the backward pass)."""
    x = gc.placeholder((None, 3), name="x")
    W = gc.Parameter(np.ones(3, np.float32), name="W")
    added, scaled = x, x
    for _ in range(n // 2):
        added = added + x
        scaled = scaled * W
    loss = gc.sum(added) + gc.sum(scaled)
    gx, gW = gc.grad(loss, [x, W])
    return Program([x], [loss, gx], [(W, W - 0.1 * gW)], [W])


def _compile_seconds(n: int) -> float:
    """Build, differentiate, optimise and plan (cpu plan options, its memory layout as the
    cpu runner does it), and compile on the numpy backend: everything but Numba."""
    pygc.collect()
    start = time.process_time()
    program = _chain(n)
    plan = make_plan(program, options=PlanOptions(has_kernel=has_kernel))
    defined, last = plan.graph.liveness()
    keys = sorted(defined, key=defined.__getitem__)
    inplace = {t: [x] for t, x in plan.inplace_pairs.items()}
    plan_memory(keys, defined, last, {t: 64 * (1 + t.ndim) for t in keys}, inplace)
    (param, value), = program.updates
    gc.compile(program.inputs, program.outputs, updates=[(param, value)], backend="numpy")
    return time.process_time() - start


@pytest.mark.slow
def test_compile_time_grows_no_faster_than_n_log_n():
    small = min(_compile_seconds(1_000) for _ in range(3))
    large = min(_compile_seconds(10_000) for _ in range(3))
    ratio = large / small
    assert ratio < MAX_RATIO, (
        f"10k nodes took {large:.2f} s, 1k nodes {small:.2f} s: {ratio:.1f}x for 10x the "
        f"nodes (linear would be ~10x, quadratic ~100x; allowed < {MAX_RATIO}x)")


@pytest.mark.slow
def test_a_10k_deep_chain_never_hits_the_recursion_limit(tmp_path):
    """(test_compile_time_grows_no_faster_than_n_log_n plans a 10k-deep chain too.)"""
    depth = 10_000
    assert sys.getrecursionlimit() < depth  # so that a walker recursing per node would fail
    x = gc.placeholder((None, 2), "float64", name="x")
    y = x
    for i in range(depth):
        y = y + x if i % 2 else gc.tanh(y)
    loss = gc.sum(y)
    gx = gc.grad(loss, x)
    ggx = gc.grad(gc.sum(gx * gx), x)  # the gradient of a 20k-node gradient
    assert gc.dump([ggx]).count("\n") >= 2 * depth
    f = gc.compile([x], [loss, gx], backend="numpy")
    value, grad = f(np.zeros((1, 2)))
    assert np.isfinite(value) and grad.shape == (1, 2)
    path = os.path.join(tmp_path, "deep.json")
    gc.save(path, loss)
    loaded = gc.load(path)
    again = gc.compile(loaded.inputs, loaded.outputs, backend="numpy")
    np.testing.assert_allclose(again(np.zeros((1, 2))), value)


def test_a_long_chain_is_cut_into_fused_kernels_of_few_structures():
    """Numba's compile time grows faster than linearly in a kernel's length (a 400-op fused
    chain took 36 s, the 10k chain minutes): groups stop at MAX_FUSED_NODES, and the cut
    pieces of one chain render to the same source, compiled once."""
    from graphc.backends.cpu.kernels import fused_sources
    from graphc.plan import FusedGroup
    from graphc.plan.schedule import MAX_FUSED_NODES

    plan = make_plan(_chain(1_000), options=PlanOptions(has_kernel=has_kernel))
    groups = [s for s in plan.steps if isinstance(s, FusedGroup)]
    assert max(len(s.nodes) for s in groups) == MAX_FUSED_NODES
    sources = fused_sources(plan)
    assert len(groups) > 500 and len(set(sources.values())) < 40
    full = [s for s in groups if len(s.nodes) == MAX_FUSED_NODES]
    assert len(full) >= 2 * (500 // MAX_FUSED_NODES) - 2
    assert any("the group is full" in note for s in groups for note in s.notes)


def _cpu_compile_seconds(n: int, x: np.ndarray) -> float:
    pygc.collect()
    start = time.perf_counter()
    program = _chain(n)
    (param, value), = program.updates
    f = gc.compile(program.inputs, program.outputs, updates=[(param, value)], backend="cpu")
    loss, gx = f(x)
    seconds = time.perf_counter() - start
    assert np.isfinite(loss) and gx.shape == x.shape
    return seconds


@pytest.mark.slow
def test_cpu_compile_of_the_10k_chain_grows_linearly_once_its_kernels_are_cached():
    """The whole cpu compile and first call (plans, kernel sources, cache lookups, the
    runner), with the chain's few distinct kernels cached by a first compile: 10k nodes
    took 146 s when every group was one kernel (and ~12 s warm at 3k nodes)."""
    x = np.ones((4, 3), np.float32)
    _cpu_compile_seconds(10_000, x)  # compiles the distinct kernels once
    small = min(_cpu_compile_seconds(1_000, x) for _ in range(2))
    large = _cpu_compile_seconds(10_000, x)
    ratio = large / small
    assert ratio < MAX_RATIO, (
        f"cpu compile of 10k nodes took {large:.2f} s, 1k nodes {small:.2f} s: {ratio:.1f}x "
        f"for 10x the nodes (allowed < {MAX_RATIO}x)")
