"""graphc compile time in a fresh process: cold (empty kernel cache) and warm (same cache).

The parent (`measure`) runs `python -m benchmarks.compile_probe KEY BACKEND` twice with the
same fresh GRAPHC_CACHE_DIR; each child times gc.compile up to its first result and prints
one JSON line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def _probe(key: str, backend: str, quick: bool) -> dict:
    t0 = time.perf_counter()
    import graphc as gc

    from .peers_graphc import build_program, compile_program, feeds
    from .workloads import WORKLOADS, make_data

    t_import = time.perf_counter()
    w = WORKLOADS[key]
    data = make_data(w, quick)
    inputs, output, params = build_program(gc, w, data)
    args = feeds(w, data)
    t_build = time.perf_counter()
    fn = compile_program(gc, w, inputs, output, params, backend)
    t_compiled = time.perf_counter()
    fn(*args)
    t_first = time.perf_counter()
    return {"import_s": t_import - t0, "build_s": t_build - t_import,
            "compile_s": t_compiled - t_build, "first_call_s": t_first - t_compiled,
            "to_first_result_s": t_first - t_build}


def _run_child(key: str, backend: str, quick: bool, cache_dir: str, timeout: float) -> dict:
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache_dir)
    cmd = [sys.executable, "-m", "benchmarks.compile_probe", key, backend]
    if quick:
        cmd.append("--quick")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def measure(key: str, backend: str = "cpu", quick: bool = False,
            timeout: float = 600.0) -> dict:
    """{'cold': {...}, 'warm': {...}} from two fresh processes sharing one cache dir."""
    with tempfile.TemporaryDirectory(prefix="graphc-bench-cache-") as cache_dir:
        cold = _run_child(key, backend, quick, cache_dir, timeout)
        warm = _run_child(key, backend, quick, cache_dir, timeout)
    return {"workload": key, "framework": f"graphc {backend}", "cold": cold, "warm": warm}


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    quick = "--quick" in args
    key, backend = [a for a in args if a != "--quick"][:2]
    try:
        result = _probe(key, backend, quick)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the compile error
        result = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
