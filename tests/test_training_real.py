"""Real training with graphc.nn/optim/data, through the scripts in examples/: the accuracy each
must reach (issue 14). Run times are printed (pytest -s), never asserted."""
from __future__ import annotations

import gzip
import importlib.util
import os
import struct
import time

import numpy as np
import pytest

import graphc as gc

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spiral_mlp_sgd_reaches_95_percent_training_accuracy():
    result = _example("spiral_mlp").main(epochs=300, progress=False)
    assert result["train_accuracy"] >= 0.95, result


def test_digits_mlp_adam_reaches_96_percent_test_accuracy():
    start = time.perf_counter()
    result = _example("digits_mlp").main(epochs=20, progress=False)
    print(f"digits MLP 64-100-10, Adam, 20 epochs incl. compile: "
          f"{time.perf_counter() - start:.2f} s")
    assert result["test_accuracy"] >= 0.96, result["history"][-1]


@pytest.mark.slow
def test_digits_cnn_reaches_97_percent_and_survives_save_and_load(tmp_path):
    assert hasattr(gc, "conv2d"), "the conv ops (issue 12) are missing"
    result = _example("digits_cnn").main(epochs=8, progress=False,
                                         weights=str(tmp_path / "cnn.npz"))
    assert result["test_accuracy"] >= 0.97, result
    assert result["reloaded_accuracy"] == pytest.approx(result["test_accuracy"], abs=1e-6)


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.slow
def test_mnist_cnn_example_runs_on_idx_files(tmp_path, monkeypatch):
    """A stand-in for MNIST: 28x28 images whose label is the bright row band they contain, so
    the example's CNN must actually learn to pass."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 200)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label:4 + 2 * label, 4:24] = 250
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("GRAPHC_DATA", str(tmp_path))
    result = _example("mnist_cnn").main(epochs=2, batch_size=50, progress=False)
    assert result["test_accuracy"] >= 0.9, result
