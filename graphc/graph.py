"""Walking graphs: the nodes an output depends on, in topological order."""
from __future__ import annotations

from .tensor import Node, Tensor


def toposort(outputs) -> list[Node]:
    """Every node the outputs depend on, inputs before users (creation order)."""
    seen: dict[int, Node] = {}
    stack = [t.node for t in outputs]
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen[node.id] = node
        stack.extend(t.node for t in node.inputs)
    return [seen[i] for i in sorted(seen)]


def consumers(nodes) -> dict[Tensor, list[Node]]:
    users: dict[Tensor, list[Node]] = {}
    for node in nodes:
        for t in node.inputs:
            users.setdefault(t, []).append(node)
    return users


def placeholders(outputs) -> list[Tensor]:
    """The placeholders the outputs depend on, in creation order."""
    return [n.outputs[0] for n in toposort(outputs) if n.op == "placeholder"]
