"""The cpu backend: a flat plan of fused Numba kernels, BLAS calls and hand-written kernels
over preallocated buffers.

Compile time: passes -> schedule (graphc.passes.fuse) -> one generated kernel per fused group
(loaded through the on-disk cache) -> a static plan of steps with buffer liveness.
Per batch size N (once per new N): shapes are bound, the arena is laid out, and a Python
runner is generated whose body is one prebound call per step. Calling the function runs
that runner: no graph work, no per-op dispatch.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ... import dtypes as dt
from ...errors import RuntimeCheckError
from ...function import Program
from ...graph import toposort
from ...passes.fuse import (
    FallbackStep,
    FusedGroup,
    KernelStep,
    MatmulStep,
    ViewStep,
    _is_swap_transpose,
    schedule,
)
from ...printing import names_for
from ...shapes import bind, fmt_shape
from .lower import loop_sizes, lower_group, view_shape
from .memory import plan_memory

PARALLEL_MIN = int(os.environ.get("GRAPHC_PARALLEL_MIN", str(1 << 17)))  # elements
SMALL_MATMUL = 1 << 18  # m*n*k below which a Numba loop beats a BLAS call's overhead
GEMM_UPDATE_MIN = 1 << 14  # weight elements from which W - lr*(A@B) runs as one gemm
# run several steps as one Numba function (opt-in: compiling a segment costs seconds)
SEGMENTS = os.environ.get("GRAPHC_SEGMENTS", "0") == "1"
CHECKED_KERNELS = {"softmax_cross_entropy", "softmax_cross_entropy_grad",
                   "softmax_cross_entropy_fused", "one_hot"}


def _log(msg: str) -> None:
    if "compile" in os.environ.get("GRAPHC_LOG", "").split(","):
        import sys

        print(f"graphc: {msg}", file=sys.stderr)


class CpuExecutable:
    def __init__(self, program: Program, optimize: bool = True, fastmath: bool = False,
                 memory_reuse: bool = True, inplace: bool = False, **options):
        if options:
            raise TypeError(f"unknown compile option(s) for the cpu backend: {sorted(options)}")
        t0 = time.perf_counter()
        self.program = program
        roots = program.roots
        if optimize:
            from ...passes import optimize as run_passes

            roots = run_passes(roots)
        self.roots = roots
        self.fastmath = fastmath
        self.memory_reuse = memory_reuse
        # Writing a kernel's output over its operand saves memory but makes LLVM's
        # vectorizer fall back to its scalar loop (its run-time alias check sees the
        # overlap): a fused sigmoid ran 3.4x slower in place. So it is opt-in.
        self.inplace = inplace
        self.nodes = toposort(roots)
        self.names = names_for(self.nodes)
        self.steps = schedule(roots)
        self._analyse()
        self.gemm_updates = self._fuse_gemm_updates()
        self.kernel_log: list = []
        self._load_kernels()
        self._warm_fixed()
        self._storage()
        self._batch_small_groups()
        self._build_segments()
        self.rngs = {n.id: np.random.default_rng(n.attrs["seed"])
                     for n in self.nodes if n.op == "random_uniform"}
        self._bound: dict = {}
        self.compile_seconds = time.perf_counter() - t0

    # --- static analysis ---------------------------------------------------------------------
    def _analyse(self):
        roots = self.roots
        k = len(self.program.outputs)
        self.out_tensors = roots[:k]
        self.update_values = roots[k:]
        self.users: dict = {}
        for node in self.nodes:
            for t in node.inputs:
                self.users.setdefault(t, []).append(node)
        self.root_ids = {id(t) for t in self.out_tensors}
        self._analyse_steps()

    def _analyse_steps(self):
        self.step_of: dict = {}
        for step in self.steps:
            for node in step.nodes:
                for t in node.outputs:
                    self.step_of[t] = step
            if isinstance(step, FusedGroup) and step.epilogue is not None:
                self.step_of[step.epilogue.outputs[0]] = step

    def _source_of(self, t):
        """Look through reshapes and absorbed broadcasts/transposes to the tensor read."""
        while t.node.op in ("reshape", "broadcast_to", "transpose") and (
                t.node.op == "reshape" or self.virtual(t)):
            t = t.node.inputs[0]
        return t

    def _raw_reads(self, step) -> list:
        if isinstance(step, MatmulStep):
            return [step.a, step.b]
        nodes = list(step.nodes)
        if isinstance(step, FusedGroup) and step.epilogue is not None:
            nodes.append(step.epilogue)
        return [self._source_of(x) for n in nodes for x in n.inputs]

    def _fuse_gemm_updates(self) -> dict:
        """W - lr * (A @ B) as one BLAS call: gemm(alpha=-lr, beta=1) into W itself, when the
        product feeds only this update and nothing after the product reads W. Saves the
        gradient buffer and a pass over W and dW (the SGD update of a dense layer)."""
        fused = {}
        checked = [s.index for s in self.steps if isinstance(s, FallbackStep) or
                   (isinstance(s, KernelStep) and s.kernel in CHECKED_KERNELS)]
        for (param, _), v in zip(self.program.updates, self.update_values):
            group = self.step_of.get(v)
            if not isinstance(group, FusedGroup) or group.epilogue is not None or \
                    len(group.nodes) != 2 or v.node is not group.nodes[1]:
                continue
            vn = v.node
            if vn.op != "sub" or vn.inputs[0] is not param or self.users.get(v):
                continue
            x = vn.inputs[1]
            if x.node is not group.nodes[0] or x.node.op != "mul" or \
                    len(self.users.get(x, [])) != 1:
                continue
            consts = [t for t in x.node.inputs if t.node.op == "constant" and
                      t.node.value.size == 1]
            prods = [t for t in x.node.inputs if t.node.op == "matmul"]
            if len(consts) != 1 or len(prods) != 1 or not dt.is_float(v.dtype):
                continue
            if int(np.prod(param.shape)) < GEMM_UPDATE_MIN:
                continue  # a small weight: the BLAS call's overhead would cost more
            m = prods[0]
            mm = self.step_of.get(m)
            if not isinstance(mm, MatmulStep) or len(self.users.get(m, [])) != 1 or \
                    id(m) in self.root_ids or m.shape != param.shape:
                continue
            if any(i > mm.index for i in checked):
                continue  # a failing check after the product must leave W unchanged
            later = [st for st in self.steps if st.index > mm.index and st is not group]
            if any(any(r is param for r in self._raw_reads(st)) for st in later):
                continue
            if any(self._source_of(w) is param for w in self.out_tensors + self.update_values
                   if w is not v):
                continue
            alpha = -float(consts[0].node.value.reshape(()))
            fused[id(v)] = (param, v)
            mm.update = (param, alpha, v)
            self.steps.remove(group)
        for i, step in enumerate(self.steps):  # renumber
            step.index = i
        if fused:
            self._analyse_steps()
        return fused

    def virtual(self, t) -> bool:
        """Broadcasts/transposes absorbed by their consumers (never materialised)."""
        if t.node.op in ("placeholder", "parameter", "constant"):
            return False
        return t not in self.step_of and (t.node.op == "broadcast_to" or
                                          _is_swap_transpose(t))

    def needed_outside(self, group):
        member_ids = {n.id for n in group.nodes}
        epi = group.epilogue

        def check(t):
            if id(t) in self.root_ids or any(t is v for v in self.update_values):
                return True
            for u in self.users.get(t, []):
                if u.id in member_ids or u is epi:
                    continue
                return True
            return False

        return check

    def _load_kernels(self):
        from kernels.cache import load_kernel
        from kernels.codegen.elementwise import render

        self.lowered = {}
        for step in self.steps:
            if not isinstance(step, FusedGroup):
                continue
            low = lower_group(step, self.needed_outside(step), self.virtual, self.names,
                              fastmath=self.fastmath)
            source = render(low.spec, comments=False)
            fns = {}
            for entry in ("serial", "parallel"):
                fn, info = load_kernel(source, entry, deps=("kernels.mathlib",))
                fns[entry] = fn
            low.module = info.get("module", "?")
            low.source = source
            low.fns = fns
            low.warmed = set()
            self.lowered[step.index] = low
            if not (SEGMENTS and self.serial_only(step)):  # (a segment compiles it)
                self._warm(low, "serial")  # compile now (or load from the disk cache)

    def _log_kernel(self, info: dict) -> None:
        self.kernel_log.append(info)
        what = "compiled" if info.get("status") == "compiled" else "loaded from cache"
        _log(f"{info.get('kernel')} {info.get('module')} {what} in {info.get('seconds', 0):.2f}s")

    def serial_only(self, step) -> bool:
        """A group too small to be worth threads at any likely batch size (so it can run
        inside a segment); batch dims are assumed up to 8192 rows."""
        low = self.lowered[step.index]
        if not low.spec.parallel_ok:
            return True
        dom = step.nodes[0].outputs[0].shape if step.nodes else step.epilogue.inputs[0].shape
        static = int(np.prod([d for d in dom if d is not None], dtype=np.int64))
        return static * (8192 if None in dom else 1) < PARALLEL_MIN

    def _build_segments(self):
        self.segments = []
        self.segment_of = {}
        if not SEGMENTS:
            return
        from .segment import Segment, Slots, in_segment

        self.slots = Slots()
        run: list = []
        for step in self.steps + [None]:
            if step is not None and in_segment(self, step):
                run.append(step)
                continue
            work = [s for s in run if not isinstance(s, ViewStep) and
                    not (isinstance(s, FallbackStep))]
            if work and SEGMENTS:
                seg = Segment(self, run, self.slots, len(self.segments))
                seg.load(self._log_kernel)
                self.segments.append(seg)
                for st in run:
                    self.segment_of[st.index] = seg
            run = []

    def _batch_small_groups(self) -> None:
        """Horizontal fusion: neighbouring small fused groups that do not read each other's
        results (e.g. the SGD updates of several small parameters) run as one call."""
        from kernels.cache import load_kernel, warm
        from kernels.codegen.elementwise import render_batch

        self.batch_of: dict = {}
        run: list = []

        def flush():
            if len(run) > 1:
                specs = [self.lowered[g.index].spec for g in run]
                fn, info = load_kernel(render_batch(specs), "serial",
                                       deps=("kernels.mathlib",))
                args = [a for g in run for a in self._dummy_args(self.lowered[g.index])]
                info = dict(info, **warm(fn, *args))
                info["kernel"] = f"batch of {len(run)} kernels"
                self.kernel_log.append(info)
                for g in run:
                    self.batch_of[g.index] = (run[0].index, fn, list(run))
            run.clear()

        for step in self.steps:
            if isinstance(step, FusedGroup) and self.serial_only(step):
                low = self.lowered[step.index]
                written = {id(t) for g in run for t in self._step_writes(g)}
                if all(id(x) not in written for x in low.inputs):
                    run.append(step)
                    continue
                flush()
                run.append(step)
                continue
            flush()
        flush()

    def _step_writes(self, group) -> list:
        low = self.lowered[group.index]
        return list(low.outputs) + ([low.reduce_out] if low.reduce_out is not None else [])

    def _dummy_args(self, low) -> list:
        spec = low.spec
        args = [0] * spec.rank
        args += [np.zeros((1,) * spec.rank, d) for d, _ in spec.inputs]
        args += [np.zeros((1,) * spec.rank, d) for _, d in spec.outputs]
        if spec.reduce is not None:
            args.append(np.zeros((1,) * spec.rank, low.reduce_out.dtype))
        return args

    def _warm_fixed(self) -> None:
        """Compile (or load) the hand-written kernels this plan calls, on empty arrays of the
        right types, so their cost shows at compile time and in GRAPHC_LOG=compile."""
        from kernels.cache import warm
        from kernels.cpu import nn as K

        def z(t, rank=None):
            return np.zeros((0,) * (rank if rank is not None else len(t.shape)), t.dtype)

        done = set()
        for step in self.steps:
            if isinstance(step, MatmulStep) and getattr(step, "update", None) is None:
                out = step.nodes[0].outputs[0]
                key = ("mm", out.dtype)
                args = (z(out), z(out), z(out), step.trans_a, step.trans_b)
                fn = K.small_matmul
            elif isinstance(step, KernelStep):
                node = step.nodes[0]
                x, out = node.inputs[0], node.outputs[0]
                name = {"softmax": "softmax_rows", "log_softmax": "log_softmax_rows",
                        "argmax": "argmax_rows"}.get(step.kernel, step.kernel)
                fn = getattr(K, name)
                key = (name, x.dtype, out.dtype) + tuple(t.dtype for t in node.inputs[1:])
                if step.kernel in ("softmax", "log_softmax"):
                    args = (z(x, 2), z(out, 2))
                elif step.kernel == "argmax":
                    args = (z(x, 2), z(out, 1))
                elif step.kernel == "one_hot":
                    args = (z(x, 1), z(out, 2))
                elif step.kernel == "softmax_cross_entropy":
                    args = (z(x, 2), z(node.inputs[1], 1), np.zeros(1, out.dtype))
                elif step.kernel == "softmax_cross_entropy_grad":
                    args = (z(x, 2), z(node.inputs[1], 1), np.zeros(1, x.dtype), z(out, 2))
                else:  # softmax_cross_entropy_fused
                    args = (z(x, 2), z(node.inputs[1], 1), np.zeros(1, x.dtype),
                            np.zeros(1, out.dtype), z(x, 2))
            else:
                continue
            if key in done:
                continue
            done.add(key)
            info = warm(fn, *args)
            info["kernel"] = f"kernels.cpu.nn.{fn.__name__}"
            self.kernel_log.append(info)

    def _warm(self, low, variant: str) -> None:
        """Compile one variant of a kernel ahead of its first real call, by calling it on
        empty loops with arrays of the right types; logs with GRAPHC_LOG=compile."""
        if variant in low.warmed:
            return
        from kernels.cache import warm

        spec = low.spec
        info = warm(low.fns[variant], *self._dummy_args(low))
        info["kernel"] = f"{spec.name} ({variant})"
        self.kernel_log.append(info)
        low.warmed.add(variant)

    # --- storage of every tensor -----------------------------------------------------------
    def _storage(self):
        """kind of each materialised tensor: feed/param/const/arena/fresh/view/inplace."""
        kinds = {}
        feed_ids = {id(t) for t in self.program.inputs}
        for node in self.nodes:
            t = node.outputs[0]
            if node.op == "placeholder":
                kinds[t] = "feed"
            elif node.op == "parameter":
                kinds[t] = "param"
            elif node.op == "constant":
                kinds[t] = "const"
        del feed_ids
        self.inplace_updates = {}
        for step in self.steps:
            if isinstance(step, ViewStep):
                kinds[step.nodes[0].outputs[0]] = "view"
                continue
            if isinstance(step, FallbackStep):
                for t in step.outputs:
                    kinds[t] = "fresh"
                continue
            outs = list(step.outputs)
            if getattr(step, "update", None) is not None:
                kinds[outs[0]] = "absorbed"
                continue
            if isinstance(step, FusedGroup):
                low = self.lowered[step.index]
                outs = list(low.outputs) + ([low.reduce_out] if low.reduce_out is not None
                                            else [])
            for t in outs:
                kinds[t] = "fresh" if id(t) in self.root_ids else "arena"
        # parameter updates written in place by the kernel that computes them
        last_checked = max((s.index for s in self.steps
                            if isinstance(s, FallbackStep) or
                            (isinstance(s, KernelStep) and s.kernel in CHECKED_KERNELS)),
                           default=-1)
        self.kinds = kinds  # views are known now: _base/_reads below look through them
        for param, v in self.gemm_updates.values():
            kinds[v] = "inplace"
            self.inplace_updates[id(v)] = param
        for (param, _), v in zip(self.program.updates, self.update_values):
            step = self.step_of.get(v)
            if not isinstance(step, FusedGroup) or kinds.get(v) != "arena":
                continue
            if step.index <= last_checked or len(self.users.get(v, [])) > 0:
                continue
            if any(v is w for w in self.update_values if w is not v) or \
                    sum(1 for w in self.update_values if w is v) > 1:
                continue
            if any(self._reads(s, param) for s in self.steps if s.index > step.index):
                continue
            # outputs and the other updates read the parameter's old value after the steps
            if any(self._base(w) is param for w in self.out_tensors + self.update_values):
                continue
            kinds[v] = "inplace"
            self.inplace_updates[id(v)] = param
        self.kinds = kinds

    def _reads(self, step, t) -> bool:
        return any(self._base(x) is t for x in self._step_inputs(step))

    def _step_inputs(self, step) -> list:
        if isinstance(step, FusedGroup):
            return list(self.lowered[step.index].inputs)
        if isinstance(step, MatmulStep):
            return [step.a, step.b]
        return [x for n in step.nodes for x in n.inputs]

    def _base(self, t):
        while self.kinds.get(t) == "view":
            t = t.node.inputs[0]
        return t

    # --- binding per batch size ---------------------------------------------------------------
    def bind(self, n):
        if n in self._bound:
            return self._bound[n]
        runner = _Binder(self, n).build()
        self._bound[n] = runner
        return runner

    def run(self, feeds, n):
        runner = self.bind(n)
        return runner(*feeds)

    def describe(self, n=None, kernels: bool = False) -> str:
        from .describe import describe

        return describe(self, n, kernels)


class _Binder:
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
                    if ex.inplace and isinstance(step, FusedGroup) and t is not \
                            ex.lowered[step.index].reduce_out:
                        low = ex.lowered[step.index]
                        inplace_cands[t] = [x for x, p in zip(low.inputs, low.in_patterns)
                                            if all(p) and x.shape == t.shape and
                                            x.dtype == t.dtype and kinds.get(x) == "arena"]
        for t in ex.update_values + ex.out_tensors:
            b = ex._base(t)
            if kinds.get(b) == "arena":
                last[b] = len(ex.steps)
        self.memory = plan_memory(arena_keys, defined, last, size, inplace_cands,
                                  reuse=ex.memory_reuse)
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

        if ex.segments:
            S = ex.slots.values(self)
            self.globals["S"] = S
            usable = arena[:arena.size // 8 * 8]
            for d in ("float32", "float64", "int32", "int64", "bool"):
                self.globals[f"A_{d}"] = usable.view(d)
        args = ", ".join(f"f{i}" for i in range(len(ex.program.inputs)))
        self.lines.append(f"def run({args}):")
        for step in ex.steps:
            seg = ex.segment_of.get(step.index)
            if seg is None:
                self.emit(step)
            elif step is seg.steps[0]:
                self.emit_segment(seg)
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
                          f"  # update {param.name}")
        self.lines += copies
        self.lines.append(f"    return [{', '.join(outs)}]")
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

    def emit_segment(self, seg):
        # per-call buffers first: a reshape in the segment may view one (a reduction's result)
        for step in seg.steps:
            for t in self._step_outputs(step):
                if self.ex.kinds.get(t) == "fresh":
                    self.out_ref(t)
        for step in seg.steps:  # names the Python side needs: numel values, reshapes
            if isinstance(step, (ViewStep, FallbackStep)):
                self.emit(step)
        fn = self.glob(seg.fn, "seg")
        arenas = ", ".join(f"A_{d}" for d in ("float32", "float64", "int32", "int64", "bool"))
        ext = "".join(f", {self.ref(t)}" for t in seg.ext)
        call = f"{fn}(S, {arenas}{ext})"
        if seg.checks:
            fail = self.glob(_segment_failer(seg.checks), "fail")
            labels = ", ".join(self.names.get(nd.inputs[1 if nd.op != "one_hot" else 0], "None")
                               for nd in seg.checks)
            self.lines.append(f"    st = {call}")
            self.lines.append("    if st:")
            self.lines.append(f"        {fail}(st, ({labels},))")
        else:
            self.lines.append(f"    {call}")

    def group_args(self, step) -> tuple[list, int]:
        """A fused group's call arguments (loop sizes, then views) and its element count."""
        low = self.ex.lowered[step.index]
        domain = self.shape(step.nodes[0].outputs[0]) if step.nodes else \
            self.shape(step.epilogue.inputs[0])
        sizes = loop_sizes(low, domain)
        args = [str(s) for s in sizes]
        for x, pat in zip(low.inputs, low.in_patterns):
            args.append(self.view(self.ref(x), view_shape(sizes, pat)))
        for t in low.outputs:
            args.append(self.view(self.out_ref(t), tuple(sizes)))
        if low.reduce_out is not None:
            args.append(self.view(self.out_ref(low.reduce_out),
                                  view_shape(sizes, [not r for r in low.red_pattern])))
        return args, int(np.prod(sizes, dtype=np.int64))

    def emit(self, step):
        ex = self.ex
        L = self.lines
        L.append(f"    # step {step.index}: {type(step).__name__} "
                 f"{' '.join(nd.op for nd in step.nodes)}")
        if isinstance(step, FusedGroup):
            batch = ex.batch_of.get(step.index)
            if batch is not None:
                first, fn, groups = batch
                if step.index == first:
                    args = [a for g in groups for a in self.group_args(g)[0]]
                    names = " + ".join(ex.lowered[g.index].spec.name for g in groups)
                    L.append(f"    {self.glob(fn, 'k')}({', '.join(args)})  # batch: {names}")
                return
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
            from kernels import blas

            param, alpha, v = step.update
            fn = self.glob(blas.gemm, "gemm")
            self.names[v] = self.glob(param.data, "p")
            L.append(f"    {fn}({self.ref(step.a)}, {self.ref(step.b)}, out={self.names[v]}, "
                     f"trans_a={step.trans_a}, trans_b={step.trans_b}, alpha={alpha!r}, "
                     f"beta=1.0)  # update {param.name} in place")
            return
        if isinstance(step, MatmulStep):
            a, b = self.ref(step.a), self.ref(step.b)
            m, k = self.shape(out)[0], self.shape(step.a)[0 if step.trans_a else 1]
            ncols = self.shape(out)[1]
            c = self.out_ref(out)
            if m * ncols * k <= SMALL_MATMUL or not dt.is_float(out.dtype):
                from kernels.cpu.nn import small_matmul

                fn = self.glob(small_matmul, "k")
                L.append(f"    {fn}({a}, {b}, {c}, {step.trans_a}, {step.trans_b})")
            else:
                from kernels import blas

                fn = self.glob(blas.gemm, "gemm")
                L.append(f"    {fn}({a}, {b}, out={c}, trans_a={step.trans_a}, "
                         f"trans_b={step.trans_b})")
            return
        if isinstance(step, KernelStep):
            from kernels.cpu import nn as K

            fn = self.glob(getattr(K, {"softmax": "softmax_rows",
                                       "log_softmax": "log_softmax_rows",
                                       "argmax": "argmax_rows"}.get(step.kernel, step.kernel)),
                           "k")
            x = node.inputs[0]
            if step.kernel in ("softmax", "log_softmax"):
                shape2 = (-1, self.shape(x)[-1]) if x.ndim else (1, 1)
                rows = int(np.prod(self.shape(x)[:-1], dtype=np.int64))
                shape2 = (rows, self.shape(x)[-1])
                xs = self.view(self.ref(x), shape2)
                ys = self.view(self.out_ref(out), shape2)
                L.append(f"    {fn}({xs}, {ys})")
            elif step.kernel == "softmax_cross_entropy":
                c = self.view(self.out_ref(out), (1,))
                self.check(f"{fn}({self.ref(x)}, {self.ref(node.inputs[1])}, {c})", step)
            elif step.kernel == "softmax_cross_entropy_fused":
                loss = self.view(self.out_ref(out), (1,))
                gnode = step.nodes[1]
                g = self.view(self.ref(gnode.inputs[2]), (1,))
                dx = self.out_ref(gnode.outputs[0])
                self.check(f"{fn}({self.ref(x)}, {self.ref(node.inputs[1])}, {g}, {loss}, "
                           f"{dx})", step)
            elif step.kernel == "softmax_cross_entropy_grad":
                g = self.view(self.ref(node.inputs[2]), (1,))
                self.check(f"{fn}({self.ref(x)}, {self.ref(node.inputs[1])}, {g}, "
                           f"{self.out_ref(out)})", step)
            elif step.kernel == "one_hot":
                self.check(f"{fn}({self.ref(x)}, {self.out_ref(out)})", step)
            else:
                L.append(f"    {fn}({self.ref(x)}, {self.out_ref(out)})")
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


def _segment_failer(nodes):
    def fail(status, labels):
        _failer(nodes[status - 1])(labels[status - 1])

    return fail


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


def describe_shape(t) -> str:
    return f"{dt.SHORT[t.dtype]}{fmt_shape(t.shape)}"
