"""A first compile on two cores: the Numba compiles shared with a helper process.

Numba compiles one kernel at a time and holds the GIL, so a plan with a dozen uncached
kernels (a first `graphc demo`: ~0.4 s per fused kernel, ~1.5 s for softmax cross entropy)
keeps one core busy for seconds while the others idle. When a plan has at least
`MIN_JOBS` kernels to compile and the machine more than one core, `start_helper` starts
`python -m graphc.backends.cpu.compile_jobs` with the whole list (whole kernels: two
signatures of one function share one Numba index file), the costliest first, and both
processes take the next unclaimed kernel whenever they are free (a `Queue` of claim files),
compiling into the same on-disk cache. A fixed split by guessed costs left one process
idle for a second or more of a ~6 s first demo. The compile then waits for the helper and
loads the helper's kernels from the cache. The list also holds the plan's product kernels,
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
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from ... import dtypes as dt

MIN_JOBS = 4            # below this the helper's start (~0.6 s: Python, NumPy, Numba) costs more
HELPER_TIMEOUT_S = 600  # then the compile carries on alone
MODULES = ("graphc.kernels.cpu.nn", "graphc.kernels.cpu.conv", "graphc.kernels.cpu.gemm_call")
# rough compile seconds (measured on first `graphc demo` and W2 compiles in one process,
# 2026-12-02, without the ~0.5 s of Numba's own set-up that the first compile in each
# process adds), to start the longest first
COST_S = {"fused": 0.5, "hand": 0.5, "matmul": 0.4, "softmax_cross_entropy": 0.75,
          "softmax_cross_entropy_grad": 0.75, "softmax_cross_entropy_fused": 0.75,
          "gemm_threads": 0.6, "acc_nn": 0.75, "acc_nt": 0.75, "acc_tn": 0.75, "acc_tt": 0.75,
          "argmax_rows": 0.2, "one_hot": 0.2}
# a fused kernel's: a base, per line of its source, per array it allocates (partial sums:
# Numba compiles np.empty's implementation for each new shape type). Measured: a bias add
# (48 lines, 1 allocation) 0.29-0.47 s, a masked bias gradient (85, 2) 0.52, an accuracy
# count (120, 4) 0.97, a ReLU and its mask (40, 0) 0.25.
FUSED_COST_S = (0.05, 0.004, 0.1)


def job_cost(job: dict) -> float:
    """The job's estimated compile seconds."""
    source = job.get("source")
    if job["kind"] == "fused" and isinstance(source, str):
        base, per_line, per_alloc = FUSED_COST_S
        return base + per_line * source.count("\n") + per_alloc * source.count("np.empty(")
    return COST_S.get(job.get("name"), COST_S[job["kind"]])


def _arg_spec(a) -> list:
    if isinstance(a, (tuple, list)):  # gemm_threads' (set, get) thread-count addresses
        return ["ints", [int(v) for v in a]]
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
    if kind == "ints":
        values = tuple(np.int64(int(v)) for v in spec[1])
        if len(values) > 4:
            raise ValueError(f"bad example tuple {spec[1]!r}")
        return values
    if kind == "bool":
        return bool(spec[1])
    if kind == "int":
        return np.int64(int(spec[1]))
    if kind == "float":
        return float(spec[1])
    raise ValueError(f"bad example argument {spec!r}")


def _is_kernel(fn) -> bool:
    """A Numba dispatcher, or a Python function over some (its `kernels`: nn's wrappers of
    the fused softmax cross entropy), which a call with example arguments compiles."""
    return hasattr(fn, "py_func") or hasattr(fn, "kernels")


def fused_job(source: str, deps: tuple, args: list) -> dict:
    return {"kind": "fused", "source": source, "deps": list(deps),
            "args": [_arg_spec(a) for a in args]}


def hand_job(fn, args: list) -> dict | None:
    module = getattr(fn, "__module__", "")
    if module not in MODULES or not _is_kernel(fn):
        return None  # not a Numba kernel of graphc's
    return {"kind": "hand", "module": module, "name": fn.__name__,
            "args": [_arg_spec(a) for a in args]}


# batch sizes whose product kernels a first compile prepares (a training or evaluation batch
# is typically 16-256). A product that takes graphc's loops only at other sizes (a batch of
# one or two: skinny_takes_loops) compiles its loop kernel at the first call of that size,
# ~0.3-1 s then, instead of in every first compile (W2's step compiled three loop kernels,
# ~1.8 s of CPU, for batches of one or two it never ran).
FIRST_BATCHES = (16, 64, 256)


def matmul_jobs(plan) -> list:
    """The product kernels the plan's first calls will need at FIRST_BATCHES: graphc's
    loops of the case (nn.mm_* or nn.acc_*) and/or gemm_threads per float dtype, as
    runner.product_kernel chooses them (for a plan without a batch dimension, exactly)."""
    from ...kernels.cpu.gemm_call import ALL_THREADS
    from ...plan import MatmulStep
    from .runner import matmul_case, product_kernel

    jobs, seen = [], set()
    for step in plan.steps:
        if not isinstance(step, MatmulStep):
            continue
        dtype = np.dtype(step.a.dtype)
        m = np.zeros((0, 0), dtype)  # empty: the call returns before any work (or BLAS)
        for choice in sorted({product_kernel(step, n) for n in FIRST_BATCHES}):
            if choice == "loops":
                acc = step.update is not None
                module = "graphc.kernels.cpu.nn"
                name = ("acc_" if acc else "mm_") + matmul_case(step)
                args = [m, m, m] + ([1.0, 1.0] if acc else [])
            elif choice in ("gemm", "gemm_1t"):
                module, name = "graphc.kernels.cpu.gemm_call", "gemm_threads"
                args = [1, ALL_THREADS, m, m, m, False, False, 1.0, 0.0, 0]
            else:
                continue
            key = (module, name, dtype.name)
            if key not in seen:
                seen.add(key)
                jobs.append({"kind": "matmul", "module": module, "name": name,
                             "args": [_arg_spec(a) for a in args]})
    return jobs


def pending(job: dict, fn=None) -> bool:
    """Whether a hand-written or product kernel is neither loaded here nor on disk."""
    import importlib

    from ...kernels.cache import use_graphc_cache

    if fn is None:
        fn = getattr(importlib.import_module(job["module"]), job["name"])
    if not hasattr(fn, "signatures") and hasattr(fn, "kernels"):
        kernels = fn.kernels
        if hasattr(fn, "kernels_for"):  # (the one of the wrapper's kernels these args run)
            kernels = fn.kernels_for(*[_arg(a) for a in job["args"]])
        return any(pending(job, k) for k in kernels)
    if not hasattr(fn, "signatures"):
        return False
    use_graphc_cache()
    cache_file = getattr(getattr(fn, "_cache", None), "_cache_file", None)
    index = getattr(cache_file, "_index_path", None)
    return not fn.signatures and not (index and os.path.exists(index))


def _cost(group: list) -> float:
    return sum(job_cost(j) for j in group)


def groups(jobs: list) -> list:
    """The jobs as whole functions (two signatures of one function share one Numba index
    file, so one process compiles both), the costliest first."""
    by_key: dict = {}
    for job in jobs:
        key = job.get("source") or (job.get("module"), job.get("name"))
        by_key.setdefault(key, []).append(job)
    return sorted(by_key.values(), key=lambda g: -_cost(g))


class Queue:
    """The groups both processes take from, the costliest first: a group is claimed by
    creating its file in `folder` (O_EXCL, so exactly one process gets it). Whoever is
    free takes the next one, so neither waits on a bad guess of the other's share.
    Without a folder (no helper) every group is this process's."""

    def __init__(self, job_groups: list, folder: str | None = None):
        self.groups = job_groups
        self.folder = folder
        self.mine: list = []

    def claim(self, i: int) -> bool:
        if self.folder is None:
            return True
        try:
            os.close(os.open(os.path.join(self.folder, str(i)),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return True
        except FileExistsError:
            return False
        except OSError:
            return True  # the folder is gone: do it here (the other process may too)

    def __iter__(self):
        for i, group in enumerate(self.groups):
            if self.claim(i):
                self.mine.append(i)
                yield from group

    def others(self) -> list:
        """The jobs the other process claimed."""
        return [j for i, g in enumerate(self.groups) if i not in self.mine for j in g]


def wanted() -> bool:
    return os.environ.get("GRAPHC_COMPILE_JOBS", "") != "1" and (os.cpu_count() or 1) > 1


class Helper:
    """The helper process, started with the queue; `wait()` returns once it has finished."""

    def __init__(self, queue: Queue):
        self.queue = queue
        env = dict(os.environ, GRAPHC_COMPILE_JOBS="1", GRAPHC_LOG="quiet")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "graphc.backends.cpu.compile_jobs"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            self.proc.stdin.write(json.dumps({"groups": queue.groups,
                                              "claims": queue.folder}).encode())
            self.proc.stdin.close()
        except OSError:
            pass  # it died at start: wait() returns at once, the compile does the work

    def wait(self) -> None:
        try:
            self.proc.wait(timeout=HELPER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.queue.folder, ignore_errors=True)


def start_helper(jobs: list):
    """(the Queue this process takes its jobs from, the Helper or None)."""
    job_groups = groups(jobs)
    if len(jobs) < MIN_JOBS or len(job_groups) < 2 or not wanted():
        return Queue(job_groups), None
    try:
        queue = Queue(job_groups, tempfile.mkdtemp(prefix="graphc-claims-"))
    except OSError:
        return Queue(job_groups), None
    try:
        return queue, Helper(queue)
    except OSError:  # no helper: nothing else claims, the folder is not needed
        shutil.rmtree(queue.folder, ignore_errors=True)
        return Queue(job_groups), None


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
        if not _is_kernel(fn):  # a Numba kernel of that module, nothing else
            raise ValueError(f"not a kernel: {job['module']}.{job['name']}")
        use_graphc_cache()
    return warm(fn, *args)


def main() -> int:
    import graphc.kernels.cpu  # noqa: F401  (Numba without SciPy, as in the caller)

    work = json.loads(sys.stdin.read() or "{}")
    claims = work.get("claims")
    if claims is not None and not isinstance(claims, str):
        return 1
    failed = 0
    for job in Queue(work.get("groups", []), claims):
        try:
            run_job(job)
        except Exception:  # noqa: BLE001 - the caller compiles whatever is missing itself
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
