"""Run the workloads on every framework: build, check against the reference, time.

Per workload: each framework is set up from fresh copies of the same weights, its first
step is timed (set-up and compile included) and its first results are compared with the
float64 reference; then the frameworks are timed in turns (`time_interleaved`). `run(config)`
returns the results as a JSON-ready dict; `main(argv)` also prints the table and writes the
JSON file. Nothing here asserts on timings.
"""
from __future__ import annotations

import datetime
import gc as garbage_collector
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import compile_probe, limits, report
from .base import NotApplicable
from .config import Config, parse_args
from .reference import CHECK_STEPS, reference, relative_error
from .threads import process_state
from .workloads import WORKLOADS, make_data

CHECK_RTOL = 1e-3
BLOCK_S = 0.05  # seconds of one framework's steps timed before the next one's turn
COMPILE_TIME_WORKLOADS = ("W1", "W2")  # graphc cold/warm compile is measured on these


def all_peers() -> list:
    """Every framework row, in table order."""
    from . import peers_graphc, peers_jax, peers_numpy, peers_torch

    return peers_graphc.PEERS + peers_torch.PEERS + peers_jax.PEERS + peers_numpy.PEERS


@dataclass
class Row:
    """One framework on one workload."""

    framework: str
    status: str = "ok"              # "ok", "n/a" (cannot run it), "failed" (raised)
    reason: str = ""
    median_ms: float | None = None
    min_ms: float | None = None
    reps: int = 0
    first_call_ms: float | None = None  # set-up (incl. gc.compile) + first step
    ratio_to_fastest: float | None = None
    gflops: float | None = None
    gbps: float | None = None
    check: dict = field(default_factory=dict)  # values, rel_err, ok


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    reason = f"{type(exc).__name__}: {first}" if not isinstance(exc, NotApplicable) else first
    return reason if len(reason) <= 300 else reason[:297] + "..."


def check_values(runner, first_result, train: bool) -> np.ndarray:
    """The values compared with the reference: the first CHECK_STEPS losses, or the output."""
    if not train:
        return runner.fetch(first_result)
    values = [float(runner.fetch(first_result))]
    for _ in range(CHECK_STEPS - 1):
        values.append(float(runner.fetch(runner.step())))
    return np.array(values)


def _mark_failed(row: Row, exc: Exception) -> None:
    row.status = "n/a" if isinstance(exc, NotApplicable) else "failed"
    row.reason = _reason(exc)


def prepare(peer, w, data, want) -> tuple[Row, object]:
    """Build the runner, time set-up plus first step, run the correctness check.

    Returns the row and the runner, or None in place of the runner when it cannot run.
    """
    row = Row(peer.name)
    why = peer.unavailable()
    if why:
        row.status, row.reason = "n/a", why
        return row, None
    try:
        t0 = time.perf_counter()
        runner = peer.build(w, data)
        first = runner.step()
        row.first_call_ms = 1e3 * (time.perf_counter() - t0)
        if want is not None:
            got = check_values(runner, first, w.train)
            err = relative_error(got, want)
            finite = bool(np.isfinite(err))  # inf/NaN: wrong shape or a NaN result
            row.check = {"rel_err": err if finite else None,
                         "ok": finite and bool(err <= CHECK_RTOL),
                         "values": got.tolist() if got.size <= 8 else None}
    except Exception as exc:  # noqa: BLE001 - one framework failing must not stop the suite
        _mark_failed(row, exc)
        return row, None
    return row, runner


@dataclass
class _Timing:
    row: Row
    runner: object
    block: int                      # steps timed in a row before the next framework's turn
    times: list = field(default_factory=list)


def block_reps(estimates: list, cfg: Config) -> list:
    """Steps in one turn for each framework, from its estimated seconds a step: about
    BLOCK_S seconds of them, but no more than spreads `max_reps` steps over the rounds the
    run will last (the rounds grow as the fastest frameworks' turns shrink: a few passes)."""
    est = [max(e, 1e-7) for e in estimates]
    blocks = [max(1, int(BLOCK_S / e)) for e in est]
    budget = cfg.min_time_s * len(est)
    for _ in range(4):
        rounds = max(1.0, budget / max(sum(b * e for b, e in zip(blocks, est)), 1e-9))
        blocks = [max(1, int(min(BLOCK_S / e, cfg.max_reps / rounds))) for e in est]
    return blocks


def time_interleaved(prepared: list, cfg: Config) -> dict:
    """Seconds per step for each (row, runner), keyed by framework name.

    The frameworks take turns, a block of about BLOCK_S seconds of steps each, so a change
    in machine load during the run hits them all alike. Each gets `warmup` untimed steps
    first; a framework stops after `max_reps` steps, or once it has `min_reps` and the
    rounds have lasted `min_time_s` per framework. The garbage collector is off meanwhile.

    A framework whose blocks would reach `max_reps` before the last round takes smaller
    blocks (`block_reps`), so that its steps too are spread over the whole run. Otherwise a
    5 µs step took its 20,000 steps in the first two of ~40 rounds (0.1 s), against 1-2 s
    for its peers, and whichever state the host was in during that 0.1 s set its median:
    this project's hosts have a slow state in which Python code runs ~1.7x slower, and a W1
    step's times are bimodal (5.3-5.5 µs, or 8.5-9.5 µs).
    """
    ready = []  # (row, runner, estimated seconds a step)
    for row, runner in prepared:
        try:
            for _ in range(cfg.warmup):
                runner.step()
            t0 = time.perf_counter()
            runner.step()
            estimate = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - one framework failing must not stop the suite
            _mark_failed(row, exc)
            continue
        ready.append((row, runner, estimate))
    blocks = block_reps([estimate for _, _, estimate in ready], cfg)
    pending = [_Timing(row, runner, block) for (row, runner, _), block in zip(ready, blocks)]
    budget = cfg.min_time_s * len(pending)
    finished = {}
    was_enabled = garbage_collector.isenabled()
    garbage_collector.disable()
    try:
        start = time.perf_counter()
        while pending:
            for entry in list(pending):
                try:
                    for _ in range(min(entry.block, cfg.max_reps - len(entry.times))):
                        t0 = time.perf_counter()
                        entry.runner.step()
                        entry.times.append(time.perf_counter() - t0)
                except Exception as exc:  # noqa: BLE001 - the others go on
                    _mark_failed(entry.row, exc)
                    pending.remove(entry)
                    continue
                n = len(entry.times)
                if n >= cfg.max_reps or (
                        n >= cfg.min_reps and time.perf_counter() - start >= budget):
                    finished[entry.row.framework] = entry.times
                    pending.remove(entry)
    finally:
        if was_enabled:
            garbage_collector.enable()
    return finished


def run_workload(w, peers, cfg: Config, log=print) -> dict:
    data = make_data(w, cfg.quick)
    want = None if "check" in cfg.skip else reference(w, data)
    rows, ready = [], []
    for peer in peers:
        if peer.name not in cfg.frameworks:
            continue
        log(f"  {w.key} {peer.name}: set-up, first step, check ...", flush=True)
        row, runner = prepare(peer, w, data, want)
        rows.append(row)
        if runner is not None:
            ready.append((row, runner))
    log(f"  {w.key}: timing {len(ready)} frameworks in turns ...", flush=True)
    times = time_interleaved(ready, cfg)
    for row in rows:
        if row.framework not in times:
            continue
        row.median_ms = 1e3 * statistics.median(times[row.framework])
        row.min_ms = 1e3 * min(times[row.framework])
        row.reps = len(times[row.framework])
        if data.flops and w.throughput:
            row.gflops = data.flops / (row.median_ms * 1e-3) / 1e9
        if data.bytes and w.throughput:
            row.gbps = data.bytes / (row.median_ms * 1e-3) / 1e9
    medians = [r.median_ms for r in rows if r.median_ms is not None]
    for r in rows:
        if r.median_ms is not None:
            r.ratio_to_fastest = r.median_ms / min(medians)
    shapes = {k: list(v.shape) for k, v in data.inputs.items()}
    return {"key": w.key, "name": w.name, "description": w.description, "train": w.train,
            "lr": w.lr if w.train else None, "input_shapes": shapes,
            "flops_per_step": data.flops, "bytes_per_step": data.bytes,
            "reference": None if want is None else "numpy float64",
            "check_rtol": CHECK_RTOL, "rows": [asdict(r) for r in rows]}


def compile_times(results: list, cfg: Config, log=print) -> list:
    """graphc cpu cold/warm compile (fresh processes) next to in-process first calls."""
    out = []
    for wl in results:
        if wl["key"] not in COMPILE_TIME_WORKLOADS:
            continue
        by_name = {r["framework"]: r for r in wl["rows"]}
        if "graphc cpu" in by_name:
            row = by_name["graphc cpu"]
            if row["status"] == "ok":
                log(f"  {wl['key']} graphc cpu compile time (2 fresh processes) ...", flush=True)
                out.append(compile_probe.measure(wl["key"], "cpu", cfg.quick))
            else:
                out.append({"workload": wl["key"], "framework": "graphc cpu",
                            "skipped": f"{row['status']}: {row['reason']}"})
        for name in ("graphc numpy", "torch.compile", "jax jit"):
            row = by_name.get(name)
            if row is not None and row["status"] == "ok":
                out.append({"workload": wl["key"], "framework": name,
                            "first_call_s": row["first_call_ms"] / 1e3})
    return out


def machine_info(cfg: Config) -> dict:
    model, physical = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            phys_id = "0"
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model is None:
                    model = value
                elif key == "physical id":
                    phys_id = value
                elif key == "core id":
                    physical.add((phys_id, value))
    except OSError:
        pass
    return {"cpu_model": model or platform.processor() or "unknown",
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "logical_cores": os.cpu_count(), "physical_cores": len(physical) or None,
            "platform": platform.platform(), "threads_per_framework": cfg.threads,
            "thread_settings": process_state()}


def versions(peers) -> dict:
    """Python, NumPy, and the version of every framework that runs (peers: available ones)."""
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for peer in peers:
        try:
            out.update(peer.versions())
        except Exception as exc:  # noqa: BLE001 - a version is not worth a crash
            out[peer.name] = f"version unknown: {_reason(exc)}"
    return out


def run(cfg: Config, log=print) -> dict:
    """Everything the table and the JSON file show."""
    peers = all_peers()
    selected = [p for p in peers if p.name in cfg.frameworks and p.unavailable() is None]
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {"schema": 1, "date": started.isoformat(timespec="seconds"),
               "machine": machine_info(cfg), "versions": versions(selected),
               "config": asdict(cfg)}
    if "limits" not in cfg.skip:
        log("measuring machine limits ...", flush=True)
        results["limits"] = limits.measure(cfg.threads)
    else:
        results["limits"] = None
    results["workloads"] = []
    restores = [p.set_threads(cfg.threads) for p in selected]
    try:
        for key in cfg.only:
            w = WORKLOADS[key]
            log(f"{w.label}: {w.description}", flush=True)
            results["workloads"].append(run_workload(w, peers, cfg, log))
    finally:
        for restore in reversed(restores):
            restore()
    if "compile" not in cfg.skip:
        results["compile_times"] = compile_times(results["workloads"], cfg, log)
    else:
        results["compile_times"] = []
    if hasattr(os, "getloadavg"):
        results["machine"]["load_average_at_end"] = list(os.getloadavg())
    return results


def main(argv=None) -> int:
    cfg = parse_args(argv)
    if cfg.sweep:
        from . import sweep

        return sweep.main(cfg)
    results = run(cfg, log=lambda *a, **k: print(*a, file=sys.stderr, **k))
    print(report.render(results))
    if cfg.json_path:
        with open(cfg.json_path, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nresults written to {cfg.json_path}")
    return 0
