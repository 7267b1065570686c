"""The GPU rows' workloads and their runners on graphc's cuda backend, torch and JAX.

The workloads are the suite's own (workloads.py) at the GPU batch sizes, from the same
seeded arrays, and every framework runs the functions the CPU harness runs (peers_*.py).
Unlike the CPU harness, a step here does what a graphc call does: it copies the feeds from
host memory to the device, runs (W2, W3: forward, backward and the SGD update; W4, W5:
forward) and copies the loss or output back to the host, so every row moves the same bytes
over the bus. Each runner takes a `device` ("cuda" or "gpu", or "cpu" for the tests that
check the peers compute graphc's losses).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import peers_jax, peers_torch
from .base import NotApplicable, Runner
from .peers_graphc import GraphcPeer
from .workloads import W4_ELEMENTS, W4_ELEMENTS_QUICK, WORKLOADS, make_data

# batch size (W4: elements) of each GPU row; the sizes
GPU_SIZES = {"W2": 1024, "W3": 256, "W5": 64, "W4": W4_ELEMENTS}


def gpu_case(key: str, size: int | None = None) -> tuple:
    """(Workload, Data) of workload `key` at `size` (default GPU_SIZES[key]): the suite's
    seeded arrays, with batch `size` (W4: the first `size` elements)."""
    size = GPU_SIZES[key] if size is None else size
    w = WORKLOADS[key]
    if w.arch == "elementwise":
        data = make_data(w, quick=size <= W4_ELEMENTS_QUICK)
        x = data.inputs["x"][:size]
        return w, dataclasses.replace(data, inputs={"x": x}, bytes=float(x.nbytes))
    w = dataclasses.replace(w, batch=size)
    return w, make_data(w)


def label(w, data) -> str:
    if w.arch == "elementwise":
        n = data.inputs["x"].size
        return f"{w.label} ({f'{n >> 20}M' if n % 2**20 == 0 else n} float32)"
    return f"{w.label} (batch {w.batch}{'' if w.train else ', forward'})"


def host_feeds(w, data) -> list:
    """The arrays a step copies to the device: x, and the labels of a training step."""
    return [data.inputs["x"], data.inputs["t"]] if w.train else [data.inputs["x"]]


def _to_float64(r) -> np.ndarray:
    return np.asarray(r, np.float64)


# --- why a framework has no GPU here -----------------------------------------------------------
def torch_gpu_unavailable() -> str | None:
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc})"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() " \
               f"is False)"
    return None


def jax_gpu_unavailable() -> str | None:
    try:
        import jax
    except ImportError as exc:
        return f"jax is not installed ({exc})"
    try:
        jax.devices("gpu")
    except RuntimeError as exc:
        return f"jax {jax.__version__} has no gpu device ({str(exc).split('.')[0]})"
    return None


# --- runners ------------------------------------------------------------------------------------
def graphc_runner(w, data, backend: str = "cuda") -> Runner:
    """graphc's step, as the CPU harness builds it (a call uploads the feeds itself)."""
    return GraphcPeer(backend).build(w, data)


def torch_runner(w, data, device: str = "cuda") -> Runner:
    """torch eager on `device`: the CPU harness's loss and forward functions, SGD(foreach)."""
    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    feeds = [torch.from_numpy(np.ascontiguousarray(a)) for a in host_feeds(w, data)]
    if w.train:
        feeds[1] = feeds[1].to(torch.int64)  # F.cross_entropy takes int64 labels
    if dev.type == "cuda":
        feeds = [f.pin_memory() for f in feeds]

    def upload() -> list:
        return [f.to(dev, non_blocking=True) for f in feeds]

    params = [torch.tensor(a, device=dev, requires_grad=w.train) for _, a in data.params]
    if not w.train:
        forward = _torch_forward(torch, F, w)

        def forward_step():
            with torch.inference_mode():
                return forward(params, *upload()).cpu()  # the copy back waits for the step

        return Runner(forward_step, _to_float64)

    loss_fn = _torch_loss(F, w)
    opt = torch.optim.SGD(params, lr=w.lr, foreach=True)

    def train_step():
        loss = loss_fn(params, *upload())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach().cpu()  # queued after the update: waits for the whole step

    return Runner(train_step, _to_float64)


def _torch_loss(F, w):
    if w.arch == "mlp":
        return peers_torch._mlp_loss(F, w)
    if w.arch == "lenet":
        return peers_torch._lenet_loss(F)
    raise NotApplicable(f"no torch training version of {w.arch!r}")


def _torch_forward(torch, F, w):
    if w.arch == "vgg":
        return peers_torch._vgg(F)
    if w.arch == "elementwise":
        f = peers_torch._elementwise(torch)
        return lambda params, x: f(x)
    raise NotApplicable(f"no torch version of {w.arch!r}")


def jax_runner(w, data, device: str = "gpu") -> Runner:
    """jax.jit of the CPU harness's step on the first `device` ("gpu" or "cpu"), the
    parameters donated so the update happens in place."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    dev = jax.devices(device)[0]
    host = host_feeds(w, data)
    params = [jax.device_put(a, dev) for _, a in data.params]

    def upload() -> list:
        return [jax.device_put(a, dev) for a in host]

    if not w.train:
        forward = jax.jit(peers_jax._forward_fn(jax, jnp, lax, w))
        return Runner(lambda: np.asarray(forward(params, *upload())), _to_float64)

    train = peers_jax.sgd_step(jax, peers_jax._loss_fn(jax, jnp, lax, w), w.lr)
    state = {"params": params}

    def train_step():
        loss, state["params"] = train(state["params"], *upload())
        jax.block_until_ready(state["params"])
        return np.asarray(loss)

    return Runner(train_step, _to_float64)
