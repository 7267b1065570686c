"""The one graph walk every pass shares: `rewrite(roots, rule)`.

Nodes are immutable, so a pass never edits one. `rewrite` visits the nodes the roots depend
on in topological order, hands each to `rule` together with its (possibly replaced) inputs,
and records what each output tensor becomes. A node whose inputs changed and that the rule
leaves alone is rebuilt over the new inputs; a node whose inputs did not change is kept, so a
pass that changes nothing returns the very same root tensors.
"""
from __future__ import annotations

from collections.abc import Callable

from ..graph import toposort
from ..shapes import fmt_shape
from ..tensor import Node, Tensor, make_node

# rule(node, new_inputs) -> one tensor per output of node, or None (keep / rebuild)
Rule = Callable[[Node, list], "list[Tensor] | None"]


def rebuild(node: Node, inputs) -> list[Tensor]:
    """The outputs of `node` computed from `inputs`: the node's own when nothing changed,
    else those of a new node with the same op, attrs, location and value."""
    if all(new is old for new, old in zip(inputs, node.inputs)):
        return list(node.outputs)
    new = make_node(node.op, inputs, node.attrs, loc=node.loc, value=node.value)
    for old_t, new_t in zip(node.outputs, new.outputs):
        new_t._name = old_t._name  # a user-given tensor name survives the rebuild
    return list(new.outputs)


def check_same_type(old: Tensor, new: Tensor, node: Node) -> None:
    """Raise if a replacement changes a tensor's shape or dtype (a bug in the rule)."""
    if new.shape != old.shape or new.dtype != old.dtype:
        raise AssertionError(
            f"a rewrite replaced output {old.index} of {node.op} (created at {node.loc}), a "
            f"{old.dtype}{fmt_shape(old.shape)}, by a {new.dtype}{fmt_shape(new.shape)} "
            f"({new.node.op}); a rule must keep every tensor's type"
        )


def rewrite(roots, rule: Rule) -> list[Tensor]:
    """Apply `rule` to every node the roots depend on, inputs first; return the new roots.

    rule(node, new_inputs) returns one replacement tensor per output of `node`, or None to
    keep the node (rebuilt over new_inputs when they differ from node.inputs). Each
    replacement must have the shape and dtype of the tensor it replaces.
    """
    replaced: dict[Tensor, Tensor] = {}
    for node in toposort(roots):
        inputs = [replaced.get(t, t) for t in node.inputs]
        outputs = rule(node, inputs)
        if outputs is None:
            outputs = rebuild(node, inputs)
        if len(outputs) != len(node.outputs):
            raise AssertionError(f"a rewrite gave {len(outputs)} tensors for the "
                                 f"{len(node.outputs)} outputs of {node.op} at {node.loc}")
        for old, new in zip(node.outputs, outputs):
            if new is not old:
                check_same_type(old, new, node)
                replaced[old] = new
    return [replaced.get(t, t) for t in roots]


def same_roots(a, b) -> bool:
    """True when two root lists hold the very same tensors (a pass changed nothing)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))
