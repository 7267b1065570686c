"""The target-neutral scalar form of a kernel body, and its translation to one target's source.

Op records write each elementwise op as a Python expression over a small, closed vocabulary:

    variables    x0, v3, a1 (one letter, then digits): loads and earlier body lines
    operators    a + b, a - b, a * b, a / b, a ** b, -a; a < b, a <= b, a > b, a >= b,
                 a == b, a != b (one comparison at a time); (a if cond else b)
    functions    exp log sqrt sin cos tanh sigmoid abs sign (one operand),
                 maximum minimum (two, NaN from either side as in NumPy),
                 cast_<dtype> (a conversion to one of DTYPES)
    literals     <dtype>(number) with a finite number, inf, -inf or nan: float32(1.5),
                 float64(-inf), int64(3); True and False for bool

A `Target` (numba_cpu.py; numba.cuda next) maps each function, per operand dtype where it
matters, to a template of its own source, with the helper imports the template needs.
`translate` parses the neutral text with `ast`, rejects anything outside the vocabulary (so
no name, attribute or number from elsewhere reaches generated source), infers each
subexpression's dtype and writes the target's source, fully parenthesised.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

# The dtypes a kernel computes in (graphc.dtypes.DTYPES; a test keeps the two equal).
DTYPES = ("bool", "int32", "int64", "float32", "float64")
_INT_RANGE = {"int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1)}

# Neutral functions and their operand counts; a result has its operands' dtype (cast_<dtype>:
# that dtype).
FUNCTIONS = {
    "exp": 1, "log": 1, "sqrt": 1, "sin": 1, "cos": 1, "tanh": 1, "sigmoid": 1,
    "abs": 1, "sign": 1, "maximum": 2, "minimum": 2,
    **{f"cast_{dtype}": 1 for dtype in DTYPES},
}

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
            ast.NotEq: "!="}


class ScalarFormError(ValueError):
    """A body expression outside the neutral vocabulary, or one a target cannot write."""


@dataclass(frozen=True)
class Template:
    """One function's source in a target: `{0}`, `{1}` stand for the operands' source;
    helpers: names the template calls that a generated module must import."""

    source: str
    helpers: tuple = ()


ANY = "*"  # a Target.functions key: the template serves every operand dtype


@dataclass(frozen=True)
class Target:
    """What a codegen target writes for the neutral form.

    types: dtype -> the target's scalar constructor (literals are `types[dtype](number)`).
    inf, nan: the target's spelling of the special values inside a literal.
    functions: neutral name -> {operand dtype or ANY: Template}; a dtype with no entry is an
        error (exp of an int64 in Numba CPU, say).
    helpers: helper name -> the module it is imported from.
    select: how `a if c else b` is written, as a Template over (c, a, b); None: the
        target's own conditional expression.
    """

    name: str
    types: Mapping[str, str]
    inf: str
    nan: str
    functions: Mapping[str, Mapping[str, Template]]
    helpers: Mapping[str, str] = field(default_factory=dict)
    select: Template | None = None

    def literal(self, value, dtype: str) -> str:
        """`value` as a typed literal of this target: np.float32(1.5), np.float32(-np.inf)."""
        if dtype == "bool":
            return "True" if value else "False"
        if dtype not in self.types:
            raise ScalarFormError(f"{self.name}: no literal of dtype {dtype!r}; expected one "
                                  f"of {', '.join(DTYPES)}")
        if dtype in _INT_RANGE:
            number = int(value)
            lo, hi = _INT_RANGE[dtype]
            if not lo <= number <= hi:
                raise ScalarFormError(f"{self.name}: {number} does not fit in {dtype}")
            return f"{self.types[dtype]}({number})"
        number = float(value)
        if math.isnan(number):
            text = self.nan
        elif math.isinf(number):
            text = ("-" if number < 0 else "") + self.inf
        else:
            text = repr(number)
        return f"{self.types[dtype]}({text})"

    def imports(self, helpers) -> list[str]:
        """Import lines for the helper names a module uses, one line per module, sorted."""
        by_module: dict = {}
        for name in helpers:
            by_module.setdefault(self.helpers[name], set()).add(name)
        return [f"from {module} import {', '.join(sorted(names))}"
                for module, names in sorted(by_module.items())]


@dataclass(frozen=True)
class Translation:
    """A neutral expression in a target's source, its dtype and the helpers it calls."""

    source: str
    dtype: str
    helpers: frozenset


def is_variable(name: str) -> bool:
    """Whether `name` is a neutral variable: one ASCII letter, then digits (x0, v12)."""
    return name.isascii() and name[:1].isalpha() and name[1:].isdigit()


def translate(expr: str, types: Mapping[str, str], target: Target) -> Translation:
    """The target's source for a neutral expression; types: each variable's dtype."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ScalarFormError(f"not a scalar expression: {expr!r} ({exc.msg})") from None
    helpers: set = set()
    try:
        source, dtype = _write(tree.body, types, target, helpers)
    except ScalarFormError as exc:
        raise ScalarFormError(f"{exc} in {expr!r}") from None
    return Translation(source, dtype, frozenset(helpers))


def _write(node, types, target: Target, helpers: set) -> tuple[str, str]:
    """(source, dtype) of one node of the neutral form."""
    if isinstance(node, ast.Name):
        if not is_variable(node.id) or node.id not in types:
            raise ScalarFormError(f"unknown variable {node.id!r}")
        return node.id, types[node.id]
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return target.literal(node.value, "bool"), "bool"
    if isinstance(node, ast.Call):
        return _write_call(node, types, target, helpers)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand, dtype = _write(node.operand, types, target, helpers)
        return f"(-{operand})", dtype
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        (left, right), dtype = _operands(node, [node.left, node.right], types, target, helpers)
        return f"({left} {_BINARY[type(node.op)]} {right})", dtype
    if (isinstance(node, ast.Compare) and len(node.ops) == 1
            and type(node.ops[0]) in _COMPARE):
        (left, right), _ = _operands(node, [node.left, *node.comparators], types, target,
                                     helpers)
        return f"({left} {_COMPARE[type(node.ops[0])]} {right})", "bool"
    if isinstance(node, ast.IfExp):
        test, test_dtype = _write(node.test, types, target, helpers)
        if test_dtype != "bool":
            raise ScalarFormError(f"a condition of dtype {test_dtype}, expected bool")
        (body, orelse), dtype = _operands(node, [node.body, node.orelse], types, target,
                                          helpers)
        if target.select is not None:
            helpers.update(target.select.helpers)
            return target.select.source.format(test, body, orelse), dtype
        return f"({body} if {test} else {orelse})", dtype
    raise ScalarFormError(f"{ast.unparse(node)!r} is outside the scalar vocabulary "
                          f"(variables, + - * / **, comparisons, `a if c else b`, "
                          f"{', '.join(FUNCTIONS)} and typed literals)")


def _operands(node, operands, types, target, helpers) -> tuple[list, str]:
    """The operands' source and their dtype, which they share (graphc casts mixed operands
    before the op)."""
    written = [_write(o, types, target, helpers) for o in operands]
    dtypes = [dtype for _, dtype in written]
    if len(set(dtypes)) > 1:
        raise ScalarFormError(f"operands of {ast.unparse(node)!r} have dtypes "
                              f"{', '.join(dtypes)}; expected one dtype")
    return [source for source, _ in written], dtypes[0]


def _write_call(node: ast.Call, types, target: Target, helpers: set) -> tuple[str, str]:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if node.keywords or name is None:
        raise ScalarFormError(f"{ast.unparse(node)!r}: call a vocabulary function by name, "
                              f"with positional operands")
    if name in DTYPES and name != "bool":
        return target.literal(_literal_value(node, name), name), name
    if name not in FUNCTIONS:
        raise ScalarFormError(f"{name!r} is not a scalar function; expected one of "
                              f"{', '.join(FUNCTIONS)} or a literal such as float32(1.5)")
    if len(node.args) != FUNCTIONS[name]:
        raise ScalarFormError(f"{name} takes {FUNCTIONS[name]} operand(s), got "
                              f"{len(node.args)}")
    sources, dtype = _operands(node, node.args, types, target, helpers)
    by_dtype = target.functions.get(name, {})
    template = by_dtype.get(dtype) or by_dtype.get(ANY)
    if template is None:
        raise ScalarFormError(f"{target.name} has no {name} for {dtype}")
    helpers.update(template.helpers)
    result = name[len("cast_"):] if name.startswith("cast_") else dtype
    return template.source.format(*sources), result


def _literal_value(node: ast.Call, dtype: str):
    """The number inside `float32(1.5)`, `float32(-inf)`, `int64(3)`: a plain number,
    inf or nan, optionally negated; integers for integer dtypes."""
    if len(node.args) != 1:
        raise ScalarFormError(f"a literal takes one number: {ast.unparse(node)!r}")
    arg = node.args[0]
    sign = 1
    if isinstance(arg, ast.UnaryOp) and isinstance(arg.op, ast.USub):
        sign, arg = -1, arg.operand
    if isinstance(arg, ast.Name) and arg.id in ("inf", "nan") and dtype.startswith("float"):
        return sign * math.inf if arg.id == "inf" else math.nan
    if (isinstance(arg, ast.Constant) and type(arg.value) in (int, float)
            and (dtype.startswith("float") or type(arg.value) is int)):
        return sign * arg.value
    raise ScalarFormError(f"{ast.unparse(node)!r} is not a literal of {dtype}: expected a "
                          f"number{', inf or nan' if dtype.startswith('float') else ''}")
