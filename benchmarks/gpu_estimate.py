"""Where a GPU step's time would go, estimated without a GPU (`python -m benchmarks.gpu
--estimate`; run it with NUMBA_ENABLE_CUDASIM=1 where there is no GPU).

For each GPU workload the cuda backend compiles its plan and lays out the runner for the
batch size (allocation only: no kernel runs, so Numba's CUDA simulator is enough), and the
counts are read off that runner: its launches, the bytes a call copies host -> device (the
feeds) and device -> host (the fetched outputs; parameters stay on the device), the FLOPs of
its products and the bytes each step reads and writes. The times then follow from the
constants below, each with its source; they are an estimate, not a measurement.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gpu_peers import GPU_SIZES, gpu_case, label
from .peers_graphc import build_program, compile_program


@dataclass(frozen=True)
class GpuSpec:
    name: str
    fp32_tflops: float  # peak float32 FLOP/s without tensor cores, in TFLOP/s
    hbm_tbps: float     # peak device memory bandwidth, in TB/s
    source: str


GPUS = {
    "H200": GpuSpec("H200 SXM", 67.0, 4.8, "NVIDIA H200 datasheet: FP32 67 TFLOPS, HBM3e "
                                           "4.8 TB/s"),
    "H100": GpuSpec("H100 SXM", 67.0, 3.35, "NVIDIA H100 datasheet (SXM5): FP32 67 TFLOPS, "
                                            "HBM3 3.35 TB/s"),
}
# host time per launch from Python: numba-cuda's own benchmark (NVIDIA/numba-cuda PR #288)
# takes 6.6 us with no arguments and ~3.5 us more per array; graphc's kernels take 3-8 arrays
LAUNCH_US = 20.0
# one synchronous copy (feed, fetched output, update, label-status word): driver call plus
# Numba's Python wrapper, before any bytes move
COPY_LATENCY_US = 10.0
# host <-> device from pinned memory: PCIe 5.0 x16 is 63 GB/s a direction; ~80% of it is
# what pinned cudaMemcpy reaches in practice
PCIE_GBPS = 50.0

# the contracted length of each product op, from its input shapes (graphc/ops/conv.py)
CONTRACTED = {
    "matmul": lambda a, b: a[-1],                  # (M, K) @ (K, N)
    "matmul_shared": lambda w, x: w[1],            # w (M, K), x (N, K, P) -> (N, M, P)
    "matmul_shared_t": lambda w, g: w[0],          # w (M, K), g (N, M, P) -> (N, K, P)
    "matmul_batch_sum": lambda g, x: g[0] * g[2],  # g (N, M, P), x (N, K, P) -> (M, K)
}


def _nbytes(runner, t) -> int:
    return int(np.prod(runner.shape(t), dtype=np.int64)) * np.dtype(t.dtype).itemsize


def _step_tensors(runner, step) -> list:
    """The tensors a plan step reads from and writes to device memory."""
    from graphc.plan import FusedGroup, MatmulStep, ViewStep

    if isinstance(step, ViewStep):
        return []
    if isinstance(step, FusedGroup):
        low = runner.plan.lowered[step.index]
        tensors = list(low.inputs) + list(low.outputs)
        return tensors + ([low.reduce_out] if low.reduce_out is not None else [])
    if isinstance(step, MatmulStep):
        return [step.a, step.b, step.nodes[0].outputs[0]]
    made = {t for node in step.nodes for t in node.outputs}
    reads = {t: None for node in step.nodes for t in node.inputs if t not in made}
    return list(reads) + list(made)


def _param_bytes(step) -> int:
    """Bytes of a parameter a step updates in place beyond its listed tensors: a product
    accumulating into it reads it (its output is the write); a reduction's `post` update
    reads and writes it."""
    from graphc.plan import FusedGroup

    update = step.post if isinstance(step, FusedGroup) else getattr(step, "update", None)
    if update is None:
        return 0
    size = int(np.prod(update.param.shape)) * np.dtype(update.param.dtype).itemsize
    return 2 * size if isinstance(step, FusedGroup) else size * (update.beta != 0)


def step_costs(runner) -> list:
    """(FLOPs, bytes of device memory traffic) of each plan step that runs: FLOPs of the
    products (2 per multiply-add), bytes = its inputs and outputs once each (no cache reuse:
    an upper bound)."""
    costs = []
    for step in runner.plan.steps:
        tensors = _step_tensors(runner, step)
        if not tensors:
            continue
        flops = 0
        for node in step.nodes:
            if node.op in CONTRACTED:
                shapes = [runner.shape(t) for t in node.inputs]
                out = int(np.prod(runner.shape(node.outputs[0]), dtype=np.int64))
                flops += 2 * out * int(CONTRACTED[node.op](*shapes))
        traffic = sum(_nbytes(runner, t) for t in tensors) + _param_bytes(step)
        costs.append((flops, traffic))
    return costs


def plan_counts(fn, n) -> dict:
    """What one call of the compiled cuda function `fn` at batch size n does, from its
    runner: launches, copies and their bytes, FLOPs and device memory traffic."""
    from graphc.backends.cuda.runner import HOST_FALLBACK

    runner = fn.executable.bind(n)
    program = runner.plan.program
    costs = step_costs(runner)
    fallbacks = [launch for launch in runner.launches if launch.how == HOST_FALLBACK]
    fallback_steps = {launch.step for launch in fallbacks}
    fallback_bytes = sum(_nbytes(runner, t) for step in runner.plan.steps
                         if step.index in fallback_steps for t in _step_tensors(runner, step))
    update_copies = sum(1 if stage is None else 2 for _, _, stage in runner.updates)
    return {
        "batch": n,
        "launches": len(runner.launches),
        "host_fallbacks": len(fallbacks),
        "h2d_bytes": sum(_nbytes(runner, t) for t in program.inputs),
        "d2h_bytes": sum(_nbytes(runner, t) for t in runner.plan.out_tensors),
        "fallback_bytes": fallback_bytes,
        # feeds in, outputs back, the label-status reset, updates not done in place
        "copies": (len(program.inputs) + len(runner.outputs) + (1 if runner.checked else 0)
                   + update_copies),
        "flops": sum(f for f, _ in costs),
        "traffic_bytes": sum(b for _, b in costs),
        "step_costs": costs,
    }


def times(counts: dict, gpu: GpuSpec) -> dict:
    """Estimated ms of launches, transfers and compute for one call with these counts."""
    launches = counts["launches"] * LAUNCH_US * 1e-3
    moved = counts["h2d_bytes"] + counts["d2h_bytes"] + counts["fallback_bytes"]
    transfers = counts["copies"] * COPY_LATENCY_US * 1e-3 + moved / (PCIE_GBPS * 1e9) * 1e3
    compute = sum(max(f / (gpu.fp32_tflops * 1e12), b / (gpu.hbm_tbps * 1e12))
                  for f, b in counts["step_costs"]) * 1e3
    return {"launch_ms": launches, "transfer_ms": transfers, "compute_ms": compute,
            # Python launches while the device works on the previous kernels: the two overlap
            "serial_ms": launches + transfers + compute,
            "overlapped_ms": max(launches, compute) + transfers}


def estimate(sizes: dict | None = None, gpu: str = "H200") -> list:
    """One dict per GPU workload (at `sizes`, default GPU_SIZES): its plan's counts
    (plan_counts) and estimated times on `gpu` (times)."""
    import graphc as gc

    spec = GPUS[gpu]
    rows = []
    for key, size in (sizes or GPU_SIZES).items():
        w, data = gpu_case(key, size)
        inputs, output, params = build_program(gc, w, data)
        fn = compile_program(gc, w, inputs, output, params, "cuda")
        counts = plan_counts(fn, data.inputs["x"].shape[0])
        rows.append({"key": key, "label": label(w, data), "gpu": spec.name, **counts,
                     **times(counts, spec)})
    return rows


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.3g}" if nbytes >= 1000 else f"{nbytes} bytes"


def render(rows: list, gpu: str = "H200") -> str:
    """The estimate as a Markdown table, its assumptions written above it."""
    spec = GPUS[gpu]
    lines = [
        f"ESTIMATE, not a measurement: graphc's cuda plans on an {spec.name}, one call each",
        (f"assumptions: {spec.fp32_tflops:g} TFLOP/s float32 without tensor cores and "
         f"{spec.hbm_tbps:g} TB/s HBM ({spec.source}); {LAUNCH_US:g} us a launch from Python "
         f"(numba-cuda PR #288: 6.6 us + ~3.5 us an array argument); {COPY_LATENCY_US:g} us "
         f"a copy + {PCIE_GBPS:g} GB/s over PCIe 5.0 x16 from pinned memory"),
        ("compute = per step max(FLOPs / peak, bytes in + out / HBM bandwidth), summed; "
         "FLOPs count the products only; overlapped = max(launches, compute) + transfers"),
        "",
        ("| workload | launches | copies | H2D MB | D2H MB | GFLOP | traffic MB "
         "| launches ms | transfers ms | compute ms | serial ms | overlapped ms |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['launches']} | {r['copies']} | {_mb(r['h2d_bytes'])} "
            f"| {_mb(r['d2h_bytes'])} | {r['flops'] / 1e9:.3g} "
            f"| {r['traffic_bytes'] / 1e6:.1f} | {r['launch_ms']:.3f} "
            f"| {r['transfer_ms']:.3f} | {r['compute_ms']:.3f} | {r['serial_ms']:.3f} "
            f"| {r['overlapped_ms']:.3f} |")
    fallbacks = sum(r["host_fallbacks"] for r in rows)
    if fallbacks:
        lines.append(f"({fallbacks} host fallback(s): their bytes are counted as transfers)")
    return "\n".join(lines)
