"""The hand-written kernels a plan calls (kernels/cpu/nn.py): names, and arguments of the
right types for compiling them ahead of the first call."""
from __future__ import annotations

import numpy as np

from ...passes.fuse import MatmulStep

NN_FN = {"softmax": "softmax_rows", "log_softmax": "log_softmax_rows", "argmax": "argmax_rows"}
CHECKED = {"softmax_cross_entropy", "softmax_cross_entropy_grad",
           "softmax_cross_entropy_fused", "one_hot"}


def nn_function(step) -> str:
    """Name in graphc.kernels.cpu.nn of the function a KernelStep or MatmulStep calls."""
    if isinstance(step, MatmulStep):
        return "mm_" + ("t" if step.trans_a else "n") + ("t" if step.trans_b else "n")
    return NN_FN.get(step.kernel, step.kernel)


def kernel_dummy_args(step) -> list:
    """Empty arrays of the types a hand-written kernel (or small matmul) is called with."""
    def z(t, rank=None):
        return np.zeros((0,) * (rank if rank is not None else len(t.shape)), t.dtype)

    if isinstance(step, MatmulStep):
        out = step.nodes[0].outputs[0]
        return [z(step.a, 2), z(step.b, 2), z(out, 2)]
    node = step.nodes[0]
    x, out = node.inputs[0], node.outputs[0]
    if step.kernel in ("softmax", "log_softmax"):
        return [z(x, 2), z(out, 2)]
    if step.kernel == "argmax":
        return [z(x, 2), z(out, 1)]
    if step.kernel == "one_hot":
        return [z(x, 1), z(out, 2)]
    if step.kernel == "softmax_cross_entropy":
        return [z(x, 2), z(node.inputs[1], 1), np.zeros(1, out.dtype)]
    if step.kernel == "softmax_cross_entropy_grad":
        return [z(x, 2), z(node.inputs[1], 1), np.zeros(1, x.dtype), z(out, 2)]
    return [z(x, 2), z(node.inputs[1], 1), np.zeros(1, x.dtype), np.zeros(1, out.dtype),
            z(x, 2)]
