"""The steps of a plan, in execution order. Each is a frozen record with every field
declared: a plan pass that changes a step builds an updated copy (`dataclasses.replace`),
so no module ever sets an attribute on a step after it is built.

- `FusedGroup`: elementwise nodes over one domain, broadcast operands and scalar constants
  folded in, optionally one reduction (sum/max/min/sum_to) at its end (the epilogue); one
  generated kernel.
- `MatmulStep`: a 2-D matrix product (BLAS or a small-matrix kernel); transposes of its
  operands absorbed as transpose flags.
- `KernelStep`: a hand-written kernel (softmax, log_softmax, softmax cross entropy, one_hot,
  argmax, convolution and pooling), named by its binding (graphc.kernels.cpu.bindings);
  a convolution's product may carry its bias and ReLU as an epilogue (graphc.plan.epilogues).
- `ViewStep`: a reshape of a contiguous buffer (no work).
- `FallbackStep`: any other op, run by its NumPy reference.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Update:
    """param <- beta * param + alpha * x, computed in place by the step that produces x (a
    fused optimizer update); `value` is the update tensor this stands for."""

    param: object
    alpha: float
    value: object
    beta: float = 1.0


@dataclass(frozen=True)
class Step:
    index: int
    nodes: tuple
    notes: tuple = ()  # why a neighbour was not fused with it

    @property
    def outputs(self) -> list:
        return [t for n in self.nodes for t in n.outputs]

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class FusedGroup(Step):
    shape: tuple = ()
    epilogue: object = None   # a reduction node, or None
    post: Update | None = None  # a parameter updated from the reduction after its loop

    @property
    def members(self) -> list:
        """The nodes and the epilogue."""
        return list(self.nodes) + ([self.epilogue] if self.epilogue is not None else [])

    @property
    def domain_tensor(self):
        """The tensor whose shape is the loop domain."""
        return self.nodes[0].outputs[0] if self.nodes else self.epilogue.inputs[0]


@dataclass(frozen=True)
class MatmulStep(Step):
    a: object = None
    b: object = None
    trans_a: bool = False
    trans_b: bool = False
    update: Update | None = None  # the product accumulates into a parameter (gemm beta=1)


@dataclass(frozen=True)
class KernelStep(Step):
    kernel: str = ""
    stores: tuple = ()  # when not every node's output: the tensors the kernel stores (a
                        # product's epilogue keeps its intermediate values in registers)


@dataclass(frozen=True)
class ViewStep(Step):
    pass


@dataclass(frozen=True)
class FallbackStep(Step):
    pass
