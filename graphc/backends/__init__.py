"""Backends: what `gc.compile` hands a graph to.

A backend is a factory `factory(program, optimize=..., **options) -> executable`, registered
by name with `register_backend`. An executable has
- `runners`: a dict from batch size N (None without a batch dim) to a runner bound for it;
- `bind(n)`: the runner for N (made, and kept in `runners`, on first use); a runner takes
  the feeds positionally and returns the outputs as a tuple, after applying the updates;
- `run(feeds, n)`: `bind(n)(*feeds)`;
- `describe(n=None, kernels=False)`: the compiled plan as text.
`graphc.function` and `graphc.printing` use only this, never a concrete backend.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass
class Program:
    """What a backend compiles: placeholders in call order, outputs, and parameter updates."""

    inputs: list          # placeholder tensors
    outputs: list         # tensors to return
    updates: list         # (Parameter, new value tensor) pairs, applied after the outputs
    parameters: list      # every Parameter the program reads or updates
    loc: str = ""         # where the user called gc.compile

    @property
    def roots(self) -> list:
        """Every tensor the program must compute: outputs then update values."""
        return list(self.outputs) + [v for _, v in self.updates]

    @classmethod
    def of(cls, outputs) -> Program:
        """A program computing `outputs` from every placeholder they depend on."""
        from ..graph import placeholders, toposort

        params = [n.value for n in toposort(outputs) if n.op == "parameter"]
        return cls(placeholders(outputs), list(outputs), [], params)


_BACKENDS: dict = {}
# the modules that register the built-in backends, imported on first use
_MODULES = {"numpy": "graphc.backends.numpy_backend", "cpu": "graphc.backends.cpu",
            "cuda": "graphc.backends.cuda"}
DEFAULT = "cpu"


def register_backend(name: str, factory) -> None:
    _BACKENDS[name] = factory


def get_backend(name: str):
    """The factory of backend `name`; a clear ValueError for an unknown or missing one."""
    if name not in _BACKENDS and name in _MODULES:
        try:
            importlib.import_module(_MODULES[name])
        except ImportError as exc:
            if name != "cuda":
                raise
            raise ValueError(f"backend 'cuda' is not available in this build of graphc "
                             f"({exc}); use 'cpu' or 'numpy'") from None
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of "
                         f"{', '.join(repr(b) for b in _MODULES)}")
    return _BACKENDS[name]


def describe_plan(outputs, kernels: bool = False, n=None, backend: str = DEFAULT) -> str:
    """The compiled plan of `outputs` on `backend`, as text (`graphc dump --optimized`)."""
    return get_backend(backend)(Program.of(outputs)).describe(n, kernels)


class RunnerCache:
    """What the cpu and cuda executables share: `bind(n)`, the runner for batch size n,
    made by the backend's `new_runner(n)` on first use (after check_batch) and kept in
    `self.runners` (graphc.function bounds how many)."""

    def bind(self, n):
        runner = self.runners.get(n)
        if runner is None:
            check_batch(self.plan, n)
            runner = self.runners[n] = self.new_runner(n)
        return runner

    def run(self, feeds, n):
        return self.bind(n)(*feeds)


DESCRIBE_N = 32  # the batch size `describe` binds when none is given and none is bound yet


def described_runner(ex, n) -> tuple:
    """(n, the runner for it, a batch-size suffix for the header) for a backend's describe:
    n as given, else a batch size already bound, else DESCRIBE_N."""
    has_batch = any(None in t.shape for t in ex.plan.program.inputs)
    if n is None:
        n = next(iter(ex.runners), DESCRIBE_N if has_batch else None)
    return n, ex.bind(n), f" (shapes bound at N={n})" if has_batch else ""


def check_batch(plan, n) -> None:
    """Before a runner for batch size n exists: a max, min or argmax over an axis that is
    N, with N == 0, has no value (NumPy raises too): a RuntimeCheckError naming the node."""
    from ..errors import RuntimeCheckError
    from ..ops.reduce import NO_IDENTITY, empty_reduction
    from ..shapes import bind

    for node in plan.nodes:
        if node.op in NO_IDENTITY:
            why = empty_reduction(node.op, node.attrs, bind(node.inputs[0].shape, n))
            if why is not None:
                raise RuntimeCheckError(f"{node.op}: {why} (node created at {node.loc})")
