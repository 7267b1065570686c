"""Seeds for ops that draw random numbers at run time (dropout)."""
from __future__ import annotations

import itertools

_state = {"counter": itertools.count(), "base": 0}


def set_seed(seed: int) -> None:
    """Seed every random op built from now on (each gets seed + its creation index)."""
    _state["base"] = int(seed)
    _state["counter"] = itertools.count()


def next_seed() -> int:
    return _state["base"] * 1_000_003 + next(_state["counter"])
