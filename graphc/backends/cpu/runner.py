"""Per batch size: lay out the arena and generate the Python runner of a compiled plan.

The runner is generated source, one prebound call per step (fused kernels, BLAS,
hand-written kernels, NumPy fallbacks) over arena views computed once per batch size; a
call of the compiled function is a call of this runner and nothing else. Names in it say
what they are: `t6` is the buffer of %6 in the plan, `mm_nn_3` a small-matrix kernel, and
each call carries the plan line it runs as a comment (made comment-safe: no user string
can end the comment).
"""
from __future__ import annotations

import keyword
import re

import numpy as np
from numba.core.dispatcher import Dispatcher

from ... import dtypes as dt
from ...errors import RuntimeCheckError
from ...kernels.codegen.elementwise import size_source
from ...kernels.cpu import nn
from ...kernels.cpu.bindings import BINDINGS
from ...plan import FallbackStep, FusedGroup, KernelStep, MatmulStep, ViewStep
from ...plan.describe import comment_safe as comment
from ...plan.lower import loop_sizes, view_shape
from ...plan.memory import layout
from ...printing import node_line
from ...profile import END
from ...shapes import bind
from .kernels import matmul_function, warm_variant

# A fused kernel runs its prange variant from PARALLEL_MIN_NS of estimated one-thread time
# (its elements times element_ns(spec)), not from a count of elements. graphc's threads
# sleep between kernels (OMP_WAIT_POLICY=PASSIVE, graphc/__init__.py), so each parallel
# call wakes them: 0.15-0.3 ms on this project's 2-core VMs (`python -m
# benchmarks.split_crossover`, 2026-12-02, Zen 3), where a masked sum of 131K float32 took
# 44 µs on one thread and 288 µs in the prange variant (the old threshold, 2^17 elements,
# made that a 6x step at one element more). The prange variant was faster at every size
# from an estimated 1.41 ms of one-thread work (tanh from ~0.8 ms, exp ~1.5 ms, a masked sum
# ~2 ms: bound by memory).
PARALLEL_MIN_NS = 1.4e6
# one-thread ns per element: per byte loaded or stored, per body line, and per call of a
# costly function (float32, measured on the sums of split_crossover: ~0.3 ns an element
# for a masked sum, ~0.9 with an exp, ~1.4 with a tanh)
_BYTE_NS, _LINE_NS = 0.05, 0.02
_CALL_NS = {"exp(": 0.5, "log(": 0.5, "sigmoid(": 0.6, "tanh(": 0.9, "sin(": 0.8,
            "cos(": 0.8, "sqrt(": 0.1, "**": 1.0, "/": 0.1}


def element_ns(spec) -> float:
    """Estimated one-thread nanoseconds per loop element of fused kernel `spec`."""
    nbytes = sum(np.dtype(d).itemsize for d, _ in spec.inputs) + \
        sum(np.dtype(d).itemsize for _, d in spec.outputs)
    text = " ".join(expr for _, expr, _ in spec.body)
    return _BYTE_NS * nbytes + _LINE_NS * len(spec.body) + \
        sum(w * text.count(call) for call, w in _CALL_NS.items())

# m*n*k up to which graphc's own loops (kernels/cpu/nn.py: mm_*, acc_*) beat graphc's OpenBLAS
# called from Numba (kernels/cpu/gemm_call.py), per dtype and transpose case; above, gemm.
# Read from `python -m benchmarks.crossover [--dtype float64] [--acc]` (--acc: the fused
# updates W*beta + alpha*A@B): the size where the geometric mean over the measured shapes of
# (loops time / BLAS time) crosses 1. Measured 2026-12-01 on AMD EPYC (Zen 3), 2 threads.
# A single threshold for every case (2**18, chosen when BLAS went through a Python wrapper)
# made a 64-64-10 step take the loops at 1.6-3x the BLAS time for every product.
MATMUL_CROSSOVER = {
    "float32": {"nn": 4096, "nt": 3072, "tn": 3584, "tt": 1024},
    "float64": {"nn": 3072, "nt": 12288, "tn": 2560, "tt": 1024},
}
ACC_CROSSOVER = {
    "float32": {"nn": 1792, "nt": 2048, "tn": 1408, "tt": 704},
    "float64": {"nn": 2048, "nt": 10240, "tn": 1792, "tt": 576},
}


def crossover(table: dict, dtype, case: str) -> int:
    """The table's threshold for dtype (a non-float product always takes the loops)."""
    row = table.get(np.dtype(dtype).name)
    return row[case] if row is not None else -1


def skinny_takes_loops(case: str, m: int, n: int, k: int, dtype, acc: bool) -> bool:
    """Whether a product of one or two output rows, or of inner size 1 (an outer product),
    takes graphc's loops whatever m*n*k says: OpenBLAS's GEMM packs its operands for a
    blocked kernel, which such shapes never reuse. Measured 2026-12-01 (Zen 3, 2 threads,
    min of 200 calls, loops time over BLAS time, float32 and float64, every transpose case):
    one output row (a batch of 1) 0.27-0.71 up to 1024 x 1024 (0.56-1.23 at 2048 x 2048:
    both then stream the matrix); two rows 0.43-0.93 up to 1024 x 1024, except the tt
    case (2.7-7.6); inner size 1, the plain product 0.27-0.64 for nn and tn (1.3-6.4 for nt
    and tt), the update into a parameter 0.46-0.58 in float64 nn and tn up to 256 x 1024
    (1.0-2.2 in float32 and above). (`python -m benchmarks.crossover` measures the rest.)"""
    if m == 1:
        return k * n <= 1 << 21
    if m == 2:
        return case != "tt" and k * n <= 1 << 20
    if k == 1 and case in ("nn", "tn"):
        if acc:
            return np.dtype(dtype) == np.float64 and m * n <= 1 << 18
        return m * n <= 1 << 20
    return False


# A @ B.T (the "nt" case: the input gradient g @ W.T of a layer with few outputs, such as a
# classifier's 10 classes) with an inner size K below this multiplies a packed copy of B.T
# instead. OpenBLAS's nt kernels with such K (one thread, 2026-12-02, Zen 4; time of B.T
# packed + nn over time of nt): float32 64 x 1024 K = 2-15: 0.28-0.81, 256 x 256: 0.65-0.82,
# 1024 x 10: 0.58-0.69; float64 0.55-0.94 (K = 8-15 at 64 x 1024: 0.85-0.99); 1024 x 1024
# 1.00-1.01 (the copy is then noise). From K = 16 on the nt kernels are as fast or faster
# (float32 64 x 1024, K = 16-128: 1.14-1.30).
NT_PACK_BELOW_K = 16


ARENA_ALIGN = 64  # a cache line and an AVX-512 vector: the memory plan's offsets are multiples


def aligned_bytes(nbytes: int, align: int = ARENA_ALIGN, skew: int = 0) -> np.ndarray:
    """nbytes of uint8 starting at an address that is a multiple of `align` (plus `skew`,
    for tests). np.empty guarantees 16 bytes, and the memory plan's 64-byte offsets keep
    each buffer on cache lines only if the arena starts on one. (Measured on a 64-64-10
    step, a 16-byte skew made no difference on Zen 3; it costs nothing either.)"""
    raw = np.empty(nbytes + align + skew, dtype=np.uint8)
    start = (-raw.ctypes.data) % align + skew
    return raw[start:start + nbytes]


def _identifier(name: str) -> str:
    """`name` with every character outside [A-Za-z0-9_] replaced by _ (no leading digit,
    no keyword)."""
    text = re.sub(r"[^A-Za-z0-9_]", "_", str(name))
    if not (text[:1].isalpha() or text[:1] == "_") or keyword.iskeyword(text):
        text = "_" + text
    return text


class _FirstCall:
    """The runner's first call, which then binds each Numba kernel global to the compiled
    code it ran.

    A Numba dispatcher call first types every argument to pick its compiled overload
    (~0.3 µs a call here, a quarter of a 64-64-10 step's ~10 calls). A runner's arguments
    never change type between calls: its arrays are its own arena views, parameters and
    constants, and its feeds arrive with the dtype, rank and C-contiguity the function
    checked (graphc.function). So the first call runs through recording stand-ins, and
    where every call site of a global ran one signature (call sites counted while the source
    was generated: a site skipped on the first call keeps the dispatcher), the global
    becomes that overload's entry point: the same machine code, without the typing. A
    kernel with one compiled overload ran that one at every site, so its arguments are not
    typed at all (typing them cost ~20-40 ms of a warm start). A failed first call changes
    nothing, and the next call records again.
    (Feeds' writeable and aligned flags can differ from call to call: no kernel writes a
    feed, and Numba assumes no more than element alignment for an aligned array.)"""

    def __init__(self, run, glob: dict, sites: dict):
        self.run, self.glob, self.sites = run, glob, sites

    def __call__(self, *args):
        glob, seen = self.glob, {}
        dispatchers = {name: glob[name] for name in self.sites}

        def recorder(name, fn):
            calls = seen.setdefault(name, [])

            def call(*a):
                calls.append(a)  # (typed below only if the kernel has several overloads)
                return fn(*a)
            return call

        for name, fn in dispatchers.items():
            glob[name] = recorder(name, fn)
        glob["FIRST"] = None
        try:
            out = self.run(*args)
        except BaseException:
            glob["FIRST"] = self
            raise
        finally:
            glob.update(dispatchers)
        for name, fn in dispatchers.items():
            calls = seen.get(name, [])
            if not calls or len(calls) != self.sites[name]:
                continue
            overloads = list(fn.overloads.values())
            if len(overloads) == 1:  # every call ran the one compiled signature
                glob[name] = overloads[0].entry_point
                continue
            types = [tuple(fn.typeof_pyval(x) for x in a) for a in calls]
            overload = fn.overloads.get(types[0])
            if overload is not None and all(t == types[0] for t in types):
                glob[name] = overload.entry_point
        return out


class RunnerBuilder:
    """Generates the Python runner of one plan for one batch size."""

    def __init__(self, ex, n, ticks=None):
        self.ex = ex
        self.plan = ex.plan
        self.n = n
        self.ticks = ticks  # a graphc.profile.Ticks: the runner reads the clock between steps
        self.globals = {"np": np}
        self.lines: list = []
        self.names: dict = {}   # tensor -> python expression
        self.counter = 0
        self.sites: dict = {}   # runner global of a Numba kernel -> how many calls name it

    def shape(self, t) -> tuple:
        return bind(t.shape, self.n)

    def label(self, t) -> str:
        """The identifier for t's buffer: t6 for the plan's %6."""
        return "t" + self.plan.names[t][1:]

    def glob(self, value, name: str) -> str:
        """Bind `value` to a runner global named after `name` (an op, a dtype, a kernel),
        made a plain identifier first: whatever a graph's attributes hold, a name cannot
        carry source into the runner."""
        name = _identifier(name)
        held = self.globals.get(name, self)
        again = held is value and not isinstance(value, np.ndarray) or (
            type(held) is int and type(value) is int and held == value)
        if not again:  # (the same function or number again keeps its name; arrays never)
            if name in self.globals:
                name = f"{name}_{self.counter}"
                self.counter += 1
            self.globals[name] = value
        if isinstance(value, Dispatcher):
            self.sites[name] = self.sites.get(name, 0) + 1
        return name

    def temp(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def build(self):
        plan, graph = self.plan, self.plan.graph
        self._layout()
        args = [f"x{i}" for i in range(len(plan.program.inputs))]
        for t, a in zip(plan.program.inputs, args):
            self.names[t] = a
        self.lines.append(f"def run({', '.join(args)}):")
        self.lines.append(f"    if FIRST: return FIRST({', '.join(args)})")
        if self.ticks is not None:
            self.globals["TICK"] = self.ticks
            self.lines.append("    TICK.start()")
        for step in plan.steps:
            self.lines.append(f"    # step {step.index}: {step.kind}")
            EMIT[type(step)](self, step)
            if self.ticks is not None:
                self.lines.append(f"    TICK.tick({int(step.index)})")
        # outputs that are not per-call buffers are copied before any update is applied
        outs = []
        for t in plan.out_tensors:
            expr = self.ref(t)
            # (and a runner global, e.g. numel's per-N constant, is never handed out)
            twice = sum(1 for u in plan.out_tensors if u is t) > 1
            if plan.kinds.get(t) != "fresh" or twice or expr in self.globals:
                name = self.temp("r")
                self.lines.append(f"    {name} = np.array({expr})")
                expr = name
            outs.append(expr)
        # updates not done in place: computed above, copied now, all at once (a value that
        # is, or is a view of, an updated parameter is read before any copy)
        copies = []
        for (param, _), v in zip(plan.program.updates, plan.update_values):
            if id(v) in plan.inplace_updates:
                continue
            src = self.ref(v)
            base = graph.base(v)
            if plan.kinds.get(base) == "param" and any(base is p for p, _ in
                                                       plan.program.updates):
                tmp = self.temp("u")
                self.lines.append(f"    {tmp} = np.array({src})")
                src = tmp
            copies.append(f"    np.copyto({self.param(param)}, {src})"
                          f"  # update {comment(param.name)}")
        self.lines += copies
        if self.ticks is not None:
            self.lines.append(f"    TICK.tick({END!r})")
        self.lines.append(f"    return ({', '.join(outs)},)" if outs else "    return ()")
        self.source = "\n".join(self.lines) + "\n"
        code = compile(self.source, f"<graphc plan N={self.n}>", "exec")
        exec(code, self.globals)  # noqa: S102 - the runner is our own generated source
        run = self.globals["run"]
        run.source = self.source
        run.memory = self.memory
        run.arena = self.arena
        self.globals["FIRST"] = _FirstCall(run, self.globals, self.sites)
        return run

    def param(self, p) -> str:
        """The name of a Parameter's array."""
        name = self.params.get(id(p))
        if name is None:  # updated but never read by the graph
            name = self.params[id(p)] = self.glob(p.data, "p")
        return name

    def _layout(self) -> None:
        """The arena for this N (liveness from the plan, sizes bound now) and a name for
        every buffer: arena views, parameters, constants, in-place updates."""
        plan = self.plan
        keys, size, self.memory = layout(plan, self.shape)
        self.arena = arena = aligned_bytes(max(self.memory.peak, 64))
        for t in keys:
            off = self.memory.offsets[t]
            view = arena[off:off + size[t]].view(t.dtype).reshape(self.shape(t))
            self.names[t] = self.glob(view, self.label(t))
        self.params = {}
        for node in plan.nodes:
            t = node.outputs[0]
            if node.op == "parameter":
                self.names[t] = self.glob(node.value.data, "p" + self.label(t)[1:])
                self.params[id(node.value)] = self.names[t]
            elif node.op == "constant":
                self.names[t] = self.glob(np.array(node.value, copy=True),
                                          "c" + self.label(t)[1:])
        for v in plan.update_values:
            if id(v) in plan.inplace_updates:
                self.names[v] = self.param(plan.inplace_updates[id(v)])

    def ref(self, t) -> str:
        if t in self.names:
            return self.names[t]
        raise KeyError(f"no buffer for {t!r}")

    def out_ref(self, t) -> str:
        """Name of the buffer a step writes t into (fresh outputs are allocated per call)."""
        if t in self.names:
            return self.names[t]
        name = self.label(t)
        dtype = self.glob(np.dtype(t.dtype), f"{t.dtype}")
        self.lines.append(f"    {name} = np.empty({self.shape(t)!r}, {dtype})")
        self.names[t] = name
        return name

    def view(self, expr: str, shape: tuple) -> str:
        """expr reshaped; precomputed once when expr is a prebound global."""
        if expr in self.globals:
            arr = self.globals[expr]
            if arr.shape == tuple(shape):
                return expr
            return self.glob(arr.reshape(shape), f"{expr}_v")
        return f"{expr}.reshape({tuple(shape)!r})"

    def line(self, call: str, what: str) -> None:
        self.lines.append(f"    {call}  # {comment(what)}")


# --- emission, one function per step kind ------------------------------------------------------
def emit_fused(b: RunnerBuilder, step) -> None:
    plan = b.plan
    low = plan.lowered[step.index]
    domain = b.shape(step.domain_tensor)
    sizes = loop_sizes(low, domain)
    args = [] if size_source(low.spec) else [str(s) for s in sizes]
    for x, pat in zip(low.inputs, low.in_patterns):
        args.append(b.view(b.ref(x), view_shape(sizes, pat)))
    aliased = {j for j, _ in low.spec.aliases}
    for j, t in enumerate(low.outputs):
        if j not in aliased:  # an aliased output is written into its operand's array
            args.append(b.view(b.out_ref(t), tuple(sizes)))
    if low.reduce_out is not None:
        red_shape = view_shape(sizes, [not r for r in low.red_pattern])
        args.append(b.view(b.out_ref(low.reduce_out), red_shape))
        if step.post is not None:  # the parameter updated from the reduction, in place
            b.names[step.post.value] = b.param(step.post.param)
            args.append(b.view(b.names[step.post.value], red_shape))
    total = int(np.prod(sizes, dtype=np.int64))
    variant = "parallel" if total * element_ns(low.spec) >= PARALLEL_MIN_NS else "serial"
    kernel = b.ex.kernels[step.index]
    warm_variant(kernel, low, variant, b.ex.kernel_log)
    fn = b.glob(kernel.fns[variant], f"{low.spec.name}_{variant}")
    what = "; ".join(node_line(n, plan.names) for n in step.members)
    b.line(f"{fn}({', '.join(args)})", what)


def matmul_case(step) -> str:
    return ("t" if step.trans_a else "n") + ("t" if step.trans_b else "n")


def product_kernel(step, n) -> str:
    """What the product of a MatmulStep runs at batch size n: "loops" (graphc's own,
    nn.mm_* or nn.acc_*), "gemm" (graphc's OpenBLAS from Numba, on its threads), "gemm_1t"
    (the same on one thread: fewer than ONE_THREAD_MAX_MNK multiply-adds) or "numpy" (no
    OpenBLAS loaded: graphc.kernels.blas computes it with NumPy). The runner emits this
    choice; the compile asks it ahead of the first call, for the kernels to compile."""
    from ...kernels.cpu import gemm_call

    case = matmul_case(step)
    k = bind(step.a.shape, n)[0 if step.trans_a else 1]
    if step.update is not None:
        dtype = step.update.param.dtype
        m, ncols = step.update.param.shape
        loops = m * ncols * k <= crossover(ACC_CROSSOVER, dtype, case) or \
            skinny_takes_loops(case, m, ncols, k, dtype, acc=True)
    else:
        out = step.nodes[0].outputs[0]
        dtype = out.dtype
        m, ncols = bind(out.shape, n)
        loops = m * ncols * k <= crossover(MATMUL_CROSSOVER, dtype, case) or \
            not dt.is_float(dtype) or skinny_takes_loops(case, m, ncols, k, dtype, acc=False)
    if loops:
        return "loops"
    if not gemm_call.gemm_address(dtype):
        return "loops" if step.update is not None else "numpy"
    one = m * ncols * k < gemm_call.ONE_THREAD_MAX_MNK.get(np.dtype(dtype).name, 0)
    return "gemm_1t" if one else "gemm"


def emit_matmul(b: RunnerBuilder, step) -> None:
    """One product: graphc's own loops up to the case's measured crossover, else OpenBLAS
    (through Numba: a call costs ~1 µs, not the ~5 µs of a Python wrapper)."""
    from ...kernels import blas
    from ...kernels.cpu import gemm_call

    node = step.nodes[0]
    what = node_line(node, b.plan.names)
    a, bb = b.ref(step.a), b.ref(step.b)
    case = matmul_case(step)
    ta, tb = step.trans_a, step.trans_b
    choice = product_kernel(step, b.n)
    if step.update is not None:
        param, alpha, beta = step.update.param, step.update.alpha, step.update.beta
        b.names[step.update.value] = c = b.param(param)
        what += f"; update {comment(param.name)} in place"
        dtype = param.dtype
        if choice == "loops":
            fn = b.glob(nn.ACC_KERNELS[case], f"acc_{case}")
            b.line(f"{fn}({a}, {bb}, {c}, {alpha!r}, {beta!r})", what)
            return
    else:
        out = node.outputs[0]
        c, dtype, alpha, beta = b.out_ref(out), out.dtype, 1.0, 0.0
        if choice == "loops":
            name = matmul_function(step)
            fn = b.glob(getattr(nn, name), name)
            b.line(f"{fn}({a}, {bb}, {c})", what)
            return
        if choice == "numpy":
            fn = b.glob(blas.gemm, "gemm_numpy")
            b.line(f"{fn}({a}, {bb}, out={c}, trans_a={ta}, trans_b={tb})", what)
            return
    if case == "nt" and bind(step.a.shape, b.n)[1] < NT_PACK_BELOW_K:
        # OpenBLAS's A @ B.T with a short inner size runs 1.2-3.6x slower than copying B.T
        # into a (K, N) buffer and multiplying that (measured below NT_PACK_BELOW_K)
        shape = bind(step.b.shape, b.n)[::-1]
        packed = b.glob(np.empty(shape, np.dtype(dtype)), "packed_b")
        b.line(f"np.copyto({packed}, {bb}.T)", "B.T packed for a short inner size")
        bb, tb = packed, False
    fn = b.glob(gemm_call.gemm_threads, "gemm")
    addr = b.glob(gemm_call.gemm_address(dtype), f"{np.dtype(dtype).name}_gemm_addr")
    threads = b.glob(gemm_call.threads_addresses() if choice == "gemm_1t" else
                     gemm_call.ALL_THREADS, "one_thread" if choice == "gemm_1t" else "all_threads")
    kc = b.glob(gemm_call.gemm_k_chunk(), "gemm_k_chunk")
    b.line(f"{fn}({addr}, {threads}, {a}, {bb}, {c}, {ta}, {tb}, {alpha!r}, {beta!r}, {kc})",
           what)


def _binding_arg(b: RunnerBuilder, step, arg) -> str:
    node = step.nodes[arg.node]
    if arg.role == "attr":
        return repr(arg.attr_value(node))
    if arg.role == "in":
        t = node.inputs[arg.index]
        expr = b.ref(t)
    else:
        t = node.outputs[arg.index]
        expr = b.out_ref(t)
    if arg.view == "rows":
        shape = b.shape(t)
        return b.view(expr, (int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]))
    if arg.view == "scalar":
        if b.shape(t) == () and expr not in b.globals:
            return f"{expr}[None]"  # a 0-d array's element as shape (1,): 0.13 µs less
        return b.view(expr, (1,))
    return expr


def emit_kernel(b: RunnerBuilder, step) -> None:
    binding = BINDINGS[step.kernel]
    fn = b.glob(binding.function, binding.function.__name__)
    call = f"{fn}({', '.join(_binding_arg(b, step, arg) for arg in binding.args)})"
    what = "; ".join(node_line(n, b.plan.names) for n in step.nodes)
    if not binding.checked:
        b.line(call, what)
        return
    node = step.nodes[0]
    fail = b.glob(_failer(node), f"fail_{node.op}")
    labels = b.names.get(node.inputs[binding.labels.index], "None")
    b.line(f"if {call}:", what)
    b.lines.append(f"        {fail}({labels})")


def emit_view(b: RunnerBuilder, step) -> None:
    node = step.nodes[0]
    out = node.outputs[0]
    src = b.ref(node.inputs[0])
    shape = b.shape(out)
    if src in b.globals:
        b.names[out] = b.view(src, shape)
        return
    name = b.label(out)
    b.line(f"{name} = {src}.reshape({shape!r})", node_line(node, b.plan.names))
    b.names[out] = name


def emit_fallback(b: RunnerBuilder, step) -> None:
    node = step.nodes[0]
    out = node.outputs[0]
    if node.op == "numel":  # known once N is bound: a constant of this runner
        x = node.inputs[0]
        count = np.prod([b.shape(x)[a] for a in node.attrs["axes"]], dtype=np.int64)
        b.names[out] = b.glob(np.array(count, dtype=out.dtype), b.label(out))
        return
    # the op's NumPy reference, with run-time checks
    fb = b.glob(_fallback(node, b.n, b.ex.rngs), f"numpy_{node.op}")
    outs = []
    for t in node.outputs:
        b.names[t] = b.label(t)
        outs.append(b.names[t])
    ins = ", ".join(b.ref(t) for t in node.inputs)
    b.line(f"{', '.join(outs)}, = {fb}({ins})", "NumPy fallback: " + node_line(node, b.plan.names))


EMIT = {FusedGroup: emit_fused, MatmulStep: emit_matmul, KernelStep: emit_kernel,
        ViewStep: emit_view, FallbackStep: emit_fallback}


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
