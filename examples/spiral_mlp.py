"""A 2-10-3 MLP on the spiral data set with SGD (DeZero's step 48, compiled).

    python examples/spiral_mlp.py [--epochs 300]
"""
from __future__ import annotations

import argparse

import graphc as gc
from graphc import data, nn, optim


def main(epochs: int = 300, lr: float = 1.0, batch_size: int = 30, seed: int = 0,
         progress: bool = True) -> dict:
    gc.set_seed(seed)
    train_set = data.Spiral(train=True)
    loader = data.DataLoader(train_set, batch_size)

    model = nn.MLP((10, 3), activation=gc.sigmoid)
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    logits = model(x)
    loss = gc.softmax_cross_entropy(logits, t)
    acc = gc.accuracy(logits, t)
    step = gc.compile([x, t], [loss, acc], updates=optim.SGD(lr).updates(loss, model))

    history = gc.fit(step, loader, epochs, progress=progress)
    final_loss, final_acc = gc.eval([loss, acc], {x: train_set.data, t: train_set.label})
    print(f"spiral MLP: {epochs} epochs, last epoch's loss {history[-1]['loss']:.4f}; "
          f"training accuracy {float(final_acc):.3f}")
    return {"train_accuracy": float(final_acc), "train_loss": float(final_loss)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    main(parser.parse_args().epochs)
