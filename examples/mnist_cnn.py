"""A CNN on MNIST (or Fashion-MNIST with --fashion), from the IDX files in --root or the folder
named by GRAPHC_DATA (train-images-idx3-ubyte[.gz] and the three others).

    GRAPHC_DATA=~/data/mnist python examples/mnist_cnn.py [--epochs 3]
"""
from __future__ import annotations

import argparse

import graphc as gc
from graphc import data, nn, optim


def main(epochs: int = 3, batch_size: int = 100, root: str | None = None,
         fashion: bool = False, progress: bool = True) -> dict:
    gc.set_seed(0)
    dataset = data.FashionMNIST if fashion else data.MNIST
    images = data.Compose([data.AsType("float32"), data.Normalize(0.0, 255.0)])  # (1, 28, 28)
    train_set = dataset(train=True, transform=images, root=root)
    test_set = dataset(train=False, transform=images, root=root)
    train_loader = data.DataLoader(train_set, batch_size)
    test_loader = data.DataLoader(test_set, 1000, shuffle=False)

    model = nn.SimpleCNN(num_classes=10, channels=(16, 32), hidden=128, dropout=0.25)
    x = gc.placeholder((None, 1, 28, 28), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    logits = model(x)
    loss = gc.softmax_cross_entropy(logits, t)
    step = gc.compile([x, t], [loss, gc.accuracy(logits, t)],
                      updates=optim.Adam(0.001).updates(loss, model))
    with gc.test_mode():
        test_logits = model(x)
    evaluate = gc.compile([x, t], [gc.softmax_cross_entropy(test_logits, t),
                                   gc.accuracy(test_logits, t)])
    history = gc.fit(step, train_loader, epochs, eval=(evaluate, test_loader), progress=progress)
    print(f"{dataset.__name__} CNN: {epochs} epochs; test accuracy "
          f"{history[-1]['test_accuracy']:.4f}")
    return {"test_accuracy": history[-1]["test_accuracy"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--root", default=None)
    parser.add_argument("--fashion", action="store_true")
    args = parser.parse_args()
    main(args.epochs, root=args.root, fashion=args.fashion)
