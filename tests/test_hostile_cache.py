"""Hostile input and long runs against generated source, the kernel cache and compiled
functions (issue 11, part B): no user or file string reaches generated source, the cache
folder is private and checked, nothing planted in it runs, the caches survive corruption
and concurrent clears, memory per batch size is bounded, and bad feeds/options are clear
errors."""
from __future__ import annotations

import hashlib
import importlib._bootstrap_external as bootstrap
import importlib.util
import inspect
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from graphc.kernels import cache as kc

import graphc as gc
from graphc import function as gc_function
from graphc.backends.cpu.runtime import CpuExecutable
from graphc.ops.base import lit

ROOT = Path(__file__).resolve().parents[1]

ADD_SRC = textwrap.dedent(
    """
    import numba


    @numba.njit(cache=True)
    def kern(x, y, out):
        for i in range(x.size):
            out[i] = x[i] + y[i]
    """
)
MUL_SRC = ADD_SRC.replace("x[i] + y[i]", "x[i] * y[i]")


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    """A fresh GRAPHC_CACHE_DIR (nested, so graphc creates it) and clean in-process state."""
    d = tmp_path / "home" / "graphc-cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(d))
    monkeypatch.delenv("GRAPHC_LOG", raising=False)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    yield d
    kc._forget()


def _add(fn) -> np.ndarray:
    x, y = np.arange(5.0), np.full(5, 10.0)
    out = np.empty(5)
    fn(x, y, out)
    return out


def _planted(src: str, marker: Path) -> tuple[Path, bytes]:
    """A module file for `src`'s key, header intact and checksum right, whose body also
    writes `marker` when run: what an attacker who knows the key would plant."""
    key = kc.kernel_key(src, "kern")
    body = src + f"\nimport pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    path = kc.kernel_dir() / f"{kc.module_name(key)}.py"
    return path, kc._render(key, "kern", body)


def _forget_module(src: str) -> None:
    """Make the next load_kernel of `src` run its module again (as a new process would)."""
    kc._forget()
    sys.modules.pop(kc.module_name(kc.kernel_key(src, "kern")), None)


# --- 1. generated source: closed sets and checked ints only --------------------------------
class _Disguised(str):
    """Equal to "float32", but formats as source text."""

    def __format__(self, spec):
        return "float32(0)) or __import__('os').getpid() or (float32"

    __str__ = __format__


def test_lit_writes_only_table_dtypes_and_real_numbers():
    assert lit(np.float32(1.5), "float32") == "float32(1.5)"
    assert lit(np.int64(3), "int32") == "int32(3)"
    assert lit(np.bool_(True), "bool") == "True"
    assert lit(float("-inf"), "float64") == "float64(-inf)"
    with pytest.raises(ValueError, match="no literal of dtype.*expected one of bool, int32"):
        lit(1.0, _Disguised("float32"))
    with pytest.raises(ValueError, match="no literal of dtype"):
        lit(1.0, np.dtype("float32"))
    with pytest.raises(ValueError, match="no literal of dtype"):
        lit(1.0, "float32); import os #")
    for value, dtype in (("3", "int64"), ("False", "bool"), (1j, "float32"), (None, "int32")):
        with pytest.raises(TypeError, match=f"a {dtype} literal needs a real number"):
            lit(value, dtype)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_placeholder_shape_holding_source_is_refused(backend, tmp_path):
    marker = tmp_path / "ran"
    x = gc.placeholder((3,), name="x")
    y = x * 2.0
    x.shape = (f"__import__('pathlib').Path({str(marker)!r}).touch() or 3",)  # as a file could
    with pytest.raises(ValueError, match=r"input 'x': dimension 0 of its shape is .*expected "
                                         r"an int >= 0 or None \(the batch size\) \(at "):
        f = gc.compile([x], y, backend=backend)
        f(np.ones(3, np.float32))
    assert not marker.exists()


HOSTILE_NAMES = {"W": "layer 1\nbias", "b": "x'); import os #", "x": "x\")\nopen('m', 'w') #"}


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_hostile_names_do_not_change_generated_source(backend):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    b0 = rng.standard_normal(3).astype(np.float32)
    W, b = gc.Parameter(w0, name=HOSTILE_NAMES["W"]), gc.Parameter(b0, name=HOSTILE_NAMES["b"])
    x = gc.placeholder((None, 4), name=HOSTILE_NAMES["x"])
    h = x @ W + b
    loss = gc.mean(h * h)
    gw, gb = gc.grad(loss, [W, b])
    f = gc.compile([x], loss, updates=[(W, W - 0.1 * gw), (b, b - 0.1 * gb)], backend=backend)
    xv = rng.standard_normal((5, 4)).astype(np.float32)
    got = f(xv)
    h_ref = xv.astype(np.float64) @ w0 + b0
    np.testing.assert_allclose(got, np.mean(h_ref * h_ref), rtol=1e-5)
    gh = 2 * h_ref / h_ref.size
    np.testing.assert_allclose(W.value, w0 - 0.1 * (xv.T @ gh), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b.value, b0 - 0.1 * gh.sum(0), rtol=1e-4, atol=1e-6)
    assert np.isfinite(f(**{HOSTILE_NAMES["x"]: xv}))  # (fed by its hostile name)

    sources = [f._fast_call.source]
    if backend == "cpu":
        sources += [r.source for r in f.executable.runners.values()]
        sources += [k.source for k in f.executable.kernels.values()]
    for source in sources:
        compile(source, "<generated>", "exec")  # (an injected newline would break or add code)
        for line in source.splitlines():
            assert not line.lstrip().startswith(("bias", "import os", "open(")), source


# --- 2. the cache folder is private and checked, as ssh does ------------------------------
def _modes(root: Path) -> dict:
    folders = [root, root / "kernels", root / "kernels" / "__pycache__", root / "numba"]
    return {str(p.relative_to(root.parent)): oct(p.stat().st_mode & 0o777) for p in folders}


def test_cache_folders_are_created_0700_whatever_the_umask(cache_env):
    old = os.umask(0)
    try:
        fn, _ = kc.load_kernel(ADD_SRC, "kern")
        np.testing.assert_array_equal(_add(fn), np.arange(5.0) + 10)
        x = gc.placeholder((None, 3))
        gc.compile([x], gc.softmax(x))(np.ones((2, 3), np.float32))  # (a hand-written kernel)
    finally:
        os.umask(old)
    assert set(_modes(cache_env).values()) == {"0o700"}, _modes(cache_env)
    for folder in (cache_env / "numba").iterdir():
        assert folder.stat().st_mode & 0o777 == 0o700, folder


@pytest.mark.parametrize("folder", ["", "kernels", "kernels/__pycache__"])
def test_group_writable_cache_folder_is_refused_and_nothing_planted_runs(cache_env, tmp_path,
                                                                        folder):
    kc.load_kernel(ADD_SRC, "kern")  # (creates the folders)
    marker = tmp_path / "ran"
    path, planted = _planted(MUL_SRC, marker)
    path.write_bytes(planted)
    (cache_env / folder).chmod(0o775)
    _forget_module(MUL_SRC)
    with pytest.raises(PermissionError) as info:
        kc.load_kernel(MUL_SRC, "kern")
    message = str(info.value)
    assert str(cache_env / folder) in message and "GRAPHC_CACHE_DIR" in message
    assert "writable by group or others (mode 775)" in message
    assert not marker.exists()


def test_cache_folder_of_another_user_is_refused(cache_env, monkeypatch):
    kc.load_kernel(ADD_SRC, "kern")
    _forget_module(ADD_SRC)
    uid = os.getuid()
    monkeypatch.setattr(kc.os, "getuid", lambda: uid + 1)
    with pytest.raises(kc.UnsafeCacheDirError, match=rf"owned by uid {uid}, not by you"):
        kc.load_kernel(ADD_SRC, "kern")


# --- 3. cache entries are verified before anything runs -----------------------------------
def test_planted_module_file_with_a_valid_checksum_is_never_run(cache_env, tmp_path):
    kc.load_kernel(ADD_SRC, "kern")
    marker = tmp_path / "ran"
    path, planted = _planted(MUL_SRC, marker)
    path.write_bytes(planted)
    _forget_module(MUL_SRC)
    fn, _ = kc.load_kernel(MUL_SRC, "kern")
    assert not marker.exists()
    np.testing.assert_array_equal(_add(fn), np.arange(5.0) * 10)
    key = kc.kernel_key(MUL_SRC, "kern")
    assert path.read_bytes() == kc._render(key, "kern", MUL_SRC)  # (rewritten)


def test_planted_bytecode_is_never_run(cache_env, tmp_path):
    _fn, info = kc.load_kernel(ADD_SRC, "kern")
    path = Path(info["path"])
    marker = tmp_path / "ran"
    evil = compile(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n",
                   str(path), "exec")
    st = path.stat()  # a .pyc whose stamp matches the source: an import would run it
    pyc = Path(importlib.util.cache_from_source(str(path)))
    pyc.write_bytes(bootstrap._code_to_timestamp_pyc(evil, int(st.st_mtime), st.st_size))
    _forget_module(ADD_SRC)
    fn, _ = kc.load_kernel(ADD_SRC, "kern")
    assert not marker.exists()
    np.testing.assert_array_equal(_add(fn), np.arange(5.0) + 10)


def _numba_files(src: str, suffix: str) -> list[Path]:
    name = kc.module_name(kc.kernel_key(src, "kern"))
    return sorted((kc.kernel_dir() / "__pycache__").glob(f"{name}.*{suffix}"))


def _warm_fresh(src: str) -> tuple[np.ndarray, str]:
    """Load `src` as a new process would (its module run again) and call it once."""
    _forget_module(src)
    fn, _ = kc.load_kernel(src, "kern")
    x, y, out = np.arange(5.0), np.full(5, 10.0), np.empty(5)
    status = kc.warm(fn, x, y, out)["status"]
    return out, status


class _TouchOnUnpickle:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path),)


def test_malicious_numba_index_is_never_unpickled(cache_env, tmp_path):
    import numba

    _warm_fresh(ADD_SRC)
    marker = tmp_path / "ran"
    (index,) = _numba_files(ADD_SRC, ".nbi")
    index.write_bytes(pickle.dumps(numba.__version__) + pickle.dumps(_TouchOnUnpickle(marker)))
    out, status = _warm_fresh(ADD_SRC)
    assert not marker.exists()
    np.testing.assert_array_equal(out, np.arange(5.0) + 10)
    assert status == "compiled"


def test_swapped_numba_data_file_is_not_trusted(cache_env):
    """x*y's machine code copied over x+y's cache entry (same signature) is not loaded."""
    _warm_fresh(ADD_SRC)
    _warm_fresh(MUL_SRC)
    (add_data,), (mul_data,) = _numba_files(ADD_SRC, ".nbc"), _numba_files(MUL_SRC, ".nbc")
    shutil.copyfile(mul_data, add_data)
    out, status = _warm_fresh(ADD_SRC)
    np.testing.assert_array_equal(out, np.arange(5.0) + 10)
    assert status == "compiled"


@pytest.mark.parametrize("suffix", [".nbi", ".nbc"])
def test_garbage_numba_cache_file_is_a_miss(cache_env, suffix):
    _warm_fresh(ADD_SRC)
    for f in _numba_files(ADD_SRC, suffix):
        f.write_bytes(os.urandom(300))
    out, status = _warm_fresh(ADD_SRC)
    np.testing.assert_array_equal(out, np.arange(5.0) + 10)
    assert status == "compiled"
    assert _warm_fresh(ADD_SRC)[1] == "loaded"  # (and the entry was written again)


# --- 4. robust caches ----------------------------------------------------------------------
SOFTMAX_CHILD = textwrap.dedent(
    """
    import json
    import numpy as np
    import graphc as gc

    x = gc.placeholder((None, 5), name="x")
    f = gc.compile([x], gc.softmax(x * 2.0))
    a = np.linspace(-1, 1, 15, dtype=np.float32).reshape(3, 5)
    e = np.exp(a.astype(np.float64) * 2)
    err = float(np.abs(f(a) - e / e.sum(1, keepdims=True)).max())
    log = {i["kernel"]: i["status"] for i in f.executable.kernel_log}
    print(json.dumps({"err": err, "softmax": log["graphc.kernels.cpu.nn.softmax_rows"]}))
    """
)


def _softmax_child(cache: Path) -> dict:
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    env.pop("NUMBA_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", SOFTMAX_CHILD], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["err"] < 1e-6
    return result


def test_hand_written_kernels_cache_in_graphc_folder_and_survive_corruption(cache_env):
    assert _softmax_child(cache_env)["softmax"] in ("compiled", "loaded")
    files = sorted((cache_env / "numba").glob("*/nn.softmax_rows-*.nb[ic]"))
    assert {f.suffix for f in files} == {".nbi", ".nbc"}
    assert _softmax_child(cache_env)["softmax"] == "loaded"
    for f in files:
        f.write_bytes(b"\x80\x04garbage" * 20)
    assert _softmax_child(cache_env)["softmax"] == "compiled"  # (not an UnpicklingError)

    removed = kc.cache_clear()
    assert removed >= len(files) and not list((cache_env / "numba").glob("*/*.nb[ic]"))
    assert kc.cache_info()["files"] == 0


def test_compiles_survive_a_concurrent_clear_in_another_process(cache_env, tmp_path):
    kc.load_kernel(ADD_SRC, "kern")  # (creates the folder)
    stop = tmp_path / "stop"
    clearer = textwrap.dedent(f"""
        import os
        from graphc.kernels import cache
        n = 0
        while not os.path.exists({str(stop)!r}):
            n += cache.cache_clear() >= 0
        print(n)
    """)
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_env), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", clearer], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for k in range(6):
            x = gc.placeholder((None, 3), name="x")
            f = gc.compile([x], gc.sum(x * (1.5 + k) + k, axis=1))
            a = np.arange(6, dtype=np.float32).reshape(2, 3)
            np.testing.assert_allclose(f(a), (a * (1.5 + k) + k).sum(1), rtol=1e-6)
    finally:
        stop.touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert int(out) > 0  # (the clears did run meanwhile)


def test_compiles_survive_a_concurrent_clear_in_a_thread(cache_env):
    stop = threading.Event()
    clears = []

    def clear_loop():
        while not stop.is_set():
            clears.append(kc.cache_clear())

    thread = threading.Thread(target=clear_loop)
    thread.start()
    try:
        for k in range(4):
            x = gc.placeholder((None, 3), name="x")
            f = gc.compile([x], gc.relu(x - (0.25 + k)))
            a = np.arange(6, dtype=np.float32).reshape(2, 3)
            np.testing.assert_allclose(f(a), np.maximum(a - (0.25 + k), 0))
    finally:
        stop.set()
        thread.join()
    assert clears


@pytest.mark.parametrize("where", ["root", "kernels"])
def test_unusable_cache_folder_falls_back_with_one_warning(cache_env, where):
    blocked = cache_env if where == "root" else cache_env / "kernels"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where graphc's folder should be")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn, info = kc.load_kernel(ADD_SRC, "kern")
        kc.load_kernel(MUL_SRC, "kern")
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert "GRAPHC_CACHE_DIR" in message and str(cache_env) in message
    assert not Path(info["path"]).is_relative_to(cache_env)
    np.testing.assert_array_equal(_add(fn), np.arange(5.0) + 10)
    assert blocked.is_file()


# --- 5. long runs: runners per batch size are bounded ------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_runners_per_batch_size_are_bounded(backend):
    w0 = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    x = gc.placeholder((None, 4), name="x")
    f = gc.compile([x], gc.relu(x @ gc.constant(w0) - 1.0), backend=backend)

    def check(n, **kw):
        xv = np.linspace(-1, 1, 4 * n, dtype=np.float32).reshape(n, 4)
        got = f(x=xv) if kw.get("by_name") else f(xv)
        np.testing.assert_allclose(got, np.maximum(xv @ w0 - 1.0, 0), rtol=1e-5, atol=1e-6)

    for n in range(1, 201):
        check(n)
        assert len(f.executable.runners) <= gc_function.MAX_RUNNERS
    assert set(f.executable.runners) == set(range(201 - gc_function.MAX_RUNNERS, 201))
    check(1)  # evicted long ago: bound again, still right
    check(2, by_name=True)  # (the general call path too)
    assert len(f.executable.runners) == gc_function.MAX_RUNNERS


# --- 6. clear errors for feeds and options -------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_ragged_list_feed_names_the_input(backend):
    x = gc.placeholder((None, 2), name="pixels")
    f = gc.compile([x], x * 2.0, backend=backend)
    with pytest.raises(gc.FeedError, match=r"input 'pixels': cannot make an array of the value "
                                           r"fed \(.*\); expected float32\[N,2\]: an array, or "
                                           r"nested lists with rows of equal length"):
        f([[1, 2], [3]])
    np.testing.assert_array_equal(f([[1, 2], [3, 4]]), [[2, 4], [6, 8]])  # (still works)


def test_unknown_compile_option_is_an_error_on_every_backend():
    x = gc.placeholder((3,), name="x")
    with pytest.raises(TypeError, match=r"unknown option\(s\) bogus for the 'numpy' backend; "
                                        r"it takes no options \(at .*test_hostile_cache.py:"):
        gc.compile([x], x + 1.0, backend="numpy", bogus=1)
    with pytest.raises(TypeError, match=r"unknown option\(s\) bogus, fast_math for the 'cpu' "
                                        r"backend; it takes fastmath, memory_reuse, inplace"):
        gc.compile([x], x + 1.0, backend="cpu", fast_math=True, bogus=1)
    f = gc.compile([x], x + 1.0, backend="cpu", fastmath=True, memory_reuse=False)
    np.testing.assert_array_equal(f(np.zeros(3, np.float32)), np.ones(3))


def test_backend_options_table_is_the_cpu_executables_signature():
    params = inspect.signature(CpuExecutable.__init__).parameters
    takes = [p for p, v in params.items() if p not in ("self", "program", "optimize")
             and v.kind is not inspect.Parameter.VAR_KEYWORD]
    assert tuple(takes) == gc_function.BACKEND_OPTIONS["cpu"]


def test_planted_helper_hash_matches():
    """(_planted's checksum is right, so the planted file is what an attacker would write.)"""
    _path, planted = _planted(ADD_SRC, Path("/nonexistent/marker"))
    header, body = planted.split(b"\n", 4)[3:]
    assert header == b"# body-sha256: " + hashlib.sha256(body).hexdigest().encode()
