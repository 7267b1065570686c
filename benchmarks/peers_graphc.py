"""graphc through its public API: placeholders, Parameters, gc.grad, gc.compile."""
from __future__ import annotations

import numpy as np

from .base import NotApplicable, Peer, Runner


def _mlp(gc, w, data):
    x = gc.placeholder((None, w.layers[0]), dtype=data.inputs["x"].dtype.name, name="x")
    t = gc.placeholder((None,), dtype="int32", name="t")
    params = [gc.Parameter(arr, name=name) for name, arr in data.params]
    act = gc.relu if w.activation == "relu" else gc.sigmoid
    h = x
    n_layers = len(w.layers) - 1
    for i in range(n_layers):
        W, b = params[2 * i], params[2 * i + 1]
        h = gc.matmul(h, W) + b
        if i < n_layers - 1:
            h = act(h)
    return [x, t], gc.softmax_cross_entropy(h, t), params


def _elementwise(gc, w, data):
    x = gc.placeholder((None,), name="x")
    t = gc.relu(1.5 * x + 0.3)
    t = t * gc.sigmoid(t)
    return [x], gc.sum(gc.exp(-t) * x), []


def _conv_relu(gc, h, W, b):
    return gc.relu(gc.conv2d(h, W, b, pad=1))


def _lenet(gc, w, data):
    x = gc.placeholder((None,) + data.inputs["x"].shape[1:], name="x")
    t = gc.placeholder((None,), dtype="int32", name="t")
    params = [gc.Parameter(arr, name=name) for name, arr in data.params]
    c1w, c1b, c2w, c2b, fw, fb = params
    h = gc.max_pool2d(_conv_relu(gc, x, c1w, c1b), 2)
    h = gc.max_pool2d(_conv_relu(gc, h, c2w, c2b), 2)
    logits = gc.matmul(gc.reshape(h, (None, fw.shape[0])), fw) + fb
    return [x, t], gc.softmax_cross_entropy(logits, t), params


def _vgg(gc, w, data):
    x = gc.placeholder((None,) + data.inputs["x"].shape[1:], name="x")
    params = [gc.Parameter(arr, name=name) for name, arr in data.params]
    w1, b1, w2, b2 = params
    h = _conv_relu(gc, _conv_relu(gc, x, w1, b1), w2, b2)
    return [x], gc.max_pool2d(h, 2), params


def build_program(gc, w, data):
    """(inputs, output, params) of the workload as a graphc graph, or NotApplicable."""
    if w.arch == "mlp":
        return _mlp(gc, w, data)
    if w.arch == "elementwise":
        return _elementwise(gc, w, data)
    if w.arch == "lenet":
        return _lenet(gc, w, data)
    if w.arch == "vgg":
        return _vgg(gc, w, data)
    raise NotApplicable(w.graphc_note or f"no graphc version of {w.arch!r}")


def compile_program(gc, w, inputs, output, params, backend: str):
    """gc.compile the graph; training workloads get gc.grad and SGD updates."""
    if not w.train:
        return gc.compile(inputs, output, backend=backend)
    grads = gc.grad(output, params)
    updates = [(p, p - w.lr * g) for p, g in zip(params, grads)]
    return gc.compile(inputs, [output], updates=updates, backend=backend)


def feeds(w, data) -> list:
    return [data.inputs["x"], data.inputs["t"]] if w.train else [data.inputs["x"]]


class GraphcPeer(Peer):
    def __init__(self, backend: str):
        self.backend = backend
        self.name = f"graphc {backend}"

    def unavailable(self) -> str | None:
        try:
            import graphc  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - a broken checkout is a row, not a crash
            return f"import graphc failed: {type(exc).__name__}: {exc}"
        return None

    def set_threads(self, n: int):
        import numba

        old = numba.get_num_threads()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        restore_blas = _set_blas_threads(n)

        def restore():
            numba.set_num_threads(old)
            restore_blas()

        return restore

    def versions(self) -> dict:
        import numba

        import graphc

        return {"graphc": graphc.__version__, "numba": numba.__version__}

    def build(self, w, data) -> Runner:
        import graphc as gc

        inputs, output, params = build_program(gc, w, data)
        try:
            fn = compile_program(gc, w, inputs, output, params, self.backend)
        except ValueError as exc:
            if "unknown backend" in str(exc):
                raise NotApplicable(f"backend {self.backend!r} not available: {exc}") from None
            raise
        args = feeds(w, data)
        if w.train:
            return Runner(step=lambda: fn(*args)[0], fetch=lambda r: np.asarray(r, np.float64))
        return Runner(step=lambda: fn(*args), fetch=lambda r: np.asarray(r, np.float64))


def _set_blas_threads(n: int):
    """graphc's own BLAS (graphc.kernels.blas), when it exists; returns the restore function."""
    try:
        from graphc.kernels import blas
    except Exception:  # noqa: BLE001 - graphc.kernels.blas is optional here
        return lambda: None
    setter = getattr(blas, "set_num_threads", None)
    getter = getattr(blas, "get_num_threads", None)
    if setter is None or getter is None:
        return lambda: None
    old = getter()
    setter(n)
    return lambda: setter(old)


PEERS = [GraphcPeer("cpu"), GraphcPeer("numpy")]
