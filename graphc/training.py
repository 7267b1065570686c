"""`gc.fit`: the training loop most scripts write, with a progress bar.

    history = gc.fit(step, train_loader, epochs=10, eval=(evaluate, test_loader))

`step` is a compiled training step (its updates do the learning) returning the loss, or
(loss, accuracy, ...) scalars; each epoch's values are averaged over the samples. The bar
(tqdm when installed, else a one-line bar of graphc's own) shows loss, accuracy and
samples/s; it is drawn only on a terminal, never into a log file or a pipe.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from .errors import user_location

METRIC_NAMES = ("loss", "accuracy")
BAR_WIDTH = 20


def fit(step, loader, epochs: int = 1, eval=None, progress: bool = True,
        stream=None) -> list:
    """Run `step(x, t)` on every batch of `loader`, `epochs` times.

    eval: None, or (function, loader): after each epoch the function's outputs over that
    loader, averaged, are recorded with a "test_" prefix.
    progress: False turns the bar off; it is also off when `stream` (stdout) is not a
    terminal. Returns one dict per epoch: epoch, loss, accuracy (when the step returns it),
    samples_per_s, seconds, and the test_ metrics."""
    if isinstance(epochs, (bool, np.bool_)) or not isinstance(epochs, (int, np.integer)) \
            or epochs < 0:
        raise TypeError(f"fit: epochs must be an int >= 0, got {epochs!r} (at "
                        f"{user_location()})")
    if eval is not None and (not isinstance(eval, (tuple, list)) or len(eval) != 2
                             or not callable(eval[0])):
        raise TypeError(f"fit: eval must be a (function, loader) pair, got "
                        f"{type(eval).__name__} (at {user_location()})")
    if not callable(step):
        raise TypeError(f"fit: step must be a compiled function, got {type(step).__name__} "
                        f"(at {user_location()})")
    stream = sys.stdout if stream is None else stream
    show = bool(progress) and _isatty(stream)
    history = []
    for epoch in range(1, epochs + 1):
        bar = make_bar(len(loader), f"epoch {epoch}/{epochs}", stream) if show else None
        start = time.perf_counter()
        metrics = _run(step, loader, bar)
        seconds = time.perf_counter() - start
        record = {"epoch": epoch, **metrics.pop("means"), "seconds": seconds,
                  "samples_per_s": metrics["samples"] / max(seconds, 1e-9)}
        if eval is not None:
            function, eval_loader = eval
            means = _run(function, eval_loader, None)["means"]
            record.update({f"test_{k}": v for k, v in means.items()})
        if bar is not None:
            bar.close(_summary(record))
        history.append(record)
    return history


def _isatty(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _run(function, loader, bar) -> dict:
    """Sample-weighted means of the function's scalar outputs over one pass of loader."""
    sums = None
    samples = 0
    start = time.perf_counter()
    for x, t in loader:
        out = function(x, t)
        values = [_scalar(v, i) for i, v in enumerate(out if isinstance(out, tuple) else (out,))]
        n = len(x)
        sums = [v * n for v in values] if sums is None else [s + v * n
                                                             for s, v in zip(sums, values)]
        samples += n
        if bar is not None:
            means = _named([s / samples for s in sums])
            bar.update(means, samples / max(time.perf_counter() - start, 1e-9))
    means = _named([s / max(samples, 1) for s in sums or []])
    return {"means": means, "samples": samples}


def _scalar(value, i: int) -> float:
    arr = np.asarray(value)
    if arr.size != 1:
        raise TypeError(f"fit: output {i} of the step has shape {arr.shape}; fit averages "
                        f"scalar outputs (loss, accuracy, ...)")
    return float(arr.reshape(()))


def _named(values) -> dict:
    return {(METRIC_NAMES[i] if i < len(METRIC_NAMES) else f"output{i}"): v
            for i, v in enumerate(values)}


def _summary(record: dict) -> str:
    parts = [f"{k} {v:.4f}" for k, v in record.items()
             if k not in ("epoch", "seconds", "samples_per_s")]
    return ", ".join(parts) + f", {record['samples_per_s']:.0f} samples/s"


def make_bar(total: int, desc: str, stream):
    """tqdm's bar when tqdm is installed, else graphc's own."""
    try:
        from tqdm import tqdm
    except ImportError:
        return TextBar(total, desc, stream)
    return TqdmBar(tqdm(total=total, desc=desc, file=stream, leave=True))


class TqdmBar:
    def __init__(self, bar):
        self.bar = bar

    def update(self, means: dict, rate: float) -> None:
        self.bar.set_postfix({**{k: f"{v:.4f}" for k, v in means.items()},
                              "samples/s": f"{rate:.0f}"}, refresh=False)
        self.bar.update(1)

    def close(self, summary: str) -> None:
        self.bar.set_postfix_str(summary)
        self.bar.close()


class TextBar:
    """A bar redrawn in place with a carriage return; the epoch's summary stays."""

    def __init__(self, total: int, desc: str, stream):
        self.total, self.done, self.desc, self.stream = total, 0, desc, stream

    def update(self, means: dict, rate: float) -> None:
        self.done += 1
        filled = BAR_WIDTH * self.done // max(self.total, 1)
        values = " ".join(f"{k} {v:.4f}" for k, v in means.items())
        self.stream.write(f"\r{self.desc} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                          f"{self.done}/{self.total} {values} {rate:.0f} samples/s\033[K")
        self.stream.flush()

    def close(self, summary: str) -> None:
        self.stream.write(f"\r{self.desc}: {summary}\033[K\n")
        self.stream.flush()
