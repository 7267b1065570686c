"""A warm start (a second process on a filled kernel cache) loads machine code and nothing
else: no SciPy, and none of Numba's typing and lowering registries (numba.np.arraymath,
numba.np.linalg, ...), which only a compile needs (~0.15-0.3 s of a warm start); not the
implementation modules that cached code's environments name (numba.np.arrayobj, for
np.empty: 50-70 ms), not numpy.ma (which Numba's typing of an array asks about: 12 ms), and
not the convolution kernels in a plan without a convolution; and Numba's runtime (NRT)
loads its machine code from graphc's cache instead of compiling it (17-25 ms)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys
import numpy as np
import graphc as gc

rng = np.random.default_rng(0)
x = gc.placeholder((None, 4), name="x")
t = gc.placeholder((None,), "int32", name="t")
W = gc.Parameter(rng.standard_normal((4, 8)).astype(np.float32), name="W")
b = gc.Parameter(np.zeros(8, np.float32), name="b")
V = gc.Parameter(rng.standard_normal((8, 3)).astype(np.float32), name="V")
loss = gc.softmax_cross_entropy(gc.relu(x @ W + b) @ V, t)
params = [W, b, V]
step = gc.compile([x, t], [loss], updates=[(p, p - 0.1 * g)
                                           for p, g in zip(params, gc.grad(loss, params))])
xs = rng.standard_normal((16, 4)).astype(np.float32)
ts = rng.integers(0, 3, 16).astype(np.int32)
losses = [float(step(xs, ts)[0]) for _ in range(3)]
heavy = ("scipy", "numba.np.arraymath", "numba.np.linalg", "numba.np.random.generator_core",
         "numba.np.polynomial.polynomial_core", "numba.np.arrayobj", "numba.cpython.unicode",
         "graphc.kernels.cpu.conv", "numpy.ma")
print(json.dumps({"losses": losses, "imported": [m for m in heavy if m in sys.modules]}))
"""


def _run(cache, child=CHILD):
    """The child's JSON line, run in a fresh process on the kernel caches under `cache`."""
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache / "graphc"),
               NUMBA_CACHE_DIR=str(cache / "numba"), GRAPHC_LOG="quiet")
    proc = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_warm_start_loads_cached_kernels_without_numbas_registries_or_scipy(tmp_path):
    cold = _run(tmp_path)
    warm = _run(tmp_path)
    assert warm["losses"] == cold["losses"]
    assert warm["losses"][2] < warm["losses"][0]
    assert "scipy" not in cold["imported"]  # (the cold start compiled: Numba loaded it all)
    assert warm["imported"] == []


def test_the_version_is_pyprojects():
    """graphc.__version__ (which the kernel cache keys on) is the installed version."""
    import re
    from pathlib import Path

    import graphc

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.MULTILINE).group(1) == graphc.__version__


LATE_CHILD = r"""
import json, sys
import numpy as np
import graphc as gc

rng = np.random.default_rng(0)
x = gc.placeholder((None, 128), name="x")
W = gc.Parameter(rng.standard_normal((128, 64)).astype(np.float32), name="W")
mlp = gc.compile([x], [gc.relu(x @ W)])
mlp(np.ones((64, 128), np.float32))  # (a product for BLAS: gemm_call.py, imported late too)
late = "graphc.kernels.cpu.conv" in sys.modules  # (not imported by a plan without one)
img = gc.placeholder((None, 1, 6, 6), name="img")
K = gc.Parameter(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), name="K")
conv = gc.compile([img], [gc.max_pool2d(gc.relu(gc.conv2d(img, K, pad=1)), 2)])
y = conv(np.ones((2, 1, 6, 6), np.float32))[0]
print(json.dumps({"conv_before": late, "sum": float(y.sum()),
                  "log": [[e.get("kernel"), e.get("status")] for e in conv.executable.kernel_log]}))
"""


def test_kernels_imported_after_the_first_compile_cache_in_graphcs_folder(tmp_path):
    """conv.py (and gemm_call.py) are imported when a plan first needs them, after the
    first compile pointed the kernel modules imported until then at graphc's cache: their
    kernels too are cached there, verified (and load in a second process), never in Numba's
    own folder, where a warm start would compile them again."""
    cold, warm = _run(tmp_path, LATE_CHILD), _run(tmp_path, LATE_CHILD)
    assert cold["conv_before"] is False and cold["sum"] == warm["sum"]
    numba_own = [p.name for p in (tmp_path / "numba").rglob("*.nb[ic]")]
    hand_written = ("conv.", "gemm_call.", "nn.", "tile.", "pool_lanes.")
    assert not [n for n in numba_own if n.startswith(hand_written)], numba_own
    graphcs = [p.name for p in (tmp_path / "graphc").rglob("conv.*.nbi")]
    assert graphcs, "the convolution kernels left no index in graphc's cache"
    hand = [s for k, s in warm["log"] if k and "conv" in k]
    assert hand and all(s == "loaded" for s in hand), warm["log"]


ENV_CHILD = r"""
import json, sys
from graphc.kernels.cache import load_kernel

SOURCE = '''
import numpy as np
import numba

@numba.njit(cache=True, error_model='numpy')
def serial(n):
    a = np.empty(n)
    a[:] = 1.5
    return a.sum()
'''
fn, info = load_kernel(SOURCE, "serial")
total = fn(4)
try:
    fn(-1)
    raised = None
except ValueError as exc:
    raised = str(exc)
print(json.dumps({"status": info["status"], "total": total, "raised": raised,
                  "arrayobj": "numba.np.arrayobj" in sys.modules}))
"""


def test_cached_code_raises_from_numbas_implementations_without_their_modules(tmp_path):
    """A warm start rebuilds np.empty's environment without importing numba.np.arrayobj
    (kernels/cache.py, _rebuild_env); the cached code still raises np.empty's own error."""
    cold, warm = _run(tmp_path, ENV_CHILD), _run(tmp_path, ENV_CHILD)
    assert (cold["status"], warm["status"]) == ("compiled", "loaded")
    assert cold["total"] == warm["total"] == 6.0
    assert cold["raised"] == warm["raised"] == "negative dimensions not allowed"
    assert warm["arrayobj"] is False


NRT_CHILD = ENV_CHILD.replace("from graphc.kernels.cache import load_kernel", """
from numba.core.runtime import nrtdynmod
made = []
create = nrtdynmod.create_nrt_module
def counted(ctx):
    made.append(1)
    return create(ctx)
nrtdynmod.create_nrt_module = counted
from graphc.kernels.cache import load_kernel""").replace(
    '"raised": raised,', '"raised": raised, "nrt_compiled": len(made),')


def test_the_nrt_loads_its_machine_code_from_graphcs_cache(tmp_path, monkeypatch):
    """The NRT's LLVM module (reference counts, used by every allocating kernel) compiles
    in the first process only; a damaged copy is never loaded, but compiled again and
    replaced; `graphc cache clear` removes it."""
    from graphc.kernels import cache as kc

    cold = _run(tmp_path, NRT_CHILD)
    files = list((tmp_path / "graphc" / "numba").glob("nrt_*.nrt"))
    assert cold["nrt_compiled"] == 1 and len(files) == 1
    warm = _run(tmp_path, NRT_CHILD)
    assert warm["nrt_compiled"] == 0 and warm["status"] == "loaded"
    assert cold["total"] == warm["total"] == 6.0 and warm["raised"] == cold["raised"]
    data = bytearray(files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[0].write_bytes(bytes(data))
    damaged = _run(tmp_path, NRT_CHILD)
    assert damaged["nrt_compiled"] == 1 and damaged["total"] == 6.0
    assert files[0].read_bytes() != bytes(data)  # rewritten intact
    assert _run(tmp_path, NRT_CHILD)["nrt_compiled"] == 0
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "graphc"))
    try:
        assert kc.cache_clear() > 0
    finally:
        kc._forget()
    assert not list((tmp_path / "graphc" / "numba").glob("nrt_*"))


UNSAFE_CHILD = r"""
import json, os
import numba
import numpy as np
from graphc.kernels import cache as kc

kc.use_graphc_cache()  # (as graphc's first compile does), then the folder turns unsafe
os.chmod(os.environ["GRAPHC_CACHE_DIR"], 0o777)

@numba.njit
def total(n):
    return np.ones(n).sum()

try:
    kc.load_kernel("x = 1", "x")
    refused = None
except kc.UnsafeCacheDirError as exc:
    refused = type(exc).__name__
print(json.dumps({"total": total(5), "refused": refused}))
"""


def test_an_unsafe_cache_folder_leaves_the_nrt_to_numba(tmp_path):
    """The NRT is set up by the first compile after graphc's patch: a cache folder turned
    unsafe meanwhile still gets no file and loads none, and Numba's compile goes on."""
    assert _run(tmp_path, UNSAFE_CHILD) == {"total": 5.0, "refused": "UnsafeCacheDirError"}
    assert not list(tmp_path.rglob("nrt_*"))
