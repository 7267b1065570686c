"""GPU rows of the benchmarks: graphc's cuda backend on W2 (MLP 784-1000-1000-10, batch
1024), W3 (LeNet, batch 256) and W5 (a VGG block, batch 64), one SGD step each, median ms
and achieved GFLOP/s.

    python -m benchmarks.gpu [--steps 20]

Runs only on a real GPU: under Numba's CUDA simulator, or without a device, each row
prints n/a with the reason (the simulator runs every CUDA thread as a Python thread, so
its times say nothing about a GPU).
"""
from __future__ import annotations

import argparse
import statistics
import time
from itertools import pairwise

import numpy as np


def _mlp(rng):
    import graphc as gc

    sizes = [784, 1000, 1000, 10]
    params = [(gc.Parameter((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)),
               gc.Parameter(np.zeros(b, np.float32))) for a, b in pairwise(sizes)]
    x = gc.placeholder((None, 784), name="x")

    def forward(h):
        for i, (w, b) in enumerate(params):
            h = gc.linear(h, w, b)
            h = gc.relu(h) if i < len(params) - 1 else h
        return h

    flops = 6 * sum(a * b for a, b in pairwise(sizes))  # per example, fwd + bwd
    return x, forward, [p for pair in params for p in pair], (784,), flops


def _conv_net(rng, channels, convs, size, classes):
    import graphc as gc

    c_in, params, flops, hw = 1 if size == 28 else 3, [], 0, size
    for c_out in convs:
        w = gc.Parameter((rng.standard_normal((c_out, c_in, 3, 3)) * 0.1).astype(np.float32))
        params.append((w, gc.Parameter(np.zeros(c_out, np.float32))))
        flops += 6 * c_out * c_in * 9 * hw * hw
        c_in = c_out
    hw //= 2
    w = gc.Parameter((rng.standard_normal((c_in * hw * hw, classes)) * 0.01).astype(np.float32))
    params.append((w, gc.Parameter(np.zeros(classes, np.float32))))
    flops += 6 * c_in * hw * hw * classes
    x = gc.placeholder((None, channels, size, size), name="x")

    def forward(h):
        for w, b in params[:-1]:
            h = gc.relu(gc.conv2d(h, w, b, pad=1))
        h = gc.max_pool2d(h, 2)
        return gc.linear(h.reshape((-1, c_in * hw * hw)), *params[-1])

    return x, forward, [p for pair in params for p in pair], (channels, size, size), flops


WORKLOADS = {
    "W2 mnist-mlp (batch 1024)": (1024, _mlp),
    "W3 lenet-like (batch 256)": (256, lambda rng: _conv_net(rng, 1, (6, 16), 28, 10)),
    "W5 vgg block (batch 64)": (64, lambda rng: _conv_net(rng, 3, (64, 64), 32, 10)),
}


def why_not_measured() -> str | None:
    from graphc.backends.cuda import device_info

    info = device_info()
    if info["mode"] == "gpu":
        return None
    if info["mode"] == "simulator":
        return "Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) is not a GPU"
    return info["why"]


def run_row(batch: int, build, steps: int) -> str:
    import graphc as gc

    rng = np.random.default_rng(0)
    x, forward, params, shape, flops = build(rng)
    t = gc.placeholder((None,), "int64", name="t")
    loss = gc.softmax_cross_entropy(forward(x), t)
    grads = gc.grad(loss, params)
    step = gc.compile([x, t], loss, updates=[(p, p - 0.01 * g) for p, g in zip(params, grads)],
                      backend="cuda")
    xv = rng.standard_normal((batch,) + shape).astype(np.float32)
    tv = rng.integers(0, 10, batch)
    step(xv, tv)  # the first call binds this N
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(xv, tv)  # (the loss is copied back: the call has finished on the device)
        times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1e3
    return f"{ms:.3f} ms ({flops * batch / (ms * 1e-3) / 1e9:.0f} GFLOP/s)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    why = why_not_measured()
    for name, (batch, build) in WORKLOADS.items():
        row = f"n/a: {why}" if why else run_row(batch, build, args.steps)
        print(f"{name:<28} graphc cuda  {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
