"""`python -m benchmarks.crossover`: where graphc's own small-matrix loops stop beating BLAS.

For each transpose case (nn, nt, tn, tt), dtype, and a grid of (m, n, k), it times the two
ways a compiled plan can compute op(a) @ op(b) into a buffer (and, with `--acc`, the fused
update out = beta*out + alpha*op(a)@op(b)): graphc's Numba loops (kernels/cpu/nn.py) and
OpenBLAS called from Numba (kernels/cpu/gemm_call.py), each the min of many calls made the
way the runner makes them. It prints, per case, the largest m*n*k at which the loops still
win at every shape measured and the smallest at which BLAS wins at every shape: the
thresholds in graphc/backends/cpu/runner.py (MATMUL_CROSSOVER) are read from this output.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np

DIMS = (1, 4, 10, 16, 32, 64, 128, 256)
MAX_MNK = 1 << 22
CASES = ("nn", "nt", "tn", "tt")


def _time(fn, *args, reps: int = 7, min_s: float = 0.002) -> float:
    """Min over `reps` rounds of the mean time of a call (rounds of >= min_s seconds)."""
    fn(*args)
    t0 = time.perf_counter()
    fn(*args)
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_s / one))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn(*args)
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def measure(dtype: str, acc: bool, dims=DIMS, max_mnk: int = MAX_MNK) -> list:
    from graphc.kernels.cpu import gemm_call, nn

    addr, kc = gemm_call.gemm_address(dtype), gemm_call.gemm_k_chunk()
    if not addr:
        raise SystemExit("graphc's OpenBLAS is not loaded: nothing to compare with")
    rng = np.random.default_rng(0)
    rows = []
    for case, (m, n, k) in itertools.product(CASES, itertools.product(dims, repeat=3)):
        if m * n * k > max_mnk:
            continue
        ta, tb = case[0] == "t", case[1] == "t"
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
        out = np.zeros((m, n), dtype)
        if acc:
            own = _time(nn.ACC_KERNELS[case], a, b, out, -0.1, 1.0)
            blas = _time(gemm_call.gemm, addr, a, b, out, ta, tb, -0.1, 1.0, kc)
        else:
            own = _time(getattr(nn, "mm_" + case), a, b, out)
            blas = _time(gemm_call.gemm, addr, a, b, out, ta, tb, 1.0, 0.0, kc)
        rows.append({"case": case, "m": m, "n": n, "k": k, "mnk": m * n * k,
                     "own_us": own * 1e6, "blas_us": blas * 1e6})
    return rows


def crossovers(rows: list) -> dict:
    """Per case: the largest m*n*k up to which the loops win at every measured shape (with
    5% slack for noise), and the smallest from which BLAS wins at every shape."""
    out = {}
    for case in CASES:
        rs = sorted((r for r in rows if r["case"] == case), key=lambda r: r["mnk"])
        own_all_up_to = 0
        for r in rs:
            if r["own_us"] > 1.05 * r["blas_us"]:
                break
            own_all_up_to = r["mnk"]
        blas_all_from = None
        for r in reversed(rs):
            if r["blas_us"] > 1.05 * r["own_us"]:
                break
            blas_all_from = r["mnk"]
        out[case] = {"own_wins_up_to": own_all_up_to, "blas_wins_from": blas_all_from}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.crossover", description=__doc__)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--acc", action="store_true", help="the fused update kernels")
    p.add_argument("--json", default=None, help="write every measurement here")
    args = p.parse_args(argv)
    rows = measure(args.dtype, args.acc)
    for case, c in crossovers(rows).items():
        print(f"{args.dtype} {'acc ' if args.acc else ''}{case}: loops win at every shape up "
              f"to m*n*k = {c['own_wins_up_to']}, BLAS at every shape from "
              f"{c['blas_wins_from']}")
    return write_json(args.json, rows)


def write_json(path, rows: list) -> int:
    """Every measurement to path (when given); 0, the exit status."""
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
