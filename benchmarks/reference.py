"""Float64 NumPy results for the correctness check, independent of every framework.

For training workloads the reference is the loss of the first two steps from the initial
weights: the first checks the forward pass, the second the gradient and the update.
"""
from __future__ import annotations

import numpy as np

CHECK_STEPS = 2  # training steps compared across frameworks


def _softmax_ce(logits, t):
    """Mean cross entropy and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -logp[np.arange(n), t].mean()
    d = np.exp(logp)
    d[np.arange(n), t] -= 1.0
    return loss, d / n


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def mlp_losses(w, data, steps: int = CHECK_STEPS) -> np.ndarray:
    params = [a.astype(np.float64) for _, a in data.params]
    x, t = data.inputs["x"].astype(np.float64), data.inputs["t"]
    n_layers = len(w.layers) - 1
    losses = []
    for _ in range(steps):
        acts, pre = [x], []
        for i in range(n_layers):
            z = acts[-1] @ params[2 * i] + params[2 * i + 1]
            pre.append(z)
            if i < n_layers - 1:
                acts.append(np.maximum(z, 0) if w.activation == "relu" else _sigmoid(z))
        loss, d = _softmax_ce(pre[-1], t)
        losses.append(loss)
        grads = [None] * len(params)
        for i in reversed(range(n_layers)):
            grads[2 * i] = acts[i].T @ d
            grads[2 * i + 1] = d.sum(axis=0)
            if i > 0:
                d = d @ params[2 * i].T
                z = pre[i - 1]
                if w.activation == "relu":
                    d = d * (z > 0)
                else:
                    s = _sigmoid(z)
                    d = d * s * (1 - s)
        params = [p - w.lr * g for p, g in zip(params, grads)]
    return np.array(losses)


def _im2col(x):
    """(N,C,H,W) -> (N*H*W, C*9) patches of a 3x3 'same' convolution, (c, ki, kj) order."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, :, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=2)
    return cols.transpose(0, 3, 4, 1, 2).reshape(n * h * wd, c * 9)


def _conv_forward(x, w, b):
    n, _, h, wd = x.shape
    cols = _im2col(x)
    out = cols @ w.reshape(w.shape[0], -1).T + b
    return out.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols


def _conv_backward(dout, x_shape, cols, w):
    n, c, h, wd = x_shape
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, w.shape[0])
    gw = (d2.T @ cols).reshape(w.shape)
    gb = d2.sum(axis=0)
    dcols = (d2 @ w.reshape(w.shape[0], -1)).reshape(n, h, wd, c, 9).transpose(0, 3, 4, 1, 2)
    dxp = np.zeros((n, c, h + 2, wd + 2))
    for k in range(9):
        i, j = divmod(k, 3)
        dxp[:, :, i:i + h, j:j + wd] += dcols[:, :, k]
    return dxp[:, :, 1:-1, 1:-1], gw, gb


def _pool2(x):
    n, c, h, wd = x.shape
    r = x.reshape(n, c, h // 2, 2, wd // 2, 2)
    out = r.max(axis=(3, 5))
    return out, r == out[:, :, :, None, :, None]


def _pool2_backward(dout, mask):
    n, c, h2, _, w2, _ = mask.shape
    d = mask * dout[:, :, :, None, :, None]
    return d.reshape(n, c, h2 * 2, w2 * 2)


def lenet_losses(w, data, steps: int = CHECK_STEPS) -> np.ndarray:
    params = [a.astype(np.float64) for _, a in data.params]
    x, t = data.inputs["x"].astype(np.float64), data.inputs["t"]
    losses = []
    for _ in range(steps):
        c1w, c1b, c2w, c2b, fw, fb = params
        z1, cols1 = _conv_forward(x, c1w, c1b)
        p1, m1 = _pool2(np.maximum(z1, 0))
        z2, cols2 = _conv_forward(p1, c2w, c2b)
        p2, m2 = _pool2(np.maximum(z2, 0))
        flat = p2.reshape(p2.shape[0], -1)
        loss, d = _softmax_ce(flat @ fw + fb, t)
        losses.append(loss)
        gfw, gfb = flat.T @ d, d.sum(axis=0)
        d = _pool2_backward((d @ fw.T).reshape(p2.shape), m2) * (z2 > 0)
        d, gc2w, gc2b = _conv_backward(d, p1.shape, cols2, c2w)
        d = _pool2_backward(d, m1) * (z1 > 0)
        _, gc1w, gc1b = _conv_backward(d, x.shape, cols1, c1w)
        grads = [gc1w, gc1b, gc2w, gc2b, gfw, gfb]
        params = [p - w.lr * g for p, g in zip(params, grads)]
    return np.array(losses)


def elementwise_value(w, data) -> np.ndarray:
    x = data.inputs["x"].astype(np.float64)
    t = np.maximum(1.5 * x + 0.3, 0)
    t = t * _sigmoid(t)
    return np.array(np.sum(np.exp(-t) * x))


def vgg_output(w, data) -> np.ndarray:
    w1, b1, w2, b2 = (a.astype(np.float64) for _, a in data.params)
    h = np.maximum(_conv_forward(data.inputs["x"].astype(np.float64), w1, b1)[0], 0)
    h = np.maximum(_conv_forward(h, w2, b2)[0], 0)
    return _pool2(h)[0]


REFERENCES = {"mlp": mlp_losses, "lenet": lenet_losses, "elementwise": elementwise_value,
              "vgg": vgg_output}


def reference(w, data) -> np.ndarray:
    """What every framework's first steps should produce, in float64."""
    return REFERENCES[w.arch](w, data)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|: one number for a loss pair or a whole output array."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(want))), 1e-30)
    return float(np.max(np.abs(got - want))) / scale
