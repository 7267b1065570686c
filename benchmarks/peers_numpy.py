"""A hand-written NumPy training step: what a competent user writes in ~20 lines without a
framework. MLP workloads only (ReLU or sigmoid, softmax cross entropy, plain SGD), in the
data's own dtype, updating the weights in place. It is the floor every framework must beat:
the same BLAS products and a few passes of NumPy ufuncs per layer.
"""
from __future__ import annotations

import numpy as np

from .base import NotApplicable, Peer, Runner


class NumpyMlpStep:
    """One SGD step of an MLP on fixed data; `step()` returns the loss before the update."""

    def __init__(self, w, data):
        self.params = [np.array(a) for _, a in data.params]  # own copies, updated in place
        self.x = data.inputs["x"]
        self.t = data.inputs["t"].astype(np.intp)
        self.rows = np.arange(len(self.t))
        self.relu = w.activation == "relu"
        self.lr = w.lr

    def step(self):
        Ws, bs = self.params[0::2], self.params[1::2]
        acts = [self.x]
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = acts[-1] @ W
            z += b
            if i < len(Ws) - 1:
                if self.relu:
                    np.maximum(z, 0, out=z)
                else:  # sigmoid in place: 1 / (1 + exp(-z))
                    np.negative(z, out=z)
                    np.exp(z, out=z)
                    z += 1
                    np.reciprocal(z, out=z)
            acts.append(z)
        logits = acts.pop()
        m = logits.max(axis=1, keepdims=True)
        g = logits - m
        np.exp(g, out=g)
        s = g.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) + m[:, 0] - logits[self.rows, self.t])
        g /= s                       # softmax
        g[self.rows, self.t] -= 1    # d loss / d logits, times the batch size
        g *= g.dtype.type(1.0 / len(self.t))
        for i in reversed(range(len(Ws))):
            a = acts[i]
            gW = a.T @ g
            gb = g.sum(axis=0)
            if i > 0:
                g_prev = g @ Ws[i].T
                if self.relu:
                    g_prev *= a > 0
                else:
                    g_prev *= a * (1 - a)
            gW *= self.lr
            Ws[i] -= gW
            gb *= self.lr
            bs[i] -= gb
            if i > 0:
                g = g_prev
        return loss


class NumpyHandPeer(Peer):
    name = "numpy hand"

    def versions(self) -> dict:
        return {"numpy": np.__version__}

    def build(self, w, data) -> Runner:
        if w.arch != "mlp" or not w.train:
            raise NotApplicable("hand-written NumPy steps exist for MLP training only")
        mlp = NumpyMlpStep(w, data)
        return Runner(step=mlp.step, fetch=lambda r: np.asarray(r, np.float64))


PEERS = [NumpyHandPeer()]
