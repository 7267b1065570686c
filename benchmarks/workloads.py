"""The five workloads: shapes, seeded data and initial weights, FLOP and byte counts.

Every framework gets copies of the same float32 arrays, built once here with NumPy. Each
peer file implements the architectures by `Workload.arch`; nothing here depends on them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import WORKLOAD_NAMES

SEED = 20240611
W4_ELEMENTS = 16 * 2**20
W4_ELEMENTS_QUICK = 2**20


@dataclass(frozen=True)
class Workload:
    key: str                 # "W1"
    name: str                # "tiny-mlp"
    description: str
    arch: str                # "mlp", "lenet", "elementwise", "vgg"
    train: bool              # True: a step is forward + backward + SGD update
    lr: float = 0.1
    layers: tuple = ()       # mlp: layer widths, input first
    activation: str = ""     # mlp: "sigmoid" or "relu"
    batch: int = 0
    graphc_note: str = ""    # why graphc cannot run it yet, when it cannot
    throughput: bool = True  # False: too small for GFLOP/s to mean anything (W1)

    @property
    def label(self) -> str:
        return f"{self.key} {self.name}"


@dataclass
class Data:
    """Inputs and initial weights for one workload, float32 (labels int32)."""

    inputs: dict             # "x" and, for training, "t"
    params: list             # (name, array) in the order the architecture uses them
    flops: float | None      # per step; training counts forward + backward as 3x forward
    bytes: float | None      # per step, for bandwidth-bound workloads (x read once)


WORKLOADS = {
    "W1": Workload("W1", WORKLOAD_NAMES["W1"], "2 -> 10 sigmoid -> 3, softmax-CE, batch 30",
                   "mlp", True, layers=(2, 10, 3), activation="sigmoid", batch=30,
                   throughput=False),
    "W2": Workload("W2", WORKLOAD_NAMES["W2"],
                   "784 -> 1000 ReLU -> 1000 ReLU -> 10, softmax-CE, batch 128",
                   "mlp", True, layers=(784, 1000, 1000, 10), activation="relu", batch=128),
    "W3": Workload("W3", WORKLOAD_NAMES["W3"],
                   "(64,1,28,28): conv3x3 1->16, ReLU, pool2, conv3x3 16->32, ReLU, pool2, "
                   "linear 1568->10, softmax-CE",
                   "lenet", True, batch=64),
    "W4": Workload("W4", WORKLOAD_NAMES["W4"],
                   "forward: sum(exp(-t)*x), t = relu(1.5x+0.3); t = t*sigmoid(t)",
                   "elementwise", False),
    "W5": Workload("W5", WORKLOAD_NAMES["W5"],
                   "forward: (8,3,64,64) conv3x3 3->64 + ReLU, conv3x3 64->64 + ReLU, pool2",
                   "vgg", False, batch=8),
}


def _dense(rng, fan_in: int, fan_out: int, gain: float) -> np.ndarray:
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(gain / fan_in)).astype(np.float32)


def _conv(rng, c_out: int, c_in: int, k: int = 3) -> np.ndarray:
    w = rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2.0 / (c_in * k * k))
    return w.astype(np.float32)


def _bias(rng, n: int) -> np.ndarray:
    return (0.01 * rng.standard_normal(n)).astype(np.float32)


def conv_flops(batch: int, c_out: int, h: int, w: int, c_in: int, k: int = 3) -> float:
    """2*M*N*K of a 'same' convolution as a matmul: M = batch*h*w, N = c_out, K = c_in*k*k."""
    return 2.0 * batch * h * w * c_out * c_in * k * k


def make_data(w: Workload, quick: bool = False) -> Data:
    """Seeded inputs and initial weights; the same arrays for every framework."""
    rng = np.random.default_rng([SEED, int(w.key[1:])])
    if w.arch == "mlp":
        params, flops = [], 0.0
        gain = 2.0 if w.activation == "relu" else 1.0
        for i, (fan_in, fan_out) in enumerate(zip(w.layers[:-1], w.layers[1:])):
            params += [(f"W{i}", _dense(rng, fan_in, fan_out, gain)), (f"b{i}", _bias(rng, fan_out))]
            flops += 2.0 * w.batch * fan_in * fan_out
        x = rng.standard_normal((w.batch, w.layers[0])).astype(np.float32)
        t = rng.integers(0, w.layers[-1], w.batch).astype(np.int32)
        return Data({"x": x, "t": t}, params, 3.0 * flops, None)
    if w.arch == "lenet":
        params = [("conv1_w", _conv(rng, 16, 1)), ("conv1_b", _bias(rng, 16)),
                  ("conv2_w", _conv(rng, 32, 16)), ("conv2_b", _bias(rng, 32)),
                  ("fc_W", _dense(rng, 1568, 10, 1.0)), ("fc_b", _bias(rng, 10))]
        flops = (conv_flops(w.batch, 16, 28, 28, 1) + conv_flops(w.batch, 32, 14, 14, 16)
                 + 2.0 * w.batch * 1568 * 10)
        x = rng.standard_normal((w.batch, 1, 28, 28)).astype(np.float32)
        t = rng.integers(0, 10, w.batch).astype(np.int32)
        return Data({"x": x, "t": t}, params, 3.0 * flops, None)
    if w.arch == "elementwise":
        n = W4_ELEMENTS_QUICK if quick else W4_ELEMENTS
        x = rng.standard_normal(n, dtype=np.float32)
        return Data({"x": x}, [], None, 4.0 * n)
    if w.arch == "vgg":
        params = [("conv1_w", _conv(rng, 64, 3)), ("conv1_b", _bias(rng, 64)),
                  ("conv2_w", _conv(rng, 64, 64)), ("conv2_b", _bias(rng, 64))]
        flops = conv_flops(w.batch, 64, 64, 64, 3) + conv_flops(w.batch, 64, 64, 64, 64)
        x = rng.standard_normal((w.batch, 3, 64, 64)).astype(np.float32)
        return Data({"x": x}, params, flops, None)
    raise ValueError(f"unknown architecture {w.arch!r} for workload {w.key}")
