"""The markdown table and files of an ``icnseg bench`` result."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from icnseg.fileio import write_text
from icnseg.segmenter import STAGES


def _f(x: float | None, digits: int = 2) -> str:
    """A number for a table cell ('-' when missing)."""
    return "-" if x is None else f"{x:.{digits}f}"


def render_markdown(result: dict[str, Any]) -> str:
    """Side-by-side tables: end to end, per stage (mean ms), throughput, cold start, micro."""
    m, c, backends = result["machine"], result["config"], result["backends"]
    names = list(backends)
    gpu = ", ".join(g["name"] for g in m["gpus"]) or "no GPU"
    lines = [
        f"# icnseg bench: {c['model']} ({c['input_size'][0]}x{c['input_size'][1]}, "
        f"T={c['segment']['iterations']}, {c['precision']})",
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores), {gpu}; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()) + f"; git {m['git']}.",
        f"Device: {c['device']}; threads per session: {c.get('threads') or 'library default'}"
        f"; load average at start {m.get('loadavg')}. "
        f"{c['iters']} timed images per backend after {c['warmup']} "
        f"warm-up, round-robin; outputs checked equal first "
        f"({result['agreement']['reference']} is the reference).",
        "",
        *[f"**Warning:** {w}." for w in result.get("warnings", [])],
        *([""] if result.get("warnings") else []),
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    lines.append("| e2e mean ± std (ms) | " + " | ".join(
        f"{_f(backends[n]['e2e_ms']['mean'])} ± {_f(backends[n]['e2e_ms'].get('std'))}"
        for n in names) + " |")
    for key in ("p50", "p90", "p99", "min"):
        lines.append(f"| e2e {key} (ms) | "
                     + " | ".join(_f(backends[n]["e2e_ms"][key]) for n in names) + " |")
    if "baseline" in backends:
        lines.append("| speed-up vs baseline | " + " | ".join(
            _f(backends[n]["speedup_vs_baseline"], 1) + "x" for n in names) + " |")
    if all("e2e_no_proposals_ms" in backends[n] for n in names):
        lines.append("| e2e without proposals, mean (ms) | " + " | ".join(
            _f(backends[n]["e2e_no_proposals_ms"]["mean"]) for n in names) + " |")
        if "baseline" in backends:
            lines.append("| speed-up vs baseline, without proposals | " + " | ".join(
                _f(backends[n]["speedup_vs_baseline_no_proposals"], 1) + "x"
                for n in names) + " |")
    lines.append("| images/s, 1 stream | "
                 + " | ".join(_f(backends[n]["throughput_single"], 1) for n in names) + " |")
    if any("throughput_overlapped" in backends[n] for n in names):
        lines.append(f"| images/s, {c['streams']} streams | " + " | ".join(
            _f(backends[n].get("throughput_overlapped"), 1) for n in names) + " |")
    for stage in STAGES:
        cells = [backends[n]["stages_ms"].get(stage, {}).get("mean") for n in names]
        if any(cells):
            mark = {n: "*" if stage in backends[n]["derived_stages"] else "" for n in names}
            lines.append(f"| {stage} (ms) | "
                         + " | ".join(_f(x) + mark[n] for x, n in zip(cells, names,
                                                                         strict=True)) + " |")
    if any("cold" in backends[n] for n in names):
        for key, label in (("import_s", "import (s)"), ("load_s", "load (s)"),
                           ("first_s", "first image (s)"), ("peak_rss_mb", "peak RSS (MiB)")):
            lines.append(f"| cold: {label} | " + " | ".join(
                _f(backends[n].get("cold", {}).get(key)) for n in names) + " |")
    lines += ["", f"e2e includes making the built-in proposals of every image (the "
              f"'proposals' stage; at the image's size, long side <= "
              f"{c['segment'].get('match_max_side')}); first made once per image for the "
              f"agreement check: {_f(result['proposals_ms']['mean'])} ms mean, "
              f"N = {', '.join(map(str, result['proposal_counts']))}."]
    if any(backends[n]["derived_stages"] for n in names):
        lines.append("* prm.onnx runs forward, peaks and backward as one graph: its forward "
                     "share is timed with a forward-only copy of the graph, backward = rest.")
    roof = [(n, p) for n in names for p in backends[n].get("roofline", [])]
    if roof:
        k_rows = "each image's K" if c.get("dynamic_k") else "its K_max"
        lines += ["", "Roofline (FLOPs and bytes counted from the ONNX graphs as written; prm.onnx "
                  f"backward at {k_rows}, icn.onnx at each image's K):", "",
                  "| backend | stage | GFLOP/s | GB/s | FLOP/byte | % of peak compute | "
                  "% of peak bandwidth | bound |", "|---|---|---:|---:|---:|---:|---:|---|"]
        for n, p in roof:
            pct = [("-" if p[k] is None else f"{100 * p[k]:.1f}")
                   for k in ("compute_fraction", "bandwidth_fraction")]
            lines.append(f"| {n} | {p['stage']} | {p['flops_per_s'] / 1e9:.1f} | "
                         f"{p['bytes_per_s'] / 1e9:.1f} | {p['intensity']:.1f} | {pct[0]} | "
                         f"{pct[1]} | {p['bound'] or 'n/a (no peak table for a CPU)'} |")
    if result.get("frame_budget"):
        from icnseg.benchmarks.frame_budget import budget_markdown

        lines += ["", *budget_markdown(result["frame_budget"])]
    micro = result.get("micro")
    if micro:
        lines += ["", "Micro-benchmarks (same process):", ""]
        for mm in micro["matcher"]:
            h, w = mm["shape"]
            lines.append(f"- matcher N={mm['n']}, K={mm['k']} at {h}x{w}: per-pair loop "
                         f"{mm['loop_s'] * 1e3:.1f} ms; superpixel-factored "
                         f"{mm['factored_s'] * 1e3:.2f} ms (**{mm['speedup_factored']:.0f}x**); "
                         f"dense masks {mm['dense_s'] * 1e3:.1f} ms "
                         f"({mm['speedup_dense']:.1f}x)")
        b = micro["backward"]
        lines.append(f"- PRM backward K={b['k']} ({b['rule']} rule, {b['size'][0]}x"
                     f"{b['size'][1]}): per-peak loop {b['loop_s'] * 1e3:.1f} ms, batched "
                     f"{b['batched_s'] * 1e3:.1f} ms (**{b['speedup']:.1f}x**)")
    return "\n".join(lines) + "\n"


def write_results(result: dict[str, Any], json_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the JSON and, next to it, the markdown table (both atomically)."""
    path = Path(json_path)
    md = path.with_suffix(".md")
    write_text(path, json.dumps(result, indent=2, sort_keys=False) + "\n")
    write_text(md, render_markdown(result))
    return path, md
