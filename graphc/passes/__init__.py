"""Graph-level optimisation: a flat, named list of passes, each a function IR -> IR.

A pass takes the root tensors of a graph and returns new roots (the same tensors when it
changed nothing); it never mutates a node, and it keeps every placeholder and parameter node
as it is, since compiled functions bind feeds and parameter buffers by identity.

    optimize(roots)                   the whole pipeline, repeated to a fixed point
    optimize(roots, upto="fold")      the pipeline up to and including the pass "fold"
                                      (what `graphc dump --after fold` shows)

Each pass lives in its own module (cse.py, fold.py, simplify.py, dce.py; the shared walk in
rewrite.py). The functions `cse`, `simplify`, `dce` and `rewrite` exported here shadow their
modules' names as attributes of this package; reach module contents by their full path, e.g.
`from graphc.passes.simplify import RULES`.
"""
from __future__ import annotations

from ..tensor import Tensor
from .cse import cse
from .dce import dce, dead_nodes
from .fold import fold_constants
from .rewrite import rewrite, same_roots
from .simplify import simplify

PASSES = [
    ("cse", cse),                  # merge duplicated subexpressions (grad makes many)
    ("fold", fold_constants),      # evaluate constant subgraphs now
    ("simplify", simplify),        # algebraic identities: x*1, transpose∘transpose, ...
    ("dce", dce),                  # the roots' reachable set is the graph
]
PASS_NAMES = [name for name, _ in PASSES]
MAX_ROUNDS = 10  # rounds of the pipeline before giving up on a fixed point
LEVELS = ("full", "reference")

__all__ = [
    "MAX_ROUNDS", "PASSES", "PASS_NAMES", "cse", "dce", "dead_nodes", "fold_constants",
    "optimize", "rewrite", "simplify",
]


def optimize(roots: list[Tensor], level: str = "full", upto: str | None = None,
             fastmath: bool = False) -> list[Tensor]:
    """Run the pass pipeline over the graph of `roots`; return new roots in the same order.

    level: "full" runs PASSES; "reference" runs nothing (the numpy interpreter's choice).
    upto: the name of a pass in PASSES; the pipeline stops after it.
    fastmath: also apply the rewrites that are exact only in real arithmetic.
    The (truncated) pipeline is repeated until a whole round changes nothing, since one
    rule's result is often another's input (at most MAX_ROUNDS rounds).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown optimisation level {level!r}; expected one of {LEVELS}")
    if upto is not None and upto not in PASS_NAMES:
        raise ValueError(f"unknown pass {upto!r}; the passes are {', '.join(PASS_NAMES)}")
    roots = list(roots)
    if level == "reference":
        return roots
    options = {"simplify": {"fastmath": fastmath}}  # the passes that take options
    stop = PASS_NAMES.index(upto) + 1 if upto is not None else len(PASSES)
    for _ in range(MAX_ROUNDS):
        before = roots
        for name, run_pass in PASSES[:stop]:
            roots = run_pass(roots, **options.get(name, {}))
        if same_roots(before, roots):
            break
    return roots
