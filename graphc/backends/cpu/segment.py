"""Segments: a run of consecutive plan steps compiled into ONE Numba function.

A small training step is dozens of tiny kernels, and each call from Python costs ~0.3 µs
plus the argument checks: the call overhead, not the arithmetic, decides the time. So runs of
steps that Numba can call itself (serial fused kernels, matrix products, the hand-written NN
kernels, reshapes) are generated as one function that calls them in order. The source does
not depend on the batch size: every size, offset and view shape is read from an int64 array
`S` that the runtime fills once per batch size, so a new N never recompiles.

Inside a segment every tensor is a flat 1-D array (arena slices, or external arrays
reshaped flat), reshaped to each kernel's view on use.
"""
from __future__ import annotations

import time

import numpy as np

from ... import dtypes as dt
from ...passes.fuse import FallbackStep, FusedGroup, KernelStep, MatmulStep, ViewStep
from ...shapes import bind
from .kernels import CHECKED, nn_function
from .lower import loop_sizes

ARENAS = ("float32", "float64", "int32", "int64", "bool")
SMALL_MATMUL = 1 << 18  # m*n*k below which a Numba loop beats a BLAS call


def in_segment(ex, step) -> bool:
    """Whether a step can run inside a generated segment function."""
    if getattr(step, "update", None) is not None:
        return False  # a BLAS call with alpha/beta into a parameter: from Python
    if isinstance(step, FusedGroup):
        return ex.serial_only(step)
    if isinstance(step, (MatmulStep, KernelStep, ViewStep)):
        return True
    return isinstance(step, FallbackStep) and step.nodes[0].op == "numel"


class Slots:
    """The int64 array S: slot 0 is the constant 1; others are computed per batch size."""

    def __init__(self):
        self.fns = [lambda b: 1]
        self.keys = {("one",): 0}

    def add(self, key, fn) -> str:
        if key not in self.keys:
            self.keys[key] = len(self.fns)
            self.fns.append(fn)
        return f"S[{self.keys[key]}]"

    def values(self, binder) -> np.ndarray:
        return np.array([fn(binder) for fn in self.fns], dtype=np.int64)


class Segment:
    def __init__(self, ex, steps, slots: Slots, index: int):
        self.ex = ex
        self.steps = steps
        self.slots = slots
        self.index = index
        self.ext: list = []      # tensors passed in from Python, in argument order
        self.checks: list = []   # status code - 1 -> node
        self.lines: list = []
        self.imports: dict = {}  # module -> {name: alias}
        self.produced: set = set()
        self.local: dict = {}    # id(tensor) -> flat variable name
        self._generate()

    # --- helpers --------------------------------------------------------------------------
    def numel_slot(self, t) -> str:
        return self.slots.add(("numel", id(t)),
                              lambda b, t=t: int(np.prod(b.shape(t), dtype=np.int64)))

    def dim_slot(self, t, axis) -> str:
        return self.slots.add(("dim", id(t), axis), lambda b, t=t, a=axis: b.shape(t)[a])

    def rows_slot(self, t) -> str:
        """Product of all but the last dim (rows of a row-wise kernel)."""
        return self.slots.add(("rows", id(t)), lambda b, t=t: int(
            np.prod(b.shape(t)[:-1], dtype=np.int64)))

    def imp(self, module: str, name: str) -> str:
        names = self.imports.setdefault(module, {})
        if name not in names:
            names[name] = f"_f{sum(len(v) for v in self.imports.values())}"
        return names[name]

    def var(self, t) -> str:
        """Flat 1-D view of tensor t inside the segment."""
        ex = self.ex
        base = ex._base(t)
        key = id(base)
        if key in self.local:
            return self.local[key]
        name = f"t{len(self.local)}"
        kind = ex.kinds.get(base)
        n = self.numel_slot(base)
        if kind == "arena":
            off = self.slots.add(("off", key),
                                 lambda b, t=base: b.memory.offsets[t] //
                                 np.dtype(t.dtype).itemsize)
            self.lines.append(f"    {name} = A_{base.dtype}[{off}:{off} + {n}]")
        else:
            self.ext.append(base)
            self.lines.append(f"    {name} = e{len(self.ext) - 1}.reshape(({n},))")
        self.local[key] = name
        return name

    def shaped(self, t, dims) -> str:
        return f"{self.var(t)}.reshape(({', '.join(dims)},))"

    # --- generation -----------------------------------------------------------------------
    def _generate(self):
        for step in self.steps:
            self.lines.append(f"    # step {step.index}: {type(step).__name__} "
                              f"{' '.join(n.op for n in step.nodes)}")
            getattr(self, "_" + type(step).__name__)(step)
        self.lines.append("    return 0")

    def _ViewStep(self, step):
        pass  # flat views are the same array

    def _FallbackStep(self, step):
        pass  # numel: bound per N by the runtime, passed in as an external array

    def _FusedGroup(self, step):
        ex = self.ex
        low = ex.lowered[step.index]
        dom = step.nodes[0].outputs[0] if step.nodes else step.epilogue.inputs[0]
        sizes = [self.slots.add(("loop", step.index, i),
                                lambda b, low=low, dom=dom, i=i:
                                loop_sizes(low, b.shape(dom))[i])
                 for i in range(low.spec.rank)]

        def view(t, pattern):
            return self.shaped(t, [s if full else "S[0]" for s, full in zip(sizes, pattern)])

        from graphc.kernels.codegen.elementwise import size_source

        args = [] if size_source(low.spec) else list(sizes)
        args += [view(x, p) for x, p in zip(low.inputs, low.in_patterns)]
        args += [view(t, [True] * len(sizes)) for t in low.outputs]
        if low.reduce_out is not None:
            args.append(view(low.reduce_out, [not r for r in low.red_pattern]))
        fn = self.imp(low.module, "serial")
        self.lines.append(f"    {fn}({', '.join(args)})  # {low.spec.name}")

    def _MatmulStep(self, step):
        out = step.nodes[0].outputs[0]
        a, b = step.a, step.b
        A = self.shaped(a, [self.dim_slot(a, 0), self.dim_slot(a, 1)])
        B = self.shaped(b, [self.dim_slot(b, 0), self.dim_slot(b, 1)])
        m, n = self.dim_slot(out, 0), self.dim_slot(out, 1)
        k = self.dim_slot(a, 0 if step.trans_a else 1)
        C = self.shaped(out, [m, n])
        small = self.imp("graphc.kernels.cpu.nn", "small_matmul")
        ta, tb = step.trans_a, step.trans_b
        if dt.is_float(out.dtype):
            from graphc.kernels.cpu.gemm_call import gemm_address

            addr = self.slots.add(("gemm", out.dtype), lambda b, d=out.dtype: gemm_address(d))
            gemm = self.imp("graphc.kernels.cpu.gemm_call", "gemm")
            self.lines.append(f"    if {m} * {n} * {k} <= {SMALL_MATMUL} or {addr} == 0:")
            self.lines.append(f"        {small}({A}, {B}, {C}, {ta}, {tb})")
            self.lines.append("    else:")
            self.lines.append(f"        {gemm}({addr}, {A}, {B}, {C}, {ta}, {tb})")
        else:
            self.lines.append(f"    {small}({A}, {B}, {C}, {ta}, {tb})")

    def _KernelStep(self, step):
        node = step.nodes[0]
        out = node.outputs[0]
        x = node.inputs[0]
        fn = self.imp("graphc.kernels.cpu.nn", nn_function(step))
        if step.kernel in ("softmax", "log_softmax"):
            shape = [self.rows_slot(x), self.dim_slot(x, x.ndim - 1)]
            call = f"{fn}({self.shaped(x, shape)}, {self.shaped(out, shape)})"
        elif step.kernel == "argmax":
            shape = [self.dim_slot(x, 0), self.dim_slot(x, 1)]
            call = f"{fn}({self.shaped(x, shape)}, {self.var(out)})"
        elif step.kernel == "one_hot":
            shape = [self.dim_slot(out, 0), self.dim_slot(out, 1)]
            call = f"{fn}({self.var(x)}, {self.shaped(out, shape)})"
        else:
            shape = [self.dim_slot(x, 0), self.dim_slot(x, 1)]
            labels = self.var(node.inputs[1])
            if step.kernel == "softmax_cross_entropy":
                call = f"{fn}({self.shaped(x, shape)}, {labels}, {self.var(out)})"
            elif step.kernel == "softmax_cross_entropy_fused":
                gnode = step.nodes[1]
                call = f"{fn}({self.shaped(x, shape)}, {labels}, " \
                       f"{self.var(gnode.inputs[2])}, {self.var(out)}, " \
                       f"{self.shaped(gnode.outputs[0], shape)})"
            else:
                g = self.var(node.inputs[2])
                call = f"{fn}({self.shaped(x, shape)}, {labels}, {g}, " \
                       f"{self.shaped(out, shape)})"
        if step.kernel in CHECKED:
            self.checks.append(node)
            self.lines.append(f"    if {call} != 0:")
            self.lines.append(f"        return {len(self.checks)}")
        else:
            self.lines.append(f"    {call}")

    def source(self) -> str:
        head = ["# generated by graphc: a plan segment (several steps, one Numba call)",
                "import numpy as np", "import numba"]
        for module, names in self.imports.items():
            for name, alias in names.items():
                head.append(f"from {module} import {name} as {alias}")
        args = ["S"] + [f"A_{d}" for d in ARENAS] + [f"e{i}" for i in range(len(self.ext))]
        head += ["", "", "@numba.njit(cache=True, error_model='numpy')",
                 f"def segment({', '.join(args)}):"]
        return "\n".join(head + self.lines) + "\n"

    def signature(self):
        from numba import types

        arr = [types.Array(types.int64, 1, "C")]
        arr += [types.Array(_nb_dtype(d), 1, "C") for d in ARENAS]
        arr += [types.Array(_nb_dtype(t.dtype), len(t.shape), "C") for t in self.ext]
        return tuple(arr)

    def load(self, log):
        from graphc.kernels.cache import load_kernel

        self.text = self.source()
        deps = ("graphc.kernels.cpu.nn", "graphc.kernels.cpu.gemm_call", "graphc.kernels.mathlib")
        fn, info = load_kernel(self.text, "segment", deps=deps)
        t0 = time.perf_counter()
        hits = sum(fn.stats.cache_hits.values()) if hasattr(fn, "stats") else 0
        fn.compile(self.signature())
        seconds = time.perf_counter() - t0
        loaded = hasattr(fn, "stats") and sum(fn.stats.cache_hits.values()) > hits
        info = dict(info, status="loaded" if loaded else "compiled", seconds=seconds,
                    kernel=f"segment {self.index} ({len(self.steps)} steps)")
        log(info)
        self.fn = fn
        self.module = info.get("module")


def _nb_dtype(name: str):
    from numba import types

    return {"bool": types.boolean}.get(name) or getattr(types, name)


def bound_shape(t, n):
    return bind(t.shape, n)
