"""Speed of the batched PRM backward: K single-peak backward passes vs one batched one.

    python -m research.backward_speed --backbone tiny --size 96 --ks 1 4 16 --iters 5

For each K, in one process and with the same thread count for torch and ONNX Runtime:

* ``loop``: the original PRM way, a Python loop of K single-peak ``torch.autograd.grad`` calls,
  one forward + one backward per peak (the baseline of every ratio);
* ``loop_1fwd``: the original code's literal variant, one forward and K backward passes with
  ``retain_graph=True`` (reported for reference only);
* ``torch_batched``: ``peak_response_maps``, one forward at batch 1 + ONE backward vmapped over K;
* ``ort``: prm.onnx (k_max = K) on ONNX Runtime CPU; this timing also includes the forward's
  class scores and the in-graph peak finding, which the torch timings leave out.

Every variant's maps are checked against ``loop`` (max abs error <= 1e-3 x max|R|) and the ORT
peaks against ``find_peaks`` before any time is reported; a mismatch raises BenchmarkError.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from icnseg.benchmarks.baseline import loop_maps
from icnseg.benchmarks.machine import machine_info as shared_machine_info
from icnseg.errors import IcnsegError
from icnseg.export.prm_graph import build_prm_onnx
from icnseg.fileio import write_text
from icnseg.models.prm import PeakConfig, PRMClassifier, find_peaks
from icnseg.models.prm_backprop import backprop_rule, peak_response_maps
from icnseg.ort import import_ort
from icnseg.runtime.onnxruntime_backend import OnnxRuntimeBackend, providers_for

REL_TOL = 1e-3  # max abs error allowed, relative to max|R| of the loop's maps
BIAS = -2.0  # classifier bias: Eq. 1 subtracts mean(M), so a negative offset makes random maps peak
REPO = Path(__file__).resolve().parents[1]


class BenchmarkError(IcnsegError):
    """The variants disagree (maps or peaks), so no timing is reported."""


def make_classifier(backbone: str, num_classes: int, seed: int) -> PRMClassifier:
    """Return a seeded random-weight PRMClassifier in eval mode whose maps have many peaks."""
    torch.manual_seed(seed)
    model = PRMClassifier(backbone, num_classes).eval()
    with torch.no_grad():
        model.classifier.bias.fill_(BIAS)
    return model


def loop_1fwd_maps(classifier: torch.nn.Module, x: torch.Tensor, peaks: np.ndarray,
                   rule: str) -> torch.Tensor:
    """Return R [K,H,W] like the original code: one forward, K backward passes (retain_graph)."""
    maps = []
    rows = np.asarray(peaks)[:, :3].round().astype(np.int64)
    with torch.enable_grad(), backprop_rule(classifier, rule):
        xi = x.detach().clone().requires_grad_(True)
        crm = classifier(xi)
        for c, y, xx in rows:
            seed = torch.zeros_like(crm)
            seed[0, c, y, xx] = 1.0
            (grad,) = torch.autograd.grad(crm, xi, grad_outputs=seed, retain_graph=True)
            maps.append(grad[0].sum(0).clamp(min=0))
    return torch.stack(maps)


def batched_maps(classifier: torch.nn.Module, x: torch.Tensor, peaks: np.ndarray,
                 rule: str) -> torch.Tensor:
    """Return R [K,H,W] with one batched backward (``peak_response_maps``)."""
    return peak_response_maps(classifier, x, peaks, rule)


def ort_session(model: onnx.ModelProto, folder: Path, threads: int) -> OnnxRuntimeBackend:
    """Save ``model`` under ``folder`` and open it on ORT CPU with ``threads`` intra-op threads."""
    ort = import_ort()
    path = folder / "prm.onnx"
    onnx.save(model, str(path))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=providers_for("cpu"))
    return OnnxRuntimeBackend(session, "cpu", path)


def check_maps(reference: np.ndarray, other: np.ndarray, label: str) -> float:
    """Return max|other - reference| / max|reference|; BenchmarkError above ``REL_TOL``."""
    if reference.shape != other.shape:
        raise BenchmarkError(f"{label}: maps of shape {other.shape}, loop gave {reference.shape}")
    scale = float(np.abs(reference).max())
    err = float(np.abs(other.astype(np.float64) - reference).max()) / max(scale, 1e-30)
    if not np.isfinite(err) or err > REL_TOL:
        raise BenchmarkError(f"{label}: max abs error {err:.3g} x max|R| (max|R| = {scale:.3g}) "
                             f"exceeds {REL_TOL:g}; maps disagree with the per-peak loop")
    return err


def check_peaks(torch_peaks: np.ndarray, ort_peaks: np.ndarray) -> None:
    """BenchmarkError unless ORT's peaks have the same (class, y, x) rows as ``find_peaks``."""
    a = np.asarray(torch_peaks)[:, :3].round().astype(np.int64)
    b = np.asarray(ort_peaks)[:, :3].round().astype(np.int64)
    if a.shape != b.shape or not np.array_equal(a, b):
        raise BenchmarkError(f"peaks differ: find_peaks {a.tolist()} vs prm.onnx {b.tolist()}")


def time_median(fn: Callable[[], object], iters: int, warmup: int) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``iters`` timed; return median and runs in ms."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(runs), "runs_ms": [round(r, 3) for r in runs]}


def _fill_peaks(peaks: np.ndarray, crm: np.ndarray, k: int) -> np.ndarray:
    """Pad ``peaks`` to K rows with the strongest crm positions not yet used (fallback only)."""
    used = {tuple(r) for r in peaks[:, :3].astype(np.int64).tolist()}
    rows = list(peaks)
    for flat in np.argsort(-crm.ravel(), kind="stable"):
        if len(rows) >= k:
            break
        c, y, x = np.unravel_index(flat, crm.shape)
        if (int(c), int(y), int(x)) not in used:
            rows.append(np.array([c, y, x, 0.0], dtype=np.float32))
    return np.stack(rows).astype(np.float32)


def measure_k(classifier: PRMClassifier, x: torch.Tensor, k: int, rule: str, iters: int,
              warmup: int, threads: int) -> dict[str, Any]:
    """Check agreement, then time the four variants for one K; return that K's record."""
    size = tuple(x.shape[-2:])
    cfg = PeakConfig(score_threshold=0.0, max_peaks=k)
    t0 = time.perf_counter()
    model = build_prm_onnx(classifier, cfg, size, k_max=k, rule=rule)
    with tempfile.TemporaryDirectory(prefix="bw_speed_") as tmp:
        backend = ort_session(model, Path(tmp), threads)
        export_s = time.perf_counter() - t0
        feeds = {"image": x.numpy()}
        out = backend.run(feeds)
        count = int(out["count"][0])
        if count < 1:
            raise BenchmarkError(f"prm.onnx found no peak for K={k}: nothing to compare")
        with torch.no_grad():
            crm = classifier(x)[0]
        torch_peaks = find_peaks(crm, np.ones(crm.shape[0], dtype=bool), cfg)
        check_peaks(torch_peaks[:count], out["peaks"][:count])
        note = ""
        peaks = torch_peaks[:k]
        if count != k:
            peaks = _fill_peaks(peaks[:count], crm.numpy(), k)
            note = (f"prm.onnx found only {count} valid peaks for K={k}; the torch variants use "
                    f"{k - count} extra strongest crm positions; maps compared on {count} rows")
        fns: dict[str, Callable[[], Any]] = {
            "loop": lambda: loop_maps(classifier, x, peaks, rule),
            "loop_1fwd": lambda: loop_1fwd_maps(classifier, x, peaks, rule),
            "torch_batched": lambda: batched_maps(classifier, x, peaks, rule),
            "ort": lambda: backend.run(feeds)["prm"],
        }
        ref = fns["loop"]().numpy()
        errs = {name: check_maps(ref[:count], np.asarray(_np(fns[name]()))[:count], name)
                for name in ("loop_1fwd", "torch_batched", "ort")}
        max_r = float(np.abs(ref).max())
        if max_r == 0.0:
            note = (note + "; " if note else "") + "all maps are zero: agreement is trivial"
        times = {name: time_median(fn, iters, warmup) for name, fn in fns.items()}
        backend.close()
    base = times["loop"]["median_ms"]
    return {
        "k": k,
        "valid_peaks": count,
        "note": note,
        "max_abs_R": max_r,
        "rel_err_vs_loop": errs,
        "export_and_session_s": round(export_s, 3),
        "times": times,
        "ratios": {
            "loop/ort": base / times["ort"]["median_ms"],
            "loop/torch_batched": base / times["torch_batched"]["median_ms"],
            "loop/loop_1fwd": base / times["loop_1fwd"]["median_ms"],
        },
    }


def _np(value: object) -> np.ndarray:
    """A torch tensor or array as a numpy array."""
    return value.detach().numpy() if torch.is_tensor(value) else np.asarray(value)


def machine_info(threads: int) -> dict[str, Any]:
    """The shared machine record plus this run's thread count."""
    return {**shared_machine_info(), "threads": threads}


def run_benchmark(backbone: str = "tiny", size: int = 96, ks: Sequence[int] = (1, 4, 16),
                  rule: str = "prm", iters: int = 5, warmup: int = 1, threads: int | None = None,
                  num_classes: int = 20, seed: int = 0) -> dict[str, Any]:
    """Measure every K of ``ks``; return the full result record (machine, settings, per-K)."""
    threads = int(threads or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    info = machine_info(threads)
    classifier = make_classifier(backbone, num_classes, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(1, 3, size, size, generator=gen)
    t0 = time.perf_counter()
    per_k = [measure_k(classifier, x, int(k), rule, iters, warmup, threads) for k in ks]
    settings = {"backbone": backbone, "size": size, "ks": [int(k) for k in ks], "rule": rule,
                "iters": iters, "warmup": warmup, "threads": threads,
                "num_classes": num_classes, "seed": seed, "classifier_bias": BIAS,
                "rel_tol": REL_TOL,
                "statistic": "median of iters timed runs after 1 untimed check run + warmup runs"}
    return {"benchmark": "backward_speed", "machine": info, "settings": settings,
            "wall_s": round(time.perf_counter() - t0, 2), "results": per_k}


def render_markdown(result: dict[str, Any]) -> str:
    """A short markdown report: the machine, then one table row per K."""
    m, s = result["machine"], result["settings"]
    libs = m["libraries"]
    lines = [
        f"# PRM backward speed: {s['backbone']} at {s['size']} px, rule {s['rule']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} CPUs, {s['threads']} threads for "
        f"torch and ORT; load at start {m['loadavg']}; torch {libs.get('torch')}, "
        f"onnxruntime {libs.get('onnxruntime')}, git {m['git']}. Median of {s['iters']} runs "
        f"after {s['warmup']} warm-up + 1 untimed agreement-check run, in ms.",
        "",
        "| K | loop (K fwd+bwd) | loop 1 fwd + K bwd | torch batched | ORT prm.onnx "
        "| loop/torch batched | loop/ORT | max err ORT vs loop |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        t = {k: v["median_ms"] for k, v in r["times"].items()}
        lines.append(
            f"| {r['k']} | {t['loop']:.1f} | {t['loop_1fwd']:.1f} | {t['torch_batched']:.1f} | "
            f"{t['ort']:.1f} | {r['ratios']['loop/torch_batched']:.2f}x | "
            f"{r['ratios']['loop/ort']:.2f}x | {r['rel_err_vs_loop']['ort']:.1e} |")
    notes = [f"- K={r['k']}: {r['note']}" for r in result["results"] if r["note"]]
    lines += ["", "Errors are max abs difference / max|R|. ORT time includes the forward's class "
              "scores and in-graph peak finding; the torch times start from given peaks."]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def write_results(result: dict[str, Any], out: str | os.PathLike) -> tuple[Path, Path]:
    """Atomically write backward_speed.json and backward_speed.md under ``out``."""
    out = Path(out)
    js, md = out / "backward_speed.json", out / "backward_speed.md"
    write_text(js, json.dumps(result, indent=2) + "\n")
    write_text(md, render_markdown(result))
    return js, md


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--rule", default="prm", choices=("gradient", "prm"))
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="default: os.cpu_count()")
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or min(args.ks) < 1:
        ap.error("--iters and every K must be >= 1, --warmup >= 0")
    try:
        result = run_benchmark(args.backbone, args.size, args.ks, args.rule, args.iters,
                               args.warmup, args.threads, args.classes, args.seed)
    except IcnsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    js, md = write_results(result, args.out)
    print(render_markdown(result))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
