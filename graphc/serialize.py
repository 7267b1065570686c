"""Save and load graphs: a JSON file for the nodes, an .npz beside it for the arrays.

A save publishes the model in one atomic step. The arrays go to a fresh `NAME.<16 hex>.npz`,
then the JSON naming them replaces the old JSON by one rename (each fsynced first), and only
then is the old arrays file removed: killed at any moment, a save leaves the old model or
the new one, and the next save of that graph removes its leftovers. Saves into one folder
hold a lock on it, so two of them never remove each other's files.

A loaded file is untrusted: everything is checked (graphc.serialize_schema,
graphc.serialize_arrays) before a node is built, and every failure is one ValueError naming
the file, the node and the field. `graphc dump --format json` writes the same format with
the arrays inline, so its output loads on its own.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass

import numpy as np

from .graph import toposort
from .ops.registry import OPS
from .serialize_arrays import NpzArrays, arrays_file_name, decode_inline, encode_inline
from .serialize_schema import (
    MAX_OPERANDS,
    OP_SCHEMAS,
    Invalid,
    check_attr_names,
    check_attrs,
    check_operand_count,
    flag,
    integer,
    name,
    sequence,
    show,
)
from .tensor import Parameter, Tensor, make_node

try:
    import fcntl
except ImportError:  # no advisory locks (Windows): concurrent saves of one graph may race
    fcntl = None

FORMAT = "graphc-graph/1"
MAX_NODES = 1 << 24
_TOP_FIELDS = ("format", "nodes", "outputs", "single", "arrays")
_RECORD_FIELDS = ("op", "inputs", "attrs", "loc", "array", "data")
_STORED = ("constant", "parameter")  # the ops whose nodes hold an array


# --- the graph handle -------------------------------------------------------------------------
class TensorsByName:
    """Tensors in order, also found by name: `g.inputs["x"]`. Iterating gives the tensors,
    so it goes wherever a list of placeholders is expected: gc.compile(g.inputs, ...)."""

    def __init__(self, tensors):
        self._tensors = tuple(tensors)

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __getitem__(self, key):
        if not isinstance(key, str):
            return self._tensors[key]
        found = [t for t in self._tensors if t.name == key]
        if len(found) != 1:
            why = "no tensor" if not found else f"{len(found)} tensors"
            raise KeyError(f"{why} named {key!r}; the names are {list(self.keys())}")
        return found[0]

    def __contains__(self, key) -> bool:
        if isinstance(key, str):
            return key in self.keys()
        return any(t is key for t in self._tensors)  # (== on tensors builds a graph node)

    def keys(self) -> list[str]:
        return [t.name for t in self._tensors if t.name is not None]

    def items(self) -> list[tuple[str, Tensor]]:
        return [(t.name, t) for t in self._tensors if t.name is not None]

    def __repr__(self) -> str:
        return f"TensorsByName({list(self._tensors)!r})"


@dataclass(frozen=True)
class Graph:
    """A loaded graph. inputs: its placeholders, by name and in order; outputs: one tensor
    or a list, as saved; params: its Parameters, by name and in order."""

    inputs: TensorsByName
    outputs: Tensor | list
    params: TensorsByName


# --- to JSON --------------------------------------------------------------------------------
def _stored_array(node) -> np.ndarray | None:
    if node.op == "constant":
        return node.value
    if node.op == "parameter":
        return node.value.value  # a copy, taken under the parameter lock
    return None


def _encode(value):
    if isinstance(value, tuple):
        return {"t": [_encode(v) for v in value]}
    return value


def graph_to_json(outputs, inline: bool = True) -> tuple[dict, dict]:
    """(JSON-ready dict, arrays by .npz member name) describing the graph of `outputs`.
    inline=True puts each array in its node (base64 of its little-endian bytes), so the JSON
    stands alone; inline=False leaves them to the .npz that `save` writes."""
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
        value = _stored_array(node)
        if value is not None and inline:
            rec["data"] = encode_inline(value)
        elif value is not None:
            rec["array"] = f"{node.op[0]}{i}"
            arrays[rec["array"]] = value
        records.append(rec)
    out = [[index[t.node.id], t.index] for t in outputs]
    return {"format": FORMAT, "nodes": records, "outputs": out}, arrays


# --- save -----------------------------------------------------------------------------------
def _stem(base: str) -> str:
    """The graph file's name without .json, as its arrays file is named: the characters a
    load refuses in that name (folder separators, a drive colon, control characters)
    become _, and it is cut to what the load takes."""
    return re.sub(r"[/\\:\x00-\x1f]", "_", base[: -len(".json")])[:150]


def _owned_arrays(base: str, arrays_name, legacy: bool = True) -> bool:
    """Whether `arrays_name` is an arrays file a save of graph file `base` writes, or (with
    legacy) the NAME.npz of earlier versions: the only files a save ever removes."""
    stem = re.escape(_stem(base))
    pattern = stem + (r"(\.[0-9a-f]{16})?\.npz" if legacy else r"\.[0-9a-f]{16}\.npz")
    return isinstance(arrays_name, str) and re.fullmatch(pattern, arrays_name) is not None


def _mode(path: str) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _locked_folder(folder: str):
    """The folder, opened (to fsync its entries) and locked against other graphc saves."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # also releases the lock


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _write_new(path: str, write, mode: int | None) -> None:
    """Create `path` (umask permissions, or `mode`), write it with write(fh), fsync it; on
    failure nothing is left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _remove(path)
        raise


def _publish(path: str, write) -> None:
    """Replace `path` by what write(fh) writes, with one rename, keeping its mode (a new
    file: the umask's); the rename is the step that publishes, so nothing of this save is
    visible before it."""
    folder, base = os.path.split(path)
    temp = os.path.join(folder, f".{base}.tmp-{secrets.token_hex(8)}")
    _write_new(temp, write, _mode(path))
    try:
        os.replace(temp, path)
    except BaseException:
        _remove(temp)
        raise


def _published_arrays(path: str) -> tuple[bool, str | None]:
    """(known, name): the arrays file the graph now at `path` names, if this graph owns it.
    known is False when a file is there but cannot be read: then no arrays file is removed."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return True, None
    except (OSError, ValueError, RecursionError):
        return False, None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return True, None  # (a file graphc did not write names no arrays file of graphc's)
    arrays = doc.get("arrays")
    return True, arrays if _owned_arrays(os.path.basename(path), arrays) else None


def _remove_leftovers(folder: str, base: str, known: bool, keep: str | None) -> None:
    """Remove what killed saves of `base` left: temp files, and the arrays files the
    published graph does not name (only when it could be read)."""
    for entry in os.listdir(folder):
        orphan = known and entry != keep and _owned_arrays(base, entry, legacy=False)
        if orphan or entry.startswith(f".{base}.tmp-"):
            _remove(os.path.join(folder, entry))


def save(path, outputs) -> None:
    """Write the graph of `outputs` to `path` (a .json file) and its arrays to an .npz
    beside it, replacing an old graph there in one atomic step: a failed or killed save
    leaves the old graph loadable and unchanged. New files take the umask's permissions,
    replacements those of the files they replace."""
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    if not base.endswith(".json") or base == ".json":
        raise ValueError(f"save: {path!r}: give the graph file a .json name (its arrays go "
                         f"beside it in NAME.<id>.npz)")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: the folder {folder!r} does not exist (saving {path!r})")
    single = isinstance(outputs, Tensor)
    outputs = [outputs] if single else list(outputs)
    if not outputs:
        raise ValueError(f"save: no outputs to save (saving {path!r}); a graph file holds at "
                         f"least one")
    doc, arrays = graph_to_json(outputs, inline=False)
    doc["single"] = single
    with _locked_folder(folder) as folder_fd:
        known, old_arrays = _published_arrays(path)
        _remove_leftovers(folder, base, known, old_arrays)
        old_mode = _mode(os.path.join(folder, old_arrays)) if old_arrays else None
        doc["arrays"] = f"{_stem(base)}.{secrets.token_hex(8)}.npz"
        new_arrays = os.path.join(folder, doc["arrays"])
        try:
            _write_new(new_arrays, lambda fh: np.savez(fh, **arrays),
                       _mode(path) if old_mode is None else old_mode)
            os.fsync(folder_fd)  # the arrays file's name is on disk before a JSON names it
            text = json.dumps(doc, indent=1).encode()
            _publish(path, lambda fh: fh.write(text))
        except BaseException:
            _remove(new_arrays)
            raise
        os.fsync(folder_fd)
        if old_arrays is not None:
            _remove(os.path.join(folder, old_arrays))


# --- load -----------------------------------------------------------------------------------
def _read_json(path: str):
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"cannot read graph file {path!r}: {type(exc).__name__}: "
                         f"{reason}") from None


def _ref(value, field: str, nodes: int, which: str) -> tuple[int, int]:
    """[node, output] naming an output of one of the first `nodes` nodes."""
    pair = sequence(value, field, 2)
    if len(pair) != 2:
        raise Invalid(field, f"{show(value)} is not a [node, output] pair")
    node = integer(pair[0], field, 0, nodes - 1,
                   f"the index of {which} (an int in [0, {nodes}))" if nodes else
                   f"the index of {which}: there is none")
    return node, integer(pair[1], field, 0, MAX_OPERANDS, "an output index (an int >= 0)")


def _check_record(rec, i: int) -> None:
    """Everything about node i that needs no other node's type: its fields, op, operand
    references (earlier nodes only, so the graph is acyclic) and attribute names."""
    if not isinstance(rec, dict):
        raise Invalid("", f"{show(rec)} is not an object")
    unknown = [k for k in rec if k not in _RECORD_FIELDS]
    if unknown:
        raise Invalid(str(unknown[0])[:60], "is not a field of a node")
    op = rec.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise Invalid("op", f"{show(op)} is not a graphc op")
    if op not in OP_SCHEMAS:
        raise Invalid("op", f"{op} declares no attribute schema, so it cannot be loaded")
    refs = sequence(rec.get("inputs"), "inputs", MAX_OPERANDS)
    for k, ref in enumerate(refs):
        _ref(ref, f"inputs[{k}]", i, "an earlier node")
    check_operand_count(op, len(refs), "inputs")
    if not isinstance(rec.get("attrs"), dict):
        raise Invalid("attrs", f"{show(rec.get('attrs'))} is not an object")
    check_attr_names(op, rec["attrs"], "attrs")
    name(rec.get("loc"), "loc")
    holds = [k for k in ("array", "data") if k in rec]
    if op in _STORED and len(holds) != 1:
        raise Invalid("array", f"a {op} node names its array in 'array' (an .npz member) "
                               f"or holds it in 'data', once")
    if op not in _STORED and holds:
        raise Invalid(holds[0], f"a {op} node holds no array")


def _operand(tensors: list, ref, field: str) -> Tensor:
    node, out = _ref(ref, field, len(tensors), "a node")
    if out >= len(tensors[node]):
        raise Invalid(field, f"node {node} has {len(tensors[node])} outputs, not {out + 1}")
    return tensors[node][out]


def _stored_value(rec: dict, attrs: dict, store: NpzArrays | None) -> np.ndarray:
    shape, dtype = attrs["shape"], attrs["dtype"]
    if None in shape:
        raise Invalid("attrs.shape", f"{show(shape)}: a stored array has no batch dimension")
    if "data" in rec:
        return decode_inline(rec["data"], shape, dtype, "data")
    if store is None:
        raise Invalid("array", "names an .npz member, but the file names no 'arrays' file")
    return store.read(rec["array"], shape, dtype, "array")


def _one_line(exc: BaseException, most: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= most else text[:most] + "..."


def _build_node(rec: dict, tensors: list, store: NpzArrays | None) -> list:
    """The output tensors of one checked record, its attributes checked against its
    operands' types and its array against its declared shape and dtype."""
    op = rec["op"]
    inputs = [_operand(tensors, ref, f"inputs[{k}]") for k, ref in enumerate(rec["inputs"])]
    attrs = check_attrs(op, rec["attrs"], [(t.shape, t.dtype) for t in inputs], "attrs")
    value = _stored_value(rec, attrs, store) if op in _STORED else None
    if op == "parameter":
        return [Parameter(value, name=attrs["name"])]
    if value is not None:
        value.setflags(write=False)
    try:
        node = make_node(op, inputs, attrs, loc=rec.get("loc"), value=value)
    except Exception as exc:  # noqa: BLE001 - the op's shape rule refused what the file says
        raise Invalid("inputs", f"{op} refuses these operands and attributes: "
                                f"{type(exc).__name__}: {_one_line(exc)}") from None
    return node.outputs


def _label(rec, i: int) -> str:
    op = rec.get("op") if isinstance(rec, dict) else None
    return f"node {i} ({op[:60]})" if isinstance(op, str) else f"node {i}"


def _load_doc(doc: dict, folder: str) -> Graph:
    unknown = [k for k in doc if k not in _TOP_FIELDS]
    if unknown:
        raise Invalid(str(unknown[0])[:60], "is not a field of a graphc graph file")
    records = sequence(doc.get("nodes"), "nodes", MAX_NODES)
    single = flag(doc.get("single", False), "single")
    for i, rec in enumerate(records):
        try:
            _check_record(rec, i)
        except Invalid as exc:
            raise Invalid(exc.field, exc.message, node=_label(rec, i)) from None
    store = None
    if "arrays" in doc:
        store = NpzArrays(os.path.join(folder, arrays_file_name(doc["arrays"], "arrays")))
        if not store.open_if_there():
            raise _ArraysGone
    tensors: list[list[Tensor]] = []
    with contextlib.closing(store) if store else contextlib.nullcontext():
        for i, rec in enumerate(records):
            try:
                tensors.append(_build_node(rec, tensors, store))
            except Invalid as exc:
                raise Invalid(exc.field, exc.message, node=_label(rec, i)) from None
    refs = sequence(doc.get("outputs"), "outputs", MAX_NODES)
    if not refs or (single and len(refs) != 1):
        raise Invalid("outputs", f"lists {len(refs)} outputs; expected "
                                 f"{'one (single is true)' if single else 'at least one'}")
    outputs = [_operand(tensors, ref, f"outputs[{k}]") for k, ref in enumerate(refs)]
    nodes = toposort(outputs)
    return Graph(TensorsByName(n.outputs[0] for n in nodes if n.op == "placeholder"),
                 outputs[0] if single else outputs,
                 TensorsByName(n.outputs[0] for n in nodes if n.op == "parameter"))


class _ArraysGone(Exception):
    """The arrays file the graph file named is not there: a save replaced both between
    the load's two reads (load reads the graph file again)."""


LOAD_ATTEMPTS = 4


def load(path) -> Graph:
    """Read a graph written by `save` (or `graphc dump --format json`) into a Graph:
    g.inputs, g.outputs, g.params. Parameters come back as new Parameters holding the saved
    values. Loading never runs code from the file: anything but a graph graphc itself could
    have written raises one ValueError naming the file, the node and the field."""
    path = os.fspath(path)
    for _ in range(LOAD_ATTEMPTS):
        doc = _read_json(path)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = show(doc.get("format")) if isinstance(doc, dict) else \
                f"a JSON {type(doc).__name__}"
            raise ValueError(f"{path!r} is not a graphc graph file (field format: {found}, "
                             f"expected {FORMAT!r})")
        try:
            return _load_doc(doc, os.path.dirname(os.path.abspath(path)))
        except Invalid as exc:
            raise ValueError(f"malformed graphc graph file {path!r}: {exc.where()}: "
                             f"{exc.message}") from None
        except _ArraysGone:
            continue  # (a save in between: the graph file now names another arrays file)
    raise ValueError(f"graphc graph file {path!r}: field arrays: cannot read the arrays in "
                     f"{show(doc.get('arrays'))}: there is no such file beside the graph")
