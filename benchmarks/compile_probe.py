"""graphc compile time in a fresh process, as a new user sees it: cold (every cache empty:
graphc's kernel cache and Numba's cache of the hand-written kernels) and warm (a second
process on the same caches).

`python -m benchmarks.compile_probe [--quick] [--runs N] KEY [BACKEND]` prints cold and warm
seconds (KEY: demo, W1, ..., W5; BACKEND: cpu (default) or numpy).

The parent (`measure`) runs `python -m benchmarks.compile_probe --child KEY BACKEND` twice
with the same fresh GRAPHC_CACHE_DIR and NUMBA_CACHE_DIR; each child times `import graphc` and
gc.compile up to its first result, lists the heavy modules the process imported that the
plan does not need (scipy), and prints one JSON line. KEY is a workload ("W2") or "demo"
(the README's `graphc demo`: a training step and an evaluation function).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

UNWANTED_MODULES = ("scipy", "torch", "jax", "numba.cuda")


def _demo(gc) -> dict:
    """The README demo's compile: `graphc demo`'s step and evaluation, to their first result."""
    from graphc import demo

    t0 = time.perf_counter()
    x_train, t_train = demo.spiral(100, 3, seed=1984)
    x, t, loss, acc, params = demo.build_model(10, 3, "relu", 0)
    updates = [(p, p - 1.0 * g) for p, g in zip(params, gc.grad(loss, params))]
    t_build = time.perf_counter()
    step = gc.compile([x, t], [loss, acc], updates=updates)
    evaluate = gc.compile([x, t], [loss, acc])
    t_compiled = time.perf_counter()
    step(x_train[:30], t_train[:30])
    evaluate(x_train, t_train)
    t_first = time.perf_counter()
    return {"build_s": t_build - t0, "compile_s": t_compiled - t_build,
            "first_call_s": t_first - t_compiled, "to_first_result_s": t_first - t_build}


def _probe(key: str, backend: str, quick: bool) -> dict:
    t0 = time.perf_counter()
    import graphc as gc

    t_import = time.perf_counter()
    if key == "demo":
        result = dict(_demo(gc), import_s=t_import - t0)
    else:
        result = _probe_workload(gc, key, backend, quick, t0, t_import)
    result["unwanted_imports"] = [
        u for u in UNWANTED_MODULES if any(m == u or m.startswith(u + ".") for m in sys.modules)]
    return result


def _probe_workload(gc, key: str, backend: str, quick: bool, t0: float, t_import: float):
    from .peers_graphc import build_program, compile_program, feeds
    from .workloads import WORKLOADS, make_data

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
    env = dict(os.environ, GRAPHC_CACHE_DIR=os.path.join(cache_dir, "graphc"),
               NUMBA_CACHE_DIR=os.path.join(cache_dir, "numba"))
    env.pop("GRAPHC_LOG", None)
    # bytecode caches as an installed package has them (pip writes .pyc files at install
    # time): with PYTHONDONTWRITEBYTECODE set (as on this project's sandboxes) a source
    # checkout recompiled graphc's modules in every process, ~0.1 s of each warm start
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [sys.executable, "-m", "benchmarks.compile_probe", "--child", key, backend]
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
    """{'cold': {...}, 'warm': {...}} from two fresh processes sharing fresh cache dirs."""
    with tempfile.TemporaryDirectory(prefix="graphc-bench-cache-") as cache_dir:
        cold = _run_child(key, backend, quick, cache_dir, timeout)
        warm = _run_child(key, backend, quick, cache_dir, timeout)
    return {"workload": key, "framework": f"graphc {backend}", "cold": cold, "warm": warm}


USAGE = "usage: python -m benchmarks.compile_probe [--quick] [--runs N] KEY [BACKEND]"
KEYS = ("demo", "W1", "W2", "W3", "W4", "W5")


def _parse(args: list[str]) -> tuple[str, str, bool, int]:
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    runs = 1
    if "--runs" in args:
        i = args.index("--runs")
        try:
            runs = int(args[i + 1])
        except (IndexError, ValueError):
            raise SystemExit(f"--runs takes a whole number of runs\n{USAGE}") from None
        if runs < 1:
            raise SystemExit(f"--runs takes a number >= 1, got {runs}\n{USAGE}")
        del args[i:i + 2]
    if not 1 <= len(args) <= 2 or args[0] not in KEYS \
            or (len(args) == 2 and args[1] not in ("cpu", "numpy")):
        raise SystemExit(f"{USAGE}\nKEY is one of {', '.join(KEYS)}; BACKEND cpu or numpy; "
                         f"got {' '.join(args) or 'nothing'}")
    return args[0], args[1] if len(args) == 2 else "cpu", quick, runs


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(f"{USAGE}\nKEY is one of {', '.join(KEYS)}; BACKEND cpu (default) or numpy; "
              "prints seconds from gc.compile to the first result, cold then warm")
        return 0
    if args[:1] == ["--child"]:  # one timed process, started by measure()
        quick = "--quick" in args
        key, backend = [a for a in args[1:] if a != "--quick"][:2]
        try:
            result = _probe(key, backend, quick)
        except Exception as exc:  # noqa: BLE001 - reported to the parent as the compile error
            result = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        print(json.dumps(result), flush=True)
        return 0
    key, backend, quick, runs = _parse(args)
    failed = False
    for _ in range(runs):
        result = measure(key, backend, quick)
        parts = []
        for name in ("cold", "warm"):
            r = result[name]
            if "error" in r:
                parts.append(f"{name}: {r['error']}")
                failed = True
            else:
                extra = f", imported {', '.join(r['unwanted_imports'])}" \
                    if r.get("unwanted_imports") else ""
                parts.append(f"{name} {r['to_first_result_s']:.3f} s "
                             f"(+ import {r['import_s']:.3f} s{extra})")
        print(f"{key} graphc {backend}: " + "; ".join(parts), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
