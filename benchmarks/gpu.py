"""GPU rows of the benchmarks: graphc's cuda backend against torch eager and JAX jit on the
same GPU, W2 mnist-mlp (batch 1024) and W3 lenet (batch 256), one SGD step each, and W5
vgg-block (batch 64, forward), the suite's workloads and seeded arrays (gpu_peers.py):
median ms, achieved GFLOP/s and the ratio to the best peer, beside the device's sgemm rate
and copy bandwidth measured in the same run, and W4 (16M float32) in GB/s as a fraction of
that copy bandwidth.

    python -m benchmarks.gpu [--steps 20]
    python -m benchmarks.gpu --estimate [--gpu H200]   (no GPU needed; NUMBA_ENABLE_CUDASIM=1)

A row runs only on a real GPU: under Numba's CUDA simulator, or without a device, it prints
n/a with the reason (the simulator runs every CUDA thread as a Python thread, so its times
say nothing about a GPU). --estimate prints where a step's time would go instead
(gpu_estimate.py), from graphc's compiled plans and stated device constants.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from .gpu_peers import (
    gpu_case,
    graphc_runner,
    jax_gpu_unavailable,
    jax_runner,
    label,
    torch_gpu_unavailable,
    torch_runner,
)
from .limits import _best_seconds
from .peers_graphc import build_program, compile_program

SGEMM_N = 8192                 # float32 sgemm 8192 x 8192 x 8192 for the device's FLOP rate
COPY_ELEMENTS = 256 * 2**20    # 1 GiB of float32, copied device to device, for its bandwidth
WARMUP = 2


def why_not_measured() -> str | None:
    """Why graphc's cuda rows cannot be timed here, or None on a real GPU."""
    from graphc.backends.cuda import device_info

    info = device_info()
    if info["mode"] == "gpu":
        return None
    if info["mode"] == "simulator":
        return "Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) is not a GPU"
    return info["why"]


# --- device limits -------------------------------------------------------------------------------
def _torch_limits() -> dict:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # float32 FMA units, not TF32 tensor cores
    dev = torch.device("cuda")
    a = torch.randn(SGEMM_N, SGEMM_N, device=dev)
    b, c = torch.randn_like(a), torch.empty_like(a)
    src = torch.ones(COPY_ELEMENTS, device=dev)
    dst = torch.empty_like(src)

    def timed(op):
        return _best_seconds(lambda: (op(), torch.cuda.synchronize()), repeats=5)

    gemm_s = timed(lambda: torch.matmul(a, b, out=c))
    copy_s = timed(lambda: dst.copy_(src))
    return {"device": torch.cuda.get_device_name(dev),
            "sgemm_gflops": 2.0 * SGEMM_N**3 / gemm_s / 1e9, "sgemm_by": "torch (cuBLAS)",
            "copy_gbps": 2.0 * src.numel() * 4 / copy_s / 1e9, "copy_by": "torch"}


def _graphc_limits() -> dict:
    """graphc's own product (cuBLAS through nvmath, else its tiled kernel) and a numba.cuda
    device-to-device copy."""
    from graphc.kernels.cuda.gemm import matmul_2d
    from numba import cuda

    from graphc.backends.cuda import device_info
    from graphc.backends.cuda.runtime import matmul_engine

    engine, cublas = matmul_engine()
    gemm = cublas.gemm if cublas is not None else matmul_2d
    rng = np.random.default_rng(0)
    a = cuda.to_device(rng.standard_normal((SGEMM_N, SGEMM_N), dtype=np.float32))
    b = cuda.to_device(rng.standard_normal((SGEMM_N, SGEMM_N), dtype=np.float32))
    c = cuda.device_array((SGEMM_N, SGEMM_N), np.float32)
    src = cuda.to_device(np.ones(COPY_ELEMENTS, np.float32))
    dst = cuda.device_array_like(src)

    def timed(op):
        return _best_seconds(lambda: (op(), cuda.synchronize()), repeats=5)

    gemm_s = timed(lambda: gemm(a, b, c, False, False))
    copy_s = timed(lambda: dst.copy_to_device(src))
    return {"device": device_info()["name"],
            "sgemm_gflops": 2.0 * SGEMM_N**3 / gemm_s / 1e9, "sgemm_by": f"graphc ({engine})",
            "copy_gbps": 2.0 * src.nbytes / copy_s / 1e9, "copy_by": "numba.cuda"}


def device_limits(graphc_why: str | None, torch_why: str | None) -> dict | str:
    """sgemm GFLOP/s and copy GB/s (bytes read + written) of the GPU, through torch where it
    has CUDA, else through graphc; the reason as a string without a GPU."""
    if torch_why is not None and graphc_why is not None:
        return f"no GPU ({graphc_why})"
    try:
        return _torch_limits() if torch_why is None else _graphc_limits()
    except Exception as exc:  # noqa: BLE001 - the rows still run without the limits
        return f"measuring them failed: {type(exc).__name__}: {exc}"


# --- rows ----------------------------------------------------------------------------------------
def median_ms(step, steps: int) -> float:
    for _ in range(WARMUP):  # the first call compiles (torch, JAX) or binds this N (graphc)
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()  # every step ends with its result on the host: the device has finished
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def frameworks(graphc_why, torch_why, jax_why) -> list:
    """(row name, why it cannot run or None, runner factory) in table order."""
    return [("graphc cuda", graphc_why, lambda w, d: graphc_runner(w, d, "cuda")),
            ("torch eager", torch_why, lambda w, d: torch_runner(w, d, "cuda")),
            ("jax jit", jax_why, lambda w, d: jax_runner(w, d, "gpu"))]


def workload_rows(w, data, peers: list, steps: int) -> list:
    """(row name, ms or None, text) of each framework on one workload; graphc's row first,
    with its time over the best peer's."""
    rows = []
    for name, why, make in peers:
        if why is not None:
            rows.append((name, None, f"n/a: {why}"))
            continue
        try:
            ms = median_ms(make(w, data).step, steps)
        except Exception as exc:  # noqa: BLE001 - a failed framework is a row, not a crash
            rows.append((name, None, f"failed: {type(exc).__name__}: {exc}"))
            continue
        rows.append((name, ms, f"{ms:.3f} ms  {data.flops / ms / 1e6:.0f} GFLOP/s"))
    graphc_ms = rows[0][1]
    best_peer = min((ms for _, ms, _ in rows[1:] if ms is not None), default=None)
    if graphc_ms is not None and best_peer is not None:
        name, ms, text = rows[0]
        rows[0] = (name, ms, f"{text}  {graphc_ms / best_peer:.2f}x the best peer's time")
    return rows


def w4_rows(w, data, why: str | None, copy_gbps: float | None, steps: int) -> list:
    """graphc's W4 call (x fed from the host: the upload dominates), and the same plan's
    kernels alone with x already on the device: its bandwidth against the copy's."""
    if why is not None:
        return [("graphc cuda", None, f"n/a: {why}")]
    from numba import cuda

    import graphc as gc

    fn = compile_program(gc, w, *build_program(gc, w, data), backend="cuda")
    x = data.inputs["x"]
    runner = fn.executable.bind(x.shape[0])

    def call():
        return fn(x)

    def kernels():
        for launch in runner.launches:  # x stays on the device from the last call
            launch.run()
        cuda.synchronize()

    call()
    rows = []
    for name, step in (("graphc cuda, x fed", call), ("graphc cuda, kernels only", kernels)):
        ms = median_ms(step, steps)
        gbps = data.bytes / ms / 1e6
        share = f" = {gbps / copy_gbps:.0%} of the copy's" if copy_gbps else ""
        rows.append((name, ms, f"{ms:.3f} ms  {gbps:.0f} GB/s read{share}"))
    return rows


def print_rows(title: str, rows: list) -> None:
    for i, (name, _, text) in enumerate(rows):
        print(f"{title if i == 0 else '':<36} {name:<26} {text}")


def measure(steps: int) -> None:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave torch its memory
    graphc_why = why_not_measured()
    torch_why, jax_why = torch_gpu_unavailable(), jax_gpu_unavailable()
    print("GPU rows: median ms per step (feeds copied from the host and the result back in "
          "every framework's step); W2, W3: forward + backward + SGD; W4, W5: forward")
    limits = device_limits(graphc_why, torch_why)
    copy_gbps = None
    if isinstance(limits, str):
        print(f"device limits: sgemm {SGEMM_N}^2 float32 n/a, copy n/a: {limits}")
    else:
        print(f"device: {limits['device']}")
        print(f"device limits: sgemm {SGEMM_N}^2 float32 {limits['sgemm_gflops']:.0f} GFLOP/s "
              f"({limits['sgemm_by']}); device-to-device copy of {COPY_ELEMENTS * 4 >> 30} GiB "
              f"{limits['copy_gbps']:.0f} GB/s read + write ({limits['copy_by']})")
        copy_gbps = limits["copy_gbps"]
    peers = frameworks(graphc_why, torch_why, jax_why)
    for key in ("W2", "W3", "W5"):
        w, data = gpu_case(key)
        print_rows(label(w, data), workload_rows(w, data, peers, steps))
    w, data = gpu_case("W4")
    print_rows(label(w, data), w4_rows(w, data, graphc_why, copy_gbps, steps))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--estimate", action="store_true",
                        help="no timing: launches, bytes moved and FLOPs of graphc's cuda "
                             "plans, and the time split they imply on --gpu")
    parser.add_argument("--gpu", choices=("H200", "H100"), default="H200",
                        help="the device --estimate assumes (default H200)")
    args = parser.parse_args(argv)
    if args.estimate:
        from .gpu_estimate import estimate, render

        print(render(estimate(gpu=args.gpu), args.gpu))
        return 0
    measure(args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
