"""A 64-100-10 MLP on scikit-learn's 8x8 digits with Adam (needs: pip install "graphc[digits]").

    python examples/digits_mlp.py [--epochs 30]
"""
from __future__ import annotations

import argparse

import graphc as gc
from graphc import data, nn, optim


def main(epochs: int = 30, batch_size: int = 32, seed: int = 0, progress: bool = True) -> dict:
    gc.set_seed(seed)
    train_set, test_set = data.Digits(train=True, seed=seed), data.Digits(train=False, seed=seed)
    train_loader = data.DataLoader(train_set, batch_size)
    test_loader = data.DataLoader(test_set, 512, shuffle=False)

    model = nn.MLP((100, 10), activation=gc.relu)
    x = gc.placeholder((None, 64), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    logits = model(x)
    loss = gc.softmax_cross_entropy(logits, t)
    acc = gc.accuracy(logits, t)
    opt = optim.Adam(alpha=0.01)
    step = gc.compile([x, t], [loss, acc], updates=opt.updates(loss, model))
    evaluate = gc.compile([x, t], [loss, acc])

    history = gc.fit(step, train_loader, epochs, eval=(evaluate, test_loader), progress=progress)
    last = history[-1]
    print(f"digits MLP: {epochs} epochs; test accuracy {last['test_accuracy']:.3f} "
          f"({len(test_set)} images), training accuracy {last['accuracy']:.3f}")
    return {"test_accuracy": last["test_accuracy"], "history": history, "model": model}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    main(parser.parse_args().epochs)
