"""`python -m benchmarks.split_crossover`: from how much work the convolution and pooling
kernels pay for splitting their image planes across threads.

kernels/cpu/conv.py `_run` runs a kernel on the caller's thread alone, or splits its planes
between the caller and graphc's worker threads. The split costs a hand-off: waking a worker
on another core and waiting for it, 0.1-0.4 ms on this project's 2-core VMs, ~10-30 µs on an
idle desktop. So `_run` estimates each call's single-thread time (units of work times the
kernel's cost per unit, conv.NS_PER_UNIT) and splits from conv.SPLIT_MIN_NS.

For each kernel over a sweep of batch sizes (LeNet-sized planes; products of its second
layer), this times one thread and the split side by side (alternating, median of rounds: the hand-off's cost is its typical
one, not its best), prints both, each kernel's measured cost per unit, and the smallest
single-thread time from which the split is faster at every larger size measured.

Then the same for fused elementwise kernels (graphc.backends.cpu.runner): their serial and
prange variants over 32K-8M elements, and the estimated one-thread time (runner.element_ns)
from which the prange variant wins: runner.PARALLEL_MIN_NS.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time

import numpy as np

from .crossover import write_json

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MAX_WORK = 1 << 38  # (batch x units: leaves the largest products out, ~2 s a round)
CHANNELS, SIZE = 16, 28  # LeNet's first pooled layer (and a 3x3 convolution of it)
OUT_CHANNELS = 32


def _cases(n: int):
    """NS_PER_UNIT key -> (call, units of work as conv.py counts them)."""
    from graphc.kernels.cpu import conv

    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, CHANNELS, SIZE, SIZE)).astype(np.float32)
    y = np.empty((n, CHANNELS, SIZE // 2, SIZE // 2), np.float32)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = np.empty_like(x)
    col = rng.standard_normal((n, CHANNELS * 9, SIZE * SIZE)).astype(np.float32)
    w = rng.standard_normal((OUT_CHANNELS, CHANNELS * 9)).astype(np.float32)
    b = rng.standard_normal(OUT_CHANNELS).astype(np.float32)
    out = np.empty((n, OUT_CHANNELS, SIZE, SIZE), np.float32)
    g = rng.standard_normal(out.shape).astype(np.float32).reshape(n, OUT_CHANNELS, -1)
    gw = np.empty_like(w)
    pool = (2, 2, 2, 2, 0, 0)
    overlap = (3, 3, 2, 2, 1, 1)  # (the same 14x14 output)
    same = (3, 3, 1, 1, 1, 1)
    macs = out.size * w.shape[1]
    return {
        "products": (lambda: conv.matmul_shared_bias_relu(w, col, out, b), macs),
        "summed_products": (lambda: conv.matmul_batch_sum(g, col, gw), macs),
        "implicit": (lambda: conv.conv2d_implicit_bias_relu(x, w, out, b, *same), macs),
        "im2col": (lambda: conv.im2col(x, col, *same), col.size),
        "col2im": (lambda: conv.col2im(col, gx, *same), col.size),
        "max_pool": (lambda: conv.max_pool2d(x, y, *pool), x.size),
        "max_pool_grad": (lambda: conv.max_pool2d_grad(x, gy, gx, *pool), x.size),
        "max_pool_select": (lambda: conv.max_pool2d_select(x, gx, y, *pool), x.size),
        "max_pool_any": (lambda: conv.max_pool2d(x, y, *overlap), x.size),
        "max_pool_grad_any": (lambda: conv.max_pool2d_grad(x, gy, gx, *overlap), x.size),
        "max_pool_select_any": (lambda: conv.max_pool2d_select(x, gx, y, *overlap), x.size),
        # (a 3x3 window: the 2x2 one takes the vector steps, priced as max pooling's)
        "avg_pool": (lambda: conv.avg_pool2d(x, y, *overlap), x.size),
        "avg_pool_grad": (lambda: conv.avg_pool2d_grad(gy, gx, *overlap), x.size),
    }


def _median(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def measure(batches=BATCHES, reps: int = 15) -> list:
    from graphc.kernels.cpu import conv

    saved = conv.SPLIT_MIN_NS
    rows = []
    try:
        for n in batches:
            for name, (call, units) in _cases(n).items():
                if n * units > MAX_WORK:
                    continue
                one = split = 0.0
                call()
                for _ in range(3):  # alternating, so that a slow spell hits both
                    conv.SPLIT_MIN_NS = float("inf")
                    one += _median(call, reps) / 3
                    conv.SPLIT_MIN_NS = 0.0
                    split += _median(call, reps) / 3
                rows.append({"kernel": name, "batch": n, "units": units, "one_thread_s": one,
                             "split_s": split, "ns_per_unit": one * 1e9 / units,
                             "speedup": one / split})
    finally:
        conv.SPLIT_MIN_NS = saved
    return rows


FUSED = {  # graphc.backends.cpu.runner: one fused kernel each (a sum of x with a mask / exp / tanh)
    "fused masked sum": lambda gc, x, g: gc.sum(gc.where(x > 0, g, 0.0 * g)),
    "fused exp sum": lambda gc, x, g: gc.sum(gc.exp(-x) * g),
    "fused tanh sum": lambda gc, x, g: gc.sum(gc.tanh(x) * g),
}
FUSED_SIZES = tuple(1 << e for e in range(15, 24))


def measure_fused(sizes=FUSED_SIZES, reps: int = 15) -> list:
    """The fused kernels' serial and prange variants (runner.PARALLEL_MIN_NS at 0 and
    infinity when each plan is bound), alternating; `estimated_ns` is the one-thread time
    runner.element_ns predicts, which the runner compares with PARALLEL_MIN_NS."""
    import graphc as gc
    from graphc.backends.cpu import runner

    saved = runner.PARALLEL_MIN_NS
    rng = np.random.default_rng(0)
    rows = []
    try:
        for name, make in FUSED.items():
            for n in sizes:
                args = [rng.standard_normal(n).astype(np.float32) for _ in range(2)]
                fns = []
                for threshold in (float("inf"), 0.0):
                    runner.PARALLEL_MIN_NS = threshold
                    x, g = gc.placeholder((n,), name="x"), gc.placeholder((n,), name="g")
                    fn = gc.compile([x, g], make(gc, x, g))
                    fn(*args)  # (binds the plan: the variant is chosen here)
                    fns.append(fn)
                lows = list(fns[0].executable.plan.lowered.values())
                estimate = n * sum(runner.element_ns(low.spec) for low in lows)
                calls = [functools.partial(fn, *args) for fn in fns]
                one = split = 0.0
                for _ in range(3):
                    one += _median(calls[0], reps) / 3
                    split += _median(calls[1], reps) / 3
                rows.append({"kernel": name, "batch": n, "units": n, "one_thread_s": one,
                             "split_s": split, "ns_per_unit": one * 1e9 / n,
                             "estimated_ns": estimate, "speedup": one / split})
    finally:
        runner.PARALLEL_MIN_NS = saved
    return rows


def costs(rows: list) -> dict:
    """Each kernel's single-thread ns per unit: the median over its sizes from 1M units
    (smaller calls are dominated by per-call overhead), or over all if none is that big."""
    out = {}
    for name in dict.fromkeys(r["kernel"] for r in rows):
        mine = [r for r in rows if r["kernel"] == name]
        big = [r["ns_per_unit"] for r in mine if r["units"] >= 1 << 20]
        out[name] = float(np.median(big or [r["ns_per_unit"] for r in mine]))
    return out


def crossover(rows: list, key: str = "one_thread_s") -> float | None:
    """The smallest single-thread time (ns; `key` "estimated_ns": as estimated) from which
    the split is faster at every row measured of every kernel."""
    def ns(r):
        return r[key] * 1e9 if key.endswith("_s") else r[key]

    for t in sorted(ns(r) for r in rows):
        if all(r["speedup"] > 1 for r in rows if ns(r) >= t):
            return t
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.split_crossover", description=__doc__)
    p.add_argument("--json", default=None, help="write every measurement here")
    args = p.parse_args(argv)
    from graphc.kernels.cpu import conv

    rows = measure()
    print("kernel            batch     units   one thread ms   split ms  speedup  ns/unit")
    for r in rows:
        print(f"{r['kernel']:16s} {r['batch']:6d} {r['units']:9d} {r['one_thread_s'] * 1e3:15.3f}"
              f" {r['split_s'] * 1e3:10.3f} {r['speedup']:7.2f}x {r['ns_per_unit']:8.3f}")
    print("ns per unit on one thread (conv.NS_PER_UNIT):",
          {k: round(v, 3) for k, v in costs(rows).items()})
    t = crossover(rows)
    print("split faster at every size from one thread's",
          "(never)" if t is None else f"{t / 1e6:.2f} ms", f"(conv.SPLIT_MIN_NS: "
          f"{conv.SPLIT_MIN_NS / 1e6:.2f} ms)")
    from graphc.backends.cpu import runner

    fused = measure_fused()
    print("\nfused kernel        elements   one thread ms   prange ms  speedup  ns/elem  "
          "estimated ns/elem")
    for r in fused:
        print(f"{r['kernel']:18s} {r['units']:9d} {r['one_thread_s'] * 1e3:15.3f}"
              f" {r['split_s'] * 1e3:11.3f} {r['speedup']:7.2f}x {r['ns_per_unit']:8.3f}"
              f" {r['estimated_ns'] / r['units']:10.3f}")
    t = crossover(fused, "estimated_ns")
    print("prange faster at every size from an estimated",
          "(never)" if t is None else f"{t / 1e6:.2f} ms", "of one thread's work "
          f"(runner.PARALLEL_MIN_NS: {runner.PARALLEL_MIN_NS / 1e6:.2f} ms)")
    return write_json(args.json, rows + fused)


if __name__ == "__main__":
    sys.exit(main())
