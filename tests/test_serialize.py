"""gc.save / gc.load: round trips, arrays beside the JSON, failed saves, garbage files.
(Hostile files, atomic saves and the graph handle: tests/test_hostile_load.py.)"""
import json
import os
import re

import numpy as np
import pytest

import graphc as gc
from graphc import serialize
from graphc.graph import placeholders, toposort


def model():
    """A small graph with a placeholder, two Parameters and a large constant."""
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, 3), name="x")
    W = gc.Parameter(rng.standard_normal((3, 4)).astype(np.float32), name="W")
    b = gc.Parameter(rng.standard_normal(4), name="b")  # float64
    scale = gc.constant(np.linspace(0.5, 2.0, 12, dtype=np.float32).reshape(3, 4))
    h = gc.tanh(gc.linear(x, W * scale, b))
    return [h.sum(axis=1), h.mean()]


def params(outputs):
    return [n.value for n in toposort(outputs) if n.op == "parameter"]


def run_numpy(outputs, feed):
    fn = gc.compile(placeholders(outputs), outputs, backend="numpy")
    return fn(feed)


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def saved_files(folder, stem="g"):
    """The folder's files, checked to be one graph: STEM.json and one STEM.<16 hex>.npz."""
    names = sorted(os.listdir(folder))
    assert len(names) == 2 and names[1] == f"{stem}.json", names
    assert re.fullmatch(re.escape(stem) + r"\.[0-9a-f]{16}\.npz", names[0]), names
    return names


def test_round_trip_same_text_and_values(tmp_path):
    outputs = model()
    path = tmp_path / "g.json"
    gc.save(path, outputs)
    saved_files(tmp_path)
    loaded = gc.load(path).outputs
    assert isinstance(loaded, list) and len(loaded) == 2
    assert gc.dump(loaded) == gc.dump(outputs)
    feed = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    for want, got in zip(run_numpy(outputs, feed), run_numpy(loaded, feed)):
        np.testing.assert_array_equal(got, want)


def test_parameters_come_back_with_their_values(tmp_path):
    outputs = model()
    gc.save(tmp_path / "g.json", outputs)
    loaded = gc.load(tmp_path / "g.json")
    old, new = params(outputs), params(loaded.outputs)
    assert list(loaded.params) == new
    assert [p.name for p in new] == ["W", "b"]
    for p, q in zip(old, new):
        assert isinstance(q, gc.Parameter) and q is not p
        assert q.dtype == p.dtype and q.shape == p.shape
        np.testing.assert_array_equal(q.value, p.value)
    old[0].value = np.zeros((3, 4), np.float32)  # the loaded copy is independent
    assert np.abs(new[0].value).sum() > 0


def test_arrays_live_in_the_npz_not_the_json(tmp_path):
    outputs = model()
    gc.save(tmp_path / "g.json", outputs)
    doc = json.loads((tmp_path / "g.json").read_text())
    assert [doc["arrays"], "g.json"] == saved_files(tmp_path)
    with np.load(tmp_path / doc["arrays"]) as data:
        arrays = {k: data[k] for k in data.files}
    constants = [r for r in doc["nodes"] if r["op"] == "constant"]
    scale = next(arrays[r["array"]] for r in constants if r["attrs"]["dtype"] == "float32"
                 and arrays[r["array"]].shape == (3, 4))
    np.testing.assert_array_equal(
        scale, np.linspace(0.5, 2.0, 12, dtype=np.float32).reshape(3, 4))
    W = next(arrays[r["array"]] for r in doc["nodes"] if r["attrs"].get("name") == "W")
    np.testing.assert_array_equal(W, params(outputs)[0].value)
    text = (tmp_path / "g.json").read_text()
    for value in W.ravel():  # no array values in the JSON
        assert f"{value:.5f}" not in text


def test_single_output_comes_back_single(tmp_path):
    x = gc.placeholder((2,), "float64", name="x")
    y = gc.exp(x) * 3
    gc.save(tmp_path / "one.json", y)
    loaded = gc.load(tmp_path / "one.json").outputs
    assert isinstance(loaded, gc.Tensor)
    assert gc.dump(loaded) == gc.dump(y)


def test_save_over_an_existing_graph(tmp_path):
    x = gc.placeholder((2,), name="x")
    gc.save(tmp_path / "g.json", x * 2)
    gc.save(tmp_path / "g.json", x + 1)
    assert gc.dump(gc.load(tmp_path / "g.json").outputs) == gc.dump(x + 1)
    saved_files(tmp_path)  # the first save's arrays are gone


def test_failed_array_write_leaves_old_files(tmp_path, monkeypatch):
    gc.save(tmp_path / "g.json", model())
    before = snapshot(tmp_path)

    def broken_savez(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        gc.save(tmp_path / "g.json", [gc.placeholder((7,)) * 3])
    assert snapshot(tmp_path) == before  # no temp files left either


def test_failed_publish_leaves_the_old_model(tmp_path, monkeypatch):
    gc.save(tmp_path / "g.json", model())
    before = snapshot(tmp_path)
    real_replace = os.replace

    def replace_fails_for_json(src, dst):
        if str(dst).endswith("g.json"):
            raise OSError("interrupted")
        return real_replace(src, dst)

    monkeypatch.setattr(serialize.os, "replace", replace_fails_for_json)
    with pytest.raises(OSError, match="interrupted"):
        gc.save(tmp_path / "g.json", [gc.placeholder((7,)) * 3])
    monkeypatch.undo()
    assert snapshot(tmp_path) == before  # no new arrays file, no temp file
    assert len(gc.load(tmp_path / "g.json").outputs) == 2


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def broken_savez(fh, **arrays):
        raise ValueError("cannot encode")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(ValueError, match="cannot encode"):
        gc.save(tmp_path / "g.json", gc.placeholder((2,)) * 2)
    assert os.listdir(tmp_path) == []


def test_save_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder .*nope.* does not exist"):
        gc.save(tmp_path / "nope" / "g.json", gc.placeholder((2,)) * 2)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write into a read-only folder")
def test_save_into_an_unwritable_folder_leaves_old_files(tmp_path):
    gc.save(tmp_path / "g.json", model())
    before = snapshot(tmp_path)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            gc.save(tmp_path / "g.json", gc.placeholder((2,)) * 2)
    finally:
        tmp_path.chmod(0o700)
    assert snapshot(tmp_path) == before


def test_save_refuses_a_name_its_arrays_would_overwrite(tmp_path):
    with pytest.raises(ValueError, match=r"\.json"):
        gc.save(tmp_path / "g.npz", gc.placeholder((2,)) * 2)


@pytest.mark.parametrize("content, message", [
    (b"this is not json", "cannot read graph file"),
    (b"\xff\xfe\x00garbage", "cannot read graph file"),
    (b"[1, 2, 3]", "not a graphc graph file"),
    (b'{"format": "something-else/3"}', "not a graphc graph file"),
    (b"", "cannot read graph file"),
])
def test_loading_garbage_is_a_clear_value_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        gc.load(path)


def test_loading_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read graph file"):
        gc.load(tmp_path / "absent.json")


def test_loading_without_or_with_a_corrupt_npz(tmp_path):
    gc.save(tmp_path / "g.json", model())
    arrays = tmp_path / json.loads((tmp_path / "g.json").read_text())["arrays"]
    arrays.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read the arrays"):
        gc.load(tmp_path / "g.json")
    arrays.unlink()
    with pytest.raises(ValueError, match="cannot read the arrays"):
        gc.load(tmp_path / "g.json")


@pytest.mark.parametrize("corrupt", ["unknown op", "dangling input", "missing key"])
def test_loading_a_malformed_graph(tmp_path, corrupt):
    gc.save(tmp_path / "g.json", model())
    doc = json.loads((tmp_path / "g.json").read_text())
    if corrupt == "unknown op":
        doc["nodes"][1]["op"] = "no_such_op"
    elif corrupt == "dangling input":
        doc["nodes"][-1]["inputs"] = [[999, 0]]
    else:
        del doc["nodes"][0]["attrs"]
    (tmp_path / "g.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="malformed graphc graph file"):
        gc.load(tmp_path / "g.json")


# --- saves that must not break what is there, and a load racing a save ----------------------------
def test_saving_no_outputs_is_refused_and_the_old_graph_stays(tmp_path):
    gc.save(tmp_path / "m.json", model())
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match="save: no outputs to save"):
        gc.save(tmp_path / "m.json", [])
    assert sorted(os.listdir(tmp_path)) == before
    assert len(gc.load(tmp_path / "m.json").outputs) == 2


@pytest.mark.parametrize("name", ["colon:x.json", "back\\slash.json", "tab\tx.json",
                                  "line\nbreak.json", "ckpt-12:30.json"])
def test_a_graph_saved_under_any_file_name_loads(tmp_path, name):
    gc.save(tmp_path / name, model())
    g = gc.load(tmp_path / name)
    assert len(g.outputs) == 2
    gc.save(tmp_path / name, model())  # (a second save replaces its own arrays file)
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".npz")]) == 1


def test_a_save_over_a_json_graphc_did_not_write_keeps_the_files_it_names(tmp_path):
    (tmp_path / "model.npz").write_bytes(b"someone else's arrays")
    (tmp_path / "model.json").write_text(json.dumps({"arrays": "model.npz", "other": 1}))
    gc.save(tmp_path / "model.json", model())
    assert (tmp_path / "model.npz").read_bytes() == b"someone else's arrays"
    assert len(gc.load(tmp_path / "model.json").outputs) == 2


def test_a_load_reads_the_graph_file_again_when_a_save_replaced_it_in_between(tmp_path,
                                                                            monkeypatch):
    """The load read the graph file, then a save published a new one and removed the old
    arrays file before the load opened it: the load reads the new graph (it had failed as a
    'malformed' file)."""
    path = tmp_path / "g.json"
    gc.save(path, model())
    old_doc = json.loads(path.read_text())
    gc.save(path, model())  # a new arrays file; the old one is gone
    assert not (tmp_path / old_doc["arrays"]).exists()
    reads = []
    real = serialize._read_json

    def racing(p):
        reads.append(p)
        return old_doc if len(reads) == 1 else real(p)

    monkeypatch.setattr(serialize, "_read_json", racing)
    assert len(gc.load(path).outputs) == 2
    assert len(reads) == 2
