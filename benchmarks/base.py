"""What every framework file provides: a `Peer` that builds a `Runner` per workload."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


class NotApplicable(Exception):
    """This framework cannot run this workload; the message says why (shown as 'n/a')."""


@dataclass
class Runner:
    """One workload, set up in one framework with fresh copies of the initial weights."""

    step: Callable[[], Any]            # one step; the result is computed when it returns
    fetch: Callable[[Any], np.ndarray]  # a step's result (loss or output) as a NumPy array


class Peer:
    """A framework row in the table. Subclasses fill in `name` and the methods."""

    name = ""

    def unavailable(self) -> str | None:
        """Why this framework cannot run at all here (not installed...), or None."""
        return None

    def set_threads(self, n: int) -> Callable[[], None]:
        """Limit the framework to n threads; returns a function that restores the old limit."""
        return lambda: None

    def versions(self) -> dict:
        return {}

    def build(self, workload, data) -> Runner:
        raise NotImplementedError
