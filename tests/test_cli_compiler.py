"""`graphc dump --optimized/--kernels` and `graphc compile` on the cpu backend."""
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODEL = textwrap.dedent("""
    import numpy as np
    import graphc as gc

    def step():
        x = gc.placeholder((None, 4), name="x")
        t = gc.placeholder((None,), "int32", name="t")
        W = gc.Parameter(np.ones((4, 3), np.float32) * 0.1, name="W")
        b = gc.Parameter(np.zeros(3, np.float32), name="b")
        h = gc.relu(x @ W + b)
        return gc.softmax_cross_entropy(h, t) + gc.sum(h * h) * 0.01

    def train():
        # a W2-like training step: two dense layers, SGD updates of every parameter
        rng = np.random.default_rng(0)
        x = gc.placeholder((None, 300), name="x")
        t = gc.placeholder((None,), "int64", name="t")
        params = []
        h = x
        for i, (a, b) in enumerate([(300, 200), (200, 10)]):
            W = gc.Parameter(rng.standard_normal((a, b)).astype(np.float32) * 0.05, name=f"W{i}")
            bias = gc.Parameter(np.zeros(b, np.float32), name=f"b{i}")
            params += [W, bias]
            h = gc.linear(h, W, bias)
            h = gc.relu(h) if i == 0 else h
        loss = gc.softmax_cross_entropy(h, t)
        grads = gc.grad(loss, params)
        return gc.compile([x, t], loss, updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)])
""")


def graphc(*args, cwd, cache):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               GRAPHC_CACHE_DIR=str(cache), GRAPHC_LOG="compile")
    return subprocess.run([sys.executable, "-m", "graphc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def model(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    return tmp_path


def test_dump_optimized_shows_groups_kernels_buffers_and_reasons(model, tmp_path):
    r = graphc("dump", "model.py:step", "--optimized", cwd=model, cache=tmp_path / "c")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "fused kernel gk_" in out and "add, relu" in out  # bias + ReLU after the matmul
    assert "arena peak" in out and "arena@" in out           # memory plan and buffers
    assert "not fused with matmul" in out and "a BLAS call" in out
    assert "softmax_cross_entropy" in out


def test_dump_kernels_prints_readable_source_commented_with_the_ir(model, tmp_path):
    r = graphc("dump", "model.py:step", "--kernels", cwd=model, cache=tmp_path / "c")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "@numba.njit(cache=True, error_model='numpy'" in out
    assert "def serial(" in out and "def parallel(" in out
    # each generated line names the IR node and the user's line it comes from
    assert "= relu %" in out and "model.py:" in out
    assert "def run(" in out  # the runner of the plan


def test_dump_of_a_compiled_training_step_shows_passes_fused_updates_and_the_runner(
        model, tmp_path):
    r = graphc("dump", "model.py:train", "--kernels", cwd=model, cache=tmp_path / "c")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "plan passes: schedule, fuse_product_epilogues, fuse_implicit_convolutions, " \
           "fuse_gemm_updates, " \
           "fuse_reduction_updates" in out
    for name in ("W0", "W1", "b0", "b1"):
        assert f"update '{name}': fused" in out, name
        assert f"update '{name}': not fused" not in out, name  # one verdict per update
    runner = out[out.index("# --- runner ---"):]
    assert "def run(x0, x1):" in runner
    # readable calls: what runs, on which buffers, and the plan line as a comment
    assert ("gemm(float32_gemm_addr, all_threads, x0, p" in runner or
            "gemm(float32_gemm_addr, one_thread, x0, p" in runner)
    assert "# %" in runner and "update W0 in place" in runner
    assert not any(line.lstrip().startswith(("k1", "a0", "f0")) for line in runner.splitlines())
    after = graphc("dump", "model.py:train", "--optimized", "--after", "fuse_gemm_updates",
                   cwd=model, cache=tmp_path / "c")
    assert after.returncode == 0, after.stderr
    assert "plan after fuse_gemm_updates" in after.stdout
    assert "update 'W0': fused" in after.stdout and "'b0': fused" not in after.stdout


def test_compile_ahead_of_time_then_a_second_process_loads_from_the_cache(model, tmp_path):
    cache = tmp_path / "c"
    first = graphc("compile", "model.py:step", cwd=model, cache=cache)
    assert first.returncode == 0, first.stderr
    assert "compiled" in first.stdout + first.stderr
    second = graphc("compile", "model.py:step", cwd=model, cache=cache)
    assert second.returncode == 0, second.stderr
    log = [ln for ln in second.stderr.splitlines() if ln.startswith("graphc: kernel")]
    assert log and all("loaded from cache" in ln for ln in log), second.stderr


def test_compile_takes_a_compiled_training_step_then_a_second_process_loads_it(model, tmp_path):
    """A file whose function returns gc.compile(...) (a training step with its updates):
    `graphc compile` calls it on zeros at each --batch and reports it; the next process
    loads every kernel from the cache."""
    cache = tmp_path / "c"
    first = graphc("compile", "model.py:train", "--batch", "4,64", cwd=model, cache=cache)
    assert first.returncode == 0, first.stderr
    assert "called once on zeros with N=4" in first.stdout, first.stdout
    assert "called once on zeros with N=64" in first.stdout, first.stdout
    assert "compiled model.py:train: 2 inputs, 1 outputs" in first.stdout, first.stdout
    second = graphc("compile", "model.py:train", "--batch", "4,64", cwd=model, cache=cache)
    assert second.returncode == 0, second.stderr
    log = [ln for ln in second.stderr.splitlines() if ln.startswith("graphc: kernel")]
    assert log and all("loaded from cache" in ln for ln in log), second.stderr


def test_plain_dump_of_a_compiled_step_says_which_modes_print_it(model, tmp_path):
    r = graphc("dump", "model.py:train", cwd=model, cache=tmp_path / "c")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("graphc: kernel")
              and not ln.startswith("graphc: compiling")]  # (GRAPHC_LOG=compile's lines)
    assert len(errors) == 1 and errors[0].startswith("graphc: error: "), r.stderr
    assert "compiled step" in errors[0] and "--optimized or --kernels" in errors[0], errors[0]


_CONV_SCRIPT = """
import numpy as np, graphc as gc
from graphc.kernels.cpu import conv
rng = np.random.default_rng(0)
x = gc.placeholder((None, 3, 12, 12), name="x")
t = gc.placeholder((None,), "int64", name="t")
W1 = gc.Parameter(rng.standard_normal((8, 3, 3, 3)).astype(np.float32))
b1 = gc.Parameter(np.zeros(8, np.float32))
W2 = gc.Parameter(rng.standard_normal((8, 8, 3, 3)).astype(np.float32))
W3 = gc.Parameter(rng.standard_normal((72, 5)).astype(np.float32))
h = gc.max_pool2d(gc.relu(gc.conv2d(x, W1, b1, pad=1)), 2)
h = gc.avg_pool2d(gc.conv2d(h, W2, pad=1), 2)
h = h + gc.max_pool2d(h, 3, stride=1, pad=1)  # (another window's kernels)
logits = h.reshape((-1, 72)) @ W3
loss = gc.softmax_cross_entropy(logits, t)
ps = [W1, b1, W2, W3]
step = gc.compile([x, t], [loss], updates=[(p, p - 0.01 * g) for p, g in
                                           zip(ps, gc.grad(loss, ps))])
fwd = gc.compile([x], logits)
xv = rng.standard_normal((4, 3, 12, 12)).astype(np.float32)
step(xv, np.zeros(4, np.int64))
fwd(xv)
kernels = [k for k in vars(conv).values() if hasattr(k, "stats") and k.signatures]
assert any(k is conv._IMPLICIT for k in kernels), "the implicit convolution did not run"
print("kernels", len(kernels), "misses", sum(sum(k.stats.cache_misses.values())
                                            for k in kernels))
"""


@pytest.mark.slow
def test_compile_builtins_leaves_no_hand_written_kernel_to_a_first_compile(model, tmp_path):
    cache = tmp_path / "c"
    r = graphc("compile", "--builtins", cwd=model, cache=cache)
    assert r.returncode == 0, r.stderr
    for what in ("float32 with int32 labels", "float64 with int64 labels",
                 "float32 convolutions", "float64 convolutions"):
        assert f"hand-written kernels for {what}: ready" in r.stdout
    # a later process compiling a training step finds every hand-written kernel compiled
    script = ("import model, numpy as np; f = model.train(); "
              "f(np.zeros((64, 300), np.float32), np.zeros(64, np.int64)); "
              "f(np.zeros((2, 300), np.float32), np.zeros(2, np.int64))")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + str(model),
               GRAPHC_CACHE_DIR=str(cache), GRAPHC_LOG="compile")
    r = subprocess.run([sys.executable, "-c", script], cwd=model, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    compiled = [ln for ln in r.stderr.splitlines()
                if "graphc.kernels.cpu" in ln and " compiled in " in ln]
    assert compiled == [], compiled
    # and a convolutional step and forward pass (other sizes than --builtins ran) find
    # every convolution and pooling kernel in the cache: no Numba dispatcher of
    # graphc.kernels.cpu.conv misses it (its Python wrappers log no load/compile verdict)
    r = subprocess.run([sys.executable, "-c", _CONV_SCRIPT], cwd=model, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == ["misses", "0"], r.stdout


def test_compile_without_a_target_or_builtins_says_what_to_give(model, tmp_path):
    r = graphc("compile", cwd=model, cache=tmp_path / "c")
    assert r.returncode != 0
    assert "give a TARGET, or --builtins" in r.stderr
