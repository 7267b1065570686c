"""The benchmark harness runs end to end on a tiny configuration and reports what it should.

No timing is asserted: only the structure of the table and the JSON, the correctness check,
and that unsupported workloads show as 'n/a' rows rather than stopping the run.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import compile_probe, harness, report
from benchmarks.config import FRAMEWORKS, Config, parse_args, resolve_keys
from benchmarks.peers_graphc import GraphcPeer
from benchmarks.reference import relative_error
from benchmarks.workloads import WORKLOADS, make_data

# Cheap rows only: torch.compile and graphc's cpu backend compile for seconds.
CHEAP = ["graphc numpy"] + [name for name, module in (("torch eager", "torch"),
                                                      ("jax jit", "jax"))
                            if importlib.util.find_spec(module) is not None]

ROW_KEYS = {"framework", "status", "reason", "median_ms", "min_ms", "reps", "first_call_ms",
            "ratio_to_fastest", "gflops", "gbps", "check"}


def tiny_argv(json_path, only="W1", frameworks=CHEAP, skip="limits,compile"):
    return ["--quick", "--only", only, "--frameworks", ",".join(frameworks), "--skip", skip,
            "--reps", "2", "--warmup", "1", "--json", str(json_path)]


def test_main_prints_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert harness.main(tiny_argv(path)) == 0
    out = capsys.readouterr().out
    results = json.loads(path.read_text())

    assert {"schema", "date", "machine", "versions", "config", "limits", "workloads",
            "compile_times"} <= results.keys()
    assert results["machine"]["cpu_model"]
    assert results["machine"]["threads_per_framework"] == 2
    assert results["versions"]["numpy"] == np.__version__
    assert [w["key"] for w in results["workloads"]] == ["W1"]
    w1 = results["workloads"][0]
    assert w1["reference"] == "numpy float64"
    assert [r["framework"] for r in w1["rows"]] == CHEAP
    for row in w1["rows"]:
        assert set(row) == ROW_KEYS
        assert row["status"] == "ok", row
        assert row["reps"] == 2
        assert row["median_ms"] > 0 and row["min_ms"] <= row["median_ms"]
        assert row["check"]["ok"], row["check"]
        assert len(row["check"]["values"]) == 2  # losses of the first two steps
    assert min(r["ratio_to_fastest"] for r in w1["rows"]) == pytest.approx(1.0)

    assert "median ms" in out and "x fastest" in out and "check" in out
    assert "W1 tiny-mlp" in out
    for name in CHEAP:
        assert name in out
    assert f"results written to {path}" in out


def test_module_entry_point_sets_thread_limits_first(tmp_path):
    path = tmp_path / "bench.json"
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "XLA_FLAGS")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *tiny_argv(path, frameworks=["graphc numpy"])],
        cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "W1 tiny-mlp" in proc.stdout
    threads = json.loads(path.read_text())["machine"]["thread_settings"]
    assert threads["env"]["OPENBLAS_NUM_THREADS"] == "2"
    assert threads["env"]["NUMBA_NUM_THREADS"] == "2"
    assert threads["wait_env"] == {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "16"}
    assert "--xla_cpu_multi_thread_eigen=true" in threads["xla_flags"]
    assert 1 <= len(threads["pinned_cpus"]) <= 2


def test_conv_workloads_run_and_throughput_is_reported(tmp_path):
    cfg = parse_args(tiny_argv(tmp_path / "x.json", only="W3,W4",
                               frameworks=["graphc numpy"], skip="limits,compile,check"))
    results = harness.run(cfg, log=lambda *a, **k: None)
    lenet, elementwise = results["workloads"]
    (row,) = lenet["rows"]
    assert row["status"] == "ok" and row["gflops"] > 0 and row["gbps"] is None
    (row,) = elementwise["rows"]
    assert row["status"] == "ok" and row["gbps"] > 0 and row["gflops"] is None
    assert elementwise["bytes_per_step"] == 4 * 2**20  # --quick: 1M float32 read once
    text = report.render(results)
    assert "GFLOP/s" in text and "GB/s" in text


def test_failed_framework_becomes_a_row(monkeypatch):
    class Broken(GraphcPeer):
        def build(self, w, data):
            raise RuntimeError("no C++ compiler\nsecond line")

    monkeypatch.setattr(harness, "all_peers", lambda: [Broken("numpy")])
    cfg = Config.for_mode(True, only=("W1",), frameworks=("graphc numpy",),
                          skip=("limits", "compile", "check"), warmup=0, min_reps=1,
                          max_reps=1, min_time_s=0.0)
    results = harness.run(cfg, log=lambda *a, **k: None)
    (row,) = results["workloads"][0]["rows"]
    assert row["status"] == "failed"
    assert row["reason"] == "RuntimeError: no C++ compiler"
    assert "failed: RuntimeError: no C++ compiler" in report.render(results)


def test_a_fast_frameworks_steps_span_the_whole_run_as_its_peers_do():
    """A step fast enough to reach max_reps in the first round takes smaller turns, so a
    moment of machine load cannot decide its median alone."""
    import time

    class Runner:
        def __init__(self, seconds):
            self.seconds, self.calls = seconds, []

        def step(self):
            self.calls.append(time.perf_counter())
            if self.seconds:
                time.sleep(self.seconds)

    fast, slow = Runner(0.0), Runner(0.002)
    rows = [harness.Row(framework=name) for name in ("fast", "slow")]
    cfg = Config.for_mode(False, warmup=0, min_reps=1, max_reps=400, min_time_s=0.4)
    assert harness.block_reps([1e-6, 0.002], cfg) == [25, 25]  # 16 rounds of 0.05 s
    # (two fast ones: rounds of one step each, until both have max_reps, well within 0.8 s)
    assert harness.block_reps([1e-6, 1e-6], cfg) == [1, 1]
    times = harness.time_interleaved(list(zip(rows, [fast, slow])), cfg)
    assert len(times["fast"]) == 400 and len(times["slow"]) >= 25
    span = [r.calls[-1] - r.calls[0] for r in (fast, slow)]
    assert span[0] >= 0.5 * span[1] > 0.1, span


@pytest.mark.parametrize("args, words", [
    ([], "got nothing"), (["W9"], "got W9"), (["W2", "gpu"], "BACKEND cpu or numpy"),
    (["--runs", "0", "W2"], ">= 1, got 0"), (["--runs", "x", "W2"], "whole number"),
])
def test_compile_probe_command_line_names_a_bad_argument(args, words):
    with pytest.raises(SystemExit) as info:
        compile_probe.main(args)
    assert words in str(info.value) and "usage:" in str(info.value)


def test_compile_probe_command_line_prints_cold_and_warm(capsys):
    assert compile_probe.main(["--quick", "W1", "numpy"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("W1 graphc numpy: cold ") and "; warm " in line, line


def test_compile_probe_measures_cold_and_warm_in_fresh_processes():
    result = compile_probe.measure("W1", "numpy", quick=True, timeout=120)
    assert result["framework"] == "graphc numpy"
    for phase in ("cold", "warm"):
        assert "error" not in result[phase], result[phase]
        assert result[phase]["to_first_result_s"] >= result[phase]["compile_s"] >= 0


def test_every_workload_makes_seeded_float32_data():
    for key, w in WORKLOADS.items():
        a, b = make_data(w, quick=True), make_data(w, quick=True)
        assert a.inputs.keys() == b.inputs.keys()
        for name, arr in a.inputs.items():
            np.testing.assert_array_equal(arr, b.inputs[name])
            assert arr.dtype == (np.int32 if name == "t" else np.float32), (key, name)
        for (name, p), (_, q) in zip(a.params, b.params):
            np.testing.assert_array_equal(p, q)
            assert p.dtype == np.float32, (key, name)
        assert (a.flops is not None) != (a.bytes is not None), key


def test_options():
    assert resolve_keys("w2,lenet") == ("W2", "W3")
    with pytest.raises(Exception, match="unknown workload"):
        resolve_keys("resnet")
    cfg = parse_args([])
    assert cfg.only == tuple(WORKLOADS) and cfg.frameworks == FRAMEWORKS
    assert cfg.json_path == "bench-results.json" and cfg.threads == 2
    assert parse_args(["--json", "-"]).json_path is None
    assert relative_error(np.array([1.0, 2.002]), np.array([1.0, 2.0])) == pytest.approx(1e-3)
    assert relative_error(np.zeros(2), np.zeros(3)) == float("inf")


def test_sweep_checks_and_times_every_framework_at_every_point(monkeypatch, tmp_path, capsys):
    from benchmarks import sweep

    monkeypatch.setattr(sweep, "QUICK_HIDDEN", (16,))
    monkeypatch.setattr(sweep, "QUICK_BATCHES", (1, 16))
    monkeypatch.setattr(sweep, "CLIFF_BATCHES", (8, 12))
    path = tmp_path / "sweep.json"
    argv = ["--sweep", "--quick", "--frameworks", "graphc cpu,numpy hand", "--reps", "3",
            "--warmup", "1", "--json", str(path)]
    assert harness.main(argv) == 0
    out = capsys.readouterr().out
    results = json.loads(path.read_text())
    assert results["kind"] == "mlp-sweep"
    assert results["frameworks"] == ["graphc cpu", "numpy hand"]
    points = results["points"]
    assert [(p["dtype"], p["hidden"], p["batch"]) for p in points] == [
        (d, 16, b) for d in ("float32", "float64") for b in (1, 16)]
    for p in points:
        for name, row in p["rows"].items():
            assert row["status"] == "ok" and row["check_ok"], (name, row)
            assert row["reps"] == 3 and row["min_us"] > 0
        assert p["ratios"]["numpy hand"] == pytest.approx(
            p["rows"]["numpy hand"]["min_us"] / p["rows"]["graphc cpu"]["min_us"])
    cliffs = results["cliffs"]
    assert [c["batch"] for c in cliffs["points"]] == [8, 12]
    assert cliffs["worst"]["ratio"] > 0
    for c in cliffs["points"]:  # timed in two passes (up, then down), the fastest kept
        assert cliffs["passes"] == 2 and len(c["passes_us"]) == 2
        assert c["min_us"] == min(c["passes_us"])
    small, big = cliffs["points"]  # a pair counts with its smaller ratio over the passes
    per_pass = [s / b for s, b in zip(small["passes_us"], big["passes_us"])]
    assert cliffs["worst"]["ratio"] == pytest.approx(min(per_pass))
    assert cliffs["worst"]["per_pass"] == pytest.approx(per_pass)
    assert "MLP sweep" in out and "numpy hand" in out and "cliff scan" in out


def test_the_cliff_scan_finds_a_cliff_in_every_pass_and_not_a_drift_in_one():
    from benchmarks.sweep import worst_cliff

    def points(*rows):
        return [{"batch": b, "passes_us": list(ts)} for b, ts in rows]

    # batch 128 twice as slow as 132 in both passes (a kernel choice): found
    cliff = worst_cliff(points((124, (50, 52)), (128, (110, 112)), (132, (55, 56))))
    assert cliff["smaller_batch"] == 128 and cliff["bigger_batch"] == 132
    assert cliff["ratio"] == pytest.approx(2.0)
    # the machine slowed down halfway through the second (descending) pass: every pair
    # stays at or below 1x in the first pass, so nothing counts as a cliff
    drift = worst_cliff(points((20, (21.7, 24.5)), (24, (22.7, 16.9)), (28, (24.5, 18.5))))
    assert drift["ratio"] < 1.0


def test_hand_written_numpy_step_matches_the_float64_reference():
    from benchmarks import sweep
    from benchmarks.peers_numpy import NumpyMlpStep
    from benchmarks.reference import mlp_losses

    w = sweep.workload(32, 20, "float64")
    data = sweep.make_data(w, "float64")
    step = NumpyMlpStep(w, data)
    got = [float(step.step()) for _ in range(3)]
    np.testing.assert_allclose(got, mlp_losses(w, data, steps=3), rtol=1e-12)


# --- the GPU rows (benchmarks/gpu.py) ------------------------------------------------------------
def _gpu_reasons() -> tuple:
    from benchmarks import gpu, gpu_peers

    return (gpu.why_not_measured(), gpu_peers.torch_gpu_unavailable(),
            gpu_peers.jax_gpu_unavailable())


def test_gpu_rows_say_n_a_without_a_gpu(capsys):
    from benchmarks import gpu

    if None in _gpu_reasons():
        pytest.skip("a framework has a GPU here: its rows would be timed")
    assert gpu.main(["--steps", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("device limits:") and "n/a" in line for line in lines)
    for framework in ("graphc cuda", "torch eager", "jax jit"):
        rows = [line for line in lines if f" {framework} " in line]
        assert len(rows) == (4 if framework == "graphc cuda" else 3), (framework, lines)
        assert all("n/a: " in row for row in rows), rows
    for title in ("W2 mnist-mlp (batch 1024)", "W3 lenet (batch 256)",
                  "W5 vgg-block (batch 64, forward)", "W4 elementwise (16M float32)"):
        assert any(line.startswith(title) for line in lines), (title, lines)


# small sizes: the simulator only allocates, but the arrays are real
ESTIMATE_SIZES = {"W2": 8, "W3": 4, "W5": 2, "W4": 4096}


def test_gpu_estimate_counts_what_the_cuda_runner_does():
    import graphc as gc
    from benchmarks.gpu_estimate import estimate, render
    from benchmarks.gpu_peers import gpu_case, graphc_runner, host_feeds
    from benchmarks.peers_graphc import build_program, compile_program

    rows = estimate(ESTIMATE_SIZES)
    assert [r["key"] for r in rows] == list(ESTIMATE_SIZES)
    for row in rows:
        w, data = gpu_case(row["key"], ESTIMATE_SIZES[row["key"]])
        fn = compile_program(gc, w, *build_program(gc, w, data), backend="cuda")
        runner = fn.executable.bind(data.inputs["x"].shape[0])
        assert row["launches"] == len(runner.launches) > 0, row["key"]
        assert row["h2d_bytes"] == sum(a.nbytes for a in host_feeds(w, data)), row["key"]
        # what a call returns, on the reference backend: the loss, or the forward output
        out = graphc_runner(w, data, "numpy").step()
        assert row["d2h_bytes"] == np.asarray(out).nbytes, row["key"]
        assert row["traffic_bytes"] > row["h2d_bytes"], row["key"]
        for name in ("launch_ms", "transfer_ms", "compute_ms"):
            assert row[name] > 0, (row["key"], name)
        assert row["serial_ms"] == pytest.approx(
            row["launch_ms"] + row["transfer_ms"] + row["compute_ms"])
        assert (row["flops"] > 0) == (row["key"] != "W4"), row  # W4 has no products
    # W2's products: 3 forward, 3 weight gradients, 2 input gradients (x needs none)
    n, mlp = ESTIMATE_SIZES["W2"], 784 * 1000 + 1000 * 1000 + 1000 * 10
    assert rows[0]["flops"] == 2 * n * (3 * mlp - 784 * 1000)
    text = render(rows)
    assert text.startswith("ESTIMATE, not a measurement")
    assert "W3 lenet (batch 4)" in text and "overlapped ms" in text


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("key,batch", [("W2", 4), ("W3", 4), ("W5", 1), ("W4", 1000)])
def test_gpu_peers_on_the_cpu_compute_graphc_cpu_results(framework, key, batch):
    pytest.importorskip(framework)
    from benchmarks.gpu_peers import gpu_case, graphc_runner, jax_runner, torch_runner

    w, data = gpu_case(key, batch)
    make = torch_runner if framework == "torch" else jax_runner

    def two_steps(runner):  # the second step's loss checks the first step's SGD update
        return [runner.fetch(runner.step()) for _ in range(2)]

    want = two_steps(graphc_runner(w, data, "cpu"))
    got = two_steps(make(w, data, "cpu"))
    for step, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5, err_msg=f"step {step}")


def test_gpu_only_code_runs_in_the_simulator(monkeypatch):
    """What only a GPU run reaches (the limits through graphc, W4's two rows, a workload's
    rows and ratio), run in the simulator at toy sizes with the CPU standing in for peers:
    the numbers mean nothing, the code paths are exercised."""
    from conftest import CUDA_MODE

    from benchmarks import gpu
    from benchmarks.gpu_peers import gpu_case, graphc_runner

    if CUDA_MODE != "simulator":
        pytest.skip("on a GPU, python -m benchmarks.gpu runs these for real")
    monkeypatch.setattr(gpu, "SGEMM_N", 8)
    monkeypatch.setattr(gpu, "COPY_ELEMENTS", 1024)
    limits = gpu.device_limits(None, "no torch GPU")
    assert limits["sgemm_gflops"] > 0 and limits["copy_gbps"] > 0, limits
    w, data = gpu_case("W4", 4096)
    rows = gpu.w4_rows(w, data, None, 100.0, steps=1)
    assert [name for name, _, _ in rows] == ["graphc cuda, x fed", "graphc cuda, kernels only"]
    assert all(ms > 0 and "of the copy's" in text for _, ms, text in rows)
    peers = [("graphc cpu", None, lambda w, d: graphc_runner(w, d, "cpu")),
             ("numpy", None, lambda w, d: graphc_runner(w, d, "numpy")),
             ("absent", "not here", None)]
    w, data = gpu_case("W2", 8)
    (_, ms, text), (_, peer_ms, _), absent = gpu.workload_rows(w, data, peers, steps=2)
    assert f"{ms / peer_ms:.2f}x the best peer's time" in text
    assert absent == ("absent", None, "n/a: not here")


def test_conv_crossover_times_both_ways_and_reads_the_smallest_k_that_wins_everywhere(
        tmp_path, capsys):
    from benchmarks import conv_crossover

    rows = conv_crossover.measure([(2, 3, 5, 9, 3), (1, 1, 4, 7, 1)], reps=1)
    assert [r["k"] for r in rows] == [27, 1]
    assert all(r["im2col_gemm_s"] > 0 and r["implicit_s"] > 0 for r in rows)
    fake = [{"k": 9, "speedup": 0.7}, {"k": 18, "speedup": 1.5}, {"k": 18, "speedup": 0.9},
            {"k": 27, "speedup": 1.2}, {"k": 576, "speedup": 1.4}]
    assert conv_crossover.crossover(fake) == 27
    assert conv_crossover.crossover([{"k": 9, "speedup": 1.1}, {"k": 64, "speedup": 0.9}]) \
        is None
    small = [{"k": 9, "batch": 1, "speedup": 0.8}, {"k": 18, "batch": 4, "speedup": 0.9},
             {"k": 9, "batch": 8, "speedup": 1.1}, {"k": 18, "batch": 64, "speedup": 1.4},
             {"k": 27, "batch": 1, "speedup": 0.5}]  # (K >= 27: not counted)
    assert conv_crossover.min_batch(small, 27) == 8


def test_split_crossover_times_one_thread_and_the_split_and_reads_the_threshold():
    from graphc.kernels.cpu import conv

    from benchmarks import split_crossover

    saved = conv.SPLIT_MIN_NS
    rows = split_crossover.measure(batches=(1,), reps=1)
    assert conv.SPLIT_MIN_NS == saved  # (restored)
    assert {r["kernel"] for r in rows} == set(conv.NS_PER_UNIT)
    assert all(r["one_thread_s"] > 0 and r["split_s"] > 0 and r["units"] > 0 for r in rows)
    costs = split_crossover.costs(rows)
    assert costs["products"] == pytest.approx(rows[0]["ns_per_unit"])
    fake = [{"one_thread_s": 1e-4, "speedup": 0.5}, {"one_thread_s": 5e-4, "speedup": 1.2},
            {"one_thread_s": 6e-4, "speedup": 0.9}, {"one_thread_s": 8e-4, "speedup": 1.1},
            {"one_thread_s": 3e-3, "speedup": 1.6}]
    assert split_crossover.crossover(fake) == pytest.approx(8e5)
    assert split_crossover.crossover([{"one_thread_s": 1e-3, "speedup": 0.9}]) is None


def test_split_crossover_times_the_fused_kernels_variants():
    from benchmarks import split_crossover
    from graphc.backends.cpu import runner

    saved = runner.PARALLEL_MIN_NS
    rows = split_crossover.measure_fused(sizes=(1000,), reps=1)
    assert runner.PARALLEL_MIN_NS == saved
    assert [r["kernel"] for r in rows] == list(split_crossover.FUSED)
    assert all(r["one_thread_s"] > 0 and r["split_s"] > 0 and r["estimated_ns"] > 0
               for r in rows)
    fake = [{"estimated_ns": 1e5, "speedup": 0.5}, {"estimated_ns": 9e5, "speedup": 1.1},
            {"estimated_ns": 2e6, "speedup": 1.5}]
    assert split_crossover.crossover(fake, "estimated_ns") == 9e5


def test_the_conv_product_limit_is_measured_and_printed_beside_sgemm(monkeypatch):
    """The convolution issue's target (the conv product at >= 70% of sgemm) gets a line of
    its own: graphc's conv layer compiled alone, its GFLOP/s and its share of numpy's
    sgemm measured in the same run (a toy shape here)."""
    from benchmarks import limits, report

    monkeypatch.setattr(limits, "CONV_SHAPE", (2, 4, 6, 6))
    gflops, note = limits.graphc_conv_gflops(repeats=2)
    assert gflops is not None and gflops > 0, note
    machine = {"cpu_model": "x", "logical_cores": 2, "physical_cores": 2,
               "threads_per_framework": 2,
               "thread_settings": {"wait_env": {}, "pinned_cpus": [0, 1]}}
    results = {"date": "today", "machine": machine, "versions": {},
               "limits": {"numpy_sgemm_gflops": 4.0 * gflops, "graphc_sgemm_gflops": None,
                          "graphc_sgemm_note": "n/a", "copy_gbps": 1.0, "gemm_n": 8,
                          "copy_elements": 1 << 20, "graphc_conv_gflops": gflops,
                          "graphc_conv_note": "", "conv_shape": [2, 4, 6, 6]}}
    lines = [ln for ln in report.header(results) if ln.startswith("conv product:")]
    want = (f"conv product: graphc conv3x3 4->4 + bias + ReLU on (2x4x6x6), alone: "
            f"{gflops:.1f} GFLOP/s = 25% of numpy sgemm (best of 20)")
    assert lines == [want]
