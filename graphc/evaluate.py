"""`gc.eval`: the values of graph tensors without writing `compile`, for exploring.

The compiled function is cached per (outputs, placeholders fed, backend), so evaluating the
same tensors again (after training changed the parameters, say) costs one call. The cache
holds the last EVAL_CACHE_SIZE graphs; an entry keeps its tensors alive, so the ids in the
key can never be reused by other tensors while it is cached.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from .errors import FeedError, user_location
from .graph import toposort
from .tensor import Tensor

EVAL_CACHE_SIZE = 32
_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()


def eval(tensors, feeds=None, backend: str = "cpu"):
    """Evaluate a tensor (returns an array) or a list of tensors (returns a list).

    feeds: a dict from placeholder (or placeholder name) to its value, for every placeholder
    the tensors depend on; feeds they do not depend on are ignored."""
    single = isinstance(tensors, Tensor)
    outputs = [tensors] if single else list(tensors)
    for i, t in enumerate(outputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gc.eval: item {i} is {t!r}, not a graphc Tensor "
                            f"(at {user_location()})")
    needed = [node.outputs[0] for node in toposort(outputs) if node.op == "placeholder"]
    values = [_feed_for(ph, feeds or {}) for ph in needed]
    fn = _compiled(outputs, needed, backend)
    result = fn(*values)  # (a tuple: the outputs were compiled as a list)
    return result[0] if single else list(result)


def _feed_for(ph: Tensor, feeds: dict):
    for key, value in feeds.items():
        if key is ph or (isinstance(key, str) and ph.name is not None and key == ph.name):
            return value
    raise FeedError(f"gc.eval: no value for placeholder {ph.name!r} (created at "
                    f"{ph.node.loc}): give it in feeds={{placeholder: array}} "
                    f"(at {user_location()})")


def _compiled(outputs, inputs, backend: str):
    from .function import compile as gc_compile

    key = (tuple(id(t) for t in outputs), tuple(id(t) for t in inputs), backend)
    with _lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
            return entry[0]
    fn = gc_compile(inputs, outputs, backend=backend)
    with _lock:
        _cache[key] = (fn, outputs, inputs)
        while len(_cache) > EVAL_CACHE_SIZE:
            _cache.popitem(last=False)
    return fn
