"""Scheduling (graphc.plan.schedule) on its own, and what the cpu backend makes of
its groups: which ops share a kernel, why neighbours were not fused, what a group stores."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backends.cpu.runtime import has_kernel
from graphc.graph import placeholders, toposort
from graphc.plan.schedule import WHY_BLAS, WHY_REDUCTION
from graphc.plan.schedule import schedule as plan_schedule
from graphc.plan.steps import FusedGroup, MatmulStep

SOURCES = ("placeholder", "parameter", "constant")


def schedule(roots):
    """The cpu backend's schedule (its hand-written kernels become KernelSteps)."""
    return plan_schedule(roots, has_kernel)


def _kinds(steps):
    return [type(s).__name__ for s in steps]


def _ops(step):
    return [n.op for n in step.nodes]


def _all_notes(steps):
    return [note for s in steps for note in s.notes]


def check_schedule(roots, steps):
    """Every non-source node is in exactly one step (or is a broadcast/transpose its consumers
    absorb); running the steps in order, each reads only values that exist already: sources,
    earlier steps' results, or, inside a group, earlier members. No cycles between steps."""
    nodes = toposort(roots)
    placed = {}
    for s in steps:
        members = list(s.nodes)
        if isinstance(s, FusedGroup) and s.epilogue is not None:
            members.append(s.epilogue)
        for n in members:
            assert n.id not in placed, f"{n} is in steps {placed[n.id]} and {s.index}"
            placed[n.id] = s.index
    assert [s.index for s in steps] == list(range(len(steps)))
    for n in nodes:
        if n.op not in SOURCES and n.id not in placed:
            assert n.op in ("broadcast_to", "transpose"), f"{n} is in no step"

    available = {id(n.outputs[0]) for n in nodes if n.op in SOURCES}

    def ready(t, local):
        if id(t) in available or id(t) in local:
            return True
        if t.node.id not in placed and t.node.op in ("broadcast_to", "transpose"):
            return ready(t.node.inputs[0], local)  # absorbed: reads its operand
        return False

    for s in steps:
        local: set = set()
        if isinstance(s, MatmulStep):
            assert ready(s.a, local) and ready(s.b, local)
        for n in s.nodes:
            for t in n.inputs:
                assert ready(t, local), f"step {s.index} ({n.op}) reads {t} before it exists"
            if isinstance(s, FusedGroup):
                assert n.outputs[0].shape == s.shape
            local.update(id(t) for t in n.outputs)
        if isinstance(s, FusedGroup) and s.epilogue is not None:
            x = s.epilogue.inputs[0]
            assert ready(x, local), f"epilogue of step {s.index} reads {x} before it exists"
            assert x.shape == s.shape
            local.add(id(s.epilogue.outputs[0]))
        available |= local
    for r in roots:
        assert ready(r, set())


# --- one group, with a reduction epilogue ---------------------------------------------------------
def _sum_relu_affine():
    x = gc.placeholder((None, 8), name="x")
    a = gc.placeholder((8,), name="a")
    b = gc.placeholder((8,), name="b")
    c = gc.placeholder((8,), name="c")
    return [x, a, b, c], gc.sum(gc.relu(x * a + b) * c)


def test_elementwise_chain_and_sum_are_one_group():
    _inputs, y = _sum_relu_affine()
    steps = schedule([y])
    check_schedule([y], steps)
    assert len(steps) == 1
    (g,) = steps
    assert isinstance(g, FusedGroup)
    assert _ops(g) == ["mul", "add", "relu", "mul"]
    assert g.epilogue is y.node and g.epilogue.op == "sum"
    assert g.notes == ()


def test_fused_group_reads_x_once_and_stores_nothing_but_the_sum():
    inputs, y = _sum_relu_affine()
    f = gc.compile(inputs, y)
    ex = f.executable
    assert len(ex.plan.steps) == 1 and list(ex.plan.lowered) == [0]
    low = ex.plan.lowered[0]
    x = inputs[0]
    assert sum(1 for t in low.inputs if t is x) == 1          # one pass over x
    assert low.outputs == [] and low.reduce_out is y           # no intermediate is stored
    assert low.spec.reduce is not None and low.spec.reduce[0] == "sum"
    # the operands a, b, c are broadcast along the rows: pattern (rows: no, cols: yes)
    pats = {id(t): p for t, p in zip(low.inputs, low.in_patterns)}
    for t in inputs[1:]:
        assert pats[id(t)] == (False, True)
    assert pats[id(x)] == (True, True)
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((5, 8)).astype(np.float32)
    av, bv, cv = (rng.standard_normal(8).astype(np.float32) for _ in range(3))
    expect = np.sum(np.maximum(xv * av + bv, 0) * cv)
    np.testing.assert_allclose(f(xv, av, bv, cv), expect, rtol=1e-5)
    # no intermediate buffer at all
    assert ex.bind(5).memory.sizes == {}


def test_bias_add_and_relu_after_a_matmul_are_one_group_right_after_it():
    x = gc.placeholder((None, 4), name="x")
    W = gc.placeholder((4, 3), name="W")
    bias = gc.placeholder((3,), name="bias")
    h = gc.relu(x @ W + bias)
    steps = schedule([h])
    check_schedule([h], steps)
    assert _kinds(steps) == ["MatmulStep", "FusedGroup"]
    mm, g = steps
    assert _ops(g) == ["add", "relu"] and g.epilogue is None
    assert g.index == mm.index + 1
    assert any(WHY_BLAS in note and "matmul" in note for note in g.notes)


def test_a_reduction_in_the_middle_splits_groups():
    x = gc.placeholder((None, 6), name="x")
    e = gc.exp(x - 1.0)
    s = gc.sum(e, axis=1, keepdims=True)
    y = gc.tanh(e / s)
    steps = schedule([y])
    check_schedule([y], steps)
    assert _kinds(steps) == ["FusedGroup", "FusedGroup"]
    first, second = steps
    assert _ops(first) == ["sub", "exp"] and first.epilogue is s.node
    assert _ops(second) == ["div", "tanh"] and second.epilogue is None
    assert any(WHY_REDUCTION in note for note in second.notes)


def test_a_reduction_of_an_input_is_a_group_of_its_own_that_later_groups_read():
    # regression: a reduction with no producer group used to be missing from the schedule's
    # bookkeeping, and an elementwise consumer crashed the pass (KeyError)
    x = gc.placeholder((None, 4), name="x")
    y = gc.placeholder((None, 4), name="y")
    h = gc.relu(y * 2.0)
    s = gc.sum(x, axis=0)
    z = h * s
    steps = schedule([z])
    check_schedule([z], steps)
    assert _kinds(steps) == ["FusedGroup", "FusedGroup", "FusedGroup"]
    assert steps[1].nodes == () and steps[1].epilogue is s.node
    assert any(WHY_REDUCTION in note for note in steps[2].notes)
    f = gc.compile([x, y], z)
    xv = np.arange(8, dtype=np.float32).reshape(2, 4)
    yv = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(f(xv, yv), np.maximum(yv * 2, 0) * xv.sum(0), rtol=1e-6)

def test_a_matmul_between_elementwise_ops_is_a_blas_call():
    x = gc.placeholder((None, 5), name="x")
    W = gc.placeholder((5, 5), name="W")
    y = gc.tanh(gc.relu(x * 2.0) @ W)
    steps = schedule([y])
    check_schedule([y], steps)
    assert _kinds(steps) == ["FusedGroup", "MatmulStep", "FusedGroup"]
    assert _ops(steps[0]) == ["mul", "relu"]
    assert _ops(steps[2]) == ["tanh"]
    assert steps[2].notes == (f"not fused with matmul (step 1): {WHY_BLAS}",)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_transposes_feeding_a_matmul_become_blas_flags(ta, tb):
    A = gc.placeholder((4, 3) if ta else (3, 4), "float64", name="A")
    B = gc.placeholder((5, 4) if tb else (4, 5), "float64", name="B")
    y = (A.T if ta else A) @ (B.T if tb else B)
    steps = schedule([y])
    check_schedule([y], steps)
    assert _kinds(steps) == ["MatmulStep"]
    (mm,) = steps
    assert (mm.trans_a, mm.trans_b) == (ta, tb)
    assert mm.a is A and mm.b is B
    assert all(n.op != "transpose" for s in steps for n in s.nodes)
    f = gc.compile([A, B], y)
    rng = np.random.default_rng(1)
    av = rng.standard_normal(A.shape)
    bv = rng.standard_normal(B.shape)
    expect = (av.T if ta else av) @ (bv.T if tb else bv)
    np.testing.assert_allclose(f(av, bv), expect, rtol=1e-12)


def test_a_transpose_with_another_user_is_materialised():
    A = gc.placeholder((3, 4), "float64", name="A")
    B = gc.placeholder((3, 5), "float64", name="B")
    At = A.T
    y = At @ B
    z = At * 2.0                      # a non-matmul user: the transpose must exist
    steps = schedule([y, z])
    check_schedule([y, z], steps)
    assert any(n.op == "transpose" for s in steps for n in s.nodes)
    mm = next(s for s in steps if isinstance(s, MatmulStep))
    assert not mm.trans_a and mm.a is At


def test_broadcast_operands_are_absorbed():
    x = gc.placeholder((None, 6), name="x")
    bias = gc.placeholder((6,), name="bias")
    col = gc.placeholder((None, 1), name="col")
    explicit = gc.broadcast_to(gc.placeholder((6,), name="w"), (4, 6))
    y = gc.relu(x + bias) * col + 1.0
    steps = schedule([y])
    check_schedule([y], steps)
    assert _kinds(steps) == ["FusedGroup"]
    f = gc.compile([x, bias, col], y)
    low = f.executable.plan.lowered[0]
    pats = {id(t): p for t, p in zip(low.inputs, low.in_patterns)}
    assert len(low.inputs) == 3                      # the scalar 1.0 is a literal
    assert pats[id(bias)] == (False, True) and pats[id(col)] == (True, False)
    rng = np.random.default_rng(2)
    xv, bv, cv = (rng.standard_normal(s).astype(np.float32) for s in ((3, 6), (6,), (3, 1)))
    np.testing.assert_allclose(f(xv, bv, cv), np.maximum(xv + bv, 0) * cv + 1, rtol=1e-6)

    # an explicit broadcast_to whose users are all elementwise is never materialised
    w = explicit.node.inputs[0]
    z = gc.exp(explicit) + gc.placeholder((4, 6), name="u")
    steps = schedule([z])
    check_schedule([z], steps)
    assert _kinds(steps) == ["FusedGroup"]
    assert all(n.op != "broadcast_to" for n in steps[0].nodes)
    g = gc.compile([w, z.node.inputs[1]], z)
    low = g.executable.plan.lowered[0]
    assert any(t is w for t in low.inputs)
    wv = np.arange(6, dtype=np.float32) / 6
    uv = np.ones((4, 6), np.float32)
    np.testing.assert_allclose(g(wv, uv), np.exp(wv)[None, :] + uv, rtol=1e-6)


def test_a_value_used_inside_and_outside_a_group_is_stored_and_still_fused():
    x = gc.placeholder((None, 4), name="x")
    W = gc.placeholder((4, 2), name="W")
    h = gc.relu(x + 1.0)                  # used by the group's sum and by the matmul
    s = gc.sum(h * h)
    y = h @ W
    steps = schedule([s, y])
    check_schedule([s, y], steps)
    assert _kinds(steps) == ["FusedGroup", "MatmulStep"]
    g = steps[0]
    assert _ops(g) == ["add", "relu", "mul"] and g.epilogue is s.node
    f = gc.compile([x, W], [s, y])
    low = f.executable.plan.lowered[0]
    assert [t for t in low.outputs] == [h]          # stored: the matmul reads it
    assert low.reduce_out is s
    xv = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    Wv = np.arange(8, dtype=np.float32).reshape(4, 2)
    hv = np.maximum(xv + 1, 0)
    sv, yv = f(xv, Wv)
    np.testing.assert_allclose(sv, np.sum(hv * hv), rtol=1e-5)
    np.testing.assert_allclose(yv, hv @ Wv, rtol=1e-5)


def test_an_output_in_the_middle_of_a_group_is_stored():
    x = gc.placeholder((None, 4), name="x")
    h = gc.exp(x * 0.5)
    y = gc.sum(h + 1.0)
    steps = schedule([h, y])
    assert _kinds(steps) == ["FusedGroup"]
    f = gc.compile([x], [h, y])
    low = f.executable.plan.lowered[0]
    assert low.outputs == [h]
    xv = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    hv, yv = f(xv)
    np.testing.assert_allclose(hv, np.exp(xv * 0.5), rtol=1e-6)
    np.testing.assert_allclose(yv, np.sum(np.exp(xv * 0.5) + 1), rtol=1e-5)


def test_dedicated_kernels_views_and_fallbacks():
    x = gc.placeholder((None, 6), name="x")
    p = gc.softmax(x * 2.0)
    r = gc.reshape(p, (-1, 3, 2))
    c = gc.concat([r, r], axis=1)
    steps = schedule([c])
    check_schedule([c], steps)
    assert _kinds(steps) == ["FusedGroup", "KernelStep", "ViewStep", "FallbackStep"]
    assert steps[1].kernel == "softmax"


# --- no cycles: random DAGs ---------------------------------------------------------------------
def _random_graph(rng, n_ops: int):
    """A random DAG over (N,4)/(4,)/(N,1)/(4,4) float32 values: elementwise ops, reductions,
    matmuls, transposes, broadcasts and reshapes, with values reused by several consumers."""
    x = gc.placeholder((None, 4), name="x")
    y = gc.placeholder((None, 4), name="y")
    v = gc.placeholder((4,), name="v")
    M = gc.placeholder((4, 4), name="M")
    pool = {(None, 4): [x, y], (4,): [v], (4, 4): [M], (None, 1): [], (): []}

    def pick(shape):
        return pool[shape][rng.integers(len(pool[shape]))]

    for _ in range(n_ops):
        kind = rng.integers(9)
        if kind == 0:
            t = pick((None, 4)) + pick((None, 4))
        elif kind == 1:
            t = gc.relu(pick((None, 4)) * pick((4,)))
        elif kind == 2:
            t = gc.sum(pick((None, 4)), axis=1, keepdims=True)
        elif kind == 3 and pool[(None, 1)]:
            t = pick((None, 4)) - pick((None, 1))
        elif kind == 4:
            t = pick((None, 4)) @ (pick((4, 4)).T if rng.integers(2) else pick((4, 4)))
        elif kind == 5:
            t = gc.sum(pick((None, 4)), axis=0)
        elif kind == 6:
            t = gc.tanh(pick((4, 4))) + gc.broadcast_to(pick((4,)), (4, 4))
        elif kind == 7:
            t = gc.reshape(gc.sigmoid(pick((None, 4))), (-1, 2, 2)).reshape(-1, 4)
        elif kind == 8 and pool[()]:
            t = pick((None, 4)) * pick(())
        else:
            t = gc.sum(pick((None, 4)))
        pool[t.shape].append(t)
    roots = [pool[(None, 4)][-1], pool[(None, 4)][rng.integers(len(pool[(None, 4)]))]]
    if pool[()]:
        roots.append(pool[()][-1])
    return roots


@pytest.mark.parametrize("seed", range(60))
def test_random_dags_schedule_without_cycles(seed):
    rng = np.random.default_rng(seed)
    roots = _random_graph(rng, int(rng.integers(3, 14)))
    steps = schedule(roots)
    check_schedule(roots, steps)
    # and with the gradients the training graphs add (sum_to, broadcast_to, transposes)
    loss = gc.sum(roots[0] * roots[1])
    wrt = placeholders([loss])
    grads = [g for g in gc.grad(loss, wrt) if g is not None]
    all_roots = [loss] + grads
    check_schedule(all_roots, schedule(all_roots))


# --- the optimized dump ------------------------------------------------------------------------
def test_dump_optimized_names_groups_kernels_and_peak():
    x = gc.placeholder((None, 4), name="x")
    W = gc.placeholder((4, 3), name="W")
    bias = gc.placeholder((3,), name="bias")
    h = gc.relu(x @ W + bias)
    loss = gc.sum(h * h)
    text = gc.dump([loss], optimized=True)
    assert "fused kernel" in text
    assert "peak" in text
    assert "add_relu_mul_sum" in text           # the generated kernel's name
    assert "gk_" in text                        # its module in the kernel cache
    assert "matmul" in text
    assert WHY_BLAS in text
    # the kernel listing form
    f = gc.compile([x, W, bias], loss)
    listing = f.executable.describe(7, kernels=True)
    assert "def serial(" in listing and "def run(" in listing
    assert "shapes bound at N=7" in listing



def test_the_parallel_variant_gives_the_bits_of_the_serial_one(monkeypatch):
    """A fused kernel's parallel variant (a prange over the outer loop) against its serial
    one, each run for the whole plan: maps, total sums (flat and nested), row and column
    reductions, a NaN-keeping max, and an update fused into a reduction, bit for bit."""
    from graphc.backends.cpu import runner

    rng = np.random.default_rng(11)
    xv = rng.standard_normal((301, 257)).astype(np.float32)
    xv[5, 7] = np.nan
    yv = rng.standard_normal((301, 257)).astype(np.float32)
    bv = rng.standard_normal(257).astype(np.float32)
    results = []
    for parallel_min in (0.0, float("inf")):
        monkeypatch.setattr(runner, "PARALLEL_MIN_NS", parallel_min)
        x = gc.placeholder((None, 257), name="x")
        y = gc.placeholder((None, 257), name="y")
        b = gc.Parameter(bv.copy(), name="b")
        flat = gc.placeholder((301 * 257,), name="flat")
        outs = [gc.exp(-gc.abs(x)) * y + 1.0, gc.sum(flat * flat), gc.sum(x * b),
                gc.sum(x * gc.exp(-gc.relu(y)), axis=1), gc.sum(x * y, axis=0),
                gc.max(x * y, axis=1)]
        step = gc.compile([x, y, flat], outs,
                          updates=[(b, b - 0.01 * gc.sum(y * y, axis=0))])
        got = step(xv, yv, xv.reshape(-1))
        results.append([np.asarray(r).tobytes() for r in got] + [b.value.tobytes()])
        source = step.executable.bind(301).source
        assert ("_parallel(" in source) == (parallel_min == 0)
    assert results[0] == results[1]


def test_the_parallel_variant_is_a_prange_over_the_kernels_compiled_loop(monkeypatch,
                                                                        tmp_path):
    """`serial` and `parallel` come from one module; `parallel` calls `blocks`, the loop
    compiled once as a function of its own, of one signature (Numba's parfor passes then
    see a loop of one call: W4's parallel variant took 8.5 s to compile as a prange over
    its body, ~4.5 s this way). An empty kernel cache, so that both compile here."""
    import sys

    from graphc.backends.cpu import runner

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(runner, "PARALLEL_MIN_NS", 2e4)  # (parallel from ~0.1M elements)
    x = gc.placeholder((None,), name="x")
    f = gc.compile([x], [gc.exp(-x) * x, gc.sum(x * x)])
    small = np.linspace(-1, 1, 1000, dtype=np.float32)
    large = np.linspace(-1, 1, (1 << 17) + 17, dtype=np.float32)
    kernels = list(f.executable.kernels.values())
    for xv in (small, large):
        got, total = f(xv)
        np.testing.assert_allclose(got, np.exp(-xv) * xv, rtol=1e-6)
        np.testing.assert_allclose(total, np.sum(xv.astype(np.float64) ** 2), rtol=1e-6)
        modules = [sys.modules[k.fns["serial"].__module__] for k in kernels]
        assert [len(m.blocks.signatures) for m in modules] == [int(xv is large)] * len(kernels)
    assert kernels and all(k.warmed == {"serial", "parallel"} for k in kernels)
    assert all(k.fns["parallel"] is m.parallel for k, m in zip(kernels, modules))


@pytest.mark.parametrize("width, short", [(10, True), (1000, False)])
def test_the_short_row_branch_is_generated_only_where_rows_can_be_short(width, short):
    """A bias add over rows of a known length: the flat-loop branch for rows shorter than
    SHORT_ROW (a second copy of the body, ~0.2-0.4 s of a first compile) is in the kernel
    only when the rows are that short; both give the reference's values."""
    from graphc.kernels.codegen.elementwise import SHORT_ROW

    from graphc.backends.cpu.kernels import fused_sources

    rng = np.random.default_rng(3)
    x = gc.placeholder((None, width), name="x")
    b = gc.Parameter(rng.standard_normal(width).astype(np.float32), name="b")
    f = gc.compile([x], gc.relu(x + b))
    sources = list(fused_sources(f.executable.plan).values())
    assert len(sources) == 1
    assert (f"if n1 < {SHORT_ROW} and n0 > 1:" in sources[0]) == short, sources[0]
    for n in (1, 7, 64):
        xv = rng.standard_normal((n, width)).astype(np.float32)
        np.testing.assert_array_equal(f(xv), np.maximum(xv + b.value, 0))


def test_the_parallel_variant_is_chosen_by_estimated_time_not_element_count():
    """A cheap kernel (a masked copy) stays on one thread where waking the sleeping threads
    would cost more than its work (131K elements: 44 µs alone, 288 µs split, measured);
    an exp-heavy one of the same size is estimated dearer; 16M elements go parallel."""
    from graphc.backends.cpu import runner

    def variants(n, make):
        x = gc.placeholder((n,), name="x")
        f = gc.compile([x], make(x))
        source = f.executable.bind(None).source
        lows = list(f.executable.plan.lowered.values())
        return ("_parallel(" in source), [runner.element_ns(low.spec) for low in lows]

    cheap = lambda x: gc.relu(x) * 2.0
    dear = lambda x: gc.sigmoid(gc.tanh(gc.exp(-x)))
    par, (ns_cheap,) = variants(1 << 17, cheap)
    assert not par and 0.2 < ns_cheap < 0.6
    _, (ns_dear,) = variants(1 << 17, dear)
    assert ns_dear > ns_cheap + 1.5  # (an exp, a tanh and a sigmoid)
    assert variants(1 << 24, cheap)[0]
    # the switch sits where the estimate crosses PARALLEL_MIN_NS, for either kernel
    for make, ns in ((cheap, ns_cheap), (dear, ns_dear)):
        edge = int(runner.PARALLEL_MIN_NS / ns)
        assert not variants(edge - 64, make)[0] and variants(edge + 64, make)[0]


def test_branches_of_one_value_that_meet_again_fuse_into_one_kernel():
    """A value read by two branches that join ((x+1)*(x-1): a diamond) is one kernel: the
    second branch joins its sibling's group, which reads x anyway; a shared broadcast
    constant is no reason to join (the two layers' ReLU masks of an MLP step keep their
    own groups, with one kernel structure between them)."""
    x = gc.placeholder((None, 64), name="x")
    xv = np.random.default_rng(2).standard_normal((5, 64)).astype(np.float32)
    for y, want in [((x + 1.0) * (x - 1.0), (xv + 1) * (xv - 1)),
                    (gc.exp(-x) * gc.tanh(x), np.exp(-xv) * np.tanh(xv)),
                    (gc.relu(x) + gc.sigmoid(x), np.maximum(xv, 0) + 1 / (1 + np.exp(-xv)))]:
        f = gc.compile([x], y)
        assert len(f.executable.plan.lowered) == 1, f.dump()
        np.testing.assert_allclose(f(xv), want, rtol=1e-6, atol=1e-6)
    rng = np.random.default_rng(3)
    t = gc.placeholder((None,), "int64", name="t")
    ws = [gc.Parameter(rng.standard_normal(s).astype(np.float32)) for s in
          ((64, 32), (32, 32), (32, 10))]
    h = gc.relu(x @ ws[0])
    h = gc.relu(h @ ws[1])
    loss = gc.softmax_cross_entropy(h @ ws[2], t)
    step = gc.compile([x, t], loss, updates=[(w, w - 0.1 * g) for w, g in
                                              zip(ws, gc.grad(loss, ws))])
    names = sorted(low.spec.name for low in step.executable.plan.lowered.values())
    assert names.count("relu_greater") == 2, names
