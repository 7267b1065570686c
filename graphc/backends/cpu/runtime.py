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
from ...ops.reduce import NO_IDENTITY, empty_reduction
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
from ...shapes import bind as bind_shape
from .lower import lower_group

PARALLEL_MIN = int(os.environ.get("GRAPHC_PARALLEL_MIN", str(1 << 17)))  # elements
SMALL_MATMUL = 1 << 18  # m*n*k below which a Numba loop beats a BLAS call's overhead
CHECKED_KERNELS = {"softmax_cross_entropy", "softmax_cross_entropy_grad",
                   "softmax_cross_entropy_fused", "one_hot"}


def _log(msg: str) -> None:
    if "compile" in os.environ.get("GRAPHC_LOG", "").split(","):
        import sys

        print(f"graphc: {msg}", file=sys.stderr)


class CpuExecutable:
    def __init__(self, program: Program, optimize: bool = True, fastmath: bool = False,
                 memory_reuse: bool = True, inplace: bool = True, **options):
        if options:
            raise TypeError(f"unknown compile option(s) for the cpu backend: {sorted(options)}")
        t0 = time.perf_counter()
        self.program = program
        roots = program.roots
        if optimize:
            from ...passes import optimize as run_passes

            roots = run_passes(roots, fastmath=fastmath)
        self.roots = roots
        self.fastmath = fastmath
        self.memory_reuse = memory_reuse
        self.inplace = inplace  # outputs may take the bytes of operands dying there
        self.nodes = toposort(roots)
        self.names = names_for(self.nodes)
        self.steps = schedule(roots)
        self._analyse()
        self.gemm_updates = self._fuse_gemm_updates()
        self.reduction_updates = self._fuse_reduction_updates()
        self.kernel_log: list = []
        self._lower_groups()
        self._storage()
        self._plan_inplace()
        self._load_kernels()
        self._warm_fixed()
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
        """W - lr * (A @ B) as one product that accumulates into W itself (BLAS gemm with
        alpha=-lr, beta=1; a small-matrix kernel below BLAS's call overhead), when the
        product feeds only this update and nothing after the product reads W. Saves the
        gradient buffer, a pass over W and dW, and a kernel call (a dense layer's SGD)."""
        fused = {}
        for (param, _), v in zip(self.program.updates, self.update_values):
            found = self._update_pattern(v, param)
            if found is None:
                continue
            group, m, scale = found
            mm = self.step_of.get(m)
            if m.node.op != "matmul" or not isinstance(mm, MatmulStep) or \
                    getattr(mm, "update", None) is not None or \
                    len(self.users.get(m, [])) != 1 or id(m) in self.root_ids or \
                    m.shape != param.shape:
                continue
            # gemm and the small-matrix kernel write W while they read their operands
            if any(self._source_of(x) is param for x in (mm.a, mm.b)) or \
                    not self._update_is_safe(param, v, mm.index):
                continue
            fused[id(v)] = (param, v)
            mm.update = (param, -scale, v)
            self.steps.remove(group)
        for i, step in enumerate(self.steps):  # renumber
            step.index = i
        if fused:
            self._analyse_steps()
        return fused

    def _update_pattern(self, v, param):
        """(group, product-or-reduction tensor, scale) when v = param - scale * x is computed
        by a fused group of its own (sub, or mul + sub), else None."""
        group = self.step_of.get(v)
        if not isinstance(group, FusedGroup) or group.epilogue is not None or \
                v.node is not group.nodes[-1] or not dt.is_float(v.dtype):
            return None
        vn = v.node
        if vn.op != "sub" or vn.inputs[0] is not param or self.users.get(v):
            return None
        x = vn.inputs[1]
        if len(group.nodes) == 1 and x.node is not group.nodes[0]:
            return group, x, 1.0  # param - x (a learning rate of 1 folded away)
        if len(group.nodes) == 2 and x.node is group.nodes[0] and x.node.op == "mul" and \
                len(self.users.get(x, [])) == 1:
            consts = [t for t in x.node.inputs if t.node.op == "constant" and
                      t.node.value.size == 1]
            others = [t for t in x.node.inputs if not any(t is c for c in consts)]
            if len(consts) == 1 and len(others) == 1:
                return group, others[0], float(consts[0].node.value.reshape(()))
        return None

    def _update_is_safe(self, param, v, index) -> bool:
        """Whether param may be overwritten at step `index`: no failing check and no reader
        of param comes after it, and no output or other update reads it."""
        if any(s.index > index for s in self.steps if isinstance(s, FallbackStep) or
               (isinstance(s, KernelStep) and s.kernel in CHECKED_KERNELS)):
            return False
        group = self.step_of.get(v)
        later = [st for st in self.steps if st.index > index and st is not group]
        if any(any(r is param for r in self._raw_reads(st)) for st in later):
            return False
        return not any(self._source_of(w) is param for w in self.out_tensors +
                       self.update_values if w is not v)

    def _fuse_reduction_updates(self) -> dict:
        """b - lr * sum_to(g) (a bias's SGD update) as a post-loop of the kernel whose
        epilogue reduces the gradient: one call fewer per bias."""
        fused = {}
        for (param, _), v in zip(self.program.updates, self.update_values):
            found = self._update_pattern(v, param)
            if found is None:
                continue
            group, r, scale = found
            producer = self.step_of.get(r)
            if not isinstance(producer, FusedGroup) or producer.epilogue is not r.node or \
                    getattr(producer, "post", None) is not None or \
                    r.node.op not in ("sum", "sum_to") or r.shape != param.shape or \
                    len(self.users.get(r, [])) != 1 or id(r) in self.root_ids:
                continue
            if not self._update_is_safe(param, v, producer.index):
                continue
            producer.post = (param, -scale, v)
            fused[id(v)] = (param, -scale, v)
            self.steps.remove(group)
        for i, step in enumerate(self.steps):
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

    def _lower_groups(self, aliases=None):
        """Kernel specs of the fused groups (aliases: group index -> in-place pairs)."""
        self.lowered = {}
        for step in self.steps:
            if isinstance(step, FusedGroup):
                post = getattr(step, "post", None)
                self.lowered[step.index] = lower_group(
                    step, self.needed_outside(step), self.virtual, self.names,
                    fastmath=self.fastmath, aliases=(aliases or {}).get(step.index, ()),
                    post=None if post is None else post[1])

    def _load_kernels(self):
        """Render each group's kernel, load it through the cache, compile it now."""
        from graphc.kernels.cache import load_kernel
        from graphc.kernels.codegen.elementwise import render

        for step in self.steps:
            if not isinstance(step, FusedGroup):
                continue
            low = self.lowered[step.index]
            source = render(low.spec, comments=False)
            fns = {}
            for entry in ("serial", "parallel"):
                fn, info = load_kernel(source, entry, deps=("graphc.kernels.mathlib",))
                fns[entry] = fn
            low.module = info.get("module", "?")
            low.source = source
            low.fns = fns
            low.warmed = set()
            self._warm(low, "serial")  # compile now (or load from the disk cache)

    def _last_uses(self) -> dict:
        """id(buffer) -> the last step that reads it (roots and updates: after all steps)."""
        last: dict = {}
        for step in self.steps:
            for t in self._step_inputs(step):
                last[id(self._base(t))] = step.index
        for t in self.update_values + self.out_tensors:
            last[id(self._base(t))] = len(self.steps)
        return last

    def _plan_inplace(self) -> None:
        """Where a fused group's output can take the bytes of an operand that dies at that
        group (same shape and dtype, read at the same index), the kernel is generated to
        write into that operand itself: one array, so LLVM still vectorizes the loop (two
        arrays that overlap exactly would send it to its scalar fallback)."""
        self.inplace_pairs: dict = {}
        if not self.inplace or not self.memory_reuse:
            return
        last = self._last_uses()
        aliases = {}
        for step in self.steps:
            if not isinstance(step, FusedGroup):
                continue
            low = self.lowered[step.index]
            taken: set = set()
            pairs = []
            for j, t in enumerate(low.outputs):
                if self.kinds.get(t) != "arena":
                    continue
                for i, (x, pattern) in enumerate(zip(low.inputs, low.in_patterns)):
                    if i not in taken and all(pattern) and x.shape == t.shape and \
                            x.dtype == t.dtype and self.kinds.get(x) == "arena" and \
                            last.get(id(x)) == step.index:
                        taken.add(i)
                        pairs.append((j, i))
                        self.inplace_pairs[t] = x
                        break
            if pairs:
                aliases[step.index] = tuple(pairs)
        if aliases:
            self._lower_groups(aliases)

    def _log_kernel(self, info: dict) -> None:
        self.kernel_log.append(info)
        what = "compiled" if info.get("status") == "compiled" else "loaded from cache"
        _log(f"{info.get('kernel')} {info.get('module')} {what} in {info.get('seconds', 0):.2f}s")

    def _step_writes(self, group) -> list:
        low = self.lowered[group.index]
        return list(low.outputs) + ([low.reduce_out] if low.reduce_out is not None else [])

    def _dummy_args(self, low) -> list:
        from graphc.kernels.codegen.elementwise import size_source

        spec = low.spec
        args = [] if size_source(spec) else [0] * spec.rank
        args += [np.zeros((1,) * spec.rank, d) for d, _ in spec.inputs]
        aliased = {j for j, _ in spec.aliases}
        args += [np.zeros((1,) * spec.rank, d) for j, (_, d) in enumerate(spec.outputs)
                 if j not in aliased]
        if spec.reduce is not None:
            args.append(np.zeros((1,) * spec.rank, low.reduce_out.dtype))
        if spec.post is not None:
            args.append(np.zeros((1,) * spec.rank, low.reduce_out.dtype))
        return args

    def _warm_fixed(self) -> None:
        """Compile (or load) the hand-written kernels this plan calls, on empty arrays of the
        right types, so their cost shows at compile time and in GRAPHC_LOG=compile."""
        from graphc.kernels.cache import warm
        from graphc.kernels.cpu import nn as K

        from .kernels import kernel_dummy_args, nn_function

        done = set()
        for step in self.steps:
            if isinstance(step, MatmulStep) and getattr(step, "update", None) is None or \
                    isinstance(step, KernelStep):
                args = kernel_dummy_args(step)
                key = (nn_function(step),) + tuple(
                    (a.dtype.name, a.ndim) if isinstance(a, np.ndarray) else a for a in args)
                if key in done:
                    continue
                done.add(key)
                fn = getattr(K, nn_function(step))
                info = warm(fn, *args)
                info["kernel"] = f"graphc.kernels.cpu.nn.{fn.__name__}"
                self.kernel_log.append(info)

    def _warm(self, low, variant: str) -> None:
        """Compile one variant of a kernel ahead of its first real call, by calling it on
        empty loops with arrays of the right types; logs with GRAPHC_LOG=compile."""
        if variant in low.warmed:
            return
        from graphc.kernels.cache import warm

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
        for param, v in list(self.gemm_updates.values()) + \
                [(p, v) for p, _, v in self.reduction_updates.values()]:
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
        from .runner import RunnerBuilder

        for node in self.nodes:  # max/min/argmax over an axis that is N, and N == 0
            if node.op in NO_IDENTITY:
                why = empty_reduction(node.op, node.attrs, bind_shape(node.inputs[0].shape, n))
                if why is not None:
                    raise RuntimeCheckError(f"{node.op}: {why} (node created at {node.loc})")

        runner = RunnerBuilder(self, n).build()
        self._bound[n] = runner
        return runner

    def run(self, feeds, n):
        runner = self._bound.get(n) or self.bind(n)
        return runner(*feeds)

    def describe(self, n=None, kernels: bool = False) -> str:
        from .describe import describe

        return describe(self, n, kernels)
