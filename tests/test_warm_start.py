"""A warm start (a second process on a filled kernel cache) loads machine code and nothing
else: no SciPy, and none of Numba's typing and lowering registries (numba.np.arraymath,
numba.np.linalg, ...), which only a compile needs (~0.15-0.3 s of a warm start). (Loading
cached code still imports the modules its environments name, e.g. numba.np.arrayobj.)"""
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
         "numba.np.polynomial.polynomial_core")
print(json.dumps({"losses": losses, "imported": [m for m in heavy if m in sys.modules]}))
"""


def _run(cache):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache / "graphc"),
               NUMBA_CACHE_DIR=str(cache / "numba"), GRAPHC_LOG="quiet")
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
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
