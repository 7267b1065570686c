"""Machine limits measured in the same run, to put the workload numbers in proportion.

- numpy float32 sgemm, 2048 x 2048 x 2048: GFLOP/s (NumPy's own BLAS);
- graphc's sgemm, `graphc.kernels.blas.measure_gflops()`, when that module exists;
- copy of a 64M-element float32 array: GB/s counting bytes read plus bytes written;
- graphc's convolution product alone: W5's second layer (8 images of 64 x 64 x 64, 3x3,
  64 -> 64 channels, bias and ReLU) compiled by itself, GFLOP/s of its 2*M*N*K (the
  conv-product target of the convolution issue is stated against numpy's sgemm).
"""
from __future__ import annotations

import time

import numpy as np

GEMM_N = 2048
COPY_ELEMENTS = 64 * 2**20


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: page faults, thread start-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def numpy_sgemm_gflops(n: int = GEMM_N, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    seconds = _best_seconds(lambda: np.matmul(a, b, out=c), repeats)
    return 2.0 * n**3 / seconds / 1e9


def graphc_sgemm_gflops(threads: int) -> tuple[float | None, str]:
    """(GFLOP/s, note) of graphc's own BLAS on `threads` threads; (None, why) without it."""
    try:
        from graphc.kernels import blas
    except Exception as exc:  # noqa: BLE001 - graphc.kernels.blas is optional here
        return None, f"graphc.kernels.blas not importable: {type(exc).__name__}: {exc}"
    measure = getattr(blas, "measure_gflops", None)
    if measure is None:
        return None, "graphc.kernels.blas has no measure_gflops()"
    old = blas.get_num_threads() if hasattr(blas, "get_num_threads") else None
    try:
        if old is not None:
            blas.set_num_threads(threads)
        gflops = float(measure(GEMM_N, np.float32))
    except Exception as exc:  # noqa: BLE001 - reported in the limits line
        return None, f"measure_gflops failed: {type(exc).__name__}: {exc}"
    finally:
        if old is not None:
            blas.set_num_threads(old)
    note = ""
    info = getattr(blas, "info", None)
    if info is not None:
        try:
            details = info()
            note = ", ".join(f"{k}={details[k]}" for k in ("coretype", "threads", "reason")
                             if details.get(k) not in (None, ""))
        except Exception:  # noqa: BLE001 - the note is optional
            note = ""
    return gflops, note


CONV_SHAPE = (8, 64, 64, 64)  # W5's second convolution's input: N, C, H, W (64 out, 3x3)


def graphc_conv_gflops(repeats: int = 20) -> tuple[float | None, str]:
    """(GFLOP/s, note) of graphc's compiled conv2d + bias + ReLU at CONV_SHAPE, best of
    `repeats` calls after three warm-up calls; (None, why) when graphc cannot run it. (A
    best of 10 once read 52% of sgemm in a harness run where the W5 row and three runs of
    this alone right after read 83-93%: a transient of the shared machine.)"""
    n, c, h, w = CONV_SHAPE
    try:
        import graphc as gc

        rng = np.random.default_rng(0)
        x = gc.placeholder((None, c, h, w), name="x")
        weight = gc.constant((rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32))
        bias = gc.constant(np.zeros(c, np.float32))
        fn = gc.compile([x], gc.relu(gc.conv2d(x, weight, bias, pad=1)))
        xv = rng.standard_normal(CONV_SHAPE).astype(np.float32)
        fn(xv)
        fn(xv)
        seconds = _best_seconds(lambda: fn(xv), repeats)
    except Exception as exc:  # noqa: BLE001 - reported in the limits line
        return None, f"{type(exc).__name__}: {exc}"
    return 2.0 * n * h * w * c * c * 9 / seconds / 1e9, ""


def copy_gbps(n: int = COPY_ELEMENTS, repeats: int = 3) -> float:
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    seconds = _best_seconds(lambda: np.copyto(dst, src), repeats)
    return 2.0 * src.nbytes / seconds / 1e9


def measure(threads: int) -> dict:
    """All three limits. NumPy's BLAS threads are fixed at load (OPENBLAS_NUM_THREADS)."""
    gflops, note = graphc_sgemm_gflops(threads)
    conv, conv_note = graphc_conv_gflops()
    return {
        "numpy_sgemm_gflops": numpy_sgemm_gflops(),
        "graphc_sgemm_gflops": gflops,
        "graphc_sgemm_note": note,
        "copy_gbps": copy_gbps(),
        "gemm_n": GEMM_N,
        "copy_elements": COPY_ELEMENTS,
        "copy_bytes_counted": "read + write",
        "graphc_conv_gflops": conv,
        "graphc_conv_note": conv_note,
        "conv_shape": list(CONV_SHAPE),
    }
