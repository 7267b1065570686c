"""Seeds for ops that draw random numbers at run time (dropout)."""
from __future__ import annotations

import itertools

from .errors import user_location
from .shapes import is_int

_state = {"counter": itertools.count(), "base": 0}


def check_seed(seed) -> int:
    """A seed as NumPy takes it: an int >= 0 (TypeError, ValueError otherwise, naming the
    user's line)."""
    if not is_int(seed):
        raise TypeError(f"a seed must be an int >= 0, not {type(seed).__name__} {seed!r} "
                        f"(at {user_location()})")
    if seed < 0:
        raise ValueError(f"a seed must be an int >= 0, got {int(seed)} (at {user_location()})")
    return int(seed)


def set_seed(seed: int) -> None:
    """Seed every random op built from now on (each gets seed + its creation index)."""
    _state["base"] = check_seed(seed)
    _state["counter"] = itertools.count()


def next_seed() -> int:
    return _state["base"] * 1_000_003 + next(_state["counter"])
