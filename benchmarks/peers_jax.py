"""JAX peer: jax.jit of the whole step (forward, value_and_grad, SGD update).

Parameters are donated to the jitted step, so the update happens in place as in the other
frameworks. Layouts follow the data (NCHW activations, OIHW kernels).
"""
from __future__ import annotations

import numpy as np

from .base import NotApplicable, Peer, Runner


def _conv(lax, x, w, b):
    y = lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + b[None, :, None, None]


def _pool2(lax, jnp, x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def _cross_entropy(jax, jnp, logits, t):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))


def _loss_fn(jax, jnp, lax, w):
    if w.arch == "mlp":
        act = jax.nn.relu if w.activation == "relu" else jax.nn.sigmoid
        n_layers = len(w.layers) - 1

        def loss(params, x, t):
            h = x
            for i in range(n_layers):
                h = h @ params[2 * i] + params[2 * i + 1]
                if i < n_layers - 1:
                    h = act(h)
            return _cross_entropy(jax, jnp, h, t)

        return loss
    if w.arch == "lenet":
        def loss(params, x, t):
            c1w, c1b, c2w, c2b, fw, fb = params
            h = _pool2(lax, jnp, jax.nn.relu(_conv(lax, x, c1w, c1b)))
            h = _pool2(lax, jnp, jax.nn.relu(_conv(lax, h, c2w, c2b)))
            return _cross_entropy(jax, jnp, h.reshape(h.shape[0], -1) @ fw + fb, t)

        return loss
    raise NotApplicable(f"no JAX training version of {w.arch!r}")


def _forward_fn(jax, jnp, lax, w):
    if w.arch == "elementwise":
        def f(params, x):
            t = jax.nn.relu(1.5 * x + 0.3)
            t = t * jax.nn.sigmoid(t)
            return jnp.sum(jnp.exp(-t) * x)

        return f
    if w.arch == "vgg":
        def f(params, x):
            w1, b1, w2, b2 = params
            h = jax.nn.relu(_conv(lax, x, w1, b1))
            h = jax.nn.relu(_conv(lax, h, w2, b2))
            return _pool2(lax, jnp, h)

        return f
    raise NotApplicable(f"no JAX version of {w.arch!r}")


class JaxPeer(Peer):
    name = "jax jit"

    def unavailable(self) -> str | None:
        try:
            import jax  # noqa: F401
        except ImportError as exc:
            return f"not installed ({exc})"
        return None

    def versions(self) -> dict:
        import jax
        import jaxlib

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}

    def build(self, w, data) -> Runner:
        import jax
        import jax.numpy as jnp
        from jax import lax

        params = [jax.device_put(np.array(a)) for _, a in data.params]
        x = jax.device_put(data.inputs["x"])

        def fetch(r):
            return np.asarray(r, dtype=np.float64)

        if not w.train:
            f = jax.jit(_forward_fn(jax, jnp, lax, w))

            def forward_step():
                return f(params, x).block_until_ready()

            return Runner(forward_step, fetch)

        t = jax.device_put(data.inputs["t"])
        train = sgd_step(jax, _loss_fn(jax, jnp, lax, w), w.lr)
        state = {"params": params}

        def step():
            loss, state["params"] = train(state["params"], x, t)
            jax.block_until_ready((loss, state["params"]))
            return loss

        return Runner(step, fetch)


def sgd_step(jax, loss_fn, lr):
    """jax.jit of (params, x, t) -> (loss, params - lr * grads), the parameters donated
    (updated in place): the training step of every JAX row, CPU and GPU."""

    def train_step(params, x, t):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, t)
        return loss, [p - lr * g for p, g in zip(params, grads)]

    return jax.jit(train_step, donate_argnums=0)


PEERS = [JaxPeer()]
