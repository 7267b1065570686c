"""Save and load graphs: JSON for the nodes, an .npz beside it for constants and parameters."""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .graph import toposort
from .tensor import Node, Parameter, Tensor

FORMAT = "graphc-graph/1"


def _encode(value):
    if isinstance(value, tuple):
        return {"t": [_encode(v) for v in value]}
    return value


def _decode(value):
    if isinstance(value, dict) and "t" in value:
        return tuple(_decode(v) for v in value["t"])
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def graph_to_json(outputs) -> tuple[dict, dict]:
    """(JSON-ready dict, arrays by key) describing the graph of `outputs`."""
    nodes = toposort(outputs)
    index = {node.id: i for i, node in enumerate(nodes)}
    arrays = {}
    records = []
    for i, node in enumerate(nodes):
        rec = {
            "op": node.op,
            "inputs": [[index[t.node.id], t.index] for t in node.inputs],
            "attrs": {k: _encode(v) for k, v in node.attrs.items()},
            "loc": node.loc,
        }
        if node.op == "constant":
            arrays[f"c{i}"] = node.value
            rec["array"] = f"c{i}"
        elif node.op == "parameter":
            arrays[f"p{i}"] = node.value.data
            rec["array"] = f"p{i}"
        records.append(rec)
    out = [[index[t.node.id], t.index] for t in outputs]
    return {"format": FORMAT, "nodes": records, "outputs": out}, arrays


def _atomic_write(path: str, write) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def arrays_path(path: str) -> str:
    root, _ = os.path.splitext(path)
    return root + ".npz"


def save(path: str, outputs) -> None:
    """Write the graph of `outputs` to `path` (JSON) and its arrays to an .npz beside it.
    Both files are replaced atomically: a failed save leaves old files as they were."""
    single = isinstance(outputs, Tensor)
    outputs = [outputs] if single else list(outputs)
    doc, arrays = graph_to_json(outputs)
    doc["single"] = single
    doc["arrays"] = os.path.basename(arrays_path(path))
    text = json.dumps(doc, indent=1).encode()
    _atomic_write(arrays_path(path), lambda fh: np.savez(fh, **arrays))
    _atomic_write(path, lambda fh: fh.write(text))


def load(path: str):
    """Read a graph written by `save`; returns its output tensor(s). Parameters come back as
    new Parameters holding the saved values."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read graph file {path!r}: {exc}") from None
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a graphc graph file (format {doc.get('format')!r})")
    npz = os.path.join(os.path.dirname(os.path.abspath(path)), doc["arrays"])
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    from .tensor import make_node

    tensors: list[list[Tensor]] = []
    for rec in doc["nodes"]:
        attrs = {k: _decode(v) for k, v in rec["attrs"].items()}
        inputs = [tensors[i][j] for i, j in rec["inputs"]]
        if rec["op"] == "parameter":
            p = Parameter(arrays[rec["array"]], name=attrs.get("name"))
            tensors.append([p])
            continue
        value = None
        if rec["op"] == "constant":
            value = arrays[rec["array"]]
            value.setflags(write=False)
        node: Node = make_node(rec["op"], inputs, attrs, loc=rec.get("loc"), value=value)
        tensors.append(node.outputs)
    outputs = [tensors[i][j] for i, j in doc["outputs"]]
    return outputs[0] if doc.get("single") else outputs
