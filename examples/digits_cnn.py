"""A small CNN on scikit-learn's 8x8 digits, as (1, 8, 8) images, with Adam; saves the weights
and reloads them into a test-mode predictor (needs: pip install "graphc[digits]").

    python examples/digits_cnn.py [--epochs 15] [--weights digits_cnn.npz]
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import graphc as gc
from graphc import data, nn, optim


def main(epochs: int = 15, batch_size: int = 32, seed: int = 0, progress: bool = True,
         weights: str | None = None) -> dict:
    gc.set_seed(seed)
    train_set = data.Digits(train=True, flatten=False, seed=seed)
    test_set = data.Digits(train=False, flatten=False, seed=seed)
    train_loader = data.DataLoader(train_set, batch_size)
    test_loader = data.DataLoader(test_set, 512, shuffle=False)

    model = nn.SimpleCNN(num_classes=10, channels=(16, 32), hidden=64)
    x = gc.placeholder((None, 1, 8, 8), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    logits = model(x)
    loss = gc.softmax_cross_entropy(logits, t)
    acc = gc.accuracy(logits, t)
    step = gc.compile([x, t], [loss, acc], updates=optim.Adam(0.003).updates(loss, model))
    with gc.test_mode():
        test_logits = model(x)
    evaluate = gc.compile([x, t], [gc.softmax_cross_entropy(test_logits, t),
                                   gc.accuracy(test_logits, t)])
    history = gc.fit(step, train_loader, epochs, eval=(evaluate, test_loader), progress=progress)

    # save, reload into a fresh model of the same shape, and predict with it
    path = weights or os.path.join(tempfile.mkdtemp(), "digits_cnn.npz")
    model.save_weights(path)
    gc.set_seed(seed + 1)
    fresh = nn.SimpleCNN(num_classes=10, channels=(16, 32), hidden=64)
    with gc.test_mode():
        predict = gc.compile([x], gc.argmax(fresh(x), -1))  # (its weights now exist)
    fresh.load_weights(path)
    reloaded = float(np.mean(predict(test_set.data) == test_set.label))
    print(f"digits CNN: {epochs} epochs; test accuracy {history[-1]['test_accuracy']:.3f}, "
          f"{reloaded:.3f} after save_weights/load_weights ({path})")
    return {"test_accuracy": history[-1]["test_accuracy"], "reloaded_accuracy": reloaded}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    main(args.epochs, weights=args.weights)
