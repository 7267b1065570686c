"""Per-target rendering: op records write a target-neutral scalar form, the Numba CPU target
translates it through its own table, and kernels/ imports nothing from graphc's IR."""
from __future__ import annotations

import ast
import math
import pathlib

import numpy as np
import pytest
from graphc.kernels.codegen import scalar
from graphc.kernels.codegen.elementwise import KernelSpec, render
from graphc.kernels.codegen.numba_cpu import NUMBA_CPU
from graphc.kernels.codegen.scalar import ScalarFormError, translate
from op_table import CASES

from graphc import dtypes as dt
from graphc.errors import ShapeError
from graphc.ops import registry
from graphc.ops.base import lit

KERNELS = pathlib.Path(__file__).resolve().parent.parent / "kernels"
ELEMENTWISE_OPS = sorted(n for n, op in registry.OPS.items() if op.group == registry.ELEMENTWISE)


# --- kernels/ stands on its own ------------------------------------------------------------------
def _imported_modules(source: str, package: list) -> list:
    """(line, absolute module) for every import in a module of `package`, relative imports
    resolved, and every import_module/__import__ of a constant name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
                node.func, "id", None)
            if func in ("import_module", "__import__"):
                found.append((node.lineno, str(node.args[0].value)))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, module))
    return found


def _is_graphc_ir(module: str) -> bool:
    inside = module.split(".")[:2]
    return inside[0] == "graphc" and inside != ["graphc", "kernels"]


def test_kernels_import_nothing_from_graphc_but_graphc_kernels():
    paths = sorted(KERNELS.rglob("*.py"))
    assert any(p.name == "scalar.py" for p in paths), f"no kernels modules under {KERNELS}"
    wrong = []
    for path in paths:
        # kernels/ is installed as graphc.kernels: kernels/codegen/x.py is in graphc.kernels.codegen
        package = ["graphc", "kernels", *path.relative_to(KERNELS).parent.parts]
        wrong += [f"{path.relative_to(KERNELS.parent)}:{line}: {module}"
                  for line, module in _imported_modules(path.read_text(), package)
                  if _is_graphc_ir(module)]
    assert not wrong, "kernels/ imports graphc's IR:\n" + "\n".join(wrong)


def test_the_import_walk_sees_relative_and_late_imports():
    package = ["graphc", "kernels", "codegen"]
    source = ("from .scalar import Target\n"
              "def f():\n"
              "    from ...ops.base import lit\n"
              "    return importlib.import_module('graphc.passes')\n")
    modules = [m for _, m in _imported_modules(source, package)]
    assert modules == ["graphc.kernels.codegen.scalar", "graphc.ops.base", "graphc.passes"]
    assert [_is_graphc_ir(m) for m in modules + ["graphc", "graphc.kernels"]] == [
        False, True, True, True, False]


def test_the_neutral_dtypes_are_graphcs():
    assert scalar.DTYPES == dt.DTYPES
    assert set(NUMBA_CPU.types) == set(dt.DTYPES)


# --- every op record's neutral form translates -------------------------------------------------
def _accepted(name: str) -> list:
    """(operand dtypes, attrs, result dtype) for each dtype the op's shape rule accepts; the
    operand count and fixed dtypes (where's bool condition) come from its first table case."""
    record = registry.OPS[name]
    case = next(c for c in CASES if c.op == name)
    found = []
    for dtype in dt.DTYPES:
        in_dtypes = [dtype if a.is_float else a.dtype for a in case.arg_list()]
        for attrs in ([{"dtype": d} for d in dt.DTYPES] if name == "cast" else [{}]):
            try:
                [(_, out_dtype)] = record.infer([((2,), d) for d in in_dtypes], attrs)
            except ShapeError:
                continue
            found.append((in_dtypes, attrs, out_dtype))
    return found


@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_every_elementwise_op_translates_for_the_dtypes_it_accepts(name):
    """The translation's dtype is the one the op's shape rule gives, for every dtype."""
    record = registry.OPS[name]
    accepted = _accepted(name)
    assert {"float32", "float64"} <= {d for in_dtypes, _, _ in accepted for d in in_dtypes}, (
        f"{name}: accepts neither float dtype")
    for in_dtypes, attrs, out_dtype in accepted:
        names = [f"a{i}" for i in range(len(in_dtypes))]
        neutral = record.scalar(names, out_dtype, in_dtypes)
        written = translate(neutral, dict(zip(names, in_dtypes)), NUMBA_CPU)
        assert written.dtype == out_dtype, (
            f"{name} {in_dtypes} {attrs}: {neutral!r} gives {written.dtype}, its shape rule "
            f"{out_dtype}")
        compile(written.source, f"<{name}>", "eval")


def test_the_dtypes_an_op_accepts_include_ints():
    accepted = {tuple(i) for i, _, _ in _accepted("neg")}
    assert ("int32",) in accepted and ("int64",) in accepted


# --- the vocabulary is closed ----------------------------------------------------------------
@pytest.mark.parametrize("expr", [
    "__import__('os')",
    "__import__('os').system('true')",
    "np.exp(x0)",           # attributes: the target's own spelling is not neutral
    "fexp32(x0)",           # a helper of one target
    "x0.__class__",
    "os",                   # not a variable of the body
    "x_0",                  # variables are a letter and digits
    "x0[0]",
    "exp(x=x0)",
    "exp(x0, x0)",
    "x0 + 1.5",             # numbers are typed literals
    "float32('1.5')",
    "float32(1.5, 2)",
    "float32(x0)",          # a conversion is cast_float32
    "int64(1.5)",
    "int64(inf)",
    "int64(9223372036854775808)",
    "bool(1)",
    "(x0 < x0 < x0)",
    "(x0 and x0)",
    "not (x0 < x0)",
    "lambda: 0",
    "[x0]",
    "f'{x0}'",
    "x0 +",
])
def test_translation_rejects_what_is_outside_the_vocabulary(expr):
    with pytest.raises(ScalarFormError):
        translate(expr, {"x0": "float32"}, NUMBA_CPU)


def test_translation_rejects_mixed_dtypes_and_missing_target_entries():
    with pytest.raises(ScalarFormError, match="float32, float64"):
        translate("(x0 + x1)", {"x0": "float32", "x1": "float64"}, NUMBA_CPU)
    with pytest.raises(ScalarFormError, match="expected bool"):
        translate("(x0 if x0 else x0)", {"x0": "float32"}, NUMBA_CPU)
    with pytest.raises(ScalarFormError, match="numba_cpu has no exp for int64"):
        translate("exp(x0)", {"x0": "int64"}, NUMBA_CPU)


# --- literals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value, dtype, neutral, numba", [
    (math.inf, "float32", "float32(inf)", "np.float32(np.inf)"),
    (-math.inf, "float32", "float32(-inf)", "np.float32(-np.inf)"),
    (math.nan, "float64", "float64(nan)", "np.float64(np.nan)"),
    (-0.0, "float32", "float32(-0.0)", "np.float32(-0.0)"),
    (1.5, "float64", "float64(1.5)", "np.float64(1.5)"),
    (float(np.float32(0.1)), "float32", "float32(0.10000000149011612)",
     "np.float32(0.10000000149011612)"),
    (1e-300, "float64", "float64(1e-300)", "np.float64(1e-300)"),
    (3, "int64", "int64(3)", "np.int64(3)"),
    (-2**31, "int32", "int32(-2147483648)", "np.int32(-2147483648)"),
    (True, "bool", "True", "True"),
    (0, "bool", "False", "False"),
])
def test_literals_render_and_evaluate(value, dtype, neutral, numba):
    assert lit(value, dtype) == neutral
    written = translate(neutral, {}, NUMBA_CPU)
    assert (written.source, written.dtype) == (numba, dtype)
    got = eval(written.source, {"np": np})  # our own generated literal
    assert np.asarray(got).dtype == np.dtype(dtype), f"{numba} is {np.asarray(got).dtype}"
    if math.isnan(value):
        assert np.isnan(got)
    else:
        assert got == value and np.signbit(got) == np.signbit(value), f"{numba} gives {got!r}"


def test_literals_take_only_graphcs_dtypes():
    with pytest.raises(ValueError, match="float16"):
        lit(1.0, "float16")
    with pytest.raises(ValueError, match="no literal of dtype"):
        NUMBA_CPU.literal(1.0, "np.float32); import os; (")


# --- rendering: helper imports and the exact source --------------------------------------------
def _spec(body, dtype="float32", outputs=None, **kw) -> KernelSpec:
    return KernelSpec("k", 1, ((dtype, (True,)),), tuple(body),
                      outputs or ((body[-1][0], dtype),), **kw)


def _header(source: str) -> list:
    return [line for line in source.splitlines() if line.startswith(("import", "from"))]


@pytest.mark.parametrize("body, dtype, helpers", [
    ([("v0", "exp(x0)", "")], "float32", "from graphc.kernels.mathlib import fexp32"),
    ([("v0", "sigmoid(x0)", "")], "float32", "from graphc.kernels.mathlib import fsigmoid32"),
    ([("v0", "sigmoid(x0)", ""), ("v1", "exp(v0)", "")], "float32",
     "from graphc.kernels.mathlib import fexp32, fsigmoid32"),
    ([("v0", "exp(x0)", ""), ("v1", "sigmoid(v0)", "")], "float64",
     "from graphc.kernels.mathlib import fexp64"),
    ([("v0", "tanh(x0)", ""), ("v1", "log(v0)", "")], "float64",
     "from graphc.kernels.mathlib import flog64, ftanh64"),
    ([("v0", "log(x0)", "")], "float32", "from graphc.kernels.mathlib import flog32"),
    ([("v0", "sqrt(x0)", ""), ("v1", "sin(v0)", "")], "float64", None),
    ([("v0", "maximum(x0, float32(0.0))", "")], "float32", None),
])
def test_a_kernel_imports_the_helpers_its_body_calls(body, dtype, helpers):
    source = render(_spec(body, dtype))
    expected = ["import numpy as np", "import numba"] + ([helpers] if helpers else [])
    assert _header(source) == expected
    compile(source, "<kernel>", "exec")


_F = {"x0": "float32", "x1": "float32"}


@pytest.mark.parametrize("expr, signs, sign", [
    ("maximum(x0, float32(0.0))", {}, "+"),           # relu
    ("maximum(float32(-0.0), x0)", {}, "+"),
    ("(-maximum(x0, float32(0.0)))", {}, "-"),
    ("minimum(x0, float32(-1.5))", {}, "-"),
    ("(x0 * x1)", {"x0": "+", "x1": "-"}, "-"),
    ("(x0 * x1)", {"x0": "-", "x1": "-"}, "+"),
    ("(x0 * x1)", {"x0": "+"}, None),
    ("(x0 * float32(0.0))", {}, "0"),
    ("(x0 + x1)", {"x0": "+", "x1": "+"}, "+"),
    ("(x0 - x1)", {"x0": "+", "x1": "-"}, "+"),
    ("(x0 - x1)", {"x0": "+", "x1": "+"}, None),       # inf - inf, 1 - 2
    ("(x0 / x1)", {"x0": "+", "x1": "+"}, None),       # 1 / -0.0 is -inf
    ("(float32(1.0) / x1)", {"x1": "+"}, None),
    ("(x0 ** float32(2.0))", {}, None),
    ("exp(x0)", {}, "+"), ("sqrt(x0)", {}, "+"), ("abs(x0)", {}, "+"),
    ("sigmoid(x0)", {}, "+"), ("log(x0)", {"x0": "+"}, None),
    ("tanh(x0)", {"x0": "-"}, "-"), ("sin(x0)", {"x0": "+"}, None),
    ("(x0 if (x0 > x1) else float32(0.0))", {"x0": "+"}, "+"),
    ("(x0 if (x0 > x1) else x1)", {"x0": "+"}, None),
    ("float32(nan)", {}, "0"), ("float32(-inf)", {}, "-"),
])
def test_the_translation_proves_signs_that_hold_for_every_input(expr, signs, sign):
    """`+`: >= 0 or NaN, `-`: <= 0 or NaN, `0`: both; None where some input breaks it."""
    assert translate(expr, _F, NUMBA_CPU, signs).sign == sign


@pytest.mark.parametrize("body, call", [
    ([("v0", "maximum(x0, float32(0.0))", ""), ("v1", "sigmoid(v0)", "")],
     "fsigmoid_nonneg32(v0)"),
    ([("v0", "maximum(x0, float32(0.0))", ""), ("v1", "exp((-v0))", "")],
     "fexp_nonpos32((-v0))"),
    ([("v0", "abs(x0)", ""), ("v1", "(v0 * float32(-2.0))", ""), ("v2", "exp(v1)", "")],
     "fexp_nonpos32(v1)"),
    ([("v0", "sigmoid(x0)", "")], "fsigmoid32(x0)"),
    ([("v0", "exp((-x0))", "")], "fexp32((-x0))"),
    ([("v0", "maximum(x0, float32(0.0))", ""), ("v1", "exp(v0)", "")], "fexp32(v0)"),
])
def test_a_proved_sign_picks_the_helper_for_it(body, call):
    """W4's sigmoid(relu(..)) and exp(-t) call the helpers for their proved signs (the same
    bits with fewer instructions: tests/test_mathlib.py); an unproved sign the general one."""
    source = render(_spec(body))
    assert f"= {call}" in source
    compile(source, "<kernel>", "exec")


def test_reduction_identities_and_the_update_use_the_targets_literals():
    spec = _spec([("v0", "(x0 * x0)", "")], outputs=(),
                 reduce=("max", "v0", "float32", (True,)), post=(-0.5, 1.0, "float32"))
    source = render(spec)
    assert "acc = np.float32(-np.inf)" in source
    assert "post[0] += np.float32(-0.5) * red[0]  # parameter update" in source
    assert "total = np.float64(-np.inf)" in source


def test_a_comment_cannot_start_a_line_of_code():
    spec = _spec([("v0", "exp(x0)", "exp %0\nimport os  [user.py:3]")])
    source = render(spec)
    assert not any(line.lstrip().startswith("import os") for line in source.splitlines())
    assert "# exp %0 import os  [user.py:3]" in source


def test_an_output_must_have_the_dtype_its_expression_gives():
    spec = _spec([("v0", "(x0 < x0)", "")], outputs=(("v0", "float32"),))
    with pytest.raises(ScalarFormError, match="output v0 is float32 but its expression gives "
                                              "bool"):
        render(spec)


SMALL_KERNEL = '''\
# generated by graphc: fused elementwise kernel mul_add_sigmoid_where
import numpy as np
import numba
from graphc.kernels.mathlib import fsigmoid32, select

@numba.njit(cache=True, error_model='numpy', fastmath=False)
def blocks(in0, in1, out0, lo_, hi_):
    n0, = out0.shape
    n = np.uint64(n0)
    nblocks = (n0 + 4096 - 1) // 4096
    for b in range(lo_, hi_):
        lo = np.uint64(b) * np.uint64(4096)
        hi = min(lo + np.uint64(4096), n)
        for i0 in range(lo, hi):
            x0 = in0[i0]
            x1 = in1[0]
            v0 = (x0 * np.float32(1.5))  # %2 = mul %0 1.5
            v1 = (v0 + x1)  # %3 = add %2 %1
            v2 = fsigmoid32(v1)  # %4 = sigmoid %3
            v3 = select((x0 > np.float32(0.0)), v2, np.float32(-np.inf))  # %5 = where
            out0[i0] = v3

@numba.njit(cache=True, error_model='numpy', fastmath=False)
def serial(in0, in1, out0):
    n0, = out0.shape
    n = np.uint64(n0)
    nblocks = (n0 + 4096 - 1) // 4096
    for b in range(nblocks):
        lo = np.uint64(b) * np.uint64(4096)
        hi = min(lo + np.uint64(4096), n)
        for i0 in range(lo, hi):
            x0 = in0[i0]
            x1 = in1[0]
            v0 = (x0 * np.float32(1.5))  # %2 = mul %0 1.5
            v1 = (v0 + x1)  # %3 = add %2 %1
            v2 = fsigmoid32(v1)  # %4 = sigmoid %3
            v3 = select((x0 > np.float32(0.0)), v2, np.float32(-np.inf))  # %5 = where
            out0[i0] = v3

@numba.njit(cache=True, error_model='numpy', fastmath=False, parallel=True)
def parallel(in0, in1, out0):
    n0, = out0.shape
    n = np.uint64(n0)
    nblocks = (n0 + 4096 - 1) // 4096
    for c_ in numba.prange(nblocks):
        blocks(in0, in1, out0, np.int64(c_), np.int64(c_ + 1))

'''


def test_the_generated_source_of_a_small_fused_kernel():
    ops = registry.OPS
    v0 = ops["mul"].scalar(["x0", lit(1.5, "float32")], "float32", ["float32"] * 2)
    v1 = ops["add"].scalar(["v0", "x1"], "float32", ["float32"] * 2)
    v2 = ops["sigmoid"].scalar(["v1"], "float32", ["float32"])
    positive = ops["greater"].scalar(["x0", lit(0, "float32")], "bool", ["float32"] * 2)
    v3 = ops["where"].scalar([positive, "v2", lit(-math.inf, "float32")], "float32",
                             ["bool", "float32", "float32"])
    assert (v0, v2, v3) == ("(x0 * float32(1.5))", "sigmoid(v1)",
                            "(v2 if (x0 > float32(0.0)) else float32(-inf))")
    spec = KernelSpec(
        "mul_add_sigmoid_where", 1, (("float32", (True,)), ("float32", (False,))),
        (("v0", v0, "%2 = mul %0 1.5"), ("v1", v1, "%3 = add %2 %1"),
         ("v2", v2, "%4 = sigmoid %3"), ("v3", v3, "%5 = where")),
        (("v3", "float32"),))
    assert render(spec) == SMALL_KERNEL
