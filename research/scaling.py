"""How each stage's cost grows with K peaks, N proposals, input size and T (ICN passes).

    python -m research.scaling --model default --out benchmarks/results/scaling

One model (eager PyTorch for the networks, the shared numpy stages after them), synthetic
inputs whose size is controlled exactly: K peaks are the K strongest class-response
positions, proposals are N unions of grid superpixels (as MCG's are unions of superpixels),
instance maps are random blobs. Each point is the best of ``--repeat`` runs. Writes
``OUT.json``, ``OUT.md`` (tables) and ``OUT.png`` (log-log curves, one panel per sweep).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.benchmarks.machine import machine_info
from icnseg.benchmarks.micro import synthetic_matching
from icnseg.benchmarks.timing import best_of
from icnseg.fileio import atomic_path, write_text

SWEEPS = {
    "k": (1, 2, 4, 8, 16, 32),
    "n": (100, 300, 1000, 3000, 5000),
    "size": (224, 320, 448, 672),
    "t": (1, 2, 3, 4, 5),
}
DEFAULTS = {"k": 8, "n": 1000, "size": 224, "t": 1}
ALL_STAGES = ("prm_forward", "prm_backward", "icn", "binarise", "matcher", "nms")
# stages a sweep measures: those whose inputs depend on the swept parameter
MEASURED = {"k": ALL_STAGES, "n": ("matcher", "nms"), "size": ALL_STAGES, "t": ("icn",)}


def _peaks(model: Any, x: Any, k: int) -> np.ndarray:
    """The K strongest class-response positions as peak rows (class, y, x, value)."""
    import torch

    with torch.no_grad():
        crm = model.classifier(x)[0].numpy()
    flat = np.argsort(-crm.ravel(), kind="stable")[:k]
    c, y, xx = np.unravel_index(flat, crm.shape)
    return np.stack([c, y, xx, crm.ravel()[flat]], 1).astype(np.float64)


def measure_point(model: Any, cfg: Any, k: int, n: int, size: int, t: int, repeat: int,
                  stages: Sequence[str] = ALL_STAGES) -> dict[str, float]:
    """Milliseconds of each of ``stages`` for one (K, N, size, T)."""
    import torch

    from icnseg.matching import background_template, best_proposals, contour, match_scores
    from icnseg.models.icn import enhance
    from icnseg.models.prm import class_scores
    from icnseg.models.prm_backprop import peak_response_maps
    from icnseg.nms import mask_nms
    from icnseg.preprocess import prepare_input
    from icnseg.proposals.types import Proposals

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    _, x = prepare_input(image, (size, size), model.mean, model.std)
    x = torch.from_numpy(x)
    peaks = _peaks(model, x, k)
    m = cfg.match
    v, sp, member = synthetic_matching((size, size), n, k)
    props = Proposals.from_membership(sp, member, check=False)
    prm = peak_response_maps(model.classifier, x, peaks, cfg.rule) if "icn" in stages else None
    out: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], object]) -> None:
        if stage in stages:
            out[stage] = best_of(fn, repeat) * 1e3

    def forward() -> None:
        with torch.no_grad():
            class_scores(model.classifier(x)[0], cfg.peaks)

    def icn() -> None:
        with torch.no_grad():
            enhance(model.icn, x.expand(k, -1, -1, -1), prm[:, None], t)

    # a fresh proposal set per call (built untimed), so no per-set cache is reused
    fresh = [Proposals.from_membership(sp, member, check=False) for _ in range(repeat)]

    def matcher() -> None:
        best_proposals(match_scores(v, fresh.pop(), m, background=bg, edge=edge))

    timed("prm_forward", forward)
    timed("prm_backward", lambda: peak_response_maps(model.classifier, x, peaks, cfg.rule))
    if model.icn is not None:
        timed("icn", icn)
    timed("binarise", lambda: (contour(v, m.contour_width), background_template(v, m)))
    edge, bg = contour(v, m.contour_width), background_template(v, m)
    timed("matcher", matcher)
    index, quality = best_proposals(match_scores(v, props, m, background=bg, edge=edge))
    masks = props.masks[np.maximum(index, 0)]
    timed("nms", lambda: mask_nms(masks, quality, peaks[:, 0], m.nms_iou))
    return out


def run_scaling(model_name: str = "default", sweeps: Sequence[str] = tuple(SWEEPS),
                repeat: int = 2, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every sweep: {parameter values, stage -> [ms per value]}, other parameters at DEFAULTS."""
    import torch

    from icnseg.loader import load

    torch.manual_seed(0)
    model = load(model_name, backend="torch")
    cfg = model.segment_config()
    result: dict[str, Any] = {"model": model_name, "defaults": DEFAULTS, "repeat": repeat,
                              "machine": machine_info(), "torch_threads": torch.get_num_threads(),
                              "sweeps": {}}
    for name in sweeps:
        stages: dict[str, list[float]] = {}
        for value in SWEEPS[name]:
            point = {**DEFAULTS, name: value}
            t0 = time.perf_counter()
            ms = measure_point(model, cfg, repeat=repeat, stages=MEASURED[name], **point)
            log(f"{name}={value}: {time.perf_counter() - t0:.1f}s  "
                + "  ".join(f"{s} {v:.1f}" for s, v in ms.items()))
            for stage, v in ms.items():
                stages.setdefault(stage, []).append(v)
        result["sweeps"][name] = {"values": list(SWEEPS[name]), "stages_ms": stages,
                                  "growth": growth_exponents(SWEEPS[name], stages)}
    return result


def growth_exponents(values: Sequence[float], stages: dict[str, list[float]]
                     ) -> dict[str, float]:
    """Least-squares slope of log(ms) vs log(value) per stage: ~1 linear, ~2 quadratic."""
    lv = np.log(np.asarray(values, dtype=np.float64))
    return {s: float(np.polyfit(lv, np.log(np.maximum(ms, 1e-6)), 1)[0])
            for s, ms in stages.items()}


def render_markdown(result: dict[str, Any]) -> str:
    """One table per sweep (ms per stage) with the fitted growth exponent."""
    m = result["machine"]
    lines = [f"# Stage scaling: {result['model']} (eager PyTorch + numpy stages)", "",
             f"Machine: {m['cpu']} ({m['cores']} cores, torch {result['torch_threads']} "
             f"threads), no GPU; git {m['git']}. Best of {result['repeat']} runs per point; "
             f"fixed parameters: " + ", ".join(f"{k}={v}" for k, v in result["defaults"].items())
             + " (size = input side in pixels; the matcher uses superpixel-factored proposals)."
             " Each sweep times the stages whose inputs depend on its parameter."]
    for name, sweep in result["sweeps"].items():
        values = sweep["values"]
        lines += ["", f"## {name.upper()}", "",
                  "| stage (ms) | " + " | ".join(f"{name}={v}" for v in values) + " | growth |",
                  "|---|" + "---:|" * (len(values) + 1)]
        for stage, ms in sweep["stages_ms"].items():
            lines.append(f"| {stage} | " + " | ".join(f"{x:.2f}" for x in ms)
                         + f" | {name}^{sweep['growth'][stage]:.2f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Log-log curves of every stage, one panel per sweep, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = result["sweeps"]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.8), squeeze=False)
    for ax, (name, sweep) in zip(axes[0], sweeps.items(), strict=True):
        for stage, ms in sweep["stages_ms"].items():
            colour = f"C{ALL_STAGES.index(stage)}"  # one colour per stage in every panel
            ax.plot(sweep["values"], ms, marker="o", label=stage, color=colour)
        ax.set(xscale="log", yscale="log", xlabel=name, ylabel="ms", title=f"vs {name}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweeps and write OUT.json, OUT.md and OUT.png."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--sweeps", nargs="+", choices=tuple(SWEEPS), default=list(SWEEPS))
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/scaling")
    args = p.parse_args(argv)
    result = run_scaling(args.model, args.sweeps, args.repeat,
                         log=lambda s: print(s, file=sys.stderr))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    write_text(out.with_suffix(".md"), render_markdown(result))
    plot(result, out.with_suffix(".png"))
    print(render_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
