"""The graph printer: exact text for small graphs, Graphviz dot, JSON."""
import json
import re

import numpy as np
import pytest

import graphc as gc


def lines(*rows: str) -> str:
    return "\n".join(rows)


def small_graph():
    x = gc.placeholder((None, 3), name="x")
    y = gc.sin(x) * 2.0 + gc.constant(np.arange(3, dtype=np.float32))
    return x, y.sum(axis=1)


def test_text_exact():
    _, z = small_graph()
    assert gc.dump(z) == lines(
        "%0:f32[N,3] = placeholder name=x",
        "%1:f32[N,3] = sin %0",
        "%2:f32[] = constant value=2.",
        "%3:f32[N,3] = mul %1 %2",
        "%4:f32[3] = constant value=[0.,1.,2.]",
        "%5:f32[N,3] = add %3 %4",
        "%6:f32[N] = sum %5 axes=(1,) keepdims=False",
        "return %6",
    )


def test_text_parameter_matmul_mean():
    x = gc.placeholder((None, 3), name="x")
    W = gc.Parameter(np.ones((3, 2), np.float32), name="W")
    assert gc.dump(gc.matmul(x, W).mean()) == lines(
        "%0:f32[N,3] = placeholder name=x",
        "%1:f32[3,2] = parameter name=W",
        "%2:f32[N,2] = matmul %0 %1",
        "%3:f32[] = sum %2 axes=(0,1) keepdims=False",
        "%4:f32[] = numel %2 axes=(0,1) dtype=float32",
        "%5:f32[] = div %3 %4",
        "return %5",
    )


def test_text_names_restart_per_dump_and_shared_inputs_print_once():
    gc.placeholder((5,), name="unused")  # nodes outside the graph are not printed
    a = gc.placeholder((2,), "float64", name="a")
    b = gc.placeholder((2,), "int64")
    c = gc.exp(a)
    out = [c * c, gc.cast(b, "float64") + c]
    assert gc.dump(out) == lines(
        "%0:f64[2] = placeholder name=a",
        "%1:i64[2] = placeholder",
        "%2:f64[2] = exp %0",
        "%3:f64[2] = mul %2 %2",
        "%4:f64[2] = cast %1 dtype=float64",
        "%5:f64[2] = add %4 %2",
        "return %3, %5",
    )


def test_text_promotion_and_shape_attrs():
    x = gc.placeholder((None, 4), name="x")
    y = (x + gc.constant(np.arange(4.0))).reshape(None, 2, 2).transpose(0, 2, 1)
    assert gc.dump(y) == lines(
        "%0:f32[N,4] = placeholder name=x",
        "%1:f64[4] = constant value=[0.,1.,2.,3.]",
        "%2:f64[N,4] = cast %0 dtype=float64",
        "%3:f64[N,4] = add %2 %1",
        "%4:f64[N,2,2] = reshape %3 shape=(N,2,2)",
        "%5:f64[N,2,2] = transpose %4 axes=(0,2,1)",
        "return %5",
    )


def test_text_large_constant_is_summarised():
    big = gc.constant(np.zeros((2, 5), np.float32))
    assert gc.dump(big) == "%0:f32[2,5] = constant value=<10 values>\nreturn %0"


def test_text_returning_a_placeholder_directly():
    x = gc.placeholder((), name="x")
    assert gc.dump(x) == "%0:f32[] = placeholder name=x\nreturn %0"
    assert gc.dump([x, x]) == "%0:f32[] = placeholder name=x\nreturn %0, %0"


def test_dot_has_every_node_and_edge():
    _, z = small_graph()
    text = gc.dump(z, format="dot")
    assert text.startswith("digraph graphc {") and text.endswith("}")
    nodes = re.findall(r"^  (n\d+) \[label=\"([^\"]*)\"", text, re.MULTILINE)
    edges = re.findall(r"^  (n\d+) -> (n\d+|out\d+)", text, re.MULTILINE)
    assert len(nodes) == 7
    ops = [label.split("\\n")[-2] for _, label in nodes]
    assert ops == ["placeholder", "sin", "constant", "mul", "constant", "add", "sum"]
    assert nodes[0][1].startswith("x\\n")  # the placeholder's name heads its label
    # one edge per operand (sin 1, mul 2, add 2, sum 1), plus one to the output marker
    assert len(edges) == 7
    ids = [n for n, _ in nodes]
    assert (ids[6], "out0") in edges
    assert (ids[0], ids[1]) in edges and (ids[5], ids[6]) in edges
    assert 'out0 [label="output 0", shape=plaintext];' in text


def test_dot_escapes_names():
    x = gc.placeholder((2,), name='say "hi"\\')
    text = gc.dump(x * 2, format="dot")
    assert 'label="say \\"hi\\"\\\\\\nplaceholder' in text


def test_json_parses_and_describes_the_graph():
    _, z = small_graph()
    doc = json.loads(gc.dump(z, format="json"))
    assert doc["format"] == "graphc-graph/1"
    assert [n["op"] for n in doc["nodes"]] == [
        "placeholder", "sin", "constant", "mul", "constant", "add", "sum"]
    assert doc["nodes"][3]["inputs"] == [[1, 0], [2, 0]]
    assert doc["outputs"] == [[6, 0]]
    assert doc["nodes"][0]["attrs"]["name"] == "x"
    where, line = doc["nodes"][1]["loc"].rsplit(":", 1)  # the user's file:line, not graphc's
    assert where.endswith("test_printing.py") and int(line) > 0


def test_unknown_format():
    x = gc.placeholder((2,))
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        gc.dump(x, format="yaml")


@pytest.mark.parametrize("fmt", ["text", "dot"])
def test_a_hostile_name_prints_on_its_own_line_without_control_characters(fmt):
    """A name from a loaded file cannot forge lines of the listing, send a terminal escape,
    or make printing fail (a lone surrogate cannot be encoded)."""
    x = gc.placeholder((None, 2), name="x\n%1:f32[N,2] = relu %0\nreturn %1\n\x1b[8m\ud800")
    text = gc.dump(gc.exp(x), format=fmt)
    assert "\x1b" not in text and "\\x1b[8m" in text
    text.encode("utf-8")  # (would raise on the surrogate)
    if fmt == "text":
        assert text.splitlines() == [
            ("%0:f32[N,2] = placeholder name=x\\n%1:f32[N,2] = relu %0\\nreturn %1\\n"
             "\\x1b[8m\\ud800"), "%1:f32[N,2] = exp %0", "return %1"]
