"""PyTorch peers: eager, and torch.compile (inductor) of the same functions.

Training: the loss function is the part torch.compile compiles (AOTAutograd compiles its
backward too); the SGD update is torch.optim.SGD(foreach=True) in both rows. Compiling the
optimizer step as well was slower on the machines we tried.
"""
from __future__ import annotations

import numpy as np

from .base import NotApplicable, Peer, Runner


def _mlp_loss(F, w):
    act = F.relu if w.activation == "relu" else F.sigmoid
    n_layers = len(w.layers) - 1

    def loss(params, x, t):
        h = x
        for i in range(n_layers):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < n_layers - 1:
                h = act(h)
        return F.cross_entropy(h, t)

    return loss


def _lenet_loss(F):
    def loss(params, x, t):
        c1w, c1b, c2w, c2b, fw, fb = params
        h = F.max_pool2d(F.relu(F.conv2d(x, c1w, c1b, padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, c2w, c2b, padding=1)), 2)
        return F.cross_entropy(h.reshape(h.shape[0], -1) @ fw + fb, t)

    return loss


def _elementwise(torch):
    def f(x):
        t = torch.relu(1.5 * x + 0.3)
        t = t * torch.sigmoid(t)
        return torch.sum(torch.exp(-t) * x)

    return f


def _vgg(F):
    def f(params, x):
        w1, b1, w2, b2 = params
        h = F.relu(F.conv2d(x, w1, b1, padding=1))
        h = F.relu(F.conv2d(h, w2, b2, padding=1))
        return F.max_pool2d(h, 2)

    return f


def _fetch(r) -> np.ndarray:
    return r.detach().numpy().astype(np.float64)


class TorchPeer(Peer):
    def __init__(self, compiled: bool):
        self.compiled = compiled
        self.name = "torch.compile" if compiled else "torch eager"

    def unavailable(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return f"not installed ({exc})"
        return None

    def set_threads(self, n: int):
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(n)
        return lambda: torch.set_num_threads(old)

    def versions(self) -> dict:
        import torch

        return {"torch": torch.__version__}

    def _wrap(self, fn):
        if not self.compiled:
            return fn
        import torch

        return torch.compile(fn)

    def build(self, w, data) -> Runner:
        import torch
        import torch.nn.functional as F

        x = torch.tensor(data.inputs["x"])
        if w.train:
            return self._train_runner(torch, F, w, data, x)
        if w.arch == "elementwise":
            f = self._wrap(_elementwise(torch))

            def step():
                with torch.inference_mode():
                    return f(x)

            return Runner(step, _fetch)
        if w.arch == "vgg":
            params = [torch.tensor(a) for _, a in data.params]
            f = self._wrap(_vgg(F))

            def step():
                with torch.inference_mode():
                    return f(params, x)

            return Runner(step, _fetch)
        raise NotApplicable(f"no torch version of {w.arch!r}")

    def _train_runner(self, torch, F, w, data, x) -> Runner:
        t = torch.tensor(data.inputs["t"].astype(np.int64))
        params = [torch.tensor(a, requires_grad=True) for _, a in data.params]
        if w.arch == "mlp":
            loss_fn = _mlp_loss(F, w)
        elif w.arch == "lenet":
            loss_fn = _lenet_loss(F)
        else:
            raise NotApplicable(f"no torch training version of {w.arch!r}")
        loss_fn = self._wrap(loss_fn)
        opt = torch.optim.SGD(params, lr=w.lr, foreach=True)

        def step():
            loss = loss_fn(params, x, t)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        return Runner(step, _fetch)


PEERS = [TorchPeer(compiled=False), TorchPeer(compiled=True)]
