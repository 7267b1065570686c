"""Per batch size: lay out the arena and generate the Python runner of a compiled plan.

The runner is generated source, one prebound call per step (kernels, BLAS, hand-written NN
kernels, NumPy fallbacks) over arena views that are computed once per batch size; a call
of the compiled function is a call of this runner and nothing else.
"""
from __future__ import annotations

import numpy as np

from graphc.kernels.codegen.elementwise import size_source

from ... import dtypes as dt
from ...errors import RuntimeCheckError
from ...passes.fuse import FusedGroup, KernelStep, MatmulStep, ViewStep
from ...shapes import bind
from .lower import loop_sizes, view_shape
from .memory import plan_memory
from .runtime import PARALLEL_MIN, SMALL_MATMUL, CpuExecutable


class RunnerBuilder:
    """Generates the Python runner of one plan for one batch size."""

    def __init__(self, ex: CpuExecutable, n):
        self.ex = ex
        self.n = n
        self.globals = {"np": np}
        self.lines: list = []
        self.names: dict = {}   # tensor -> python expression
        self.counter = 0

    def shape(self, t) -> tuple:
        return bind(t.shape, self.n)

    def glob(self, value, prefix="g") -> str:
        name = f"{prefix}{self.counter}"
        self.counter += 1
        self.globals[name] = value
        return name

    def build(self):
        ex = self.ex
        n = self.n
        kinds = ex.kinds
        # liveness of arena buffers
        defined, last, size, inplace_cands = {}, {}, {}, {}
        arena_keys = []
        for step in ex.steps:
            for t in ex._step_inputs(step):
                b = ex._base(self._real(t))
                if kinds.get(b) == "arena":
                    last[b] = max(last.get(b, -1), step.index)
            for t in self._step_outputs(step):
                if kinds.get(t) == "arena":
                    defined[t] = step.index
                    last.setdefault(t, step.index)
                    size[t] = int(np.prod(self.shape(t), dtype=np.int64)) * \
                        np.dtype(t.dtype).itemsize
                    arena_keys.append(t)
                    if t in ex.inplace_pairs:  # decided with the kernels (see runtime)
                        inplace_cands[t] = [ex.inplace_pairs[t]]
        for t in ex.update_values + ex.out_tensors:
            b = ex._base(t)
            if kinds.get(b) == "arena":
                last[b] = len(ex.steps)
        self.memory = plan_memory(arena_keys, defined, last, size, inplace_cands,
                                  reuse=ex.memory_reuse)
        for t, x in ex.inplace_pairs.items():  # kernels write t into x's array: same bytes
            if self.memory.offsets.get(t) != self.memory.offsets.get(x):
                raise AssertionError(f"graphc internal error: {t!r} was planned in place of "
                                     f"{x!r} but the memory plan separated them")
        arena = np.empty(max(self.memory.peak, 64), dtype=np.uint8)
        self.arena = arena
        for t in arena_keys:
            off = self.memory.offsets[t]
            nbytes = size[t]
            view = arena[off:off + nbytes].view(t.dtype).reshape(self.shape(t))
            self.names[t] = self.glob(view, "a")
        for node in ex.nodes:
            t = node.outputs[0]
            if node.op == "parameter":
                self.names[t] = self.glob(node.value.data, "p")
            elif node.op == "constant":
                self.names[t] = self.glob(np.array(node.value, copy=True), "c")
        for i, t in enumerate(ex.program.inputs):
            self.names[t] = f"f{i}"
        for v, in_id in ((v, id(v)) for v in ex.update_values):
            if in_id in ex.inplace_updates:
                self.names[v] = self.glob(ex.inplace_updates[in_id].data, "p")

        args = ", ".join(f"f{i}" for i in range(len(ex.program.inputs)))
        self.lines.append(f"def run({args}):")
        for step in ex.steps:
            self.emit(step)
        # outputs that are not per-call buffers are copied before any update is applied
        outs = []
        for t in ex.out_tensors:
            expr = self.ref(t)
            # (and a runner global, e.g. numel's per-N constant, is never handed out)
            if kinds.get(t) != "fresh" or self._is_alias_output(t) or expr in self.globals:
                name = f"r{self.counter}"
                self.counter += 1
                self.lines.append(f"    {name} = np.array({expr})")
                expr = name
            outs.append(expr)
        # updates not done in place: computed above, copied now, all at once (a value that
        # is, or is a view of, an updated parameter is read before any copy)
        copies = []
        for (param, _), v in zip(ex.program.updates, ex.update_values):
            if id(v) in ex.inplace_updates:
                continue
            src = self.ref(v)
            base = ex._base(v)
            if kinds.get(base) == "param" and any(base is p for p, _ in ex.program.updates):
                tmp = f"u{self.counter}"
                self.counter += 1
                self.lines.append(f"    {tmp} = np.array({src})")
                src = tmp
            copies.append(f"    np.copyto({self.glob(param.data, 'p')}, {src})"
                          f"  # update {str(param.name)!r}")
        self.lines += copies
        self.lines.append(f"    return ({', '.join(outs)},)" if outs else "    return ()")
        self.source = "\n".join(self.lines) + "\n"
        code = compile(self.source, f"<graphc plan N={n}>", "exec")
        exec(code, self.globals)  # noqa: S102 - the runner is our own generated source
        run = self.globals["run"]
        run.source = self.source
        run.memory = self.memory
        return run

    def _is_alias_output(self, t) -> bool:
        # a root listed twice must not hand the caller one array twice
        return sum(1 for u in self.ex.out_tensors if u is t) > 1

    def _real(self, t):
        return t.node.inputs[0] if self.ex.virtual(t) and t.node.op == "transpose" else t

    def _step_outputs(self, step):
        if isinstance(step, FusedGroup):
            low = self.ex.lowered[step.index]
            return list(low.outputs) + ([low.reduce_out] if low.reduce_out is not None else [])
        return list(step.outputs)

    def ref(self, t) -> str:
        if t in self.names:
            return self.names[t]
        raise KeyError(f"no buffer for {t!r}")

    def out_ref(self, t) -> str:
        """Name of the buffer a step writes t into (fresh outputs are allocated per call)."""
        if t in self.names:
            return self.names[t]
        name = f"o{self.counter}"
        self.counter += 1
        dtype = self.glob(np.dtype(t.dtype), "d")
        self.lines.append(f"    {name} = np.empty({self.shape(t)!r}, {dtype})")
        self.names[t] = name
        return name

    def view(self, expr: str, shape: tuple) -> str:
        """expr reshaped; precomputed once when expr is a prebound global."""
        if expr in self.globals:
            arr = self.globals[expr]
            if arr.shape == tuple(shape):
                return expr
            return self.glob(arr.reshape(shape), "v")
        return f"{expr}.reshape({tuple(shape)!r})"

    def check(self, call: str, step) -> None:
        node = step.nodes[0]
        fail = self.glob(_failer(node), "fail")
        labels = self.names.get(node.inputs[1 if node.op != "one_hot" else 0], "None")
        self.lines.append(f"    if {call}:")
        self.lines.append(f"        {fail}({labels})")

    def kernel_args(self, step) -> list:
        """Argument expressions of a hand-written kernel call (see kernels/cpu/nn.py)."""
        node = step.nodes[0]
        out = node.outputs[0]
        x = node.inputs[0]
        if step.kernel in ("softmax", "log_softmax"):
            rows = int(np.prod(self.shape(x)[:-1], dtype=np.int64))
            shape2 = (rows, self.shape(x)[-1])
            return [self.view(self.ref(x), shape2), self.view(self.out_ref(out), shape2)]
        if step.kernel == "softmax_cross_entropy":
            return [self.ref(x), self.ref(node.inputs[1]), self.view(self.out_ref(out), (1,))]
        if step.kernel == "softmax_cross_entropy_fused":
            gnode = step.nodes[1]
            return [self.ref(x), self.ref(node.inputs[1]),
                    self.view(self.ref(gnode.inputs[2]), (1,)),
                    self.view(self.out_ref(out), (1,)), self.out_ref(gnode.outputs[0])]
        if step.kernel == "softmax_cross_entropy_grad":
            return [self.ref(x), self.ref(node.inputs[1]),
                    self.view(self.ref(node.inputs[2]), (1,)), self.out_ref(out)]
        return [self.ref(x), self.out_ref(out)]  # one_hot, argmax

    def group_args(self, step) -> tuple[list, int]:
        """A fused group's call arguments (loop sizes, then views) and its element count."""
        low = self.ex.lowered[step.index]
        domain = self.shape(step.nodes[0].outputs[0]) if step.nodes else \
            self.shape(step.epilogue.inputs[0])
        sizes = loop_sizes(low, domain)
        args = [] if size_source(low.spec) else [str(s) for s in sizes]
        for x, pat in zip(low.inputs, low.in_patterns):
            args.append(self.view(self.ref(x), view_shape(sizes, pat)))
        aliased = {j for j, _ in low.spec.aliases}
        for j, t in enumerate(low.outputs):
            if j not in aliased:  # an aliased output is written into its operand's array
                args.append(self.view(self.out_ref(t), tuple(sizes)))
        if low.reduce_out is not None:
            red_shape = view_shape(sizes, [not r for r in low.red_pattern])
            args.append(self.view(self.out_ref(low.reduce_out), red_shape))
            post = getattr(step, "post", None)
            if post is not None:  # the parameter updated from the reduction, in place
                param, _, v = post
                self.names[v] = self.glob(param.data, "p")
                args.append(self.view(self.names[v], red_shape))
        return args, int(np.prod(sizes, dtype=np.int64))

    def emit(self, step):
        ex = self.ex
        L = self.lines
        L.append(f"    # step {step.index}: {type(step).__name__} "
                 f"{' '.join(nd.op for nd in step.nodes)}")
        if isinstance(step, FusedGroup):
            low = ex.lowered[step.index]
            args, total = self.group_args(step)
            variant = "parallel" if total >= PARALLEL_MIN and low.spec.parallel_ok else "serial"
            ex._warm(low, variant)
            fn = self.glob(low.fns[variant], "k")
            L.append(f"    {fn}({', '.join(args)})  # {low.spec.name} ({variant})")
            return
        node = step.nodes[0]
        out = node.outputs[0]
        if isinstance(step, ViewStep):
            src = self.ref(node.inputs[0])
            shape = self.shape(out)
            if src in self.globals:
                self.names[out] = self.view(src, shape)
            else:
                name = f"r{self.counter}"
                self.counter += 1
                L.append(f"    {name} = {src}.reshape({shape!r})")
                self.names[out] = name
            return
        if isinstance(step, MatmulStep) and getattr(step, "update", None) is not None:
            from graphc.kernels import blas

            param, alpha, v = step.update
            self.names[v] = self.glob(param.data, "p")
            a, b, w = self.ref(step.a), self.ref(step.b), self.names[v]
            m, ncols = param.shape
            k = self.shape(step.a)[0 if step.trans_a else 1]
            if m * ncols * k <= SMALL_MATMUL:
                from graphc.kernels.cpu.nn import small_matmul_acc

                fn = self.glob(small_matmul_acc, "k")
                L.append(f"    {fn}({a}, {b}, {w}, {step.trans_a}, {step.trans_b}, "
                         f"{alpha!r})  # update {str(param.name)!r} in place")
                return
            fn = self.glob(blas.gemm, "gemm")
            L.append(f"    {fn}({a}, {b}, out={w}, trans_a={step.trans_a}, "
                     f"trans_b={step.trans_b}, alpha={alpha!r}, beta=1.0)  "
                     f"# update {str(param.name)!r} in place")
            return
        if isinstance(step, MatmulStep):
            a, b = self.ref(step.a), self.ref(step.b)
            m, k = self.shape(out)[0], self.shape(step.a)[0 if step.trans_a else 1]
            ncols = self.shape(out)[1]
            c = self.out_ref(out)
            if m * ncols * k <= SMALL_MATMUL or not dt.is_float(out.dtype):
                from graphc.kernels.cpu import nn as K

                from .kernels import nn_function

                fn = self.glob(getattr(K, nn_function(step)), "k")  # mm_nn, mm_nt, ...
                L.append(f"    {fn}({a}, {b}, {c})")
            else:
                from graphc.kernels import blas

                fn = self.glob(blas.gemm, "gemm")
                L.append(f"    {fn}({a}, {b}, out={c}, trans_a={step.trans_a}, "
                         f"trans_b={step.trans_b})")
            return
        if isinstance(step, KernelStep):
            from graphc.kernels.cpu import nn as K

            from .kernels import CHECKED, nn_function

            fn = self.glob(getattr(K, nn_function(step)), "k")
            call = f"{fn}({', '.join(self.kernel_args(step))})"
            if step.kernel in CHECKED:
                self.check(call, step)
            else:
                L.append(f"    {call}")
            return
        if node.op == "numel":  # known once N is bound: a constant of this runner
            x = node.inputs[0]
            count = np.prod([self.shape(x)[a] for a in node.attrs["axes"]], dtype=np.int64)
            self.names[out] = self.glob(np.array(count, dtype=out.dtype), "c")
            return
        # NumPy fallback: the op's reference, with run-time checks
        fb = self.glob(_fallback(node, self.n, ex.rngs), "fb")
        outs = []
        for t in node.outputs:
            name = f"r{self.counter}"
            self.counter += 1
            self.names[t] = name
            outs.append(name)
        ins = ", ".join(self.ref(t) for t in node.inputs)
        L.append(f"    {', '.join(outs)}, = {fb}({ins})")


def _contiguous(a: np.ndarray) -> np.ndarray:
    # np.ascontiguousarray would turn a 0-d array into a 1-d one
    return a if a.flags.c_contiguous else a.copy()


def _failer(node):
    classes = node.outputs[0].shape[-1] if node.op == "one_hot" else node.inputs[0].shape[-1]

    def fail(labels=None):
        what = "a label"
        if labels is not None:
            bad = labels[(labels < 0) | (labels >= classes)]
            if bad.size:
                what = f"label {int(bad[0])}"
        raise RuntimeCheckError(f"{node.op}: {what} is outside [0, {classes}) (node created "
                                f"at {node.loc})")

    return fail


def _fallback(node, n, rngs):
    from ..numpy_backend import RunContext

    ctx = RunContext(n, rngs)
    ctx.node = node
    reference = node.record.reference
    attrs = node.attrs
    dtypes = [t.dtype for t in node.outputs]

    def run(*values):
        results = reference(list(values), attrs, ctx)
        out = []
        for r, d in zip(results, dtypes):
            r = _contiguous(np.asarray(r, dtype=d))
            # a view of an operand (getitem, squeeze...) would alias an arena buffer, a
            # parameter or a feed: the plan treats fallback results as buffers of their own
            if any(isinstance(v, np.ndarray) and np.may_share_memory(r, v) for v in values):
                r = r.copy()
            out.append(r)
        return out

    return run
