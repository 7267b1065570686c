"""The numba.cuda target: the same `KernelSpec` (elementwise.py) as CUDA kernels.

The scalar body goes through its own table of the neutral vocabulary (scalar.py); only the
loops and the launch differ from the Numba CPU target:
- an elementwise group is one kernel, `kernel`, a grid-stride loop over the flattened loop
  nest (each flat index is split back into the nest's indices, so broadcast operands are
  read at index 0 along their broadcast dims, as on the CPU);
- a group ending in a reduction is two kernels: `partial`, where block (bx, by) reduces
  output rows by, by + gridDim.y, ... over its grid-stride share of the reduced elements,
  each thread in float64 (integers: int64), then the block's threads through shared memory
  in a fixed tree, into `part[row, bx]`; and `finish`, the second pass, which adds each
  row's block partials in order, stores the result and applies a fused parameter update.
  The order of the additions depends on the sizes and the launch alone, and a float32 sum of
  16M elements stays within 1e-6 relative of float64 (the partials are float64).
Sizes are arguments (a new batch size never recompiles); every number in the source is
written by this module from the spec's closed set of dtypes, patterns and literals.

Under Numba's CUDA simulator the kernels run as Python, where `math.exp(1000.0)` raises
OverflowError and `math.log(0.0)` ValueError: the simulator's table writes NumPy's functions
instead, which return NumPy's inf and NaN like the GPU's.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .elementwise import FASTMATH, KernelSpec, _one_line, translate_body
from .scalar import ANY, DTYPES, Target, Template, numba_binary

MATHLIB = "graphc.kernels.cuda.mathlib"
_TYPES = {"bool": "np.bool_", "int32": "np.int32", "int64": "np.int64",
          "float32": "np.float32", "float64": "np.float64"}


def _casts() -> dict:
    casts = {f"cast_{dtype}": {ANY: Template(f"{_TYPES[dtype]}({{0}})")}
             for dtype in DTYPES if dtype != "bool"}
    casts["cast_bool"] = {ANY: Template("({0} != 0)")}  # NaN is true, as astype(bool)
    return casts


def _float_signs() -> dict:
    """np.sign of a float in its own type: +-1.0 (for +-inf too), and x - x for the rest,
    +0.0 for either zero (NumPy's sign of -0.0) and NaN for NaN."""
    out = {}
    for dtype in ("float32", "float64"):
        t = _TYPES[dtype]
        out[dtype] = Template(f"({t}(1.0) if {{0}} > {t}(0.0) else ({t}(-1.0) if {{0}} < "
                              f"{t}(0.0) else {{0}} - {{0}}))")
    return out


def _target(name: str, module: str) -> Target:
    """The table, with the float functions taken from `module` (math on the GPU, np in the
    simulator)."""
    def floats(fn: str) -> dict:
        return {"float32": Template(f"{module}.{fn}({{0}})"),
                "float64": Template(f"{module}.{fn}({{0}})")}

    helper = {"gmaximum": MATHLIB, "gminimum": MATHLIB, "gsign": MATHLIB, "gsigmoid": MATHLIB}
    return Target(
        name=name,
        types=_TYPES,
        inf="np.inf",
        nan="np.nan",
        functions={
            "exp": floats("exp"), "log": floats("log"), "sqrt": floats("sqrt"),
            "sin": floats("sin"), "cos": floats("cos"), "tanh": floats("tanh"),
            "sigmoid": {ANY: Template("gsigmoid({0})", helpers=("gsigmoid",))},
            "abs": {ANY: Template("abs({0})")},
            "sign": {**_float_signs(), ANY: Template("gsign({0})", helpers=("gsign",))},
            "maximum": {ANY: Template("gmaximum({0}, {1})", helpers=("gmaximum",))},
            "minimum": {ANY: Template("gminimum({0}, {1})", helpers=("gminimum",))},
            **_casts(),
        },
        helpers=helper,
        binary=numba_binary(_TYPES),
    )


NUMBA_CUDA = _target("numba_cuda", "math")
NUMBA_CUDASIM = _target("numba_cudasim", "np")
PRELUDE = ("import math", "import numpy as np", "from numba import cuda, float64, int64")


def target_for(simulated: bool) -> Target:
    return NUMBA_CUDASIM if simulated else NUMBA_CUDA


def entries(spec: KernelSpec) -> tuple:
    """The kernels a spec renders to, in launch order."""
    return ("partial", "finish") if spec.reduce is not None else ("kernel",)


def helper_modules(spec: KernelSpec, simulated: bool) -> tuple:
    """The modules of the helpers the kernel calls (part of its cache key)."""
    target = target_for(simulated)
    _, helpers = translate_body(spec, target)
    return tuple(sorted({target.helpers[name] for name in helpers}))


def render(spec: KernelSpec, *, simulated: bool, threads: int, header: str = "",
           comments: bool = True) -> str:
    """numba.cuda source for the spec. threads: the block size the reduction's shared
    array holds (launch.THREADS). header: a comment line naming the device (it keys the
    kernel cache by compute capability)."""
    target = target_for(simulated)
    body, helpers = translate_body(spec, target)
    spec = replace(spec, body=body)
    lines = ["# generated by graphc: fused CUDA kernel " + _one_line(spec.name)]
    if header:
        lines.append("# " + _one_line(header))
    lines += [*PRELUDE, *target.imports(helpers), ""]
    deco = _decorator(spec, simulated)
    if spec.reduce is None:
        lines += [deco, *_render_elementwise(spec, comments)]
    else:
        lines += [deco, *_render_partial(spec, target, threads, comments), "", deco,
                  *_render_finish(spec, target)]
    lines.append("")
    return "\n".join(lines) + "\n"


def _decorator(spec: KernelSpec, simulated: bool) -> str:
    """@cuda.jit: on a GPU with Numba's on-disk cache of the compiled kernel (beside the
    module in graphc's kernel cache), and fast math only where the plan asked for it."""
    options = [] if simulated else ["cache=True"]
    if spec.fastmath != FASTMATH:
        options.append("fastmath=True")
    return f"@cuda.jit({', '.join(options)})" if options else "@cuda.jit"


def _out_name(spec: KernelSpec, j: int) -> str:
    for out_j, in_i in spec.aliases:
        if out_j == j:
            return f"in{in_i}"
    return f"out{j}"


def arg_names(spec: KernelSpec) -> list:
    """The first kernel's arguments: sizes, inputs, outputs not written in place, then
    `part` (the per-block partials) for a reduction."""
    args = [f"n{d}" for d in range(spec.rank)] + [f"in{i}" for i in range(len(spec.inputs))]
    aliased = {j for j, _ in spec.aliases}
    args += [f"out{j}" for j in range(len(spec.outputs)) if j not in aliased]
    if spec.reduce is not None:
        args.append("part")
    return args


def _split(flat: str, dims: list, ind: str) -> list:
    """Lines setting i<d> for each dim in `dims` (outermost first) from the flat index."""
    if not dims:
        return []
    out = [f"{ind}rem = {flat}"]
    for d in reversed(dims[1:]):
        out += [f"{ind}i{d} = rem % n{d}", f"{ind}rem = rem // n{d}"]
    out.append(f"{ind}i{dims[0]} = rem")
    return out


def _body(spec: KernelSpec, ind: str, comments: bool) -> list:
    """Loads at the nest point (i0, i1, ...), the scalar body and the full-domain stores."""
    k = spec.rank

    def at(pattern):
        return "[" + ", ".join(f"i{d}" if full else "0" for d, full in enumerate(pattern)) + "]"

    out = [f"{ind}x{i} = in{i}{at(p)}" for i, (_, p) in enumerate(spec.inputs)]
    for var, expr, comment in spec.body:
        out.append(f"{ind}{var} = {expr}" + (f"  # {comment}" if comments and comment else ""))
    full = at([True] * k)
    out += [f"{ind}{_out_name(spec, j)}{full} = {var}"
            for j, (var, _) in enumerate(spec.outputs)]
    return out


def _render_elementwise(spec: KernelSpec, comments: bool) -> list:
    k = spec.rank
    total = " * ".join(f"n{d}" for d in range(k))
    out = [f"def kernel({', '.join(arg_names(spec))}):",
           f"    total = {total}",
           "    for flat in range(cuda.grid(1), total, cuda.gridsize(1)):"]
    out += _split("flat", list(range(k)), "        ")
    return out + _body(spec, "        ", comments)


def _wide(dtype: str) -> str:
    return "float64" if dtype.startswith("float") else "int64"


def _identity(kind: str, dtype: str, target: Target) -> str:
    if kind == "sum":
        return target.literal(0, dtype)
    if dtype.startswith("int"):
        info = np.iinfo(dtype)
        return target.literal(info.min if kind == "max" else info.max, dtype)
    return target.literal(-math.inf if kind == "max" else math.inf, dtype)


def _combine(kind: str, acc: str, value: str) -> str:
    if kind == "sum":
        return f"{acc} + {value}"
    op = ">" if kind == "max" else "<"  # a NaN wins, as in np.max/np.min
    return f"({value} if ({value} {op} {acc} or {value} != {value}) else {acc})"


def _render_partial(spec: KernelSpec, target: Target, threads: int, comments: bool) -> list:
    kind, var, acc_dtype, pattern = spec.reduce
    wide = _wide(acc_dtype)
    kept = [d for d in range(spec.rank) if not pattern[d]]
    reduced = [d for d in range(spec.rank) if pattern[d]]
    rows = " * ".join(f"n{d}" for d in kept) or "1"
    count = " * ".join(f"n{d}" for d in reduced) or "1"
    combine = _combine(kind, "acc", var)
    out = [f"def partial({', '.join(arg_names(spec))}):",
           f"    cache = cuda.shared.array({threads}, {wide})",
           "    tid = cuda.threadIdx.x",
           f"    rows = {rows}",
           f"    count = {count}",
           "    step = cuda.gridDim.x * cuda.blockDim.x",
           "    for row in range(cuda.blockIdx.y, rows, cuda.gridDim.y):"]
    out += _split("row", kept, "        ")
    out += [f"        acc = {_identity(kind, wide, target)}",
            "        for r in range(cuda.blockIdx.x * cuda.blockDim.x + tid, count, step):"]
    out += _split("r", reduced, "            ")
    out += _body(spec, "            ", comments)
    out += [f"            acc = {combine}",
            "        cache[tid] = acc",
            "        cuda.syncthreads()",
            "        width = cuda.blockDim.x // 2",
            "        while width > 0:  # the block's threads, in a fixed tree",
            "            if tid < width:",
            f"                cache[tid] = {_combine(kind, 'cache[tid]', 'cache[tid + width]')}",
            "            cuda.syncthreads()",
            "            width //= 2",
            "        if tid == 0:",
            "            part[row, cuda.blockIdx.x] = cache[0]",
            "        cuda.syncthreads()  # cache is read before the next row overwrites it"]
    return out


def _render_finish(spec: KernelSpec, target: Target) -> list:
    """The second pass: each row's block partials in order, then the fused update."""
    kind, _, acc_dtype, _ = spec.reduce
    wide = _wide(acc_dtype)
    args = "part, red" + (", post" if spec.post is not None else "")
    out = [f"def finish({args}):",
           "    for row in range(cuda.grid(1), red.size, cuda.gridsize(1)):",
           f"        total = {_identity(kind, wide, target)}",
           "        for b in range(part.shape[1]):",
           f"            total = {_combine(kind, 'total', 'part[row, b]')}",
           "        red[row] = total"]
    if spec.post is not None:
        alpha, beta, dtype = spec.post
        a = target.literal(alpha, dtype)
        update = f"post[row] += {a} * red[row]" if beta == 1 else \
            f"post[row] = {target.literal(beta, dtype)} * post[row] + {a} * red[row]"
        out.append(f"        {update}  # parameter update")
    return out


__all__ = ["NUMBA_CUDA", "NUMBA_CUDASIM", "arg_names", "entries", "helper_modules", "render",
           "target_for"]
