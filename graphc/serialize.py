"""Save and load graphs: JSON for the nodes, an .npz beside it for constants and parameters."""
from __future__ import annotations

import json
import os
import shutil
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


def _write_temp(path: str, write) -> str:
    """Write a temporary file in `path`'s folder with `write(fh)`; return its name."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _replace_together(pairs) -> None:
    """os.replace(tmp, path) for each pair; if one fails, put back the files already replaced
    so that a failed save leaves every old file as it was."""
    backups = []  # (path, backup or None when there was no old file)
    try:
        for tmp, path in pairs:
            backup = None
            if os.path.exists(path):
                backup = tmp + ".old"
                try:
                    os.link(path, backup)  # a second name for the old file, kept until the end
                except OSError:  # a file system without hard links
                    shutil.copy2(path, backup)
            backups.append((path, backup))
            os.replace(tmp, path)
    except BaseException:
        for path, backup in reversed(backups):
            if backup is not None:
                os.replace(backup, path)
                if os.path.exists(backup):  # rename() between two links of one file is a no-op
                    os.unlink(backup)
            elif os.path.exists(path):
                os.unlink(path)
        for tmp, _ in pairs:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    for _, backup in backups:
        if backup is not None:
            os.unlink(backup)


def arrays_path(path: str) -> str:
    root, _ = os.path.splitext(path)
    return root + ".npz"


def save(path: str, outputs) -> None:
    """Write the graph of `outputs` to `path` (JSON) and its arrays to an .npz beside it.
    Both files are written in full before either replaces an old one: a failed save leaves
    old files as they were."""
    path = os.fspath(path)
    if os.path.abspath(arrays_path(path)) == os.path.abspath(path):
        raise ValueError(f"save: {path!r} would be overwritten by its own arrays; "
                         f"give the graph file a .json name")
    single = isinstance(outputs, Tensor)
    outputs = [outputs] if single else list(outputs)
    doc, arrays = graph_to_json(outputs)
    doc["single"] = single
    doc["arrays"] = os.path.basename(arrays_path(path))
    text = json.dumps(doc, indent=1).encode()
    npz_tmp = _write_temp(arrays_path(path), lambda fh: np.savez(fh, **arrays))
    try:
        json_tmp = _write_temp(path, lambda fh: fh.write(text))
    except BaseException:
        os.unlink(npz_tmp)
        raise
    _replace_together([(npz_tmp, arrays_path(path)), (json_tmp, path)])


def load(path: str):
    """Read a graph written by `save`; returns its output tensor(s). Parameters come back as
    new Parameters holding the saved values. A file that is not such a graph raises
    ValueError."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read graph file {path!r}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path!r} is not a graphc graph file (format {found!r}, expected "
                         f"{FORMAT!r})")
    npz = os.path.join(os.path.dirname(os.path.abspath(path)), str(doc.get("arrays")))
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - missing, truncated or not an .npz at all
        raise ValueError(f"cannot read the arrays of {path!r} from {npz!r}: "
                         f"{type(exc).__name__}: {exc}") from None
    try:
        return _build(doc, arrays)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{path!r} is a malformed graphc graph file: "
                         f"{type(exc).__name__}: {exc}") from None


def _build(doc: dict, arrays: dict):
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
