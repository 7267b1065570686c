"""The reference interpreter: each node runs its op's NumPy reference. Every other backend
is tested against it."""
from __future__ import annotations

import numpy as np

from ..errors import RuntimeCheckError
from ..graph import toposort
from . import Program, register_backend


class RunContext:
    """What a reference needs at run time: the batch size, a node's RNG, failure reporting."""

    def __init__(self, n, rngs):
        self.n = n
        self.rngs = rngs
        self.node = None

    @property
    def rng(self) -> np.random.Generator:
        return self.rngs[self.node.id]

    def fail(self, message: str):
        node = self.node
        raise RuntimeCheckError(f"{node.op}: {message} (node created at {node.loc})")


def evaluate(nodes, env: dict, ctx: RunContext) -> dict:
    """Run `nodes` (topologically sorted) over `env` (tensor -> array), filling it in.
    NumPy's floating-point warnings (inf * 0, 0 / 0, overflow) are off: the results are
    NumPy's IEEE values, as every backend's, and a warning would point at graphc's own
    source, not the user's line (the compiled backends never warn)."""
    with np.errstate(all="ignore"):
        return _evaluate(nodes, env, ctx)


def _evaluate(nodes, env: dict, ctx: RunContext) -> dict:
    for node in nodes:
        if node.op == "placeholder":
            continue
        if node.op == "parameter":
            env[node.outputs[0]] = node.value.data
            continue
        if node.op == "constant":
            env[node.outputs[0]] = node.value
            continue
        ctx.node = node
        values = [env[t] for t in node.inputs]
        results = node.record.reference(values, node.attrs, ctx)
        for t, r in zip(node.outputs, results):
            env[t] = np.asarray(r, dtype=t.dtype)
    return env


class NumpyExecutable:
    def __init__(self, program: Program, optimize: bool = False, **options):
        self.program = program
        roots = program.roots
        if optimize:
            from ..passes import optimize as run_passes

            roots = run_passes(roots, level="reference")
        self.roots = roots
        self.nodes = toposort(roots)
        self.rngs = {n.id: np.random.default_rng(n.attrs["seed"])
                     for n in self.nodes if n.op == "random_uniform"}

        self.runners: dict = {}

    def bind(self, n):
        """The runner for batch size n: the reference interpreter with n bound."""
        if n not in self.runners:
            self.runners[n] = lambda *feeds: self.run(feeds, n)
        return self.runners[n]

    def describe(self, n=None, kernels: bool = False) -> str:
        from ..printing import dump

        return "numpy backend: every node by its NumPy reference\n" + dump(list(self.roots))

    def run(self, feeds, n):
        env = dict(zip(self.program.inputs, feeds))
        evaluate(self.nodes, env, RunContext(n, self.rngs))
        return self._finish(env)

    def profile(self, feeds, n, repeat: int, warmup: int) -> list:
        """ProfileRows of `repeat` calls on `feeds` (graphc.profile): one per node run."""
        from ..profile import END, Ticks, node_rows

        ran = [nd for nd in self.nodes if nd.op not in ("placeholder", "parameter", "constant")]
        key = {id(nd): i for i, nd in enumerate(ran)}
        ticks = Ticks(list(range(len(ran))) + [END])
        shapes = {}
        for _ in range(warmup):
            self.run(feeds, n)
        for _ in range(repeat):
            ticks.start()
            env = dict(zip(self.program.inputs, feeds))
            ctx = RunContext(n, self.rngs)
            with np.errstate(all="ignore"):
                for node in self.nodes:
                    _evaluate((node,), env, ctx)
                    i = key.get(id(node))
                    if i is not None:
                        ticks.tick(i)
                        shapes[i] = np.shape(env[node.outputs[0]])
            self._finish(env)
            ticks.tick(END)
        return node_rows(ran, ticks.totals, shapes, repeat)

    def _finish(self, env) -> tuple:
        """The outputs (copies), after every update is applied at once."""
        k = len(self.program.outputs)
        outputs = [np.array(env[t], copy=True) for t in self.roots[:k]]
        new_values = [np.array(env[t], copy=True) for t in self.roots[k:]]  # all at once
        for (param, _), value in zip(self.program.updates, new_values):
            np.copyto(param.data, value, casting="same_kind")
        return tuple(outputs)


register_backend("numpy", lambda program, optimize=False, **o: NumpyExecutable(program, False))
