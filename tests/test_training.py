"""End to end: train the demo's spiral MLP with the compiled SGD step on the cpu backend and on
the numpy reference, from the same initial weights over the same minibatches."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.demo import build_model, spiral

EPOCHS = 3
BATCH = 30
LR = 1.0


def _train(backend: str):
    x_train, t_train = spiral(100, 3, seed=1984)
    x, t, loss, acc, params = build_model(10, 3, "sigmoid", seed=0)
    grads = gc.grad(loss, params)
    step = gc.compile([x, t], [loss, acc], updates=[(p, p - LR * g)
                                                    for p, g in zip(params, grads)],
                      backend=backend)
    evaluate = gc.compile([x, t], [loss, acc], backend=backend)
    rng = np.random.default_rng(0)
    n = len(x_train)
    batch_losses, epoch_losses = [], []
    epoch_losses.append(float(evaluate(x_train, t_train)[0]))
    for _ in range(EPOCHS):
        order = rng.permutation(n)
        for i in range(0, n, BATCH):
            idx = order[i:i + BATCH]
            batch_loss, _ = step(x_train[idx], t_train[idx])
            batch_losses.append(float(batch_loss))
        epoch_losses.append(float(evaluate(x_train, t_train)[0]))
    return np.array(batch_losses), np.array(epoch_losses), [p.value for p in params]


@pytest.fixture(scope="module")
def runs():
    return {backend: _train(backend) for backend in ("numpy", "cpu")}


def test_spiral_loss_curves_agree_between_cpu_and_numpy(runs):
    cpu_batches, cpu_epochs, cpu_params = runs["cpu"]
    ref_batches, ref_epochs, ref_params = runs["numpy"]
    assert len(cpu_batches) == EPOCHS * 10
    np.testing.assert_allclose(cpu_batches, ref_batches, rtol=1e-4)
    np.testing.assert_allclose(cpu_epochs, ref_epochs, rtol=1e-4)
    for p, q in zip(cpu_params, ref_params):
        np.testing.assert_allclose(p, q, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_spiral_loss_decreases(runs, backend):
    batches, epochs, _ = runs[backend]
    assert np.all(np.isfinite(batches))
    assert epochs[-1] < epochs[0]
    assert batches[-10:].mean() < batches[:10].mean()


def test_training_changes_every_parameter(runs):
    _x, _t, _loss, _acc, params = build_model(10, 3, "sigmoid", seed=0)
    for p0, p in zip(params, runs["cpu"][2]):
        assert not np.allclose(p0.value, p)
