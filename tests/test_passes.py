"""Graph passes: each rule on a tiny graph (the ops left afterwards, and the same values on the
numpy reference interpreter before and after), then the whole pipeline on random graphs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphc as gc
from graphc.backends.numpy_backend import RunContext, evaluate
from graphc.graph import toposort
from graphc.passes import (
    PASS_NAMES,
    PASSES,
    cse,
    dce,
    dead_nodes,
    fold_constants,
    optimize,
    simplify,
)
from graphc.passes import fold as fold_module
from graphc.passes.rewrite import rewrite
from graphc.tensor import apply

RNG = np.random.default_rng(0)


# --- helpers ------------------------------------------------------------------------------------
def ops(roots) -> list[str]:
    """The ops of the graph of `roots`, in topological (creation) order."""
    return [node.op for node in toposort(roots)]


def sample(t, n=None) -> np.ndarray:
    """A random feed for placeholder t (None dims take n)."""
    shape = tuple(n if d is None else d for d in t.shape)
    if t.dtype == "bool":
        return RNG.random(shape) < 0.5
    if t.dtype.startswith("int"):
        return RNG.integers(-3, 4, shape).astype(t.dtype)
    return RNG.standard_normal(shape).astype(t.dtype)


def run(roots, feeds: dict, n=None) -> list[np.ndarray]:
    """Evaluate roots with the numpy reference interpreter (random ops seeded per node)."""
    nodes = toposort(roots)
    rngs = {node.id: np.random.default_rng(node.attrs["seed"])
            for node in nodes if node.op == "random_uniform"}
    env = evaluate(nodes, dict(feeds), RunContext(n, rngs))
    return [env[t] for t in roots]


def assert_same_values(before, after, n=None, feeds=None):
    """Both root lists give the same arrays (dtype, shape, values) on random feeds."""
    assert len(before) == len(after)
    if feeds is None:
        feeds = {t: sample(t, n) for t in gc.graph.placeholders(before)}
    expected, got = run(before, feeds, n), run(after, feeds, n)
    for i, (e, g) in enumerate(zip(expected, got)):
        assert g.dtype == e.dtype, f"root {i}: dtype {g.dtype}, expected {e.dtype}"
        assert g.shape == e.shape, f"root {i}: shape {g.shape}, expected {e.shape}"
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, equal_nan=True,
                                   err_msg=f"root {i}")


def assert_sources_kept(before, after):
    """Every placeholder and parameter the new graph uses is one of the original nodes."""
    original = {node.id for node in toposort(before)}
    for node in toposort(after):
        if node.op in ("placeholder", "parameter"):
            assert node.id in original, f"{node} was rebuilt"


# --- rewrite ------------------------------------------------------------------------------------
def test_rewrite_that_changes_nothing_returns_the_same_roots():
    x = gc.placeholder((2, 3))
    roots = [gc.exp(x) + 1.0, x]
    new = rewrite(roots, lambda node, inputs: None)
    assert all(a is b for a, b in zip(new, roots))


def test_rewrite_rebuilds_users_of_a_replaced_tensor_and_keeps_their_location():
    x = gc.placeholder((3,))
    y = gc.neg(x)
    z = gc.exp(y)

    def neg_to_sin(node, inputs):
        return [gc.sin(inputs[0])] if node.op == "neg" else None

    (new,) = rewrite([z], neg_to_sin)
    assert ops([new]) == ["placeholder", "sin", "exp"]
    assert new.node is not z.node and new.node.loc == z.node.loc
    assert new.node.inputs[0].node.inputs[0] is x


def test_rewrite_rejects_a_rule_that_changes_a_type():
    x = gc.placeholder((3,))
    y = gc.neg(x)

    def bad(node, inputs):
        return [gc.cast(inputs[0], "float64")] if node.op == "neg" else None

    with pytest.raises(AssertionError, match="must keep every tensor's type"):
        rewrite([y], bad)


# --- dce ----------------------------------------------------------------------------------------
def test_dce_keeps_roots_and_dead_nodes_reports_the_unreachable():
    x = gc.placeholder((3,))
    used = gc.exp(x)
    unused = gc.sin(x)
    all_nodes = toposort([used, unused])
    (kept,) = dce([used])
    assert kept is used
    assert dead_nodes(all_nodes, [used]) == [unused.node]


# --- cse ----------------------------------------------------------------------------------------
def test_cse_merges_the_duplicate_products_of_a_gradient():
    x = gc.placeholder((3,))
    g = gc.grad(gc.sum(x * x), x)
    assert ops([g]).count("mul") == 2
    (new,) = cse([g])
    assert ops([new]).count("mul") == 1
    add = new.node
    assert add.op == "add" and add.inputs[0] is add.inputs[1]
    assert_same_values([g], [new])


def test_cse_merges_equal_small_constants_but_not_different_ones():
    x = gc.placeholder((3,))
    same = [x * gc.constant(2.0), x * gc.constant(2.0)]
    assert ops(cse(same)) == ["placeholder", "constant", "mul"]
    negative_zero = [x + gc.constant(0.0), x + gc.constant(-0.0)]
    assert ops(cse(negative_zero)).count("constant") == 2
    dtypes = [gc.constant(1, "float32"), gc.constant(1, "float64")]
    assert len({t.node.id for t in cse(dtypes)}) == 2


def test_cse_keeps_large_constants_apart():
    big = np.zeros(5000, np.float32)
    a, b = gc.constant(big), gc.constant(big)
    new = cse([a, b])
    assert new[0] is a and new[1] is b


def test_cse_tells_attrs_apart():
    x = gc.placeholder((2, 3))
    roots = [gc.sum(x, 0), gc.sum(x, 1), gc.sum(x, 0)]
    new = cse(roots)
    assert new[0] is new[2] and new[0] is not new[1]
    keep = [gc.sum(x, 0, keepdims=True), apply("sum", x, axes=(0,), keepdims=1)]
    assert cse(keep)[0] is not cse(keep)[1]  # True and 1 are different attrs


def test_cse_merges_multi_output_nodes():
    x = gc.placeholder((4, 2))
    a, b = gc.split(x, 2)
    c, d = gc.split(x, 2)
    new = cse([a + d, c * b])
    assert ops(new) == ["placeholder", "split", "add", "mul"]
    split = new[0].node.inputs[0].node
    for root in new:
        first, second = root.node.inputs
        assert first is split.outputs[0] and second is split.outputs[1]


def test_cse_does_not_merge_random_numbers():
    x = gc.placeholder((4, 5))
    a = gc.dropout(x, 0.5, seed=7)
    b = gc.dropout(x, 0.5, seed=7)
    new = cse([a, b])
    assert ops(new).count("random_uniform") == 2
    assert ops(new).count("div") == 1  # x / (1 - ratio) is shared
    assert_same_values([a, b], new)


def test_cse_keeps_placeholders_and_parameters_apart():
    x, y = gc.placeholder((3,)), gc.placeholder((3,))
    p, q = gc.Parameter(np.ones(3, np.float32)), gc.Parameter(np.ones(3, np.float32))
    roots = [x + p, y + q]
    new = cse(roots)
    assert new[0] is roots[0] and new[1] is roots[1]


# --- fold ---------------------------------------------------------------------------------------
def test_fold_turns_a_constant_subgraph_into_a_constant():
    x = gc.placeholder((3,))
    c = gc.exp(gc.constant(np.arange(3, dtype=np.float32))) * 2.0
    y = x + c
    (new,) = fold_constants([y])
    assert ops([new]) == ["placeholder", "constant", "add"]
    folded = new.node.inputs[1].node
    assert folded.value.dtype == np.float32 and not folded.value.flags.writeable
    assert_same_values([y], [new])


def test_fold_casts_to_the_node_dtype_and_folds_multi_output_nodes():
    parts = gc.split(gc.constant(np.arange(6, dtype=np.int32)), 3)
    total = apply("sum", gc.constant(np.array([True, True, False])), axes=(0,), keepdims=False)
    new = fold_constants([*parts, total])
    assert ops(new) == ["constant"] * 4
    assert [t.dtype for t in new] == ["int32"] * 3 + ["bool"]
    assert_same_values([*parts, total], new)


def test_fold_leaves_broadcasts_random_ops_and_n_shapes():
    x = gc.placeholder((None, 3))
    zeros = gc.zeros((1000, 1000))
    u = apply("random_uniform", gc.constant(np.zeros(3, np.float32)), dtype="float32", seed=1)
    batch = gc.broadcast_to(gc.constant(1.0), (None, 3)) + x
    new = fold_constants([zeros, u, batch])
    assert [t.op for t in new] == ["broadcast_to", "random_uniform", "add"]
    assert new[2] is batch


def test_fold_leaves_results_over_the_size_limit(monkeypatch):
    monkeypatch.setattr(fold_module, "MAX_FOLD_SIZE", 5)
    small = gc.exp(gc.constant(np.ones(5, np.float32)))
    large = gc.exp(gc.constant(np.ones(6, np.float32)))
    new = fold_constants([small, large])
    assert [t.op for t in new] == ["constant", "exp"]


def test_fold_leaves_a_failing_index_for_run_time():
    y = gc.constant(np.arange(3.0))[gc.constant(np.array([5]))]
    (new,) = fold_constants([y])
    assert new is y
    with pytest.raises(gc.RuntimeCheckError, match="index out of range"):
        run([new], {})


def test_fold_counts_static_dims_of_numel():
    x = gc.placeholder((None, 4, 5))
    static = apply("numel", x, axes=(1, 2), dtype="float32")
    batch = apply("numel", x, axes=(0,), dtype="float32")
    new = fold_constants([static, batch])
    assert new[0].op == "constant" and float(new[0].node.value) == 20.0
    assert new[1] is batch
    assert_same_values([static, batch], new, n=7)


# --- simplify -----------------------------------------------------------------------------------
def _f32(shape):
    return gc.placeholder(shape, "float32")


def _c(value, dtype="float32"):
    return gc.constant(np.asarray(value, dtype=dtype))


def _where_same(condition_shape):
    x = _f32((3,))
    return gc.where(gc.placeholder(condition_shape, "bool"), x, x)


# (id, graph builder, the ops left after one simplify sweep)
SIMPLIFY_CASES = [
    ("x*1", lambda: _f32((3,)) * _c(1), ["placeholder"]),
    ("1*x", lambda: _c(1) * _f32((3,)), ["placeholder"]),
    ("x*ones", lambda: _f32((3,)) * _c(np.ones(3)), ["placeholder"]),
    ("x*1 widens", lambda: _f32((3,)) * _c(np.ones((2, 3))), ["placeholder", "broadcast_to"]),
    ("x*bcast(1)", lambda: _f32((2, 3)) * gc.broadcast_to(_c(1), (2, 3)), ["placeholder"]),
    ("x*1 other dtype", lambda: apply("mul", gc.placeholder((3,), "int32"), _c(1)),
     ["placeholder", "constant", "mul"]),
    ("x*2 kept", lambda: _f32((3,)) * _c(2), ["placeholder", "constant", "mul"]),
    ("x*[1,2] kept", lambda: _f32((2,)) * _c([1, 2]), ["placeholder", "constant", "mul"]),
    ("x*0 kept", lambda: _f32((3,)) * _c(0), ["placeholder", "constant", "mul"]),
    ("x*-1", lambda: _f32((3,)) * _c(-1), ["placeholder", "neg"]),
    ("-1*x", lambda: _c(-1) * _f32((3,)), ["placeholder", "neg"]),
    ("x+0 kept", lambda: _f32((3,)) + _c(0), ["placeholder", "constant", "add"]),
    ("x+-0", lambda: _f32((3,)) + _c(-0.0), ["placeholder"]),
    ("-0+x", lambda: _c(-0.0) + _f32((3,)), ["placeholder"]),
    ("x+0 int", lambda: gc.placeholder((3,), "int64") + 0, ["placeholder"]),
    ("x-0", lambda: _f32((3,)) - _c(0), ["placeholder"]),
    ("0-x kept", lambda: _c(0) - _f32((3,)), ["constant", "placeholder", "sub"]),
    ("x/1", lambda: _f32((3,)) / _c(1), ["placeholder"]),
    ("1/x kept", lambda: _c(1) / _f32((3,)), ["constant", "placeholder", "div"]),
    ("x**1", lambda: _f32((3,)) ** _c(1), ["placeholder"]),
    ("neg neg", lambda: gc.neg(gc.neg(_f32((3,)))), ["placeholder"]),
    ("neg neg neg", lambda: gc.neg(gc.neg(gc.neg(_f32((3,))))), ["placeholder", "neg"]),
    ("log(exp(x)) kept", lambda: gc.log(gc.exp(_f32((3,)))), ["placeholder", "exp", "log"]),
    ("exp(log(x)) kept", lambda: gc.exp(gc.log(_f32((3,)))), ["placeholder", "log", "exp"]),
    ("where(c,x,x)", lambda: _where_same((3,)), ["placeholder"]),
    ("where(c,x,x) widens", lambda: _where_same((2, 3)), ["placeholder", "broadcast_to"]),
    ("where(True,a,b)", lambda: gc.where(_c(True, "bool"), _f32((3,)), _f32((3,))),
     ["placeholder"]),
    ("where(False,a,b)", lambda: gc.where(_c([False] * 3, "bool"), _f32((3,)), 2.0),
     ["constant", "broadcast_to"]),
    ("cast same", lambda: apply("cast", _f32((3,)), dtype="float32"), ["placeholder"]),
    ("cast widen then narrow", lambda: gc.cast(gc.cast(_f32((3,)), "float64"), "float32"),
     ["placeholder"]),
    ("cast i32 f64 f32", lambda: gc.cast(gc.cast(gc.placeholder((3,), "int32"), "float64"),
                                         "float32"),
     ["placeholder", "cast"]),
    ("cast narrow then widen kept", lambda: gc.cast(gc.cast(_f32((3,)), "int32"), "float32"),
     ["placeholder", "cast", "cast"]),
    ("reshape same", lambda: apply("reshape", _f32((2, 3)), shape=(2, 3)), ["placeholder"]),
    ("reshape reshape", lambda: _f32((2, 3)).reshape(6).reshape(3, 2), ["placeholder", "reshape"]),
    ("reshape reshape back", lambda: _f32((2, 3)).reshape(6).reshape(2, 3), ["placeholder"]),
    ("reshape reshape N", lambda: _f32((None, 4)).reshape(-1, 2, 2).reshape(-1, 4),
     ["placeholder"]),
    ("reshape constant", lambda: _c(np.arange(6)).reshape(2, 3), ["constant"]),
    ("transpose identity", lambda: _f32((2, 3)).transpose(0, 1), ["placeholder"]),
    ("transpose transpose", lambda: _f32((2, 3)).T.T, ["placeholder"]),
    ("transpose composed", lambda: _f32((2, 3, 4)).transpose(1, 2, 0).transpose(0, 2, 1),
     ["placeholder", "transpose"]),
    ("broadcast same", lambda: apply("broadcast_to", _f32((2, 3)), shape=(2, 3)),
     ["placeholder"]),
    ("broadcast broadcast", lambda: _f32((3,)).broadcast_to((2, 3)).broadcast_to((4, 2, 3)),
     ["placeholder", "broadcast_to"]),
    ("sum_to same", lambda: apply("sum_to", _f32((2, 3)), shape=(2, 3)), ["placeholder"]),
    ("sum_to of copyless broadcast", lambda: _f32((3,)).broadcast_to((1, 1, 3)).sum_to((3,)),
     ["placeholder"]),
    ("sum_to of broadcast kept", lambda: _f32((3,)).broadcast_to((2, 3)).sum_to((3,)),
     ["placeholder", "broadcast_to", "sum_to"]),
    ("sum no axes", lambda: apply("sum", _f32((2, 3)), axes=(), keepdims=False),
     ["placeholder", "constant", "add"]),
    ("sum size-1 keepdims", lambda: _f32((2, 1)).sum(1, keepdims=True),
     ["placeholder", "constant", "add"]),
    ("sum size-1 int", lambda: gc.placeholder((2, 1), "int64").sum(1, keepdims=True),
     ["placeholder"]),
    ("max size-1", lambda: _f32((2, 1)).max(1), ["placeholder", "reshape"]),
    ("sum size-3 kept", lambda: _f32((2, 3)).sum(1), ["placeholder", "sum"]),
]


@pytest.mark.parametrize("build, expected", [c[1:] for c in SIMPLIFY_CASES],
                         ids=[c[0] for c in SIMPLIFY_CASES])
def test_simplify_rule(build, expected):
    y = build()
    (new,) = simplify([y])
    assert ops([new]) == expected
    assert_same_values([y], [new], n=5)
    assert_sources_kept([y], [new])


@pytest.mark.parametrize("build, expected", [
    (lambda x: x + _c(0), ["placeholder"]),
    (lambda x: _c(0) + x, ["placeholder"]),
    (lambda x: gc.log(gc.exp(x)), ["placeholder"]),
], ids=["x+0", "0+x", "log(exp(x))"])
def test_simplify_fastmath_rules_change_results_only_when_asked(build, expected):
    x = _f32((3,))
    y = build(x)
    assert ops([simplify([y], fastmath=True)[0]]) == expected
    assert ops([simplify([y])[0]]) != expected  # not without fastmath


def test_simplify_keeps_ieee_special_values():
    # log(exp(100)) is inf in float32, x+0 turns -0.0 into +0.0, sum([-0.0]) is +0.0
    x = gc.placeholder((3,), "float32", name="x")
    col = gc.placeholder((3, 1), "float32", name="col")
    roots = [gc.log(gc.exp(x)), x + 0.0, gc.sum(col, axis=1)]
    feed = np.array([100.0, -0.0, 1.0], np.float32)
    for backend in ("numpy", "cpu"):
        f = gc.compile([x, col], roots, backend=backend)
        logexp, plus0, total = f(feed, feed.reshape(3, 1))
        assert logexp[0] == np.inf, backend
        assert not np.signbit(plus0[1]) and not np.signbit(total[1]), backend


def test_simplify_keeps_a_graph_without_matches():
    x = _f32((2, 3))
    y = gc.exp(x) * _c(2) + gc.sum(x, 0)
    assert simplify([y])[0] is y


# --- the pipeline -------------------------------------------------------------------------------
def test_pipeline_is_a_named_list_of_passes():
    assert PASS_NAMES == [name for name, _ in PASSES]
    assert PASS_NAMES == ["cse", "fold", "simplify", "dce"]
    assert all(callable(fn) for _, fn in PASSES)


def test_optimize_reference_level_runs_nothing():
    x = _f32((3,))
    roots = [x * _c(1), x]
    new = optimize(roots, level="reference")
    assert len(new) == 2 and all(a is b for a, b in zip(new, roots))


def test_optimize_rejects_unknown_names():
    x = _f32((3,))
    with pytest.raises(ValueError, match="unknown pass 'fuse'"):
        optimize([x], upto="fuse")
    with pytest.raises(ValueError, match="unknown optimisation level"):
        optimize([x], level="max")


def test_optimize_upto_stops_after_the_named_pass():
    x = _f32((3,))
    y = x * gc.exp(_c(0.0)) + x * gc.exp(_c(0.0))  # cse, then fold makes 1, simplify drops it
    assert ops(optimize([y], upto="cse")).count("exp") == 1
    assert ops(optimize([y], upto="fold")) == ["placeholder", "constant", "mul", "add"]
    assert ops(optimize([y], upto="simplify")) == ["placeholder", "add"]


def test_optimize_reaches_a_fixed_point_across_passes():
    x = _f32((2, 3))
    # simplify exposes a fold (reshape of a constant), which exposes a merge, then x*1
    one = gc.constant(np.ones(6, np.float32)).reshape(2, 3)
    y = (x * one).T.T + gc.sum(x * x, 1, keepdims=True) * gc.exp(_c(0.0))
    z = gc.grad(gc.sum(y * y), x)
    new = optimize([y, z])
    assert_same_values([y, z], new)
    assert_sources_kept([y, z], new)
    again = optimize(new)
    assert all(a is b for a, b in zip(again, new)), "optimize is not at a fixed point"
    assert "transpose" not in ops(new)


def test_optimize_roots_keep_order_and_may_be_sources():
    x = _f32((3,))
    p = gc.Parameter(np.arange(3, dtype=np.float32), name="p")
    roots = [p * 1.0, x - 0.0, gc.exp(x)]
    new = optimize(roots)
    assert new[0] is p and new[1] is x and new[2] is roots[2]


def test_optimized_training_step_updates_parameters_like_the_original():
    x = gc.placeholder((None, 3), name="x")
    W = gc.Parameter(RNG.standard_normal((3, 2)).astype(np.float32), name="W")
    b = gc.Parameter(np.zeros(2, np.float32), name="b")
    loss = gc.mean_squared_error(gc.linear(x, W, b), gc.zeros((None, 2)))
    gW, gb = gc.grad(loss, [W, b])
    roots = [loss, W - 0.1 * gW, b - 0.1 * gb]
    new = optimize(roots)
    assert_sources_kept(roots, new)
    assert len(toposort(new)) < len(toposort(roots))
    feed = {x: RNG.standard_normal((4, 3)).astype(np.float32)}
    assert_same_values(roots, new, n=4, feeds=feed)
    # what the compiler does: compile the optimized roots against the original placeholders
    f = gc.compile([x], new[:1], updates=[(W, new[1]), (b, new[2])], backend="numpy")
    expected_loss, expected_W, expected_b = run(roots, feed, n=4)
    (loss_value,) = f(feed[x])
    np.testing.assert_allclose(loss_value, expected_loss, rtol=1e-6)
    np.testing.assert_allclose(W.value, expected_W, rtol=1e-6)
    np.testing.assert_allclose(b.value, expected_b, rtol=1e-6)


# --- random graphs ------------------------------------------------------------------------------
UNARY = {
    "neg": gc.neg,
    "tanh": gc.tanh,
    "sin": gc.sin,
    "log_exp": lambda t: gc.log(gc.exp(gc.tanh(t))),
    "neg_neg": lambda t: gc.neg(gc.neg(t)),
    "cast_round_trip": lambda t: gc.cast(gc.cast(t, "float64"), "float32"),
    "where_same": lambda t: gc.where(t > 0, t, t),
    "relu": gc.relu,
}
CONSTANTS = [0.0, 1.0, -1.0, 2.5, -0.0]
BINARY = {"add": gc.add, "sub": gc.sub, "mul": gc.mul, "div": gc.div}


@st.composite
def random_graph(draw):
    """A few placeholders and a chain of elementwise/reshape/transpose/sum steps over them."""
    shapes = [(2, 3), (3,), (2, 1)]
    inputs = [gc.placeholder(s, "float32", name=f"in{i}") for i, s in enumerate(shapes)]
    pool = list(inputs)
    for _ in range(draw(st.integers(1, 10))):
        x = pool[-1] if draw(st.booleans()) else draw(st.sampled_from(pool))  # chains, too
        kind = draw(st.sampled_from(["unary", "const", "binary", "reshape", "transpose",
                                     "sum", "broadcast", "dup"]))
        if kind == "unary":
            y = UNARY[draw(st.sampled_from(sorted(UNARY)))](x)
        elif kind == "const":
            c = gc.constant(np.float32(draw(st.sampled_from(CONSTANTS))))
            if draw(st.booleans()):
                c = gc.broadcast_to(c, x.shape)
            fn = BINARY[draw(st.sampled_from(sorted(BINARY)))]
            y = fn(x, c) if draw(st.booleans()) else fn(c, x)
        elif kind == "binary":
            other = draw(st.sampled_from(pool))
            try:
                y = BINARY[draw(st.sampled_from(sorted(BINARY)))](x, other)
            except gc.ShapeError:
                continue
        elif kind == "reshape":
            size = int(np.prod(x.shape, dtype=np.int64))
            target = draw(st.sampled_from([(size,), (1, size), (size, 1), x.shape]))
            y = x.reshape(target)
        elif kind == "transpose":
            y = x.transpose(draw(st.permutations(range(x.ndim)))) if x.ndim else x
        elif kind == "sum":
            axes = draw(st.lists(st.integers(0, max(x.ndim - 1, 0)), unique=True)) if x.ndim \
                else []
            y = apply("sum", x, axes=tuple(sorted(axes)), keepdims=draw(st.booleans()))
        elif kind == "broadcast":
            y = gc.broadcast_to(x, (2,) + x.shape).sum_to(x.shape) if draw(st.booleans()) \
                else gc.broadcast_to(x, (1,) + x.shape)
        else:  # the same op twice, for cse
            y = gc.exp(gc.tanh(x)) + gc.exp(gc.tanh(x))
        pool.append(y)
    roots = draw(st.lists(st.sampled_from(pool[len(inputs):] or pool), min_size=1, max_size=3))
    return inputs, roots


@given(random_graph())
def test_optimize_keeps_the_values_of_random_graphs(graph):
    inputs, roots = graph
    new = optimize(roots)
    assert len(new) == len(roots)
    feeds = {t: RNG.uniform(-2, 2, t.shape).astype(np.float32) for t in inputs}
    assert_same_values(roots, new, feeds=feeds)
    assert_sources_kept(roots, new)
    assert all(a is b for a, b in zip(optimize(new), new)), "not a fixed point"
    # never more work (a float sum over size-1 axes becomes x + 0.0: one new constant, and a
    # reshape when the axes go, which the plan runs as a view)
    def work(rs):
        return sum(1 for n in toposort(rs) if n.op not in ("constant", "reshape"))

    assert work(new) <= work(roots)

