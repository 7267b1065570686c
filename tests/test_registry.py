"""The op registry is complete: every op has every rule, and a case in the op table.

A missing field or test shows here, at review time, instead of at run time in a user's graph.
"""
from __future__ import annotations

import numpy as np
import pytest
from graphc.kernels.codegen.numba_cpu import NUMBA_CPU
from graphc.kernels.codegen.scalar import translate
from op_table import CASES

import graphc.ops
from graphc.backends.numpy_backend import RunContext, evaluate
from graphc.graph import toposort
from graphc.ops import registry
from graphc.shapes import bind

SOURCE_OPS = {"placeholder", "parameter", "constant"}  # bound by backends; tested elsewhere
OP_NAMES = sorted(registry.OPS)
COMPUTE_OPS = [name for name in OP_NAMES if name not in SOURCE_OPS]
ELEMENTWISE_OPS = [n for n in COMPUTE_OPS if registry.OPS[n].group == registry.ELEMENTWISE]
GROUPS = {registry.SOURCE, registry.ELEMENTWISE, registry.REDUCE, registry.SHAPE,
          registry.LINALG, registry.NN, registry.RANDOM}


def _cases_for(name: str) -> list:
    return [c for c in CASES if c.op == name]


def _has_batch(shapes) -> bool:
    return any(None in s for s in shapes)


@pytest.mark.parametrize("name", OP_NAMES)
def test_op_record_has_every_rule(name):
    op = registry.OPS[name]
    assert op.name == name, f"OPS[{name!r}] is registered under another name {op.name!r}"
    assert op.group in GROUPS, f"{name}: unknown group {op.group!r}"
    assert callable(op.infer), f"{name}: no shape rule (infer)"
    assert callable(op.reference), f"{name}: no NumPy reference"
    assert callable(op.vjp), f"{name}: no vjp"
    if op.differentiable:
        assert op.vjp is not registry.not_differentiable, (
            f"{name} is marked differentiable but its vjp is not_differentiable")
    else:
        assert op.vjp is registry.not_differentiable, (
            f"{name} is marked non-differentiable but has a vjp of its own")


@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_elementwise_op_has_a_scalar_expression(name):
    assert callable(registry.OPS[name].scalar), (
        f"elementwise op {name} has no scalar expression for the kernel generator")


@pytest.mark.parametrize("name", COMPUTE_OPS)
def test_op_has_table_cases(name):
    cases = _cases_for(name)
    assert cases, f"op {name} has no case in tests/op_table.py"
    assert any(_has_batch(s) for c in cases for s in c.shapes), (
        f"op {name} has no case with a batch dimension N (None) in tests/op_table.py")
    for c in cases:
        assert len(c.shapes) >= 2, f"op case {c.name} has fewer than two shape sets"


@pytest.mark.parametrize(
    "name", [n for n in COMPUTE_OPS if registry.OPS[n].differentiable])
def test_differentiable_op_has_gradient_cases(name):
    grad_cases = [c for c in _cases_for(name) if c.grad]
    assert grad_cases, f"differentiable op {name} has no gradient case in tests/op_table.py"
    assert sum(len(c.shapes) for c in grad_cases) >= 2, (
        f"differentiable op {name} is gradient-checked at fewer than two shapes")


@pytest.mark.parametrize(
    "name", [n for n in ELEMENTWISE_OPS if n not in ("neg", "exp", "log", "sqrt", "abs", "sin",
                                                     "cos", "tanh", "sigmoid", "relu", "sign",
                                                     "cast")])
def test_multi_operand_elementwise_op_has_a_broadcasting_case(name):
    def broadcasts(shapes):
        return len({s for s in shapes if s != ()}) > 1

    assert any(broadcasts(s) for c in _cases_for(name) for s in c.shapes), (
        f"op {name} has no case whose operands broadcast against each other")


def test_every_public_op_function_has_a_case():
    covered = {c.op for c in CASES}
    missing = sorted(n for n in graphc.ops.__all__ if n != "OPS" and n not in covered)
    assert not missing, f"public op functions without a case in tests/op_table.py: {missing}"


def test_every_case_names_a_known_op():
    known = set(registry.OPS) | set(graphc.ops.__all__)
    unknown = sorted({c.op for c in CASES} - known)
    assert not unknown, f"op table cases name unknown ops: {unknown}"


# --- the scalar expressions the kernel generator emits agree with the references -----------------
def _scalar_namespace() -> dict:
    """What a generated kernel sees: numpy as np and the float32 helpers of
    graphc.kernels.mathlib (intrinsics, callable from compiled code only: each is called
    here through a compiled function of one call)."""
    import numba
    from graphc.kernels import mathlib

    def compiled(helper):
        return numba.njit(lambda x: helper(x))

    namespace = {"np": np, **{name: compiled(getattr(mathlib, name))
                              for name in mathlib.__all__ if name != "select"}}
    namespace["select"] = lambda c, a, b: a if c else b
    return namespace


def _elementwise_nodes(name, dtype):
    """(node, input arrays, reference output) for each node of op `name` in its table cases."""
    found = []
    for c in _cases_for(name):
        shapes = c.shapes[0]
        xs = [graphc.placeholder(bind(s, 2), dtype if a.is_float else a.dtype)
              for a, s in zip(c.arg_list(), shapes)]
        out = c.build(*xs)
        outs = out if isinstance(out, list) else [out]
        rng = np.random.default_rng(c.seed("scalar"))
        env = dict(zip(xs, c.inputs(shapes, 2, dtype, rng)))
        evaluate(toposort(outs), env, RunContext(2, {}))
        for node in toposort(outs):
            if node.op == name:
                found.append((node, [env[t] for t in node.inputs], env[node.outputs[0]]))
    return found


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_scalar_expression_matches_reference(name, dtype):
    """Evaluate the op's scalar expression element by element, as a kernel would."""
    namespace = _scalar_namespace()
    nodes = _elementwise_nodes(name, dtype)
    assert nodes, f"no table case builds a {name} node"
    for node, inputs, expected in nodes:
        out = node.outputs[0]
        names = [f"a{i}" for i in range(len(inputs))]
        neutral = node.record.scalar(names, out.dtype, [t.dtype for t in node.inputs])
        assert isinstance(neutral, str), f"{name}: scalar expression is not source text"
        types = {n: t.dtype for n, t in zip(names, node.inputs)}
        source = translate(neutral, types, NUMBA_CPU).source  # as the Numba CPU kernel has it
        code = compile(source, f"<scalar {name}>", "eval")
        broadcast = np.broadcast_arrays(*inputs)
        got = np.empty(expected.shape, dtype=out.dtype)
        with np.errstate(all="ignore"):
            for idx in np.ndindex(*expected.shape):
                scope = {**namespace, **{n: b[idx] for n, b in zip(names, broadcast)}}
                got[idx] = eval(code, scope)  # our own generated expression
        tight = out.dtype == "float64" or not any(t.dtype == "float32" for t in node.inputs)
        np.testing.assert_allclose(got, expected, rtol=1e-12 if tight else 2e-6,
                                   atol=1e-12 if tight else 1e-7,
                                   err_msg=f"{name} ({dtype}): scalar expression {source!r}")
