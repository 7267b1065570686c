"""Per batch size: the device buffers and the launches of a compiled plan on the cuda backend.

A call uploads each feed once (through a pinned host buffer kept for this N), runs the
launches in plan order on the default stream, copies each fetched output back once, then
applies the parameter updates that no step applied in place (device to device). Parameters
and constants stay on the device; intermediates live in one device arena laid out by the
plan's memory plan (graphc.plan.memory), exactly as the cpu backend lays out its own.

Each launch is a `Launch`: the plan line it runs (comment-safe, for `describe`) and a
callable with its device arrays and launch sizes bound now.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import cuda

from ...errors import RuntimeCheckError
from ...kernels.codegen.numba_cuda import arg_names
from ...kernels.cuda import gemm, rng
from ...kernels.cuda.bindings import BINDINGS, Planned
from ...kernels.cuda.launch import MAX_BLOCKS, THREADS, blocks
from ...ops.reduce import NO_IDENTITY, empty_reduction
from ...plan import FallbackStep, FusedGroup, KernelStep, MatmulStep, ViewStep
from ...plan.describe import comment_safe as comment
from ...plan.lower import loop_sizes, view_shape
from ...plan.memory import layout
from ...printing import node_line
from ...profile import END, FEEDS
from ...shapes import bind

HOST_FALLBACK = "host fallback"  # what describe says of a step run by its NumPy reference


@dataclass(frozen=True)
class Launch:
    step: int         # the plan step it runs
    what: str         # the plan line(s), comment-safe
    how: str          # the kernel and its launch sizes, or "host fallback"
    run: Callable


class DeviceRunner:
    """The buffers and launches of one plan at one batch size; calling it runs the plan."""

    def __init__(self, ex, n):
        self.ex, self.plan, self.n = ex, ex.plan, n
        self.names: dict = {}      # tensor -> device array
        self.launches: list = []
        self.checked: list = []    # (first status slot, slots, node, report) of checking steps
        self._layout()
        slots = {s.index: status_slots(s) for s in self.plan.steps}
        self.slot_of, total = {}, 0
        for index, count in slots.items():
            self.slot_of[index], total = total, total + count
        self.status = cuda.to_device(np.zeros(max(total, 1), np.int64))
        self.status_host = np.zeros(max(total, 1), np.int64)
        last = max((i for i, count in slots.items() if count), default=-1)
        for step in self.plan.steps:
            EMIT[type(step)](self, step)
            # the status is read once, after the last checking step; an earlier one whose
            # labels or indices sit in the arena is read at once too, as a later step may
            # reuse that buffer before then (and the message would name what it wrote)
            if step.index == last or slots[step.index] and any(
                    t in self.arena_tensors for node in step.nodes for t in node.inputs):
                self.launches.append(Launch(step.index, "check labels and indices",
                                            "status read", self._check_status))
        self.outputs = [self.names[t] for t in self.plan.out_tensors]
        self.updates = self._updates()

    # --- layout -------------------------------------------------------------------------------
    def shape(self, t) -> tuple:
        return bind(t.shape, self.n)

    def _layout(self) -> None:
        plan = self.plan
        keys, size, self.memory = layout(plan, self.shape)
        self.arena_tensors = set(keys)
        self.arena = cuda.device_array(max(self.memory.peak, 64), np.uint8)
        for t in keys:
            off = self.memory.offsets[t]
            dtype = np.dtype(t.dtype)
            raw = self.arena[off:off + max(size[t], dtype.itemsize)].view(dtype)
            self.names[t] = raw[:size[t] // dtype.itemsize].reshape(self.shape(t))
        self.feeds = []
        for t in plan.program.inputs:
            host = cuda.pinned_array(self.shape(t), np.dtype(t.dtype))
            self.names[t] = cuda.device_array(self.shape(t), np.dtype(t.dtype))
            self.feeds.append((host, self.names[t]))
        for node in plan.nodes:
            t = node.outputs[0]
            if node.op == "parameter":
                self.names[t] = self.ex.mirrors[id(node.value)].array
            elif node.op == "constant":
                self.names[t] = self.ex.constants[node.id]
        for t, kind in plan.kinds.items():
            if kind == "fresh":
                self.names[t] = cuda.device_array(self.shape(t), np.dtype(t.dtype))
        for v in plan.update_values:
            if id(v) in plan.inplace_updates:
                self.names[v] = self.param(plan.inplace_updates[id(v)])

    def param(self, p):
        return self.ex.mirrors[id(p)].array

    def out(self, t):
        """The device array a step writes t into."""
        return self.names[t]

    def what(self, nodes) -> str:
        return comment("; ".join(node_line(n, self.plan.names) for n in nodes))

    # --- updates ------------------------------------------------------------------------------
    def _updates(self) -> list:
        """(parameter array, source array, staged) for each update not applied in place; a
        source that is (a view of) an updated parameter is staged in a copy first."""
        plan, graph = self.plan, self.plan.graph
        updated = {id(p) for p, _ in plan.program.updates}
        out = []
        for (param, _), v in zip(plan.program.updates, plan.update_values):
            if id(v) in plan.inplace_updates:
                continue
            src = self.names[v].reshape(param.shape)
            base = graph.base(v)
            staged = base.node.op == "parameter" and id(base.node.value) in updated
            out.append((self.param(param), src,
                        cuda.device_array(param.shape, param.dtype) if staged else None))
        return out

    # --- a call -------------------------------------------------------------------------------
    def __call__(self, *feeds):
        self._upload(feeds)
        for launch in self.launches:
            launch.run()
        return self._finish()

    def profile_call(self, ticks, *feeds):
        """A call, the device synchronised and the clock read after each launch (graphc.profile
        Ticks, keyed by plan step)."""
        sync = cuda.synchronize
        sync()
        ticks.start()
        self._upload(feeds)
        sync()
        ticks.tick(FEEDS)
        for launch in self.launches:
            launch.run()
            sync()
            ticks.tick(launch.step)
        outs = self._finish()
        sync()
        ticks.tick(END)
        return outs

    def _upload(self, feeds) -> None:
        for (host, dev), x in zip(self.feeds, feeds):
            host[...] = x
            dev.copy_to_device(host)
        if self.checked:
            self.status.copy_to_device(np.zeros_like(self.status_host))

    def _finish(self) -> tuple:
        """The outputs copied to the host, then every update applied at once."""
        outs = tuple(arr.copy_to_host() for arr in self.outputs)
        for _, src, stage in self.updates:
            if stage is not None:
                stage.copy_to_device(src)
        for dst, src, stage in self.updates:
            dst.copy_to_device(src if stage is None else stage)
        for p, _ in self.plan.program.updates:
            self.ex.mirrors[id(p)].device_newer = True
        return outs

    def _check_status(self) -> None:
        """Raise for the first checking step whose kernel found a label or index out of
        range."""
        self.status.copy_to_host(self.status_host)
        for start, count, node, report in self.checked:
            values = self.status_host[start:start + count]
            message = report(values) if values.any() else None
            if message is not None:
                raise RuntimeCheckError(f"{node.op}: {message} (node created at {node.loc})")


def status_slots(step) -> int:
    """The status entries a step's kernel may set: one for a label check, one per index array
    of a gather or scatter-add."""
    if not isinstance(step, KernelStep) or step.kernel not in BINDINGS:
        return 0
    binding = BINDINGS[step.kernel]
    if isinstance(binding, Planned):
        return binding.slots(step.nodes[0])
    return 1 if binding.checked else 0


# --- emission, one function per step kind ------------------------------------------------------
def emit_fused(r: DeviceRunner, step) -> None:
    low = r.plan.lowered[step.index]
    spec = low.spec
    sizes = loop_sizes(low, r.shape(step.domain_tensor))
    args: list = list(sizes)
    args += [r.names[x].reshape(view_shape(sizes, p)) for x, p in zip(low.inputs,
                                                                      low.in_patterns)]
    aliased = {j for j, _ in spec.aliases}
    args += [r.out(t).reshape(tuple(sizes)) for j, t in enumerate(low.outputs)
             if j not in aliased]
    kernel = r.ex.kernels[step.index]
    what = r.what(step.members)
    if spec.reduce is None:
        total = int(np.prod(sizes, dtype=np.int64))
        fn, grid = kernel.fns["kernel"], blocks(total)
        r.launches.append(Launch(step.index, what, f"{kernel.module}:kernel[{grid}, {THREADS}]",
                                 lambda: fn[grid, THREADS](*args)))
        return
    pattern = spec.reduce[3]
    rows = int(np.prod([s for s, red in zip(sizes, pattern) if not red], dtype=np.int64))
    count = int(np.prod([s for s, red in zip(sizes, pattern) if red], dtype=np.int64))
    grid = (blocks(count), max(1, min(rows, MAX_BLOCKS)))
    part = cuda.device_array((max(rows, 1), grid[0]), np.float64 if
                             spec.reduce[2].startswith("float") else np.int64)
    args.append(part)
    assert len(args) == len(arg_names(spec)), "graphc internal error: fused kernel arguments"
    red = r.out(low.reduce_out).reshape(rows)
    finish_args = [part, red]
    if step.post is not None:  # the parameter updated from the reduction, in place
        r.names[step.post.value] = post = r.param(step.post.param)
        finish_args.append(post.reshape(rows))
    partial, finish = kernel.fns["partial"], kernel.fns["finish"]
    fgrid = blocks(rows)

    def run():
        partial[grid, THREADS](*args)
        finish[fgrid, THREADS](*finish_args)

    r.launches.append(Launch(step.index, what, f"{kernel.module}:partial[{grid}, {THREADS}] + "
                                   f"finish[{fgrid}, {THREADS}]", run))


def emit_matmul(r: DeviceRunner, step) -> None:
    node = step.nodes[0]
    a, b = r.names[step.a], r.names[step.b]
    ta, tb = step.trans_a, step.trans_b
    alpha, beta = 1.0, 0.0
    what = r.what(step.nodes)
    if step.update is not None:
        param = step.update.param
        r.names[step.update.value] = c = r.param(param)
        alpha, beta = step.update.alpha, step.update.beta
        what += comment(f"; update {param.name} in place")
    else:
        c = r.out(node.outputs[0])
    fn, how = _gemm_engine(r, c.dtype)
    r.launches.append(Launch(step.index, what, how, lambda: fn(a, b, c, ta, tb, alpha, beta)))


def _gemm_engine(r: DeviceRunner, dtype) -> tuple:
    """(2-D gemm function, its name): cuBLAS for floats where the backend has it."""
    if r.ex.cublas is not None and dtype in (np.float32, np.float64):
        return r.ex.cublas.gemm, "cuBLAS gemm"
    return gemm.matmul_2d, f"tiled gemm (tile {gemm.TILE})"


def _binding_arg(r: DeviceRunner, step, arg):
    node = step.nodes[arg.node]
    if arg.role == "attr":
        return arg.attr_value(node)
    t = node.inputs[arg.index] if arg.role == "in" else node.outputs[arg.index]
    arr = r.names[t] if arg.role == "in" else r.out(t)
    shape = r.shape(t)
    if arg.view == "rows":
        return arr.reshape((int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]))
    if arg.view == "scalar":
        return arr.reshape((1,))
    return arr


def emit_kernel(r: DeviceRunner, step) -> None:
    node = step.nodes[0]
    what = r.what(step.nodes)
    if step.kernel == "random_uniform":
        out = r.out(node.outputs[0]).reshape(-1)
        seed, calls = node.attrs["seed"], r.ex.calls

        def draw():
            rng.uniform(out, seed, calls[node.id])
            calls[node.id] += 1

        r.launches.append(Launch(step.index, what, "device RNG (counter-based)", draw))
        return
    if step.kernel == "matmul":
        emit_matmul_nd(r, step)
        return
    binding = BINDINGS[step.kernel]
    if isinstance(binding, Planned):
        emit_planned(r, step, binding)
        return
    args = [_binding_arg(r, step, arg) for arg in binding.args]
    if binding.checked:
        slot = r.slot_of[step.index]
        args.append(r.status[slot:slot + 1])
        r.checked.append((slot, 1, node, _label_report(node, r.names[node.inputs[
            binding.labels.index]])))
    fn = binding.function
    r.launches.append(Launch(step.index, what, f"{fn.__module__}.{fn.__name__}", lambda: fn(*args)))


def _label_report(node, labels) -> Callable:
    """status value (1 + the row of a bad label) -> the error message."""
    classes = node.outputs[0].shape[-1] if node.op == "one_hot" else node.inputs[0].shape[-1]

    def report(values):
        value = int(labels.copy_to_host().reshape(-1)[int(values[0]) - 1])
        return f"label {value} is outside [0, {classes})"

    return report


def emit_planned(r: DeviceRunner, step, binding) -> None:
    """An op planned at this N (kernels/cuda/bindings.py `Planned`): its launches, its status
    slots and their report; a failure known now (a static index out of range, a reduction
    over an empty axis) raises when the step runs, as the NumPy reference would."""
    node = step.nodes[0]
    ins = [r.names[t] for t in node.inputs]
    outs = [r.out(t) for t in node.outputs]
    error = None
    if node.op in NO_IDENTITY:
        error = empty_reduction(node.op, node.attrs, ins[0].shape)
    if error is None:
        start, count = r.slot_of[step.index], binding.slots(node)
        status = r.status[start:start + count] if count else None
        planned = binding.plan(ins, outs, node.attrs, status)
        if planned.report is not None:
            r.checked.append((start, count, node, planned.report))
        run, how, error = planned.run, planned.how, planned.error
    if error is not None:
        message = f"{node.op}: {error} (node created at {node.loc})"

        def run():
            raise RuntimeCheckError(message)

        how = "raises: " + comment(error)
    r.launches.append(Launch(step.index, r.what(step.nodes), how, run))


def emit_matmul_nd(r: DeviceRunner, step) -> None:
    """A matmul with a 1-D or batched operand: a 2-D product per matrix, over views
    (one, when the right operand is a single matrix: the batch folds into the rows)."""
    node = step.nodes[0]
    a, b = (r.names[t] for t in node.inputs)
    c = r.out(node.outputs[0])
    triples = gemm.matrices(a, b, c) if c.size else []
    fn, how = _gemm_engine(r, c.dtype)

    def run():
        for a2, b2, c2 in triples:
            fn(a2, b2, c2, False, False, 1.0, 0.0)

    r.launches.append(Launch(step.index, r.what(step.nodes), f"{how} x{len(triples)}", run))


def emit_view(r: DeviceRunner, step) -> None:
    node = step.nodes[0]
    r.names[node.outputs[0]] = r.names[node.inputs[0]].reshape(r.shape(node.outputs[0]))


def emit_fallback(r: DeviceRunner, step) -> None:
    """numel: a constant of this N. Any other op: copied to the host, run by its NumPy
    reference, and the result uploaded (a "host fallback": describe says so)."""
    node = step.nodes[0]
    out = node.outputs[0]
    if node.op == "numel":
        x = node.inputs[0]
        count = np.prod([r.shape(x)[a] for a in node.attrs["axes"]], dtype=np.int64)
        r.out(out).copy_to_device(np.array(count, dtype=out.dtype))
        return
    from ..numpy_backend import RunContext

    ctx = RunContext(r.n, {})
    ctx.node = node
    ins = [r.names[t] for t in node.inputs]
    outs = [r.out(t) for t in node.outputs]

    def run():
        values = [a.copy_to_host() for a in ins]
        results = node.record.reference(values, node.attrs, ctx)
        for dev, value, t in zip(outs, results, node.outputs):
            dev.copy_to_device(np.ascontiguousarray(np.asarray(value, dtype=t.dtype)))

    r.launches.append(Launch(step.index, r.what(step.nodes), HOST_FALLBACK, run))


EMIT = {FusedGroup: emit_fused, MatmulStep: emit_matmul, KernelStep: emit_kernel,
        ViewStep: emit_view, FallbackStep: emit_fallback}
