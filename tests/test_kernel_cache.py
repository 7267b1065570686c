"""Tests for graphc.kernels.cache: the on-disk cache of generated Numba kernels."""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow plain `pytest` without installing graphc
    sys.path.insert(0, str(ROOT))

from graphc.kernels import cache as kc

# Small kernel for in-process tests (compiles quickly).
SIMPLE_SRC = textwrap.dedent(
    """
    import numba


    @numba.njit(cache=True)
    def _twice(v):
        return 2.0 * v


    @numba.njit(cache=True)
    def kern(x):
        s = 0.0
        for i in range(x.size):
            s += _twice(x[i])
        return s
    """
)

# Kernel that uses the math helpers, as generated kernels do (for subprocess tests).
MATH_SRC = textwrap.dedent(
    """
    import numba
    import numpy as np
    from graphc.kernels.mathlib import fexp32

    _HALF = np.float32(0.5)


    @numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp", "afn"})
    def kern(x, out):
        for i in range(x.size):
            out[i] = fexp32(x[i] * _HALF)
        return out
    """
)
MATH_DEPS = ("graphc.kernels.mathlib",)

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from graphc.kernels.cache import load_kernel, warm

    src = open(sys.argv[1]).read()
    go = sys.argv[2] if len(sys.argv) > 2 else None
    if go:  # start barrier, so that concurrent children really overlap
        while not os.path.exists(go):
            time.sleep(0.005)
    fn, info = load_kernel(src, "kern", deps=("graphc.kernels.mathlib",))
    x = np.linspace(-3, 3, 64, dtype=np.float32)
    out = np.empty_like(x)
    w = warm(fn, x, out)
    ref = np.exp(x.astype(np.float64) * 0.5)
    err = float(np.max(np.abs(out - ref) / ref))
    print(json.dumps({"load": info, "warm": w, "max_rel_err": err}))
    """
)


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    """Point GRAPHC_CACHE_DIR at a fresh directory and reset in-process state."""
    d = tmp_path / "graphc-cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(d))
    monkeypatch.delenv("GRAPHC_LOG", raising=False)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    yield d
    kc._forget()


def _child_env(cache_dir: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env["GRAPHC_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("NUMBA_CACHE_DIR", None)
    env.update(extra)
    return env


def _spawn(tmp_path: Path, cache_dir: Path, go: Path | None = None, **env) -> subprocess.Popen:
    src = tmp_path / "kernel_src.py.txt"
    if not src.exists():
        src.write_text(MATH_SRC)
    args = [sys.executable, "-c", CHILD, str(src)] + ([str(go)] if go else [])
    return subprocess.Popen(
        args,
        env=_child_env(cache_dir, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"child failed:\n{err}"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["max_rel_err"] < 1e-6
    return result, err


def _run_child(tmp_path: Path, cache_dir: Path, **env) -> tuple[dict, str]:
    return _finish(_spawn(tmp_path, cache_dir, **env))


def _numba_files(cache_dir: Path, suffix: str) -> list[Path]:
    return sorted((cache_dir / "kernels" / "__pycache__").glob(f"gk_*{suffix}"))


# ---------------------------------------------------------------------------
# In-process behaviour
# ---------------------------------------------------------------------------


def test_roundtrip(cache_env):
    fn, info = kc.load_kernel(SIMPLE_SRC, "kern")
    assert set(info) == {"key", "module", "path", "status", "seconds"}
    assert re.fullmatch(r"[0-9a-f]{64}", info["key"])
    assert info["module"] == "gk_" + info["key"][:24] == kc.module_name(info["key"])
    path = Path(info["path"])
    assert path.parent == cache_env / "kernels" and path.name == info["module"] + ".py"
    assert info["status"] == "compiled"  # no Numba index yet

    text = path.read_text()
    assert f"# key: {info['key']}" in text and SIMPLE_SRC in text
    assert path.read_bytes() == kc._render(info["key"], "kern", SIMPLE_SRC)

    x = np.arange(10, dtype=np.float64)
    w = kc.warm(fn, x)
    assert w["status"] == "compiled" and w["key"] == info["key"]
    assert fn(x) == 90.0
    assert kc.warm(fn, x)["status"] == "memory"

    # Same key in the same process: same callable, no reimport.
    fn2, info2 = kc.load_kernel(SIMPLE_SRC, "kern")
    assert fn2 is fn and info2["status"] == "memory" and info2["key"] == info["key"]
    assert sys.modules[info["module"]].__file__ == str(path)


def test_cache_dir_resolved_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "a"))
    assert kc.cache_dir() == tmp_path / "a"
    assert kc.kernel_dir() == tmp_path / "a" / "kernels"
    monkeypatch.delenv("GRAPHC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert kc.cache_dir() == tmp_path / "xdg" / "graphc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert kc.cache_dir() == tmp_path / "home" / ".cache" / "graphc"


def test_switching_cache_dir_reimports_from_new_dir(cache_env, tmp_path, monkeypatch):
    _fn1, info1 = kc.load_kernel(SIMPLE_SRC, "kern")
    other = tmp_path / "other-cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(other))
    fn2, info2 = kc.load_kernel(SIMPLE_SRC, "kern")
    assert info2["key"] == info1["key"] and info2["status"] == "compiled"
    assert Path(info2["path"]).parent == other / "kernels"
    assert sys.modules[info2["module"]].__file__ == info2["path"]
    assert str(cache_env / "kernels") not in sys.path
    assert fn2(np.ones(3)) == 6.0


@pytest.mark.parametrize("damage", ["truncated", "empty", "body_edited", "other_key", "garbage"])
def test_corrupt_source_file_is_rebuilt(cache_env, damage):
    key = kc.kernel_key(SIMPLE_SRC, "kern")
    name = kc.module_name(key)
    kdir = cache_env / "kernels"
    kdir.mkdir(parents=True)
    path = kdir / f"{name}.py"
    good = kc._render(key, "kern", SIMPLE_SRC)
    bad = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        # Valid Python, intact-looking header, but a body that is not the source.
        "body_edited": good.replace(b"2.0 * v", b"3.0 * v"),
        "other_key": kc._render("0" * 64, "kern", SIMPLE_SRC),
        "garbage": b"\x00\xff def (((\n" * 10,
    }[damage]
    path.write_bytes(bad)

    fn, _info = kc.load_kernel(SIMPLE_SRC, "kern")
    assert path.read_bytes() == good
    assert kc.warm(fn, np.ones(4))["status"] == "compiled"
    assert fn(np.ones(4)) == 8.0


def test_bytecode_is_never_used(cache_env):
    """The module runs from the bytes graphc generated: a truncated .pyc beside the source
    (which an import would read) changes nothing."""
    _fn, info = kc.load_kernel(SIMPLE_SRC, "kern")
    kc._forget()
    path = Path(info["path"])
    pyc = Path(importlib.util.cache_from_source(str(path)))
    py_compile.compile(
        str(path), cfile=str(pyc), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP
    )
    pyc.write_bytes(pyc.read_bytes()[:24])
    fn, info2 = kc.load_kernel(SIMPLE_SRC, "kern")
    assert info2["key"] == info["key"] and info2["status"] != "memory"
    assert path.read_bytes() == kc._render(info["key"], "kern", SIMPLE_SRC)
    assert fn(np.ones(2)) == 4.0


def test_source_truncated_after_compile_is_rebuilt_in_new_process(cache_env, tmp_path):
    first, _ = _run_child(tmp_path, cache_env)
    path = Path(first["load"]["path"])
    path.write_bytes(path.read_bytes()[:-40])
    again, _ = _run_child(tmp_path, cache_env)
    assert again["load"]["key"] == first["load"]["key"]
    assert path.read_bytes() == kc._render(first["load"]["key"], "kern", MATH_SRC)


def test_syntax_error_in_generated_source_propagates(cache_env):
    with pytest.raises(SyntaxError):
        kc.load_kernel("def kern(:\n    pass\n", "kern")


def test_missing_entry_and_dependency(cache_env):
    with pytest.raises(AttributeError, match="no 'nope'"):
        kc.load_kernel(SIMPLE_SRC, "nope")
    with pytest.raises(ModuleNotFoundError):
        kc.load_kernel(SIMPLE_SRC, "kern", deps=("graphc_no_such_module_xyz",))
    with pytest.raises(ValueError):
        kc.load_kernel(SIMPLE_SRC, "not an identifier")


def test_key_changes_with_dependency_source(tmp_path, monkeypatch):
    dep = tmp_path / "graphc_test_dep_mod.py"
    dep.write_text("SCALE = 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    k1 = kc.kernel_key(SIMPLE_SRC, "kern", ("graphc_test_dep_mod",))
    assert k1 == kc.kernel_key(SIMPLE_SRC, "kern", ("graphc_test_dep_mod",))
    assert k1 != kc.kernel_key(SIMPLE_SRC, "kern")
    dep.write_text("SCALE = 2.0  # edited\n")
    k2 = kc.kernel_key(SIMPLE_SRC, "kern", ("graphc_test_dep_mod",))
    assert k2 != k1 and kc.module_name(k2) != kc.module_name(k1)
    # Other inputs of the key.
    assert kc.kernel_key(SIMPLE_SRC + "\n", "kern") != kc.kernel_key(SIMPLE_SRC, "kern")
    assert kc.kernel_key(SIMPLE_SRC, "_twice") != kc.kernel_key(SIMPLE_SRC, "kern")
    both = ("graphc_test_dep_mod", "graphc.kernels.mathlib")
    assert kc.kernel_key(SIMPLE_SRC, "kern", both) == kc.kernel_key(SIMPLE_SRC, "kern", both[::-1])


def test_log_line(cache_env, monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_LOG", "compile")
    fn, info = kc.load_kernel(SIMPLE_SRC, "kern")
    kc.warm(fn, np.ones(2))
    err = capsys.readouterr().err
    pattern = (
        rf"graphc: kernel {info['module']} compiled in \d+\.\d\ds \(key {info['key'][:8]}\.\.\.\)"
    )
    assert re.search(pattern, err), err
    assert len(err.strip().splitlines()) == 1


def test_cache_info_and_clear(cache_env):
    assert kc.cache_info()["kernels"] == 0
    fn, _info = kc.load_kernel(SIMPLE_SRC, "kern")
    kc.warm(fn, np.ones(2))
    ci = kc.cache_info()
    assert ci["dir"] == str(cache_env) and ci["kernel_dir"] == str(cache_env / "kernels")
    assert ci["kernels"] == 1
    # module .py + (.nbi + .nbc) for each of the two functions (+ .pyc if written)
    assert ci["files"] >= 5 and ci["bytes"] > 0
    unrelated = cache_env / "kernels" / "keep_me.txt"
    unrelated.write_text("not a kernel")
    # another project's Numba cache files beside graphc's (NUMBA_CACHE_DIR pointed here):
    # named as Numba names them, without graphc's frame, so neither counted nor removed
    foreign = []
    for sub in [p for p in (cache_env / "numba").iterdir() if p.is_dir()][:1] + \
            [cache_env / "numba" / "other_project"]:
        sub.mkdir(exist_ok=True)
        for name in ("other.f-2.py311.nbi", "other.f-2.py311.1.nbc"):
            (sub / name).write_bytes(b"\x80\x04 a Numba pickle")
            foreign.append(sub / name)
    assert kc.cache_info() == ci

    assert kc.cache_clear() == ci["files"]
    assert kc.cache_info() == {**ci, "kernels": 0, "files": 0, "bytes": 0}
    assert unrelated.exists() and all(p.exists() for p in foreign)
    assert fn(np.ones(2)) == 4.0  # already-imported kernels keep working

    fn2, info2 = kc.load_kernel(SIMPLE_SRC, "kern")
    assert info2["status"] == "compiled" and fn2 is not fn
    assert kc.warm(fn2, np.ones(2))["status"] == "compiled"
    assert kc.cache_info()["kernels"] == 1


def test_plain_arrays_are_typed_as_numba_types_them(cache_env):
    """graphc's dispatchers type an exact numpy.ndarray without importing numpy.ma (the
    MaskedArray question is moot for it), to the type Numba's own typeof_pyval gives; any
    other value takes Numba's path, so a masked array is refused as Numba refuses it."""
    fn, _info = kc.load_kernel(SIMPLE_SRC, "kern")
    numba_typeof = type(fn).typeof_pyval
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    readonly = base.copy()
    readonly.flags.writeable = False
    values = [base, base.T, base[:, ::2], np.zeros(()), readonly, np.ones(3, np.int8),
              np.ones(2, np.complex128), np.ones(3, bool), np.array(["ab"]),
              np.array([None]), 1.5, 3, True, np.float32(2)]
    for v in values:
        assert fn.typeof_pyval(v) == numba_typeof(fn, v), v
    assert fn(base.ravel()) == 2 * base.sum()
    assert fn(np.ones(3)[::2]) == 4.0  # ('A' layout: compiled for it)
    from numba.core.errors import NumbaTypeError

    with pytest.raises(NumbaTypeError, match="MaskedArray"):
        fn(np.ma.masked_array(np.ones(3)))


# ---------------------------------------------------------------------------
# Across processes
# ---------------------------------------------------------------------------


def test_second_process_loads_from_numba_cache(cache_env, tmp_path):
    first, _ = _run_child(tmp_path, cache_env)
    assert first["load"]["status"] == "compiled"
    assert first["warm"]["status"] == "compiled"
    second, err = _run_child(tmp_path, cache_env, GRAPHC_LOG="compile")
    assert second["load"]["key"] == first["load"]["key"]
    assert second["load"]["status"] == "loaded"
    assert second["warm"]["status"] == "loaded"
    assert re.search(rf"graphc: kernel {second['load']['module']} loaded from cache in", err), err
    print(
        f"first call: compile {first['warm']['seconds']:.3f}s, "
        f"load from cache {second['warm']['seconds']:.3f}s"
    )


def test_concurrent_compile_in_two_processes(cache_env, tmp_path):
    go = tmp_path / "go"
    procs = [_spawn(tmp_path, cache_env, go=go) for _ in range(2)]
    time.sleep(0.2)
    go.touch()
    results = [_finish(p)[0] for p in procs]
    assert results[0]["load"]["key"] == results[1]["load"]["key"]
    for r in results:
        assert r["warm"]["status"] in ("compiled", "loaded")
    # No stray temp files, one intact module file, and a third process hits the cache.
    assert not list((cache_env / "kernels").glob(".gk_*"))
    path = Path(results[0]["load"]["path"])
    assert path.read_bytes() == kc._render(results[0]["load"]["key"], "kern", MATH_SRC)
    third, _ = _run_child(tmp_path, cache_env)
    assert third["warm"]["status"] == "loaded"


def test_truncated_numba_cache_files_recover(cache_env, tmp_path):
    _run_child(tmp_path, cache_env)
    for suffixes in ([".nbi"], [".nbc"], [".nbi", ".nbc"]):
        for suffix in suffixes:
            files = _numba_files(cache_env, suffix)
            assert files
            for f in files:
                f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 3)])
        result, _ = _run_child(tmp_path, cache_env)
        assert result["warm"]["status"] == "compiled", suffixes  # corrupt entry == miss
    final, _ = _run_child(tmp_path, cache_env)  # the cache files were rewritten
    assert final["warm"]["status"] == "loaded"


def test_corrupt_numba_data_with_intact_index_is_a_miss(cache_env, tmp_path):
    """The index promises a cached entry but its data file is truncated: the first call
    compiles instead (graphc's cache-file reader), with the right result."""
    _run_child(tmp_path, cache_env)
    for f in _numba_files(cache_env, ".nbc"):
        f.write_bytes(f.read_bytes()[:100])
    fn, info = kc.load_kernel(MATH_SRC, "kern", deps=MATH_DEPS)
    assert info["status"] == "loaded"  # the index is intact, so a load is expected
    x = np.linspace(-3, 3, 64, dtype=np.float32)
    out = np.empty_like(x)
    assert kc.warm(fn, x, out)["status"] == "compiled"
    np.testing.assert_allclose(out, np.exp(x.astype(np.float64) * 0.5), rtol=1e-6)


def test_hand_written_kernels_recompile_when_a_sibling_module_changes(tmp_path):
    """A cached kernel has its helpers' code compiled in (conv.py: tile.py's intrinsics,
    gemm_call.py's helpers): stamp_package makes an edit of any module of its package a
    cache miss, where Numba's own stamp (the kernel's file alone) kept loading old code."""
    pkg = tmp_path / "graphc_stamp_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("from numba import njit\n\n\n@njit(cache=True)\n"
                                   "def value():\n    return 1.0\n")
    (pkg / "kern.py").write_text(textwrap.dedent("""
        import sys
        from numba import njit
        from graphc.kernels import cache as kc
        from graphc_stamp_pkg.helper import value

        @njit(cache=True)
        def kern():
            return value() + 1.0

        kc.stamp_package(sys.modules[__name__])
        """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
               NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    script = "from graphc_stamp_pkg.kern import kern; print(kern())"

    def run():
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=240, check=True)
        return float(out.stdout.split()[-1])

    assert run() == 2.0
    assert run() == 2.0  # (from the cache)
    (pkg / "helper.py").write_text("from numba import njit\n\n\n@njit(cache=True)\n"
                                   "def value():\n    return 10.0\n")
    assert run() == 11.0
