"""The same thread count for every framework.

Thread pools are sized when a library loads (OpenBLAS, numba, XLA), so `configure_process`
must run before numpy, numba, torch or jax are imported; `python -m benchmarks` calls it
first thing. Pinning the process to `threads` CPUs backs the environment variables up: XLA
sizes its pool from the CPUs it may run on, and no library can spread past the pinned set.
Runtime setters (torch.set_num_threads, numba.set_num_threads) live with each peer.
"""
from __future__ import annotations

import os

# Read at load time by OpenMP runtimes, NumPy's OpenBLAS, MKL, graphc's BLAS and numba.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GRAPHC_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
WAIT_POLICIES = ("passive", "default")
# (OpenBLAS's timeout: graphc's default for its own copy, given to NumPy's too)
PASSIVE_WAIT_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "16"}


def xla_flags(threads: int, existing: str = "") -> str:
    """XLA_FLAGS asking for a multi-threaded Eigen pool of `threads` threads."""
    wanted = ["--xla_cpu_multi_thread_eigen=true", f"intra_op_parallelism_threads={threads}"]
    words = existing.split()
    kept = [w for w in words
            if not w.startswith(("--xla_cpu_multi_thread_eigen", "intra_op_parallelism_threads"))]
    return " ".join(kept + wanted)


def configure_process(threads: int, pin: bool = True, wait_policy: str = "passive") -> dict:
    """Set thread environment variables and (optionally) CPU affinity for this process.

    wait_policy "passive" (the default) makes idle worker threads sleep instead of spinning:
    OMP_WAIT_POLICY=PASSIVE for every OpenMP runtime (PyTorch, inductor's code, numba's omp
    layer) and OPENBLAS_THREAD_TIMEOUT=16 for both OpenBLAS copies (2**16 cycles, ~20 µs, of
    spinning after a call; NumPy's spins ~60 ms otherwise). All frameworks share one process
    and a few pinned CPUs, so one framework's spinning pool slows the next one down, and on a
    busy machine PyTorch's 2-thread steps stall for tens of milliseconds at random. "default"
    leaves the libraries' defaults.

    Returns what was done, for the results file. Call before importing numeric libraries.
    """
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    if wait_policy == "passive":
        os.environ.update(PASSIVE_WAIT_ENV)
    os.environ["XLA_FLAGS"] = xla_flags(threads, os.environ.get("XLA_FLAGS", ""))
    done = {"threads": threads, "env": {v: os.environ[v] for v in THREAD_ENV_VARS},
            "xla_flags": os.environ["XLA_FLAGS"],
            "wait_env": {v: os.environ.get(v) for v in PASSIVE_WAIT_ENV}, "pinned_cpus": None}
    if pin and hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) > threads:
            os.sched_setaffinity(0, allowed[:threads])
        done["pinned_cpus"] = sorted(os.sched_getaffinity(0))
    return done


def process_state() -> dict:
    """Thread-related settings as they are now, for the results file."""
    state = {"env": {v: os.environ.get(v) for v in THREAD_ENV_VARS},
             "xla_flags": os.environ.get("XLA_FLAGS"),
             "wait_env": {v: os.environ.get(v) for v in PASSIVE_WAIT_ENV},
             "torch_inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
             "pinned_cpus": None}
    if hasattr(os, "sched_getaffinity"):
        state["pinned_cpus"] = sorted(os.sched_getaffinity(0))
    return state
