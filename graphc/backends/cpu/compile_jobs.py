"""A first compile on two cores: half of the Numba compiles in a helper process.

Numba compiles one kernel at a time and holds the GIL, so a plan with a dozen uncached
kernels (a first `graphc demo`: ~0.4 s per fused kernel, ~1.5 s for softmax cross entropy)
keeps one core busy for seconds while the others idle. When a plan has at least
`MIN_JOBS` kernels to compile and the machine more than one core, `start_helper` hands
about half of them (whole kernels, never two signatures of one function: they share one
Numba index file) to `python -m graphc.backends.cpu.compile_jobs`, which compiles them into
the same on-disk cache; the compile then does its own half, waits for the helper, and loads
the helper's kernels from the cache. The helper also compiles the plan's product kernels,
which would otherwise compile during the first call. Anything the helper did not finish
(killed, crashed, timed out) the compile does itself: the helper only ever saves time.

A job names what to compile from closed sets only: a fused kernel by its generated source
(which the helper regenerates nothing from: it is graphc's own render, passed back through
kernels.cache.load_kernel and its checks), a hand-written kernel by a function of
graphc.kernels.cpu's modules, and argument types from the dtype table. `GRAPHC_COMPILE_JOBS=1`
keeps every compile in the calling process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from ... import dtypes as dt

MIN_JOBS = 4            # below this the helper's start (~0.6 s: Python, NumPy, Numba) costs more
HELPER_TIMEOUT_S = 600  # then the compile carries on alone
MODULES = ("graphc.kernels.cpu.nn", "graphc.kernels.cpu.conv", "graphc.kernels.cpu.gemm_call")
COST_S = {"fused": 0.4, "hand": 0.8, "matmul": 0.3}  # rough compile seconds, for the split


def _arg_spec(a) -> list:
    if isinstance(a, np.ndarray):
        return ["array", a.dtype.name, list(a.shape)]
    if isinstance(a, (bool, np.bool_)):
        return ["bool", bool(a)]
    if isinstance(a, (int, np.integer)):
        return ["int", int(a)]
    return ["float", float(a)]


def _arg(spec):
    kind = spec[0]
    if kind == "array":
        dtype = dt.canonical(spec[1])  # from the dtype table, or ValueError
        shape = tuple(int(d) for d in spec[2])
        if len(shape) > 8 or any(d < 0 or d > 1 for d in shape):
            raise ValueError(f"bad example shape {shape}")
        return np.zeros(shape, dtype)
    if kind == "bool":
        return bool(spec[1])
    if kind == "int":
        return np.int64(int(spec[1]))
    if kind == "float":
        return float(spec[1])
    raise ValueError(f"bad example argument {spec!r}")


def fused_job(source: str, deps: tuple, args: list) -> dict:
    return {"kind": "fused", "source": source, "deps": list(deps),
            "args": [_arg_spec(a) for a in args]}


def hand_job(fn, args: list) -> dict | None:
    module = getattr(fn, "__module__", "")
    if module not in MODULES or not hasattr(fn, "py_func"):
        return None  # not a Numba kernel of graphc's (a Python wrapper compiles its own)
    return {"kind": "hand", "module": module, "name": fn.__name__,
            "args": [_arg_spec(a) for a in args]}


def matmul_jobs(plan) -> list:
    """The product kernels the plan's first calls will need: gemm per float dtype, and the
    case's own loop kernel (small batches take it)."""
    from ...kernels.cpu import gemm_call
    from ...plan import MatmulStep
    from .runner import matmul_case

    jobs, seen = [], set()
    for step in plan.steps:
        if not isinstance(step, MatmulStep):
            continue
        dtype = np.dtype(step.a.dtype)
        case = matmul_case(step)
        name = f"acc_{case}" if step.update is not None else f"mm_{case}"
        m = np.zeros((0, 0), dtype)  # empty: the call returns before any work (or BLAS)
        own = [m, m, m] + ([1.0, 1.0] if step.update is not None else [])
        candidates = [("graphc.kernels.cpu.nn", name, own)]
        if dtype.kind == "f" and gemm_call.gemm_address(dtype):
            candidates.append(("graphc.kernels.cpu.gemm_call", "gemm",
                               [1, m, m, m, False, False, 1.0, 0.0, 0]))
        for module, fname, args in candidates:
            key = (module, fname, dtype.name)
            if key not in seen:
                seen.add(key)
                jobs.append({"kind": "matmul", "module": module, "name": fname,
                             "args": [_arg_spec(a) for a in args]})
    return jobs


def pending(job: dict, fn=None) -> bool:
    """Whether a hand-written or product kernel is neither loaded here nor on disk."""
    import importlib

    from ...kernels.cache import use_graphc_cache

    if fn is None:
        fn = getattr(importlib.import_module(job["module"]), job["name"])
    if not hasattr(fn, "signatures"):
        return False
    use_graphc_cache()
    cache_file = getattr(getattr(fn, "_cache", None), "_cache_file", None)
    index = getattr(cache_file, "_index_path", None)
    return not fn.signatures and not (index and os.path.exists(index))


def split(jobs: list) -> tuple[list, list]:
    """(mine, helper's): whole functions to one side, by rough cost, the helper's share
    smaller by its start-up time."""
    groups: dict = {}
    for job in jobs:
        key = job.get("source") or (job.get("module"), job.get("name"))
        groups.setdefault(key, []).append(job)
    mine, theirs, load_mine, load_theirs = [], [], 0.0, 0.6
    for group in sorted(groups.values(), key=lambda g: -sum(COST_S[j["kind"]] for j in g)):
        cost = sum(COST_S[j["kind"]] for j in group)
        if load_mine <= load_theirs:
            mine += group
            load_mine += cost
        else:
            theirs += group
            load_theirs += cost
    return mine, theirs


def wanted() -> bool:
    return os.environ.get("GRAPHC_COMPILE_JOBS", "") != "1" and (os.cpu_count() or 1) > 1


class Helper:
    """The helper process, started with its jobs; `wait()` returns once it has finished."""

    def __init__(self, jobs: list):
        self.jobs = jobs
        env = dict(os.environ, GRAPHC_COMPILE_JOBS="1", GRAPHC_LOG="quiet")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "graphc.backends.cpu.compile_jobs"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            self.proc.stdin.write(json.dumps(jobs).encode())
            self.proc.stdin.close()
        except OSError:
            pass  # it died at start: wait() returns at once, the compile does the work

    def wait(self) -> None:
        try:
            self.proc.wait(timeout=HELPER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_helper(jobs: list):
    """(the jobs this process does itself, the Helper or None)."""
    if len(jobs) < MIN_JOBS or not wanted():
        return jobs, None
    mine, theirs = split(jobs)
    if not theirs:
        return jobs, None
    try:
        return mine, Helper(theirs)
    except OSError:
        return jobs, None


def run_job(job: dict) -> dict:
    """Compile one job into the kernel cache (in whichever process calls it); returns
    kernels.cache.warm's record of it."""
    import importlib

    from ...kernels.cache import load_kernel, use_graphc_cache, warm

    args = [_arg(a) for a in job["args"]]
    if job["kind"] == "fused":
        fn, _ = load_kernel(job["source"], "serial", deps=tuple(job["deps"]))
    else:
        if job["module"] not in MODULES:
            raise ValueError(f"not a graphc kernel module: {job['module']!r}")
        module = importlib.import_module(job["module"])
        fn = getattr(module, job["name"])
        if not hasattr(fn, "py_func"):  # a Numba dispatcher of that module, nothing else
            raise ValueError(f"not a kernel: {job['module']}.{job['name']}")
        use_graphc_cache()
    return warm(fn, *args)


def main() -> int:
    import graphc.kernels.cpu  # noqa: F401  (Numba without SciPy, as in the caller)

    jobs = json.loads(sys.stdin.read() or "[]")
    failed = 0
    for job in jobs:
        try:
            run_job(job)
        except Exception:  # noqa: BLE001 - the caller compiles whatever is missing itself
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
