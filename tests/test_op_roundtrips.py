"""Every op case of tests/op_table.py through save/load, the optimisation passes and the printer.

For each case and shape set three graphs are built:

- "forward": the case's output(s), every operand a placeholder (integer and bool ones too),
  in float32, the batch dimension left as N;
- "grad": gc.grad of a fixed random projection of the outputs with respect to the float
  operands, in float64 at concrete shapes, the other operands constants (as
  tests/test_ops.py::test_grad builds it);
- "second": the gradient of the scalar tests/test_second_order.py's `second_order_fn`
  builds (the Hessian of the quadratic loss applied to v), with that scalar itself.

and each is checked three ways:

1. gc.save / gc.load gives a graph that prints the same (the printer numbers tensors %0, %1,
   ... afresh in each dump, so the same graph prints the same text) and that computes the
   same arrays, bit for bit and of the same dtypes, on the numpy backend (a random op draws
   the same numbers: its seed is an attribute);
2. the passes (graphc.passes.optimize, whole and cut after each pass) keep the values: the
   optimised roots, run by the numpy interpreter (which itself runs no passes: its
   optimize=True is level "reference"), agree with the original's to rounding (exactly for
   integer and bool results, zeros with their sign); optimize is at a fixed point (a second
   run gives the very same tensors, so the same text, as graphc.passes documents); and for
   the forward graphs the cpu backend compiled with optimize=False and optimize=True agree
   (each case's first shape set; the others are `slow`: each compiles kernels of its own);
3. the graph prints as text, dot and json, and the json loads back (gc.load) into a graph
   that prints the same text and computes the same values; `graphc dump` of the saved graph
   prints each format (and --after each pass) as gc.dump does (first shape sets).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from op_table import CASES, OpCase, project, shape_id
from test_second_order import second_order_fn

import graphc as gc
from graphc import cli
from graphc.graph import placeholders
from graphc.passes import PASS_NAMES, optimize

N = 3  # the batch size the graphs run at
KINDS = ("forward", "grad", "second")


# --- parametrization -----------------------------------------------------------------------------
def _params(kinds=KINDS, first_only=False, slow_after_first=False) -> list:
    """(case, shape set, graph kind) for every case, its shape sets (or the first), and the
    kinds the case has (a gradient only where test_ops.py takes one)."""
    params = []
    for c in CASES:
        for k, shapes in enumerate(c.shapes[:1] if first_only else c.shapes):
            for kind in kinds:
                if kind != "forward" and not (c.grad and c.has_float_args):
                    continue
                marks = [pytest.mark.slow] if k and slow_after_first else []
                params.append(pytest.param(c, shapes, kind, marks=marks,
                                           id=f"{c.name}[{shape_id(shapes)}]-{kind}"))
    return params


# --- the three graphs ----------------------------------------------------------------------------
def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def build(case: OpCase, shapes, kind: str):
    """(outputs, feeds by placeholder name) of one of the case's three graphs."""
    rng = np.random.default_rng(case.seed("roundtrip", shapes, kind))
    if kind == "forward":
        dtype = "float32"
        xs = [gc.placeholder(shape, dtype if arg.is_float else arg.dtype, name=f"in{i}")
              for i, (arg, shape) in enumerate(zip(case.arg_list(), shapes))]
        arrays = case.inputs(shapes, N, dtype, rng)
        return _as_list(case.build(*xs)), {x.name: a for x, a in zip(xs, arrays)}
    arrays = case.inputs(shapes, N, "float64", rng)
    is_float = [arg.is_float for arg in case.arg_list()]
    xs = [gc.placeholder(a.shape, a.dtype, name=f"in{i}")
          for i, (a, f) in enumerate(zip(arrays, is_float)) if f]
    feeds = {x.name: a for x, a in zip(xs, (a for a, f in zip(arrays, is_float) if f))}
    if kind == "grad":
        fixed = [None if f else gc.constant(a) for a, f in zip(arrays, is_float)]
        it = iter(xs)
        tensors = [next(it) if t is None else t for t in fixed]
        y = project(_as_list(case.build(*tensors)), np.random.default_rng(1))
        return _as_list(gc.grad(y, xs)), feeds
    h = second_order_fn(case, arrays, "quadratic", case.seed("projections", shapes))(*xs)
    return [h] + _as_list(gc.grad(h, xs)), feeds


# --- running and comparing -----------------------------------------------------------------------
def run_numpy(outputs, feeds, calls: int = 2) -> list:
    """The outputs' values on the numpy backend, for `calls` calls of one compiled function
    (a random op draws anew each call: both draws are compared)."""
    inputs = placeholders(outputs)
    f = gc.compile(inputs, outputs, backend="numpy")
    args = [feeds[x.name] for x in inputs]
    return [list(f(*args)) for _ in range(calls)]


def assert_identical(got, want, what: str) -> None:
    for call, (g_call, w_call) in enumerate(zip(got, want)):
        assert len(g_call) == len(w_call), what
        for i, (g, w) in enumerate(zip(g_call, w_call)):
            where = f"{what}: output {i}, call {call}"
            assert g.dtype == w.dtype and g.shape == w.shape, where
            np.testing.assert_array_equal(g, w, err_msg=where, strict=True)


def assert_close(got, want, what: str) -> None:
    """Equal to rounding (a product may run on a folded, differently laid out operand: NumPy
    then sums in another order), the sign of every exact zero kept (the passes' rules are
    exact in IEEE arithmetic, -0.0 included); integer and bool results exactly equal."""
    for call, (g_call, w_call) in enumerate(zip(got, want)):
        assert len(g_call) == len(w_call), what
        for i, (g, w) in enumerate(zip(g_call, w_call)):
            where = f"{what}: output {i}, call {call}"
            assert g.dtype == w.dtype and g.shape == w.shape, where
            if g.dtype.kind in "fc":
                tol = {"rtol": 1e-6, "atol": 1e-6} if g.dtype.itemsize <= 4 else \
                      {"rtol": 1e-12, "atol": 1e-12}
                np.testing.assert_allclose(g, w, err_msg=where, **tol)
                zeros = (g == 0) & (w == 0)
                np.testing.assert_array_equal(np.signbit(g[zeros]), np.signbit(w[zeros]),
                                              err_msg=f"{where}: the sign of a zero")
            else:
                np.testing.assert_array_equal(g, w, err_msg=where, strict=True)


def _names(outputs) -> list:
    return [x.name for x in placeholders(outputs)]


# --- the checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case, shapes, kind", _params())
def test_save_load_optimize_print(case: OpCase, shapes, kind, tmp_path):
    what = f"{case.name} {kind}"
    outputs, feeds = build(case, shapes, kind)
    text = gc.dump(outputs)
    doc = gc.dump(outputs, format="json")
    want = run_numpy(outputs, feeds)

    # 1. save / load: the same text (and the same JSON: every attribute, location and array),
    # the same bits
    gc.save(tmp_path / "g.json", outputs)
    loaded = gc.load(tmp_path / "g.json")
    assert isinstance(loaded.outputs, list) and len(loaded.outputs) == len(outputs)
    assert gc.dump(loaded.outputs) == text, f"{what}: the loaded graph prints apart"
    assert gc.dump(loaded.outputs, format="json") == doc, f"{what}: the loaded graph differs"
    assert list(loaded.inputs.keys()) == _names(outputs)
    assert_identical(run_numpy(loaded.outputs, feeds), want, f"{what}: loaded")

    # 2. the passes keep the values: the pipeline cut after each pass, and whole; the whole
    # pipeline is at a fixed point, and does the same to the loaded graph
    for upto in PASS_NAMES:
        cut = optimize(outputs, upto=upto)
        assert_close(run_numpy(cut, feeds), want, f"{what}: optimized up to {upto}")
    new = optimize(outputs)
    assert_close(run_numpy(new, feeds), want, f"{what}: optimized")
    again = optimize(new)
    assert all(a is b for a, b in zip(again, new)), f"{what}: not a fixed point"
    assert gc.dump(again) == gc.dump(new)
    assert gc.dump(optimize(loaded.outputs)) == gc.dump(new)

    # 3. every format prints; the json one loads back
    dot = gc.dump(outputs, format="dot")
    assert dot.startswith("digraph graphc {") and dot.endswith("}")
    assert dot.count(" -> out") == len(outputs)
    assert json.loads(doc)["format"] == "graphc-graph/1"
    (tmp_path / "dumped.json").write_text(doc)
    inline = gc.load(tmp_path / "dumped.json")
    assert gc.dump(inline.outputs) == text, f"{what}: the json dump loads apart"
    assert gc.dump(inline.outputs, format="json") == doc
    assert_identical(run_numpy(inline.outputs, feeds), want, f"{what}: json dump")


@pytest.mark.parametrize("case, shapes, kind", _params(first_only=True))
def test_cli_dumps_the_saved_graph(case: OpCase, shapes, kind, tmp_path, capsys):
    """`graphc dump saved.json --format F` prints what gc.dump prints (its json loads back),
    `--after PASS` what the cut pipeline gives; forward graphs with a scalar output also
    take `--grad`."""
    outputs, _ = build(case, shapes, kind)
    path = str(tmp_path / "g.json")
    gc.save(path, outputs)

    def dump(*flags) -> str:
        assert cli.main(["dump", path, *flags]) == 0
        return capsys.readouterr().out

    for fmt in ("text", "dot", "json"):
        assert dump("--format", fmt) == gc.dump(outputs, format=fmt) + "\n", fmt
    (tmp_path / "cli.json").write_text(dump("--format", "json"))
    assert gc.dump(gc.load(tmp_path / "cli.json").outputs) == gc.dump(outputs)
    for upto in PASS_NAMES:
        assert dump("--after", upto) == gc.dump(optimize(outputs, upto=upto)) + "\n", upto
    if kind == "forward" and any(t.shape == () and t.dtype.startswith("float")
                                 for t in outputs):
        assert "# gradients: " in dump("--grad")


@pytest.mark.parametrize("case, shapes, kind", _params(kinds=("forward",),
                                                      slow_after_first=True))
def test_cpu_optimize_on_and_off_agree(case: OpCase, shapes, kind):
    outputs, feeds = build(case, shapes, kind)
    inputs = placeholders(outputs)
    args = [feeds[x.name] for x in inputs]
    runs = []
    for opt in (False, True):
        f = gc.compile(inputs, outputs, backend="cpu", optimize=opt)
        runs.append([list(_as_list(f(*args))) for _ in range(2)])
    assert_close(runs[1], runs[0], f"{case.name}: cpu, optimize on vs off")
    assert gc.dump(outputs, optimized=True).strip()


def test_every_case_is_covered():
    covered = {p.values[0].name for p in _params(first_only=True)}
    assert covered == {c.name for c in CASES}
    second = {p.values[0].name for p in _params(first_only=True) if p.values[2] == "second"}
    assert second == {c.name for c in CASES if c.grad and c.has_float_args}


# --- random ops: the seed travels with the graph -----------------------------------------------
@pytest.mark.parametrize("seed", [11, None])
def test_dropout_draws_survive_save_and_load(seed, tmp_path):
    """The op table's random_uniform case only shows that draws lie in [0, 1): here the draws
    themselves (a dropout mask, fresh at each call) must come back the same after a save, a
    json dump and the passes, on numpy and on cpu. seed=None: the seed dropout draws."""
    x = gc.placeholder((None, 40), "float64", name="x")
    y = gc.dropout(x, 0.5, seed=seed)
    outputs = [y, gc.grad(gc.sum(y * y), x)]
    gc.save(tmp_path / "d.json", outputs)
    loaded = gc.load(tmp_path / "d.json").outputs
    (tmp_path / "dumped.json").write_text(gc.dump(outputs, format="json"))
    inline = gc.load(tmp_path / "dumped.json").outputs
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 40))}
    want = run_numpy(outputs, feeds, calls=3)
    assert not np.array_equal(want[0][0], want[1][0]), "each call draws a fresh mask"
    assert_identical(run_numpy(loaded, feeds, calls=3), want, "dropout, loaded")
    assert_identical(run_numpy(inline, feeds, calls=3), want, "dropout, json dump")
    assert_close(run_numpy(optimize(outputs), feeds, calls=3), want, "dropout, optimized")

    def run_cpu(roots):
        f = gc.compile(placeholders(roots), roots, backend="cpu")
        return [list(f(feeds["x"])) for _ in range(3)]

    assert_identical(run_cpu(loaded), run_cpu(outputs), "dropout on cpu, loaded")
