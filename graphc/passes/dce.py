"""Dead-code elimination.

A graphc graph is whatever the roots reach: every pass walks `toposort(roots)`, so a node
nothing uses is never visited, compiled or run. Dead code therefore disappears on its own,
and `dce` has nothing to rewrite. It stays in the pipeline so `graphc dump --after dce` names
the point where the graph is final; `dead_nodes` reports what a rewrite left behind.
"""
from __future__ import annotations

from ..graph import toposort
from ..tensor import Node, Tensor


def dce(roots: list[Tensor]) -> list[Tensor]:
    """Return the roots unchanged: the graph is the set of nodes they reach.

    (An unused output of a multi-output node such as `split` is kept: dropping it would
    change the op.)
    """
    return list(roots)


def dead_nodes(all_nodes, roots: list[Tensor]) -> list[Node]:
    """The nodes of `all_nodes` that the roots do not reach, in creation order."""
    live = {node.id for node in toposort(roots)}
    return sorted((node for node in all_nodes if node.id not in live), key=lambda n: n.id)
