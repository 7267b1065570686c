"""Print graphs as text (in the spirit of a jaxpr) or Graphviz dot."""
from __future__ import annotations

import json

import numpy as np

from . import dtypes as dt
from .graph import toposort
from .shapes import fmt_shape


def _type(t) -> str:
    return f"{dt.SHORT[t.dtype]}{fmt_shape(t.shape)}"


def comment_safe(text) -> str:
    """`text` on one line and printable whatever it holds (names and locations come from
    users and from loaded files): repr's escapes for newlines, control characters (a
    terminal's escape sequences), backslashes and lone surrogates, without the quotes."""
    return repr(str(text))[1:-1]


def _fmt_attr(value) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join(_fmt_attr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if value is None:
        return "N"
    return comment_safe(value)


def _constant_text(arr: np.ndarray) -> str:
    if arr.size <= 4:
        return np.array2string(arr, separator=",").replace("\n", "")
    return f"<{arr.size} values>"


def names_for(nodes) -> dict:
    """SSA names %0, %1, ... for every tensor, in topological order."""
    names = {}
    for node in nodes:
        for t in node.outputs:
            names[t] = f"%{len(names)}"
    return names


def node_line(node, names) -> str:
    outs = ", ".join(f"{names[t]}:{_type(t)}" for t in node.outputs)
    args = " ".join(names[t] for t in node.inputs)
    attrs = []
    for key, value in node.attrs.items():
        if node.op in ("placeholder", "parameter", "constant") and key in ("shape", "dtype"):
            continue
        if key == "name" and value is None:
            continue
        attrs.append(f"{key}={_fmt_attr(value)}")
    if node.op == "constant":
        attrs.append(f"value={_constant_text(node.value)}")
    text = f"{outs} = {node.op}"
    if args:
        text += " " + args
    if attrs:
        text += " " + " ".join(attrs)
    return text


def dump(outputs, optimized: bool = False, format: str = "text") -> str:
    """A readable listing of the graph that computes `outputs`: one line per node.

    optimized=True shows the graph after graphc's passes and the compiled plan instead.
    format: "text", "dot" (Graphviz) or "json".
    """
    from .tensor import Tensor

    if isinstance(outputs, Tensor):
        outputs = [outputs]
    outputs = list(outputs)
    if optimized:
        from .backends import describe_plan

        return describe_plan(outputs)
    nodes = toposort(outputs)
    names = names_for(nodes)
    if format == "dot":
        return to_dot(nodes, names, outputs)
    if format == "json":
        from .serialize import graph_to_json

        return json.dumps(graph_to_json(outputs)[0], indent=1)
    if format != "text":
        raise ValueError(f"unknown format {format!r}; expected text, dot or json")
    lines = [node_line(node, names) for node in nodes]
    lines.append("return " + ", ".join(names[t] for t in outputs))
    return "\n".join(lines)


def _dot_escape(text: str) -> str:
    """Make a user-given name safe inside a double-quoted dot label: comment_safe's escapes
    (backslashes, newlines as \\n, control characters), and quotes escaped."""
    return comment_safe(text).replace('"', '\\"')


def to_dot(nodes, names, outputs) -> str:
    """Graphviz for `nodes` (topologically sorted): dot nodes n0, n1, ... in that order, so a
    graph prints the same however many nodes were made before it (a loaded one, too)."""
    key = {node.id: f"n{i}" for i, node in enumerate(nodes)}
    lines = ["digraph graphc {", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
    for node in nodes:
        label = f"{node.op}\\n" + ", ".join(f"{names[t]}:{_type(t)}" for t in node.outputs)
        if node.attrs.get("name"):
            label = f"{_dot_escape(node.attrs['name'])}\\n" + label
        shape = "ellipse" if node.op in ("placeholder", "parameter", "constant") else "box"
        lines.append(f'  {key[node.id]} [label="{label}", shape={shape}];')
        for t in node.inputs:
            lines.append(f'  {key[t.node.id]} -> {key[node.id]} [label="{names[t]}"];')
    for i, t in enumerate(outputs):
        lines.append(f'  out{i} [label="output {i}", shape=plaintext];')
        lines.append(f"  {key[t.node.id]} -> out{i};")
    lines.append("}")
    return "\n".join(lines)
