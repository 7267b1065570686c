"""The target-neutral scalar form of a kernel body, and its translation to one target's source.

Op records write each elementwise op as a Python expression over a small, closed vocabulary:

    variables    x0, v3, a1 (one letter, then digits): loads and earlier body lines
    operators    a + b, a - b, a * b, a / b, a ** b, -a; a < b, a <= b, a > b, a >= b,
                 a == b, a != b (one comparison at a time); (a if cond else b)
    functions    exp log sqrt sin cos tanh sigmoid abs sign (one operand),
                 maximum minimum (two, NaN from either side as in NumPy; of two equal
                 operands, -0.0 and +0.0, the first: NumPy's np.maximum keeps the second,
                 so the ops write maximum(b, a)),
                 cast_<dtype> (a conversion to one of DTYPES)
    literals     <dtype>(number) with a finite number, inf, -inf or nan: float32(1.5),
                 float64(-inf), int64(3); True and False for bool

A `Target` (numba_cpu.py; numba.cuda next) maps each function, per operand dtype where it
matters, to a template of its own source, with the helper imports the template needs.
`translate` also follows each float value's sign where the expression proves it (`+`: >= 0
or NaN, as relu's output; `-`: <= 0 or NaN; `0`: both, a zero or NaN), so a target can
write a cheaper form of a function for a proved sign (Target.signed: float32 exp of a
non-positive value, sigmoid of a non-negative one) that gives the same bits.
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
    signed: (function, operand dtype, sign) -> Template used instead of `functions`' when
        the operand's sign is proved ("+": >= 0 or NaN, "-": <= 0 or NaN); it must give
        the same bits as the general template for every such operand.
    binary: (dtype, operator) -> Template over (left, right) for an operator that the
        plain `(a op b)` would not give NumPy's result for (integer arithmetic that must
        wrap in its own width, bool + and *); unary minus is written as `0 - a` there.
    """

    name: str
    types: Mapping[str, str]
    inf: str
    nan: str
    functions: Mapping[str, Mapping[str, Template]]
    helpers: Mapping[str, str] = field(default_factory=dict)
    select: Template | None = None
    signed: Mapping[tuple, Template] = field(default_factory=dict)
    binary: Mapping[tuple, Template] = field(default_factory=dict)

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
    sign: str | None = None  # "+", "-", "0" (both) or None: see the note above _nonneg


def numba_binary(types: Mapping[str, str]) -> dict:
    """Target.binary for Numba (CPU and CUDA): NumPy's integer arithmetic wraps in the
    operands' width, and its bool + and * are `or` and `and`. Numba computes int32 + int32
    in int64 (the sum is not wrapped before a comparison or a cast reads it: 2**30 + 2**30
    > 0 was True), marks int64 arithmetic as never overflowing (LLVM then folds x*x > 0 to
    x != 0), and adds two bools as integers (True + True == 2). So int32 results are
    truncated to int32, int64 arithmetic runs in uint64 (which wraps, the same bits), and
    bools take | and &."""
    i32, i64 = types["int32"], types["int64"]
    u64 = i64.replace("int64", "uint64")
    out = {("int32", op): Template(f"{i32}({{0}} {op} {{1}})") for op in ("+", "-", "*", "**")}
    out.update({("int64", op): Template(f"{i64}({u64}({{0}}) {op} {u64}({{1}}))")
                for op in ("+", "-", "*")})
    out[("bool", "+")] = Template("({0} | {1})")
    out[("bool", "*")] = Template("({0} & {1})")
    return out


def numba_casts(types: Mapping[str, str], select: bool) -> dict:
    """Target.functions' cast_<dtype> entries for Numba (CPU: select=True, one LLVM select;
    CUDA: a conditional expression). A float cast to an integer type gives the type's
    minimum for NaN, +-inf and values outside its range, as NumPy's astype on x86
    (cvttss2si's "integer indefinite"): Numba's own conversion is LLVM's fptosi, undefined
    there, and LLVM folded float32(int32(x)) of a NaN back to NaN while the stored int32
    read INT_MIN. A bool is value != 0 (NaN is true, as astype(bool))."""
    out = {}
    for dtype in DTYPES:
        t = types.get(dtype)
        if t is None or dtype == "bool":
            continue
        entry = {ANY: Template(f"{t}({{0}})")}
        if dtype in ("int32", "int64"):
            bits = 31 if dtype == "int32" else 63
            for src in ("float32", "float64"):
                f = types[src]
                inside = f"(({{0}} >= {f}({-2.0 ** bits!r})) & ({{0}} < {f}({2.0 ** bits!r})))"
                least = f"{t}({-2 ** bits})"
                entry[src] = (Template(f"select({inside}, {t}({{0}}), {least})",
                                       helpers=("select",)) if select else
                              Template(f"({t}({{0}}) if {inside} else {least})"))
        out[f"cast_{dtype}"] = entry
    out["cast_bool"] = {ANY: Template("({0} != 0)")}
    return out


def is_variable(name: str) -> bool:
    """Whether `name` is a neutral variable: one ASCII letter, then digits (x0, v12)."""
    return name.isascii() and name[:1].isalpha() and name[1:].isdigit()


def translate(expr: str, types: Mapping[str, str], target: Target,
              signs: Mapping[str, str | None] | None = None) -> Translation:
    """The target's source for a neutral expression; types: each variable's dtype; signs:
    the proved sign of variables (earlier lines' Translation.sign), where known."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ScalarFormError(f"not a scalar expression: {expr!r} ({exc.msg})") from None
    helpers: set = set()
    try:
        source, dtype, sign = _write(tree.body, _Scope(types, signs or {}, target, helpers))
    except ScalarFormError as exc:
        raise ScalarFormError(f"{exc} in {expr!r}") from None
    return Translation(source, dtype, frozenset(helpers),
                       sign if dtype.startswith("float") else None)


# Signs: "+" the value is >= 0 (-0.0 included) or NaN; "-" <= 0 or NaN; "0" both (a zero or
# NaN); None: unknown. Only what holds for every input, infinities included, is proved.
def _nonneg(sign) -> bool:
    return sign in ("+", "0")


def _nonpos(sign) -> bool:
    return sign in ("-", "0")


def _sign_of(nonneg: bool, nonpos: bool):
    return "0" if nonneg and nonpos else "+" if nonneg else "-" if nonpos else None


_FLIP = {"+": "-", "-": "+", "0": "0", None: None}


def _join(a, b):
    """The sign of a value that is one of two values (a select)."""
    return _sign_of(_nonneg(a) and _nonneg(b), _nonpos(a) and _nonpos(b))


def _binary_sign(op: str, a, b):
    if op == "-":
        op, b = "+", _FLIP[b]
    if op == "+":  # inf + -inf is NaN: only same-signed operands prove a sign
        return _join(a, b)
    if op == "*":
        if "0" in (a, b):  # +-0, or NaN (0 * inf)
            return "0"
        return None if a is None or b is None else "+" if a == b else "-"
    # a / b: 0 / b is +-0 or NaN; otherwise nothing is proved, as "+" includes -0.0 and
    # 1 / -0.0 is -inf (and ** is not followed)
    return "0" if op == "/" and a == "0" else None


def _literal_sign(value):
    if isinstance(value, float) and math.isnan(value) or value == 0:
        return "0"
    return "+" if value > 0 else "-"


# functions whose result is >= 0 or NaN for every operand
_NONNEG_FUNCTIONS = frozenset({"exp", "sigmoid", "sqrt", "abs"})
# functions whose result has their operand's sign (tanh(x); sign(x): the sign of x or 0;
# a float cast rounds, keeping the sign)
_SIGN_KEEPING = frozenset({"tanh", "sign", "cast_float32", "cast_float64"})


def _function_sign(name: str, signs: list):
    if name in _NONNEG_FUNCTIONS:
        return "+"
    if name in _SIGN_KEEPING:
        return signs[0]
    if name == "maximum":  # max(a, b) >= a: one non-negative operand proves it
        return _sign_of(_nonneg(signs[0]) or _nonneg(signs[1]),
                        _nonpos(signs[0]) and _nonpos(signs[1]))
    if name == "minimum":
        return _sign_of(_nonneg(signs[0]) and _nonneg(signs[1]),
                        _nonpos(signs[0]) or _nonpos(signs[1]))
    return None


@dataclass(frozen=True)
class _Scope:
    """What `_write` reads and adds to: variables' dtypes and signs, the target, the
    helpers the source calls."""

    types: Mapping[str, str]
    signs: Mapping[str, str | None]
    target: Target
    helpers: set


def _write(node, scope: _Scope) -> tuple[str, str, str | None]:
    """(source, dtype, sign) of one node of the neutral form."""
    target = scope.target
    if isinstance(node, ast.Name):
        if not is_variable(node.id) or node.id not in scope.types:
            raise ScalarFormError(f"unknown variable {node.id!r}")
        return node.id, scope.types[node.id], scope.signs.get(node.id)
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return target.literal(node.value, "bool"), "bool", None
    if isinstance(node, ast.Call):
        return _write_call(node, scope)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand, dtype, sign = _write(node.operand, scope)
        template = target.binary.get((dtype, "-"))
        if template is not None:  # (an integer negation wraps too: -(-2**31) in int32)
            return template.source.format(target.literal(0, dtype), operand), dtype, None
        return f"(-{operand})", dtype, _FLIP[sign]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        (left, right), dtype, (a, b) = _operands(node, [node.left, node.right], scope)
        op = _BINARY[type(node.op)]
        template = target.binary.get((dtype, op))
        if template is not None:
            return template.source.format(left, right), dtype, None
        return f"({left} {op} {right})", dtype, _binary_sign(op, a, b)
    if (isinstance(node, ast.Compare) and len(node.ops) == 1
            and type(node.ops[0]) in _COMPARE):
        (left, right), _, _ = _operands(node, [node.left, *node.comparators], scope)
        return f"({left} {_COMPARE[type(node.ops[0])]} {right})", "bool", None
    if isinstance(node, ast.IfExp):
        test, test_dtype, _ = _write(node.test, scope)
        if test_dtype != "bool":
            raise ScalarFormError(f"a condition of dtype {test_dtype}, expected bool")
        (body, orelse), dtype, (a, b) = _operands(node, [node.body, node.orelse], scope)
        if target.select is not None:
            scope.helpers.update(target.select.helpers)
            return target.select.source.format(test, body, orelse), dtype, _join(a, b)
        return f"({body} if {test} else {orelse})", dtype, _join(a, b)
    raise ScalarFormError(f"{ast.unparse(node)!r} is outside the scalar vocabulary "
                          f"(variables, + - * / **, comparisons, `a if c else b`, "
                          f"{', '.join(FUNCTIONS)} and typed literals)")


def _operands(node, operands, scope: _Scope) -> tuple[list, str, list]:
    """The operands' source, their dtype, which they share (graphc casts mixed operands
    before the op), and their signs."""
    written = [_write(o, scope) for o in operands]
    dtypes = [dtype for _, dtype, _ in written]
    if len(set(dtypes)) > 1:
        raise ScalarFormError(f"operands of {ast.unparse(node)!r} have dtypes "
                              f"{', '.join(dtypes)}; expected one dtype")
    return [source for source, _, _ in written], dtypes[0], [sign for _, _, sign in written]


def _write_call(node: ast.Call, scope: _Scope) -> tuple[str, str, str | None]:
    target = scope.target
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if node.keywords or name is None:
        raise ScalarFormError(f"{ast.unparse(node)!r}: call a vocabulary function by name, "
                              f"with positional operands")
    if name in DTYPES and name != "bool":
        value = _literal_value(node, name)
        return target.literal(value, name), name, _literal_sign(value)
    if name not in FUNCTIONS:
        raise ScalarFormError(f"{name!r} is not a scalar function; expected one of "
                              f"{', '.join(FUNCTIONS)} or a literal such as float32(1.5)")
    if len(node.args) != FUNCTIONS[name]:
        raise ScalarFormError(f"{name} takes {FUNCTIONS[name]} operand(s), got "
                              f"{len(node.args)}")
    sources, dtype, signs = _operands(node, node.args, scope)
    by_dtype = target.functions.get(name, {})
    template = by_dtype.get(dtype) or by_dtype.get(ANY)
    if template is None:
        raise ScalarFormError(f"{target.name} has no {name} for {dtype}")
    if len(signs) == 1 and _nonneg(signs[0]):
        template = target.signed.get((name, dtype, "+"), template)
    if len(signs) == 1 and _nonpos(signs[0]):
        template = target.signed.get((name, dtype, "-"), template)
    scope.helpers.update(template.helpers)
    result = name[len("cast_"):] if name.startswith("cast_") else dtype
    sign = _function_sign(name, signs) if result.startswith("float") else None
    if name.startswith("cast_") and not dtype.startswith("float"):
        sign = None  # from an integer or bool: not followed
    return template.source.format(*sources), result, sign


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
