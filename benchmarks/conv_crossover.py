"""`python -m benchmarks.conv_crossover`: where the implicit-GEMM convolution starts beating
im2col + per-image GEMMs.

A float32 forward convolution with bias and ReLU can run two ways in a compiled plan:
im2col into an arena buffer, then one OpenBLAS GEMM per image with the bias and ReLU as its
epilogue (kernels/cpu/conv.py `im2col` + `matmul_shared_bias_relu`), or one kernel that
packs the columns straight from the image into register-tile panels
(`conv2d_implicit_bias_relu`). For a grid of (batch, C, OC, size, kernel) convolutions
(stride 1, pad kernel//2) it times both the way the runner calls them (min of rounds, the two
alternating), prints each ratio with K = C*KH*KW, and the smallest K from which the
implicit kernel wins at every shape measured: graphc.plan.implicit.MIN_K is read from it.
Below that K it prints the smallest batch from which the implicit kernel wins at every
shape measured: kernels/cpu/conv.py IMPLICIT_MIN_BATCH, where a plan's `conv2d_by_batch`
step switches to it.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .crossover import _time, write_json

# (batch, C, OC, H = W, kernel): LeNet's and VGG's layers and neighbours, K from 1 to 1152,
# batches of 1 (where a block's copies are not shared by other images) to 64
GRID = [
    (64, 1, 8, 28, 1), (64, 1, 16, 28, 2), (64, 1, 16, 28, 3), (1, 1, 16, 28, 3),
    (64, 2, 16, 28, 3), (1, 2, 16, 28, 3), (64, 3, 16, 28, 3), (8, 3, 64, 64, 3),
    (1, 3, 16, 224, 3), (1, 3, 64, 224, 3), (64, 4, 16, 28, 3), (64, 6, 32, 14, 3),
    (64, 16, 32, 14, 3), (1, 16, 32, 14, 3), (32, 32, 32, 16, 3), (8, 64, 64, 64, 3),
    (1, 64, 64, 56, 3), (4, 128, 128, 32, 3), (16, 3, 32, 32, 5), (8, 64, 64, 16, 1),
] + [  # below K = 27, the batches between
    (n, c, 16, 28, k) for c, k in ((1, 2), (1, 3), (2, 3)) for n in (2, 4, 8, 16)]


def _columns(x, w, b, out, col, window):
    from graphc.kernels.cpu import conv

    conv.im2col(x, col, *window)
    conv.matmul_shared_bias_relu(w, col, out, b)


def _implicit(x, w, b, out, col, window):
    from graphc.kernels.cpu import conv

    conv.conv2d_implicit_bias_relu(x, w, out, b, *window)


def measure(grid=GRID, reps: int = 5) -> list:
    rng = np.random.default_rng(0)
    rows = []
    for n, c, oc, size, k in grid:
        pad = k // 2
        x = rng.standard_normal((n, c, size, size)).astype(np.float32)
        w = rng.standard_normal((oc, c * k * k)).astype(np.float32)
        b = rng.standard_normal(oc).astype(np.float32)
        o = size + 2 * pad - k + 1
        out = np.empty((n, oc, o, o), np.float32)
        col = np.empty((n, c * k * k, o * o), np.float32)
        args = (x, w, b, out, col, (k, k, 1, 1, pad, pad))
        t_col, t_imp = float("inf"), float("inf")
        for _ in range(reps):  # alternating, so that a slow spell hits both
            t_col = min(t_col, _time(_columns, *args, reps=1))
            t_imp = min(t_imp, _time(_implicit, *args, reps=1))
        rows.append({"batch": n, "c": c, "oc": oc, "size": size, "kernel": k,
                     "k": c * k * k, "im2col_gemm_s": t_col, "implicit_s": t_imp,
                     "speedup": t_col / t_imp})
    return rows


def crossover(rows: list) -> int | None:
    """The smallest K from which the implicit kernel is faster at every row measured."""
    ks = sorted({r["k"] for r in rows})
    for k in ks:
        if all(r["speedup"] > 1 for r in rows if r["k"] >= k):
            return k
    return None


def min_batch(rows: list, below_k: int) -> int | None:
    """The smallest batch from which the implicit kernel is faster at every row measured
    with K < below_k."""
    small = [r for r in rows if r["k"] < below_k]
    for n in sorted({r["batch"] for r in small}):
        if all(r["speedup"] > 1 for r in small if r["batch"] >= n):
            return n
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.conv_crossover", description=__doc__)
    p.add_argument("--json", default=None, help="write every measurement here")
    args = p.parse_args(argv)
    rows = measure()
    print("batch    C   OC  size  kernel     K   im2col+GEMM ms  implicit ms  speedup")
    for r in rows:
        print(f"{r['batch']:5d} {r['c']:4d} {r['oc']:4d} {r['size']:5d} {r['kernel']:4d}x"
              f"{r['kernel']:<2d} {r['k']:5d} {r['im2col_gemm_s'] * 1e3:14.3f} "
              f"{r['implicit_s'] * 1e3:12.3f} {r['speedup']:8.2f}x")
    k = crossover(rows)
    print(f"implicit faster at every shape from K = {k}")
    if k is not None:
        print(f"below K = {k}, implicit faster at every shape from batch {min_batch(rows, k)}")
    return write_json(args.json, rows)


if __name__ == "__main__":
    sys.exit(main())
