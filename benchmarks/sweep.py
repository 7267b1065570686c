"""`python -m benchmarks --sweep`: MLP training steps over a grid of sizes, every framework
side by side at every point, so a size the workloads do not sample cannot hide a cliff.

The grid: input 64, hidden 16/64/256/1024 (ReLU), 10 classes, softmax cross entropy, SGD,
batches 1/16/64/256/1024, in float32 and float64. At each point graphc cpu, torch eager,
JAX jit and the hand-written NumPy step (peers_numpy) run the same seeded data and weights,
are checked against the float64 reference's first losses, and are timed in turns
(harness.time_interleaved). The table shows graphc's time and each peer's time divided by
graphc's (above 1: graphc is faster). A second, graphc-only scan steps the batch finely
(`CLIFF_BATCHES`) and reports the largest speed-up of a bigger batch over a smaller one:
a kernel choice made at the wrong size shows there as a ratio well above 1.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from dataclasses import asdict, replace

import numpy as np

from . import harness
from .config import Config
from .reference import mlp_losses
from .workloads import Data, Workload, _bias, _dense

HIDDEN = (16, 64, 256, 1024)
BATCHES = (1, 16, 64, 256, 1024)
DTYPES = ("float32", "float64")
QUICK_HIDDEN, QUICK_BATCHES = (16, 64), (1, 64)
INPUT, CLASSES = 64, 10
FRAMEWORKS = ("graphc cpu", "torch eager", "jax jit", "numpy hand")
CLIFF_HIDDEN = 64
CLIFF_BATCHES = tuple(range(8, 129, 4)) + (192, 256, 320, 384, 512)
NUMPY_TARGET = 2.0  # at batch >= 16 graphc should be at least this much faster than NumPy


def workload(hidden: int, batch: int, dtype: str) -> Workload:
    return Workload("S", f"mlp-64-{hidden}-10", f"64 -> {hidden} ReLU -> 10, batch {batch}",
                    "mlp", True, lr=0.1, layers=(INPUT, hidden, CLASSES), activation="relu",
                    batch=batch)


def make_data(w: Workload, dtype: str) -> Data:
    """Seeded like the workloads (He init), in `dtype`; labels int32."""
    rng = np.random.default_rng([20240611, w.layers[1], w.batch])
    params = []
    for i, (fan_in, fan_out) in enumerate(zip(w.layers[:-1], w.layers[1:])):
        params += [(f"W{i}", _dense(rng, fan_in, fan_out, 2.0).astype(dtype)),
                   (f"b{i}", _bias(rng, fan_out).astype(dtype))]
    x = rng.standard_normal((w.batch, w.layers[0])).astype(dtype)
    t = rng.integers(0, w.layers[-1], w.batch).astype(np.int32)
    flops = 3.0 * sum(2.0 * w.batch * a * b for a, b in zip(w.layers[:-1], w.layers[1:]))
    return Data({"x": x, "t": t}, params, flops, None)


def peers(frameworks) -> list:
    from . import peers_graphc, peers_jax, peers_numpy, peers_torch

    every = peers_graphc.PEERS + peers_torch.PEERS + peers_jax.PEERS + peers_numpy.PEERS
    return [p for p in every if p.name in frameworks]


def run_point(w: Workload, data: Data, selected: list, cfg: Config) -> dict:
    """Check and time every framework at one grid point; times in microseconds."""
    want = mlp_losses(w, data)
    prepared, rows = [], {}
    for peer in selected:
        row, runner = harness.prepare(peer, w, data, want)
        rows[peer.name] = row
        if runner is not None:
            prepared.append((row, runner))
    times = harness.time_interleaved(prepared, cfg)
    out = {}
    for name, row in rows.items():
        t = times.get(name)
        entry = {"status": row.status, "reason": row.reason,
                 "check_ok": bool(row.check.get("ok")), "rel_err": row.check.get("rel_err")}
        if row.status == "ok" and t:
            entry.update(min_us=1e6 * min(t), median_us=1e6 * float(np.median(t)), reps=len(t))
        out[name] = entry
    return out


def ratios(rows: dict) -> dict:
    """Each peer's min time over graphc cpu's (above 1: graphc is faster)."""
    base = rows.get("graphc cpu", {}).get("min_us")
    return {name: (r["min_us"] / base if base and "min_us" in r else None)
            for name, r in rows.items() if name != "graphc cpu"}


def cliff_scan(selected: list, cfg: Config, dtype: str = "float32", passes: int = 2) -> dict:
    """graphc cpu alone over CLIFF_BATCHES: the worst time(smaller) / time(bigger). Every
    batch is timed in `passes` passes, the first in increasing order, the next in
    decreasing order, and a pair of batches counts with its smallest ratio over the passes:
    a kernel choice's cliff shows in every pass, while the machine's speed drifting during
    one pass (on this shared machine: single points of 1.3-1.45x, at a different batch in
    each run and always in one pass only) does not."""
    graphc = [p for p in selected if p.name == "graphc cpu"]
    if not graphc:
        return {}
    times: dict = {batch: [] for batch in CLIFF_BATCHES}
    for i in range(passes):
        for batch in (CLIFF_BATCHES if i % 2 == 0 else CLIFF_BATCHES[::-1]):
            w = workload(CLIFF_HIDDEN, batch, dtype)
            rows = run_point(w, make_data(w, dtype), graphc, cfg)
            times[batch].append(rows["graphc cpu"].get("min_us"))
    points = [{"batch": b, "min_us": min((t for t in ts if t), default=None), "passes_us": ts}
              for b, ts in times.items()]
    return {"hidden": CLIFF_HIDDEN, "dtype": dtype, "passes": passes, "points": points,
            "worst": worst_cliff(points)}


def worst_cliff(points: list) -> dict:
    """The pair of batches (smaller first in `points`) where the bigger one is fastest
    against the smaller, each pair taken with its smallest time(smaller) / time(bigger)
    over the passes (`passes_us`)."""
    worst = {"ratio": 0.0}
    for i, small in enumerate(points):
        for big in points[i + 1:]:
            pairs = list(zip(small["passes_us"], big["passes_us"]))
            if pairs and all(s and b for s, b in pairs):
                r = min(s / b for s, b in pairs)
                if r > worst["ratio"]:
                    worst = {"ratio": r, "smaller_batch": small["batch"],
                             "bigger_batch": big["batch"],
                             "per_pass": [s / b for s, b in pairs]}
    return worst


def run(cfg: Config, log=print) -> dict:
    selected = [p for p in peers(cfg.frameworks) if p.unavailable() is None]
    if any(p.name == "jax jit" for p in selected):
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 points in float64; f32 stays f32
    hidden, batches = (QUICK_HIDDEN, QUICK_BATCHES) if cfg.quick else (HIDDEN, BATCHES)
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {"schema": 1, "kind": "mlp-sweep",
               "date": started.isoformat(timespec="seconds"),
               "machine": harness.machine_info(cfg), "versions": harness.versions(selected),
               "config": asdict(cfg), "frameworks": [p.name for p in selected], "points": []}
    restores = [p.set_threads(cfg.threads) for p in selected]
    try:
        for dtype in DTYPES:
            for h in hidden:
                for b in batches:
                    w = workload(h, b, dtype)
                    log(f"sweep {dtype} 64-{h}-10 batch {b} ...", flush=True)
                    rows = run_point(w, make_data(w, dtype), selected, cfg)
                    results["points"].append({"dtype": dtype, "hidden": h, "batch": b,
                                              "rows": rows, "ratios": ratios(rows)})
        if "cliffs" not in cfg.skip:
            log("cliff scan (graphc cpu, hidden 64, fine batch steps) ...", flush=True)
            results["cliffs"] = cliff_scan(selected, replace(cfg, min_time_s=cfg.min_time_s / 2))
    finally:
        for restore in reversed(restores):
            restore()
    return results


def shortfalls(point: dict) -> list:
    """Why this point misses the targets: a faster peer, or < NUMPY_TARGET x NumPy."""
    out = [f"{name} faster" for name, r in point["ratios"].items() if r is not None and r < 1]
    numpy_ratio = point["ratios"].get("numpy hand")
    if point["batch"] >= 16 and numpy_ratio is not None and numpy_ratio < NUMPY_TARGET:
        out.append(f"< {NUMPY_TARGET:g}x numpy")
    failed = [n for n, r in point["rows"].items() if r["status"] != "ok" or not r["check_ok"]]
    out += [f"{n} {point['rows'][n]['status']}/check" for n in failed]
    return out


def render(results: dict) -> str:
    peers_ = [f for f in results["frameworks"] if f != "graphc cpu"]
    head = f"{'dtype':8} {'hidden':>6} {'batch':>5} {'graphc us':>10} " + " ".join(
        f"{p:>12}" for p in peers_) + "  notes"
    title = ("MLP sweep: 64 -> hidden ReLU -> 10, softmax-CE, SGD step; min time; peer "
             "columns are peer time / graphc time (above 1: graphc faster)")
    lines = [title, head, "-" * len(head)]
    for pt in results["points"]:
        g = pt["rows"].get("graphc cpu", {}).get("min_us")
        cells = []
        for p in peers_:
            r = pt["ratios"].get(p)
            cells.append(f"{r:>11.2f}x" if r is not None else f"{'n/a':>12}")
        lines.append(f"{pt['dtype']:8} {pt['hidden']:>6} {pt['batch']:>5} "
                     f"{(f'{g:.1f}' if g else 'n/a'):>10} " + " ".join(cells)
                     + "  " + "; ".join(shortfalls(pt)))
    cl = results.get("cliffs")
    if cl and cl.get("worst", {}).get("ratio"):
        worst = cl["worst"]
        lines.append(f"cliff scan (graphc cpu, 64-{cl['hidden']}-10 {cl['dtype']}, batches "
                     f"{CLIFF_BATCHES[0]}..{CLIFF_BATCHES[-1]}, {cl.get('passes', 1)} passes): "
                     f"worst speed-up of a bigger batch over a smaller one in every pass "
                     f"{worst['ratio']:.2f}x (batch {worst['bigger_batch']} vs "
                     f"{worst['smaller_batch']}; per pass "
                     + ", ".join(f"{r:.2f}x" for r in worst.get("per_pass", [])) + ")")
    return "\n".join(lines)


def main(cfg: Config) -> int:
    cfg = replace(cfg, frameworks=tuple(f for f in cfg.frameworks if f in FRAMEWORKS)
                  or FRAMEWORKS, min_time_s=min(cfg.min_time_s, 0.3))
    results = run(cfg, log=lambda *a, **k: print(*a, file=sys.stderr, **k))
    print(render(results))
    path = cfg.json_path
    if path:
        if path == "bench-results.json":
            path = "sweep-results.json"
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(tmp, path)
        print(f"\nresults written to {path}")
    return 0
