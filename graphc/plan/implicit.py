"""A plan pass that computes a convolution without its column matrix (an implicit GEMM),
when nothing else reads the columns.

conv2d builds `im2col` (x -> col, (N, C*KH*KW, OH*OW)) and a product of the weight with
each image's columns (`matmul_shared`, maybe with its bias and ReLU taken by
graphc.plan.epilogues). In training the columns are read again by the weight's gradient,
so they are stored. In a forward pass (inference, or a layer whose weight gets no
gradient) the product is their only reader: then the im2col step and the product step
become one kernel step that packs each block of columns straight from the image into the
layout its register tiles read, and the column matrix is never written (W5's second
convolution: 75 MB at batch 8).

Taken only where the backend has the kernel (has_kernel), for float32, and for
K = C*KH*KW >= MIN_K, the crossover `python -m benchmarks.conv_crossover` reports: the
smallest K from which the implicit kernel won at every shape of its grid (batches 1-64,
K 1-1152, bias + ReLU). Its run of 2026-12-01 (Zen 3, 2 threads): 1.24-2.06x faster from
K = 27 (W5's 64-channel layer 1.41x, its 3-channel one 1.51x); below, 0.69x at K = 9 and
0.99x at K = 18 for a single 28x28 image (a block's copies are worked out per block and
shared by the batch's images: with one image nothing shares them), 0.96x for a 2x2 kernel,
and 1.46-1.82x at batch 64.

Below MIN_K the batch decides, and it is not known when the plan is made: the pair becomes
a `conv2d_by_batch` step instead, which keeps the column buffer and runs the implicit
kernel from conv.IMPLICIT_MIN_BATCH images, im2col + GEMMs below (K alone had made a
64-image K = 18 layer 1.3-1.6x slower than a K = 27 one).
"""
from __future__ import annotations

from .steps import KernelStep
from .updates import splice

MIN_K = 27
KERNELS = {  # the product step's kernel -> the implicit kernel that replaces both steps
    "matmul_shared": "conv2d_implicit",
    "matmul_shared_bias": "conv2d_implicit_bias",
    "matmul_shared_bias_relu": "conv2d_implicit_bias_relu",
}
BY_BATCH = {  # ... and the one that chooses by the batch, below MIN_K
    "matmul_shared": "conv2d_by_batch",
    "matmul_shared_bias": "conv2d_by_batch_bias",
    "matmul_shared_bias_relu": "conv2d_by_batch_bias_relu",
}


def _columns_step(g, step):
    """The im2col KernelStep whose columns only `step` (a product of KERNELS) reads, when
    the pair can be one implicit convolution; else None."""
    product = step.nodes[0]
    if product.op != "matmul_shared" or len(product.inputs) != 2:
        return None
    w, col = product.inputs
    source = g.step_of.get(col)
    if not isinstance(source, KernelStep) or source.kernel != "im2col" or \
            len(source.nodes) != 1:
        return None
    im2col = source.nodes[0]
    if im2col.outputs[0] is not col or id(col) in g.root_ids or id(col) in g.update_ids:
        return None
    if [u.id for u in g.users.get(col, [])] != [product.id]:
        return None
    x = im2col.inputs[0]
    if x.dtype != "float32" or w.dtype != "float32" or x.ndim != 4 or col.shape[1] is None:
        return None
    return source


def fuse_implicit_convolutions(plan):
    """Each im2col whose columns only a convolution's product reads, folded into it."""
    has_kernel = plan.options.has_kernel or (lambda what: False)
    g = plan.graph
    replaced: dict = {}
    for step in plan.steps:
        if not isinstance(step, KernelStep) or step.kernel not in KERNELS:
            continue
        source = _columns_step(g, step)
        if source is None:
            continue
        stores = step.stores or tuple(o for n in step.nodes for o in n.outputs)
        col = source.nodes[0].outputs[0]
        if col.shape[1] >= MIN_K:
            kernel = KERNELS[step.kernel]
            note = "im2col packed into the product's tiles: no column matrix"
        else:
            kernel, stores = BY_BATCH[step.kernel], (col,) + stores
            note = ("im2col packed into the product's tiles from "
                    "conv.IMPLICIT_MIN_BATCH images, else through the columns")
        if not has_kernel(kernel):
            continue
        replaced[source.index] = []
        replaced[step.index] = [KernelStep(step.index, source.nodes + step.nodes,
                                           step.notes + (note,), kernel=kernel,
                                           stores=stores)]
    return splice(plan, replaced)
