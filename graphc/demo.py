"""Train a small MLP on a spiral data set: the whole graphc workflow in one file.

    python -m graphc.demo [--seconds 3] [--backend auto|cpu|numpy] [--activation relu|sigmoid]
    graphc demo ...

Build the model from graphc.nn layers (a symbolic graph with placeholders and Parameters),
let an optimizer from graphc.optim differentiate the loss and write the SGD updates as part
of the graph (`updates=opt.updates(loss, model)`, as in Theano), compile one training step,
then call it on the minibatches of a graphc.data DataLoader.
"""
from __future__ import annotations

import argparse
import sys
import time

from .data.datasets import spiral  # noqa: F401  (graphc.demo.spiral, as before)

DESCRIPTION = ("Train a 2-10-3 MLP on a 3-class spiral data set with a compiled SGD step, "
               "printing the graph, then the loss and accuracy as training goes.")


def build_model(hidden: int = 10, classes: int = 3, activation: str = "relu", seed: int = 0):
    """The MLP graph, seeded by `gc.set_seed(seed)`: returns (x, t, loss, accuracy,
    parameters); the model itself is `nn.MLP((hidden, classes))`."""
    import graphc as gc
    from graphc import nn

    gc.set_seed(seed)
    act = {"relu": gc.relu, "sigmoid": gc.sigmoid}[activation]
    model = nn.MLP((hidden, classes), activation=act)
    x = gc.placeholder((None, 2), "float32", name="x")
    t = gc.placeholder((None,), "int64", name="t")
    logits = model(x)
    loss = gc.softmax_cross_entropy(logits, t)
    acc = gc.accuracy(logits, t)
    return x, t, loss, acc, list(model.params())


def _compile(inputs, outputs, updates, backend: str):
    """gc.compile on `backend` ("auto" is cpu)."""
    import graphc as gc

    backend = "cpu" if backend == "auto" else backend
    return gc.compile(inputs, outputs, updates=updates, backend=backend), backend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="how long to train (default 3)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="stop after this many epochs, even if time is left")
    parser.add_argument("--backend", default="auto",
                        help="auto (= cpu), cpu or numpy")
    parser.add_argument("--activation", choices=("relu", "sigmoid"), default="relu")
    parser.add_argument("--hidden", type=int, default=10, help="hidden units (default 10)")
    parser.add_argument("--lr", type=float, default=1.0, help="SGD learning rate (default 1.0)")
    parser.add_argument("--batch", type=int, default=30, help="minibatch size (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="do not print the graph")


def run(args) -> int:
    """Build, compile and train; returns the exit status."""
    import graphc as gc
    from graphc import data, optim

    train_set = data.Spiral(train=True)
    x_train, t_train = train_set.data, train_set.label
    x, t, loss, acc, params = build_model(args.hidden, 3, args.activation, args.seed)
    updates = optim.SGD(lr=args.lr).updates(loss, params)

    if not args.quiet:
        print(f"# forward graph ({args.activation} MLP 2-{args.hidden}-3, "
              f"softmax cross entropy); the training step adds the gradients of {len(params)} "
              f"parameters and their updates")
        print(gc.dump([loss, acc]))
        print()
    start = time.perf_counter()
    try:
        step, backend = _compile([x, t], [loss, acc], updates, args.backend)
        evaluate, _ = _compile([x, t], [loss, acc], None, backend)
    except ValueError as exc:
        print(f"graphc demo: error: cannot compile for backend {args.backend!r}: "
              f"{' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"compiled the training step and the evaluation for backend {backend} in "
          f"{time.perf_counter() - start:.2f} s", flush=True)

    # First calls JIT-compile the kernels (or load them from the cache); keep that out of the
    # training time. The warm-up step's updates are undone.
    start = time.perf_counter()
    saved = [p.value for p in params]
    step(x_train[:args.batch], t_train[:args.batch])
    for p, value in zip(params, saved):
        p.value = value
    evaluate(x_train, t_train)
    if backend != "numpy":
        print(f"first calls (kernels compiled or loaded from the cache) took "
              f"{time.perf_counter() - start:.2f} s", flush=True)

    n = len(x_train)
    loader = data.DataLoader(train_set, max(1, min(args.batch, n)), seed=args.seed)
    epochs = steps = 0
    start = time.perf_counter()
    next_report = 0.0
    interval = max(args.seconds / 10, 0.05)
    while True:
        for xb, tb in loader:
            step(xb, tb)
            steps += 1
        epochs += 1
        elapsed = time.perf_counter() - start
        done = elapsed >= args.seconds or (args.epochs is not None and epochs >= args.epochs)
        if elapsed >= next_report or done:
            full_loss, full_acc = evaluate(x_train, t_train)
            print(f"epoch {epochs:5d}  step {steps:6d}  {elapsed:6.2f} s  "
                  f"loss {float(full_loss):.4f}  accuracy {float(full_acc):.3f}", flush=True)
            next_report = elapsed + interval
        if done:
            break
    full_loss, full_acc = evaluate(x_train, t_train)
    print(f"final: {epochs} epochs, {steps} steps in {elapsed:.2f} s on backend {backend} "
          f"({steps / max(elapsed, 1e-9):.0f} steps/s); loss {float(full_loss):.4f}, "
          f"accuracy {float(full_acc):.3f} on {n} points")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graphc.demo", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
