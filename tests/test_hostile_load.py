"""Hostile saved graphs and saves that never lose a model (issue 11, part A).

A saved graph is untrusted input: gc.load checks everything before a node is built, and every
failure is one ValueError naming the file, the node and the field. gc.save publishes a model
in one atomic step and cleans up after saves that were killed.
"""
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import graphc as gc
from graphc import serialize
from graphc.cli import main
from graphc.graph import toposort
from graphc.ops.registry import OPS
from graphc.serialize_schema import OP_SCHEMAS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- helpers -------------------------------------------------------------------------------------
def model():
    """A placeholder, two Parameters, a constant: [row sums, mean] of tanh(x @ (W*s) + b)."""
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, 3), name="x")
    W = gc.Parameter(rng.standard_normal((3, 4)).astype(np.float32), name="W")
    b = gc.Parameter(rng.standard_normal(4).astype(np.float32), name="b")
    scale = gc.constant(np.linspace(0.5, 2.0, 12, dtype=np.float32).reshape(3, 4))
    h = gc.tanh(gc.linear(x, W * scale, b))
    return [h.sum(axis=1), h.mean()]


def saved(tmp_path, outputs=None):
    path = tmp_path / "g.json"
    gc.save(path, model() if outputs is None else outputs)
    return path


def read_doc(path):
    return json.loads(path.read_text())


def write_doc(path, doc):
    path.write_text(json.dumps(doc))


def find(doc, op, **attrs) -> int:
    """The index of the first node of `op` whose attrs include `attrs`."""
    return next(i for i, rec in enumerate(doc["nodes"])
                if rec["op"] == op and all(rec["attrs"].get(k) == v for k, v in attrs.items()))


def refused(path, *fragments) -> str:
    """gc.load(path) raises one ValueError whose one-line message holds every fragment."""
    with pytest.raises(ValueError) as info:
        gc.load(path)
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, names in os.walk(folder) for f in names)


def run_numpy(graph, feed):
    fn = gc.compile(graph.inputs, graph.outputs, backend="numpy")
    return fn(feed)


# --- 1. a saved graph never runs code ------------------------------------------------------------
def test_a_constant_dtype_holding_source_never_runs(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(cache))
    marker = tmp_path / "pwned"
    x = gc.placeholder((3,), name="x")
    path = saved(tmp_path, x * gc.constant(np.full(3, 2.0, np.float32)))
    doc = read_doc(path)
    k = find(doc, "constant")
    doc["nodes"][k]["attrs"]["dtype"] = f"float32(open({str(marker)!r}, 'w')) or float32"
    write_doc(path, doc)
    refused(path, "g.json", f"node {k} (constant)", "field attrs.dtype",
            "not a graphc dtype", "float32, float64")
    assert main(["compile", str(path)]) == 2  # graphc compile refuses it the same way
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not marker.exists()
    assert files_under(cache) == []  # nothing was generated or cached


def test_a_placeholder_shape_holding_a_string(tmp_path):
    path = saved(tmp_path)
    doc = read_doc(path)
    k = find(doc, "placeholder")
    doc["nodes"][k]["attrs"]["shape"] = {"t": ["__import__('os').getpid()", 3]}
    write_doc(path, doc)
    refused(path, "g.json", f"node {k} (placeholder)", "field attrs.shape[0]", "dimension")


@pytest.mark.parametrize("op, attr, value, field", [
    ("placeholder", "shape", "(None, 3)", "attrs.shape"),
    ("placeholder", "shape", {"t": [None, -3]}, "attrs.shape[1]"),
    ("placeholder", "shape", {"t": [None, 2.0]}, "attrs.shape[1]"),
    ("placeholder", "shape", {"t": [True, 3]}, "attrs.shape[0]"),
    ("placeholder", "name", 5, "attrs.name"),
    ("placeholder", "dtype", "float16", "attrs.dtype"),
    ("placeholder", "dtype", ["float32"], "attrs.dtype"),
    ("sum", "axes", {"t": [1.5]}, "attrs.axes[0]"),
    ("sum", "axes", {"t": [0, 0]}, "attrs.axes"),
    ("sum", "keepdims", "yes", "attrs.keepdims"),
    ("sum", "keepdims", 0, "attrs.keepdims"),
    ("sum", "extra", 1, "attrs.extra"),
])
def test_an_attribute_of_an_unexpected_type(tmp_path, op, attr, value, field):
    path = saved(tmp_path)
    doc = read_doc(path)
    k = find(doc, op)
    doc["nodes"][k]["attrs"][attr] = value
    write_doc(path, doc)
    refused(path, "g.json", f"node {k} ({op})", f"field {field}")


def test_a_missing_attribute(tmp_path):
    path = saved(tmp_path)
    doc = read_doc(path)
    k = find(doc, "sum")
    del doc["nodes"][k]["attrs"]["keepdims"]
    write_doc(path, doc)
    refused(path, f"node {k} (sum)", "field attrs.keepdims", "needs attribute")


# --- 2. everything validated against the registry and the op schemas -----------------------------
def test_every_registered_op_declares_a_load_schema():
    assert sorted(set(OPS) - set(OP_SCHEMAS)) == []  # a new op declares its attributes
    assert sorted(set(OP_SCHEMAS) - set(OPS)) == []  # and no schema outlives its op


def _case_graph(case):
    """The outputs of an op-table case on placeholders, and its gradients where it has them."""
    args = case.arg_list()
    xs = [gc.placeholder(s, "float32" if a.is_float else a.dtype, name=f"in{i}")
          for i, (s, a) in enumerate(zip(case.shapes[0], args))]
    out = case.build(*xs)
    outs = list(out) if isinstance(out, list) else [out]
    floats = [x for x, a in zip(xs, args) if a.is_float]
    if case.grad and floats:
        y = gc.constant(np.float32(0))
        for o in outs:
            if gc.dtypes.is_float(o.dtype):
                y = y + o.sum()
        outs += list(gc.grad(y, floats))
    return outs


def test_every_op_table_case_round_trips(tmp_path):
    """The schemas accept everything graphc writes: every op-table case and its gradient,
    saved and loaded, and dumped as JSON and loaded."""
    from op_table import CASES

    seen = set()
    for case in CASES:
        outs = _case_graph(case)
        seen |= {n.op for n in toposort(outs)}
        gc.save(tmp_path / "g.json", outs)
        assert gc.dump(gc.load(tmp_path / "g.json").outputs) == gc.dump(outs), case.name
        (tmp_path / "inline.json").write_text(gc.dump(outs, format="json"))
        assert gc.dump(gc.load(tmp_path / "inline.json").outputs) == gc.dump(outs), case.name
    assert {"getitem_grad", "split", "concat", "softmax_cross_entropy_grad"} <= seen


@pytest.mark.parametrize("corrupt, fragments", [
    (lambda d, k: d.update(format="graphc-graph/2"), ["not a graphc graph file", "format"]),
    (lambda d, k: d.update(surprise=1), ["field surprise", "not a field"]),
    (lambda d, k: d["nodes"][k].update(op="no_such_op"), ["(no_such_op)", "field op"]),
    (lambda d, k: d["nodes"][k].update(op=["mul"]), ["field op", "not a graphc op"]),
    (lambda d, k: d["nodes"][k].update(inputs=[[k, 0], [0, 0]]), ["field inputs[0]",
                                                                 "earlier node"]),
    (lambda d, k: d["nodes"][k].update(inputs=[[-1, 0], [0, 0]]), ["field inputs[0]"]),
    (lambda d, k: d["nodes"][k].update(inputs=[[0, 1], [0, 0]]), ["field inputs[0]",
                                                                 "outputs"]),
    (lambda d, k: d["nodes"][k].update(inputs=[[0, 0]]), ["field inputs", "operands"]),
    (lambda d, k: d["nodes"][k].update(inputs="0"), ["field inputs", "not a list"]),
    (lambda d, k: d["nodes"][k].update(loc=["x"]), ["field loc"]),
    (lambda d, k: d["nodes"][k].update(array="c1"), ["field array", "holds no array"]),
    (lambda d, k: d["nodes"][k].update(extra=1), ["field extra", "not a field of a node"]),
    (lambda d, k: d.update(outputs=[[99, 0]]), ["field outputs[0]", "index of a node"]),
    (lambda d, k: d.update(outputs=[]), ["field outputs"]),
    (lambda d, k: d.update(single="no"), ["field single"]),
    (lambda d, k: d.update(nodes={"0": 1}), ["field nodes"]),
    (lambda d, k: d["nodes"].insert(0, 7), ["node 0", "not an object"]),
])
def test_structure_is_validated(tmp_path, corrupt, fragments):
    path = saved(tmp_path)
    doc = read_doc(path)
    k = find(doc, "mul")
    corrupt(doc, k)
    write_doc(path, doc)
    refused(path, "g.json", *fragments)


@pytest.mark.parametrize("build, op, attr, value, fragment", [
    (lambda x: x.sum(axis=1), "sum", "axes", [2], "rank-2"),
    (lambda x: gc.argmax(x, 1), "argmax", "axis", 2, "rank-2"),
    (lambda x: gc.softmax(x), "softmax", "axis", -1, "rank-2"),
    (lambda x: gc.transpose(x), "transpose", "axes", [1, 1], "repeats"),
    (lambda x: gc.transpose(x), "transpose", "axes", [0], "permutation"),
    (lambda x: gc.concat([x, x], 1), "concat", "axis", 2, "rank-2"),
    (lambda x: gc.split(x, 3, 1), "split", "sizes", [1, 1, "1"], "count"),
    (lambda x: gc.split(x, 3, 1), "split", "sizes", [1, 1, 2], "refuses"),
    (lambda x: gc.one_hot(gc.argmax(x, 1), 4), "one_hot", "classes", -3, "count"),
    (lambda x: gc.dropout(x, seed=1), "random_uniform", "seed", -1, "seed"),
    (lambda x: x.astype("int32"), "cast", "dtype", "object", "dtype"),
    (lambda x: x.reshape(3, -1), "reshape", "shape", [-1, 3], "dimension"),
    (lambda x: x.reshape(3, -1), "reshape", "shape", [4, None], "refuses"),
    (lambda x: x[0, 1:], "getitem", "spec", [["exec", 1]], "index item"),
    (lambda x: x[0, 1:], "getitem", "spec", [["slice", 0, 2, 0]], "step is zero"),
    (lambda x: x[np.array([0, 1])], "getitem", "spec", [["none"]], "index arrays"),
])
def test_attributes_are_checked_against_the_operands(tmp_path, build, op, attr, value,
                                                     fragment):
    x = gc.placeholder((None, 3), name="x")
    path = saved(tmp_path, build(x))
    doc = read_doc(path)
    k = find(doc, op)
    doc["nodes"][k]["attrs"][attr] = value
    write_doc(path, doc)
    refused(path, "g.json", f"node {k} ({op})", "field attrs" if fragment != "refuses"
            else "field inputs", fragment)


# --- 3. arrays are exactly what their node declares ----------------------------------------------
def test_a_stored_array_smaller_than_its_declared_shape(tmp_path):
    x = gc.placeholder((None, 3), name="x")
    path = saved(tmp_path, x @ gc.constant(np.ones((3, 2), np.float32)))
    doc = read_doc(path)
    k = find(doc, "constant")
    doc["nodes"][k]["attrs"]["shape"] = {"t": [3, 60000]}
    doc["nodes"][k + 1:] = []  # the matmul would refuse the new shape before the array is read
    doc["outputs"] = [[k, 0]]
    write_doc(path, doc)
    refused(path, "g.json", f"node {k} (constant)", "field array", "(3, 60000)")


@pytest.mark.parametrize("what", ["shape", "dtype"])
def test_a_parameter_array_must_match_its_node(tmp_path, what):
    path = saved(tmp_path)
    doc = read_doc(path)
    k = find(doc, "parameter", name="W")
    doc["nodes"][k]["attrs"].update({"shape": {"t": [4, 3]}} if what == "shape"
                                    else {"dtype": "float64"})
    write_doc(path, doc)
    refused(path, "g.json", f"node {k} (parameter)", "field array", "declares")


def _rewrite_npz(path, change):
    """Rewrite the graph's .npz with change(arrays) applied (a dict of arrays)."""
    npz = path.parent / read_doc(path)["arrays"]
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    with open(npz, "wb") as fh:
        np.savez(fh, **arrays)


def test_a_big_endian_array_loads_and_computes(tmp_path):
    outputs = model()
    path = saved(tmp_path, outputs)
    W = read_doc(path)["nodes"][find(read_doc(path), "parameter", name="W")]["array"]
    _rewrite_npz(path, lambda arrays: arrays.update({W: arrays[W].astype(">f4")}))
    g = gc.load(path)
    assert g.params["W"].data.dtype.isnative
    feed = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    want = gc.compile(toposort(outputs)[0].outputs, outputs)(feed)
    got = gc.compile(g.inputs, g.outputs)(feed)  # the cpu backend, Numba kernels
    for w, v in zip(want, got):
        np.testing.assert_allclose(v, w, rtol=1e-6)


class _Payload:
    """Unpickling this would create a folder: proof that an object array was unpickled."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.makedirs, (self.target,)


def test_an_object_array_is_refused_without_unpickling(tmp_path):
    path = saved(tmp_path)
    marker = tmp_path / "unpickled"
    doc = read_doc(path)
    k = find(doc, "parameter", name="b")
    key = doc["nodes"][k]["array"]
    payload = np.empty(4, dtype=object)
    payload[:] = [_Payload(str(marker))] * 4
    _rewrite_npz(path, lambda arrays: arrays.update({key: payload}))  # savez pickles objects
    refused(path, "g.json", "field array")
    assert not marker.exists()


# --- 4. only the referenced members of the .npz beside the graph ---------------------------------
@pytest.mark.parametrize("where", ["absolute", "parent"])
def test_arrays_from_elsewhere_are_refused(tmp_path, where):
    folder = tmp_path / "models"
    folder.mkdir()
    path = saved(folder)
    doc = read_doc(path)
    (tmp_path / "other.npz").write_bytes((folder / doc["arrays"]).read_bytes())
    doc["arrays"] = str(tmp_path / "other.npz") if where == "absolute" else "../other.npz"
    write_doc(path, doc)
    refused(path, "g.json", "field arrays", "plain file name")


def _opened_members(monkeypatch) -> list:
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


def _add_bomb(npz, member="bomb.npy", megabytes=64):
    """A member inflating to `megabytes` of zeros (a few hundred kB in the archive)."""
    zeros = np.zeros(megabytes << 18, np.float32)
    with zipfile.ZipFile(npz, "a", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open(member, "w", force_zip64=True) as fh:
        np.lib.format.write_array(fh, zeros)


def test_an_unreferenced_zip_bomb_is_never_inflated(tmp_path, monkeypatch):
    path = saved(tmp_path)
    _add_bomb(tmp_path / read_doc(path)["arrays"])
    opened = _opened_members(monkeypatch)
    g = gc.load(path)
    assert "bomb.npy" not in opened
    assert sorted(opened) == sorted(f"{read_doc(path)['nodes'][i]['array']}.npy"
                                    for i, rec in enumerate(read_doc(path)["nodes"])
                                    if "array" in rec)
    assert len(g.params) == 2


def test_a_referenced_member_larger_than_its_declared_shape_is_not_read(tmp_path, monkeypatch):
    path = saved(tmp_path)
    doc = read_doc(path)
    k = find(doc, "parameter", name="b")
    doc["nodes"][k]["array"] = "bomb"
    write_doc(path, doc)
    _add_bomb(tmp_path / doc["arrays"])
    opened = _opened_members(monkeypatch)
    refused(path, "g.json", f"node {k} (parameter)", "field array", "bytes")
    assert "bomb.npy" not in opened


# --- 5. one ValueError for everything, deep JSON and fuzzing included ----------------------------
@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    '{"format": "graphc-graph/1", "nodes": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "[1, 2]", '"graph"', "3", "null", "1" * 10_000,
])
def test_deep_or_odd_json_is_a_value_error(tmp_path, text):
    path = tmp_path / "g.json"
    path.write_text(text)
    refused(path, "g.json")


_FUZZ_VALUES = [None, True, False, 0, -1, 1, 2, 7, 2**70, 1.5, float("nan"), "", "x", "float32",
                "int64", "constant", [], {}, [0], [0, 0], [[0, 0]], [[99, 0]], {"t": []},
                {"t": [None]}, {"t": [1, 2]}, {"t": [{"t": ["slice", None, None, 0]}]},
                ["int", 1], {"t": "abc"}, "c1", "../g.npz", [[[[[[[[[[]]]]]]]]]]]


def _containers(value, path=()):
    """Every (container, key) pair inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield value, key
            yield from _containers(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield value, i
            yield from _containers(item, path + (i,))


def _mutate(doc, rng: random.Random) -> None:
    container, key = rng.choice(list(_containers(doc)))
    action = rng.random()
    if action < 0.6:
        container[key] = rng.choice(_FUZZ_VALUES)
    elif action < 0.8:
        del container[key]
    elif isinstance(container, dict):
        container[rng.choice(["zz", "array", "data", "t", "name"])] = rng.choice(_FUZZ_VALUES)
    else:
        container.insert(key, container[key])


def test_fuzzed_graph_files_give_value_errors_only(tmp_path):
    path = saved(tmp_path)
    original = read_doc(path)
    rng = random.Random(11)
    outcomes = {"refused": 0, "loaded": 0}
    for case in range(300):
        doc = json.loads(json.dumps(original))
        for _ in range(rng.randint(1, 3)):
            _mutate(doc, rng)
        write_doc(path, doc)
        try:
            g = gc.load(path)
        except ValueError as exc:
            assert "g.json" in str(exc) and "\n" not in str(exc), (case, str(exc))
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the failure this test exists to find
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}\n{json.dumps(doc)[:2000]}")
        assert isinstance(gc.dump(g.outputs), str)  # what loads is a graph graphc can print
        outcomes["loaded"] += 1
    assert outcomes["refused"] > 150 and outcomes["loaded"] > 0, outcomes


# --- 6. the graph handle, and training a loaded model --------------------------------------------
def test_load_returns_a_graph_handle(tmp_path):
    outputs = model()
    g = gc.load(saved(tmp_path, outputs))
    assert isinstance(g, serialize.Graph)
    assert list(g.inputs.keys()) == ["x"] and g.inputs["x"].op == "placeholder"
    assert "x" in g.inputs and g.inputs["x"] in g.inputs and "y" not in g.inputs
    assert list(g.params.keys()) == ["W", "b"]
    assert all(isinstance(p, gc.Parameter) for p in g.params)
    np.testing.assert_array_equal(g.params["W"].value, toposort(outputs)[1].value.value)
    with pytest.raises(KeyError, match="'y'.*names are \\['x'\\]"):
        g.inputs["y"]
    assert isinstance(g.outputs, list) and len(g.outputs) == 2
    feed = np.ones((2, 3), np.float32)
    want = gc.compile(toposort(outputs)[0].outputs, outputs, backend="numpy")(feed)
    for w, v in zip(want, run_numpy(g, feed)):
        np.testing.assert_array_equal(v, w)
    one = gc.load(saved(tmp_path, outputs[1]))
    assert isinstance(one.outputs, gc.Tensor)


def test_training_a_loaded_model_continues(tmp_path):
    rng = np.random.default_rng(3)
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), "int64", name="t")
    W1 = gc.Parameter(0.5 * rng.standard_normal((2, 16)).astype(np.float32), name="W1")
    b1 = gc.Parameter(np.zeros(16, np.float32), name="b1")
    W2 = gc.Parameter(0.5 * rng.standard_normal((16, 2)).astype(np.float32), name="W2")
    b2 = gc.Parameter(np.zeros(2, np.float32), name="b2")
    logits = gc.linear(gc.tanh(gc.linear(x, W1, b1)), W2, b2)
    gc.save(tmp_path / "mlp.json", [gc.softmax_cross_entropy(logits, t), logits])
    saved_W1 = W1.value

    g = gc.load(tmp_path / "mlp.json")
    loss = g.outputs[0]
    params = list(g.params)
    grads = gc.grad(loss, params)
    step = gc.compile(g.inputs, loss, updates=[(p, p - 0.5 * gp) for p, gp in zip(params, grads)])
    X = rng.standard_normal((64, 2)).astype(np.float32)
    T = (X[:, 0] > X[:, 1]).astype(np.int64)
    losses = [float(step(X, T)) for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0], losses
    assert not np.allclose(g.params["W1"].value, saved_W1)  # the loaded parameters trained
    np.testing.assert_array_equal(W1.value, saved_W1)  # the original ones did not


# --- 7. graphc dump --------------------------------------------------------------------------------
MODEL = textwrap.dedent("""
    import numpy as np
    import graphc as gc

    def build():
        x = gc.placeholder((None, 3), name="x")
        W = gc.Parameter(np.arange(6, dtype=np.float32).reshape(3, 2), name="W")
        return gc.tanh(x @ W + gc.constant(np.array([0.5, -1.0], np.float32))).sum()
""")


def test_dump_format_json_round_trips(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.py").write_text(MODEL)
    assert main(["dump", "model.py:build"]) == 0
    text = capsys.readouterr().out
    assert main(["dump", "model.py:build", "--format", "json"]) == 0
    (tmp_path / "dumped.json").write_text(capsys.readouterr().out)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".npz")]  # the JSON stands alone
    g = gc.load(tmp_path / "dumped.json")
    assert gc.dump(g.outputs) + "\n" == text
    np.testing.assert_array_equal(g.params["W"].value, np.arange(6).reshape(3, 2))
    feed = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(run_numpy(g, feed)[0], np.tanh(
        feed @ np.arange(6).reshape(3, 2) + [0.5, -1.0]).sum(), rtol=1e-6)
    assert main(["dump", "dumped.json"]) == 0
    assert capsys.readouterr().out == text


def test_dump_of_a_file_with_an_unknown_dtype_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = saved(tmp_path)
    doc = read_doc(path)
    k = find(doc, "parameter", name="W")
    doc["nodes"][k]["attrs"]["dtype"] = "float16"
    write_doc(path, doc)
    assert main(["dump", "g.json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert "g.json" in err and f"node {k} (parameter)" in err and "attrs.dtype" in err
    assert "KeyError" not in err and "Traceback" not in err


# --- 8. saves that never lose a model --------------------------------------------------------------
def _graph_files(folder):
    names = sorted(os.listdir(folder))
    assert len(names) == 2 and names[1] == "g.json", names
    assert re.fullmatch(r"g\.[0-9a-f]{16}\.npz", names[0]), names
    return names


def test_stale_files_of_killed_saves_are_removed(tmp_path):
    path = saved(tmp_path)
    stale = [".g.json.tmp-0123456789abcdef", "g.0123456789abcdef.npz"]
    for name in stale:
        (tmp_path / name).write_bytes(b"left by a killed save")
    (tmp_path / "g.npz").write_bytes(b"not named by g.json: kept")
    (tmp_path / "h.0123456789abcdef.npz").write_bytes(b"another graph's: kept")
    gc.save(path, model())
    names = os.listdir(tmp_path)
    assert not set(stale) & set(names)
    assert {"g.npz", "h.0123456789abcdef.npz"} <= set(names)
    assert len(gc.load(path).outputs) == 2


def test_a_save_over_a_file_of_the_previous_format(tmp_path):
    path = saved(tmp_path)
    doc = read_doc(path)
    os.rename(tmp_path / doc["arrays"], tmp_path / "g.npz")  # as the previous gc.save wrote
    doc["arrays"] = "g.npz"
    write_doc(path, doc)
    assert gc.load(path).params["W"].shape == (3, 4)
    gc.save(path, model())
    _graph_files(tmp_path)  # g.npz went with the graph that named it


def test_modes_follow_the_umask_or_the_replaced_file(tmp_path):
    old_umask = os.umask(0o027)
    try:
        path = saved(tmp_path)
        npz = tmp_path / read_doc(path)["arrays"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        assert stat.S_IMODE(npz.stat().st_mode) == 0o640
        path.chmod(0o604)
        npz.chmod(0o600)
        gc.save(path, model())
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert stat.S_IMODE((tmp_path / read_doc(path)["arrays"]).stat().st_mode) == 0o600


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        gc.save(tmp_path / "nope" / "g.json", model())
    assert os.listdir(tmp_path) == []


def test_files_are_fsynced_before_the_publishing_rename(tmp_path, monkeypatch):
    path = saved(tmp_path)
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(serialize.os, "fsync", lambda fd: events.append("fsync") or
                        real_fsync(fd))
    monkeypatch.setattr(serialize.os, "replace", lambda src, dst: events.append("replace") or
                        real_replace(src, dst))
    gc.save(path, model())
    assert events.count("replace") == 1
    i = events.index("replace")
    assert events[:i].count("fsync") == 3  # the arrays, the folder entry, the JSON
    assert events[i + 1:] == ["fsync"]  # the folder, after the rename


KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import graphc as gc

    path, moment = sys.argv[1], sys.argv[2]
    real_replace, real_unlink = os.replace, os.unlink

    def replace(src, dst):
        if moment == "publish" and dst == path:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)

    def unlink(name):
        if moment == "cleanup" and str(name).endswith(".npz"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_unlink(name)

    os.replace, os.unlink = replace, unlink
    x = gc.placeholder((3,), name="x")
    gc.save(path, x * gc.Parameter(np.full(3, 7.0, np.float32), name="p"))
""")


@pytest.mark.parametrize("moment", ["publish", "cleanup"])
def test_a_save_killed_at_the_worst_moment(tmp_path, moment):
    """SIGKILL just before the JSON rename keeps the old model, unchanged; just after it,
    the new one. Either way the next save removes what the killed one left."""
    x = gc.placeholder((3,), name="x")
    path = saved(tmp_path, x * gc.Parameter(np.ones(3, np.float32), name="p"))
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path), moment], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(os.listdir(tmp_path)) == (4 if moment == "publish" else 3)
    value = gc.load(path).params["p"].value
    if moment == "publish":
        assert {n: (tmp_path / n).read_bytes() for n in before} == before
        np.testing.assert_array_equal(value, np.ones(3))
    else:
        np.testing.assert_array_equal(value, np.full(3, 7.0))
    gc.save(path, x * 2)
    _graph_files(tmp_path)
