"""The first compile's helper process (graphc.backends.cpu.compile_jobs): both processes
take kernels from one queue of claim files, the costliest first, each kernel exactly once."""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import graphc as gc
from graphc.backends.cpu import compile_jobs as cj


def _jobs():
    fused = [{"kind": "fused", "source": f"# kernel {i}\n", "deps": [], "args": []}
             for i in range(5)]
    hand = [{"kind": "hand", "module": "graphc.kernels.cpu.nn",
             "name": "softmax_cross_entropy_fused", "args": [["int", k]]} for k in (1, 2)]
    mm = [{"kind": "matmul", "module": "graphc.kernels.cpu.gemm_call", "name": "gemm_threads",
           "args": []}]
    return fused + hand + mm


def test_groups_keep_a_functions_signatures_together_costliest_first():
    groups = cj.groups(_jobs())
    assert len(groups[0]) == 2  # both signatures of the softmax kernel, first
    assert groups[0][0]["name"] == "softmax_cross_entropy_fused"
    assert groups[1][0]["name"] == "gemm_threads"
    assert sum(len(g) for g in groups) == len(_jobs())


def test_a_fused_kernels_estimated_cost_grows_with_its_source_and_allocations():
    """The queue's order: a long kernel with partial sums before a short map."""
    short = {"kind": "fused", "source": "x\n" * 40, "deps": [], "args": []}
    long_ = dict(short, source="x\n" * 120 + "a = np.empty(n)\n" * 3)
    assert cj.job_cost(long_) > cj.job_cost(short) > 0
    assert cj.groups([short, long_])[0][0] is long_


def test_two_processes_sharing_the_claim_folder_take_each_kernel_exactly_once(tmp_path):
    groups = cj.groups(_jobs())
    mine, helper = cj.Queue(groups, str(tmp_path)), cj.Queue(groups, str(tmp_path))
    a, b = iter(mine), iter(helper)
    taken_a, taken_b = [], []
    for job in a:  # interleaved, as two processes run
        taken_a.append(job)
        taken_b += list(itertools.islice(b, 1))
    taken_b += list(b)
    assert taken_a and taken_b
    assert sorted(map(str, taken_a + taken_b)) == sorted(map(str, _jobs()))
    assert sorted(mine.others(), key=str) == sorted(taken_b, key=str)
    assert len(os.listdir(tmp_path)) == len(groups)


def test_without_a_helper_every_job_is_this_processes(monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_JOBS", "1")
    queue, helper = cj.start_helper(_jobs())
    assert helper is None
    assert len(list(queue)) == len(_jobs()) and queue.others() == []


def _mlp_step(sizes, dtype="float32"):
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, sizes[0]), dtype, name="x")
    t = gc.placeholder((None,), "int64", name="t")
    h, params = x, []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        W = gc.Parameter((rng.standard_normal((a, b)) * 0.1).astype(dtype), name=f"W{i}")
        params.append(W)
        h = h @ W
        if i < len(sizes) - 2:
            h = gc.relu(h)
    loss = gc.softmax_cross_entropy(h, t)
    updates = [(p, p - 0.1 * g) for p, g in zip(params, gc.grad(loss, params))]
    return gc.compile([x, t], loss, updates=updates)


def _names(jobs):
    return sorted(j["name"] for j in jobs)


def test_a_first_compile_prepares_the_product_kernels_of_typical_batches_only():
    """W2's shapes take OpenBLAS at every batch of 16-256: no loop kernel is compiled for
    them (they took ~1.8 s of a first compile, for batches of one or two); a batch of one
    still gets its loops, compiled at its first call."""
    from graphc.backends.cpu.runner import product_kernel
    from graphc.plan import MatmulStep

    step = _mlp_step((784, 256, 10))
    plan = step.executable.plan
    assert _names(cj.matmul_jobs(plan)) == ["gemm_threads"]
    products = [s for s in plan.steps if isinstance(s, MatmulStep)]
    assert "loops" in {product_kernel(s, 1) for s in products}  # a GEMV at batch 1
    x = np.zeros((1, 784), np.float32)
    assert np.isfinite(step(x, np.zeros(1, np.int64)))
    # a small model: graphc's loops at 16 rows, OpenBLAS at 256, both prepared
    small = _mlp_step((2, 10, 3)).executable.plan  # the README demo's sizes
    names = _names(cj.matmul_jobs(small))
    assert "gemm_threads" in names and any(n.startswith(("mm_", "acc_")) for n in names)
    assert names == sorted(set(names))  # each kernel once


def test_example_arguments_come_from_closed_sets():
    """What the helper reads back is checked: a tuple of at most four ints (gemm_threads'
    thread-count addresses), arrays of the dtype table with dimensions 0 or 1."""
    spec = cj._arg_spec((0, 0))
    assert spec == ["ints", [0, 0]] and cj._arg(spec) == (0, 0)
    assert all(isinstance(v, np.int64) for v in cj._arg(spec))
    with pytest.raises(ValueError, match="tuple"):
        cj._arg(["ints", [1, 2, 3, 4, 5]])
    with pytest.raises(ValueError, match="shape"):
        cj._arg(["array", "float32", [2, 2]])
    with pytest.raises(ValueError):
        cj._arg(["code", "print(1)"])


@pytest.mark.parametrize("window", [(2, 2, 0), (3, 2, 1)])
def test_a_pooling_plan_compiles_only_its_windows_kernel_and_then_nothing(window):
    """max pooling's 2x2 window and other windows are kernels of their own: a plan's first
    compile prepares the one its window takes, after which its jobs are empty (a job left
    pending for the other kernel would print "compiling" on every warm start)."""
    from graphc.kernels.cpu import conv

    from graphc.backends.cpu.kernels import compile_jobs, fused_sources, hand_written_calls

    k, s, p = window
    x = gc.placeholder((None, 2, 8, 8), name="x")
    y = gc.max_pool2d(x, k, stride=s, pad=p)
    f = gc.compile([x], gc.grad(gc.sum(y * y), [x])[0])
    xv = np.random.default_rng(1).standard_normal((2, 2, 8, 8)).astype(np.float32)
    assert np.isfinite(f(xv)).all()
    plan = f.executable.plan
    assert compile_jobs(plan, fused_sources(plan), hand_written_calls(plan)) == []
    used, other = (conv._MAX_POOL_GRAD, conv._MAX_POOL_GRAD_ANY) if k == 2 else \
        (conv._MAX_POOL_GRAD_ANY, conv._MAX_POOL_GRAD)
    assert used.signatures
    window_args = [np.int64(v) for v in (k, k, s, s, p, p)]
    assert conv.max_pool2d_grad.kernels_for(*window_args) == (used,)
    assert other not in conv.max_pool2d_grad.kernels_for(*window_args)
