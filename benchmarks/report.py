"""The printed table, built from the results dict that also goes to the JSON file."""
from __future__ import annotations

REASON_WIDTH = 78
COLUMNS = (("workload", 16, "<"), ("framework", 14, "<"), ("median ms", 10, ">"),
           ("min ms", 9, ">"),
           ("x fastest", 9, ">"), ("throughput", 16, ">"), ("of limit", 8, ">"),
           ("1st call ms", 11, ">"), ("check", 18, "<"))


def _fmt_ms(ms) -> str:
    if ms is None:
        return "-"
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def _line(cells) -> str:
    parts = []
    for (_, width, align), cell in zip(COLUMNS, cells):
        parts.append(f"{cell:{align}{width}}")
    return "  ".join(parts).rstrip()


def _check(row: dict) -> str:
    check = row.get("check") or {}
    if "rel_err" not in check:
        return "-"
    if check["rel_err"] is None:
        return "WARN shape or NaN"
    if check["ok"]:
        return f"ok {check['rel_err']:.0e}"
    return f"WARN rel err {check['rel_err']:.1e}"


def _throughput(row: dict, limits: dict | None) -> tuple[str, str]:
    if row.get("gflops") is not None:
        peak = (limits or {}).get("numpy_sgemm_gflops")
        share = f"{100 * row['gflops'] / peak:.0f}%" if peak else "-"
        return f"{row['gflops']:.1f} GFLOP/s", share
    if row.get("gbps") is not None:
        peak = (limits or {}).get("copy_gbps")
        share = f"{100 * row['gbps'] / peak:.0f}%" if peak else "-"
        return f"{row['gbps']:.1f} GB/s", share
    return "-", "-"


def _shorten(text: str, width: int = REASON_WIDTH) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def header(results: dict) -> list[str]:
    m = results["machine"]
    threads = m["thread_settings"]
    wait_env = ", ".join(f"{k}={v or 'unset'}" for k, v in threads["wait_env"].items())
    lines = [f"graphc benchmarks, {results['date']}",
             (f"machine: {m['cpu_model']}, {m['logical_cores']} logical cores "
              f"({m['physical_cores'] or '?'} physical)"),
             (f"threads: {m['threads_per_framework']} per framework, pinned to CPUs "
              f"{threads['pinned_cpus']}, {wait_env}"),
             "versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items())]
    load = m.get("load_average_at_start")
    if load and load[0] > 0.5 * (m["logical_cores"] or 1):
        end = m.get("load_average_at_end")
        during = f", {end[0]:.1f} at the end" if end else ""
        lines.append(f"WARNING: machine busy (load average {load[0]:.1f} at the start{during}, "
                     f"{m['logical_cores']} logical cores): timings are noisy; compare min ms")
    lim = results.get("limits")
    if lim:
        graphc = (f"{lim['graphc_sgemm_gflops']:.1f} GFLOP/s"
                  if lim["graphc_sgemm_gflops"] is not None
                  else f"n/a ({lim['graphc_sgemm_note']})")
        lines.append(f"limits: numpy sgemm {lim['gemm_n']}^2 {lim['numpy_sgemm_gflops']:.1f} "
                     f"GFLOP/s | graphc sgemm {graphc} | copy {lim['copy_elements'] >> 20}M "
                     f"f32 {lim['copy_gbps']:.1f} GB/s (read+write)")
        if "graphc_conv_gflops" in lim:
            conv = lim["graphc_conv_gflops"]
            dims = lim.get("conv_shape") or [0, 0]
            shape = "x".join(str(d) for d in dims)
            lines.append(
                f"conv product: graphc conv3x3 {dims[1]}->{dims[1]} + bias + ReLU on ({shape}),"
                f" alone: "
                + (f"{conv:.1f} GFLOP/s = {100 * conv / lim['numpy_sgemm_gflops']:.0f}% of "
                   f"numpy sgemm (best of 20)" if conv is not None
                   else f"n/a ({lim['graphc_conv_note']})"))
    else:
        lines.append("limits: not measured")
    lines.append("'of limit': GFLOP/s over numpy sgemm, GB/s over copy bandwidth; training "
                 "FLOPs = 3 x forward; '1st call' = set-up incl. compile + first step")
    return lines


def workload_table(results: dict) -> list[str]:
    lines = [_line([c[0] for c in COLUMNS]), "-" * len(_line([c[0] for c in COLUMNS]))]
    limits = results.get("limits")
    for wl in results["workloads"]:
        label = f"{wl['key']} {wl['name']}"
        for i, row in enumerate(wl["rows"]):
            first = label if i == 0 else ""
            if row["status"] != "ok":
                status = "n/a" if row["status"] == "n/a" else "failed"
                reason = row["reason"]
                text = reason if reason.startswith("n/a") else f"{status}: {reason}"
                lines.append(f"{first:<16}  {row['framework']:<14}  {_shorten(text)}")
                continue
            ratio = row["ratio_to_fastest"]
            throughput, share = _throughput(row, limits)
            lines.append(_line([first, row["framework"], _fmt_ms(row["median_ms"]),
                                _fmt_ms(row["min_ms"]),
                                f"{ratio:.2f}x", throughput, share,
                                _fmt_ms(row["first_call_ms"]), _check(row)]))
        lines.append("")
    return lines


def compile_table(results: dict) -> list[str]:
    entries = results.get("compile_times") or []
    if not entries:
        return []
    lines = [("compile time (s): graphc = gc.compile -> first result in a fresh process "
              "(cold: empty GRAPHC_CACHE_DIR, warm: the same dir again);"),
             ("  others = in-process set-up + compile + first step (torch.compile: empty "
              "inductor cache)"),
             f"{'workload':<10}  {'framework':<14}  {'cold':>8}  {'warm':>8}  {'first call':>10}"]
    for e in entries:
        name = f"{e['workload']:<10}  {e['framework']:<14}"
        if "skipped" in e:
            lines.append(f"{name}  {_shorten('not measured: ' + e['skipped'], 60)}")
        elif "cold" in e:
            cells = []
            for phase in ("cold", "warm"):
                r = e[phase]
                cells.append(f"{r['to_first_result_s']:8.3f}" if "error" not in r else "  failed")
            errors = [e[p]["error"] for p in ("cold", "warm") if "error" in e[p]]
            note = f"  {_shorten(errors[0], 60)}" if errors else ""
            lines.append(f"{name}  {cells[0]}  {cells[1]}  {'-':>10}{note}")
        else:
            lines.append(f"{name}  {'-':>8}  {'-':>8}  {e['first_call_s']:10.3f}")
    return lines


def render(results: dict) -> str:
    lines = header(results) + [""] + workload_table(results) + compile_table(results)
    return "\n".join(lines).rstrip()
