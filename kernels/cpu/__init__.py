"""graphc's hand-written CPU kernels (Numba) and their bindings.

Importing this package first loads Numba and its CPU target without SciPy, which graphc does
not use (its products call its own OpenBLAS) and which costs ~0.55 s of every compile in any
environment that has SciPy (every scikit-learn user): `import numba` imports `scipy` (0.15 s)
to check its version, and Numba's first compile or cache load imports `numba.np.arraymath`,
which probes for a BLAS by importing `scipy.linalg.cython_blas` (0.4 s). With the probe
answered "no BLAS", Numba computes `np.convolve`/`np.correlate` with its own loop in this
process; `np.dot` and `np.linalg` in user kernels still import SciPy when they are typed.
"""
from __future__ import annotations

import sys


def _import_without(modules: tuple, target: str) -> None:
    """Import `target` while importing any of `modules` raises ImportError (a None entry in
    sys.modules does that); modules already loaded are left alone."""
    blocked = [m for m in modules if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None
    try:
        __import__(target)
    finally:
        for m in blocked:
            del sys.modules[m]


def _load_numba_target_without_scipy() -> None:
    """Import Numba without SciPy now, and Numba's array math without SciPy's BLAS when
    Numba first loads its implementations (the context refresh before a compile): a warm
    start that only loads cached kernels never imports it (graphc.kernels.cache)."""
    if "numba" not in sys.modules:
        _import_without(("scipy",), "numba")
    from numba.core import cpu

    original = cpu.CPUContext.load_additional_registries
    if getattr(original, "graphc_without_scipy", False):
        return

    def load_additional_registries(self):
        if "numba.np.arraymath" not in sys.modules:
            _import_without(("scipy.linalg.cython_blas",), "numba.np.arraymath")
        return original(self)

    load_additional_registries.graphc_without_scipy = True
    cpu.CPUContext.load_additional_registries = load_additional_registries


_load_numba_target_without_scipy()
