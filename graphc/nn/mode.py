"""Train and test mode: which graph a layer builds (as DeZero's `Config.train`).

The mode is read when a layer is called, so it decides the graph that is built, never a
compiled step: compile one step in train mode and one predictor in test mode from the same
model. A context variable, so threads and async tasks each see their own mode.
"""
from __future__ import annotations

import contextlib
import contextvars

_training = contextvars.ContextVar("graphc_training", default=True)


def is_training() -> bool:
    """True unless inside `with gc.test_mode():`."""
    return _training.get()


@contextlib.contextmanager
def test_mode():
    """Build graph in test mode: Dropout passes its input through and BatchNorm normalises
    with its running statistics."""
    token = _training.set(False)
    try:
        yield
    finally:
        _training.reset(token)


test_mode.__test__ = False  # (not a pytest test, although its name starts with test)
