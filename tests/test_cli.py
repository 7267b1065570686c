"""The `graphc` command line, run as `python -m graphc` in a subprocess, and the demo."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.cli import main
from graphc.demo import spiral

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODEL = textwrap.dedent("""
    import numpy as np
    import graphc as gc

    def build():
        x = gc.placeholder((None, 3), name="x")
        W = gc.Parameter(np.ones((3, 2), np.float32), name="W")
        return gc.tanh(x @ W).sum()

    def pair():
        x = gc.placeholder((4,), name="x")
        return [x * 2, x + 1]

    def not_tensors():
        return 42

    def empty():
        return []

    def bad_shapes():
        return gc.placeholder((3,)) + gc.placeholder((4,))

    constant = 7
""")


def graphc(*args, cwd, env=None, timeout=120):
    """Run `python -m graphc ARGS` with this checkout first on the path."""
    full_env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "graphc", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "broken.py").write_text("import numpy\nundefined_name + 1\n")
    (tmp_path / "syntax.py").write_text("def f(:\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    return tmp_path


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("graphc: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


EXPECTED_BUILD = textwrap.dedent("""\
    %0:f32[N,3] = placeholder name=x
    %1:f32[3,2] = parameter name=W
    %2:f32[N,2] = matmul %0 %1
    %3:f32[N,2] = tanh %2
    %4:f32[] = sum %3 axes=(0,1) keepdims=False
    return %4""")


def test_dump_of_a_python_function(folder):
    result = graphc("dump", "model.py:build", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED_BUILD + "\n"


def test_dump_by_absolute_path_from_elsewhere(folder, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = graphc("dump", f"{folder / 'model.py'}:pair", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "return %2, %4"  # x, 2, x*2, 1, x+1


def test_dump_of_a_saved_graph(folder):
    x = gc.placeholder((None, 3), name="x")
    W = gc.Parameter(np.ones((3, 2), np.float32), name="W")
    gc.save(folder / "saved.json", gc.tanh(x @ W).sum())
    result = graphc("dump", "saved.json", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED_BUILD + "\n"


def test_dump_formats(folder):
    dot = graphc("dump", "model.py:build", "--format", "dot", cwd=folder)
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith("digraph graphc {")
    assert dot.stdout.count(" -> ") == 5  # 4 operand edges and the output marker
    assert 'label="W\\nparameter\\n%1:f32[3,2]"' in dot.stdout
    js = graphc("dump", "model.py:build", "--format", "json", cwd=folder)
    assert js.returncode == 0, js.stderr
    doc = json.loads(js.stdout)
    assert [n["op"] for n in doc["nodes"]] == ["placeholder", "parameter", "matmul", "tanh", "sum"]


def test_dump_grad(folder):
    result = graphc("dump", "model.py:build", "--grad", cwd=folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# gradients: ")
    assert "d%4/dx" in lines[0] and "d%4/dW" in lines[0]
    assert lines[1:6] == EXPECTED_BUILD.splitlines()[:5]  # the forward graph comes first
    ops = [line.split(" = ")[1].split()[0] for line in lines[6:-1]]
    assert "matmul" in ops and "transpose" in ops  # the backward of x @ W
    returned = lines[-1].removeprefix("return ").split(", ")
    assert len(returned) == 3 and returned[0] == "%4"
    assert f"{returned[1]} = d%4/dx" in lines[0] and f"{returned[2]} = d%4/dW" in lines[0]


def test_dump_grad_needs_a_scalar(folder):
    assert_one_line_error(graphc("dump", "model.py:pair", "--grad", cwd=folder),
                          "--grad needs a scalar float output")


@pytest.mark.parametrize("target, fragments", [
    ("model.py:nothere", ["model.py has no function 'nothere'"]),
    ("broken.py:f", ["cannot import broken.py: NameError:", "undefined_name"]),
    ("model", ["bad target 'model'"]),
])
def test_bad_targets_are_one_line_and_exit_2(folder, target, fragments):
    assert_one_line_error(graphc("dump", target, cwd=folder), *fragments)


@pytest.mark.parametrize("target, fragments", [
    ("model.py:constant", ["model.py:constant is a int, not a function"]),
    ("model.py:not_tensors", ["model.py:not_tensors() returned int"]),
    ("model.py:empty", ["model.py:empty() returned an empty list"]),
    ("model.py:bad_shapes", ["model.py:bad_shapes() raised ShapeError", "model.py:"]),
    ("syntax.py:f", ["cannot import syntax.py: SyntaxError"]),
    ("exits.py:f", ["cannot import exits.py: SystemExit"]),
    ("missing.py:f", ["cannot import missing.py: no such file"]),
    ("missing.json", ["cannot load missing.json: no such file"]),
    ("model.py:", ["bad target 'model.py:'"]),
])
def test_more_bad_targets_in_process(folder, monkeypatch, capsys, target, fragments):
    """The same checks as above, run in this process to keep the suite fast."""
    monkeypatch.chdir(folder)
    status = main(["dump", target])
    out, err = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], status, out, err), *fragments)


def test_garbage_graph_file(folder):
    (folder / "junk.json").write_text("{not json")
    assert_one_line_error(graphc("dump", "junk.json", cwd=folder),
                          "cannot load junk.json: ValueError")


def test_unknown_pass(folder):
    result = graphc("dump", "model.py:build", "--after", "no_such_pass", cwd=folder)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_info_runs(folder):
    result = graphc("info", cwd=folder)
    assert result.returncode == 0, result.stderr
    keys = [line.split("  ")[0] for line in result.stdout.splitlines()]
    for key in ("graphc", "python", "numpy", "numba", "cpu", "cores", "avx-512", "blas",
                "numba threading layer"):
        assert key in keys, result.stdout
    assert "Traceback" not in result.stderr


def test_cache_info_and_clear(folder):
    env = {"GRAPHC_CACHE_DIR": str(folder / "cache")}
    info = graphc("cache", "info", cwd=folder, env=env)
    clear = graphc("cache", "clear", cwd=folder, env=env)
    for result in (info, clear):
        assert result.returncode in (0, 2), result.stderr
        assert "Traceback" not in result.stderr
    if info.returncode == 0:
        assert str(folder / "cache") in info.stdout
        assert clear.stdout.startswith("kernel cache cleared")


def test_compile_with_the_numpy_backend(folder):
    result = graphc("compile", "model.py:build", "--backend", "numpy", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("compiled model.py:build: 1 inputs, "
                                                     "1 outputs")


def test_usage_errors_exit_2(folder, monkeypatch, capsys):
    monkeypatch.chdir(folder)
    for argv in ([], ["dump"], ["dump", "model.py:build", "--format", "yaml"],
                 ["dump", "model.py:build", "--optimized", "--kernels"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2, argv
    assert "usage: graphc" in capsys.readouterr().err
    # --optimized --after names a plan pass; a graph pass there is one clear line, exit 2
    assert main(["dump", "model.py:build", "--optimized", "--after", "cse"]) == 2
    err = capsys.readouterr().err
    assert "unknown plan pass 'cse'" in err and "schedule" in err


def test_demo_trains(folder):
    result = graphc("demo", "--backend", "numpy", "--epochs", "40", "--seconds", "60",
                    "--activation", "relu", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "softmax_cross_entropy" in result.stdout  # the graph is printed
    final = result.stdout.strip().splitlines()[-1]
    assert final.startswith("final: 40 epochs, 400 steps")
    loss = float(final.split("loss ")[1].split(",")[0])
    accuracy = float(final.split("accuracy ")[1].split()[0])
    assert loss < 0.5 and accuracy > 0.8, final  # from 1.1 and 1/3 untrained


def test_spiral():
    x, t = spiral(50, 3, seed=1)
    assert x.shape == (150, 2) and x.dtype == np.float32
    assert t.shape == (150,) and t.dtype == np.int64
    assert np.bincount(t).tolist() == [50, 50, 50]
    assert np.linalg.norm(x, axis=1).max() < 1.0
    again, _ = spiral(50, 3, seed=1)
    np.testing.assert_array_equal(x, again)
    other, _ = spiral(50, 3, seed=2)
    assert not np.array_equal(x, other)


def test_dump_after_a_pass_keeps_the_gradient_header_consistent(folder, monkeypatch, capsys):
    monkeypatch.chdir(folder)
    assert main(["dump", "model.py:build", "--grad", "--after", "dce"]) == 0
    lines = capsys.readouterr().out.splitlines()
    returned = lines[-1].removeprefix("return ").split(", ")
    assert len(returned) == 3
    assert lines[0] == (f"# gradients: {returned[1]} = d{returned[0]}/dx, "
                        f"{returned[2]} = d{returned[0]}/dW")
    defined = {line.split(":")[0] for line in lines[1:-1]}
    assert set(returned) <= defined


@pytest.mark.parametrize("argv, fragment", [
    (["demo", "--hidden", "0"], "demo: --hidden must be >= 1"),
    (["demo", "--lr", "nan"], "demo: --lr must be a finite number"),
    (["demo", "--seed", "-1"], "demo: --seed must be >= 0"),
    (["demo", "--batch", "0"], "demo: --batch must be >= 1"),
])
def test_bad_demo_arguments_are_one_line(capsys, argv, fragment):
    status = main(argv)
    out, err = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], status, out, err), fragment)


def test_an_unsafe_cache_folder_is_one_line(folder, monkeypatch, capsys, tmp_path):
    unsafe = tmp_path / "shared"
    unsafe.mkdir()
    os.chmod(unsafe, 0o777)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(unsafe))
    monkeypatch.chdir(folder)
    status = main(["compile", "model.py:build", "--batch", "0"])
    out, err = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], status, out, err),
                          "UnsafeCacheDirError", "writable by group or others")


def test_a_saved_graph_with_a_surrogate_in_a_name_dumps(folder, capsys):
    doc = {"format": "graphc-graph/1", "single": True, "outputs": [[1, 0]], "nodes": [
        {"op": "placeholder", "inputs": [],
         "attrs": {"shape": [None, 2], "dtype": "float32", "name": "x\ud800\x1b[8m"},
         "loc": None},
        {"op": "exp", "inputs": [[0, 0]], "attrs": {}, "loc": None}]}
    (folder / "surrogate.json").write_text(json.dumps(doc))
    for fmt in ("text", "dot"):
        assert main(["dump", str(folder / "surrogate.json"), "--format", fmt]) == 0
        out, _err = capsys.readouterr()
        assert "\\ud800\\x1b[8m" in out and "\x1b" not in out


def test_dump_into_a_pipe_closed_early_exits_quietly(tmp_path):
    """`graphc dump ... | head -1`: the reader goes away mid-print (a dump far larger than
    a pipe's buffer); graphc stops without a BrokenPipeError traceback, status 0."""
    (tmp_path / "long.py").write_text(textwrap.dedent("""
        import graphc as gc

        def chain():
            h = gc.placeholder((None, 3), name="x")
            for _ in range(3000):
                h = gc.tanh(h)
            return h.sum()
    """))
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "graphc", "dump", "long.py:chain"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does after its line
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0, err
    assert first and "Traceback" not in err and "BrokenPipe" not in err, err
