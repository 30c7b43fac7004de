"""mAP^r / ABO of exports of several precisions on a fresh synthetic set, with speed per stage.

    icnseg data synth --out VAL --n 120 --seed 202 --size 256
    python -m research.precision_table --data VAL --split trainval \\
        --export fp32=icnseg/assets/export --export int8=DIR_INT8 ... --out benchmarks/results

Every image is prepared once (resize, normalise, built-in proposals) and run through each
export on ONNX Runtime (CPU) in turn, so all exports see the same inputs and machine noise;
stage times are per image means. Besides the metrics, each export is compared with the first
(FP32) one: images with identical peaks and instances that agree (``icnseg.compare``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from icnseg.benchmarks.machine import machine_info
from icnseg.benchmarks.timing import StageTimer
from icnseg.cli.bounds import bounded
from icnseg.compare import TOLERANCES, instance_agreement
from icnseg.eval import ImageGroundTruth, ImagePrediction, evaluate
from icnseg.fileio import write_text

K25, K50, K75 = "0.25", "0.5", "0.75"  # icnseg.eval's keys of mAP^r thresholds
STAGES = ("prm", "icn", "binarise", "matcher", "nms", "postprocess")


def run(data: Path, split: str, exports: dict[str, Path], log=print,
        threads: int | None = None) -> dict:
    """{"exports": {label: metrics + timings + agreement}, "images": n}; ``threads``: intra-op
    threads of every ONNX Runtime session (None: ONNX Runtime's default)."""
    from icnseg.data.voc import VocDataset
    from icnseg.runtime.exported_model import ExportedModel

    models = {label: ExportedModel(path, threads=threads) for label, path in exports.items()}
    first = next(iter(models.values()))
    ds = VocDataset(data, split, classes=first.classes)
    cfg = first.segment_config()
    preds: dict[str, list] = {k: [] for k in models}
    times: dict[str, dict[str, list[float]]] = {k: {s: [] for s in STAGES} for k in models}
    same_peaks = dict.fromkeys(models, 0)
    agree = {k: [0, 0] for k in models}
    gts = []
    t0 = time.perf_counter()
    for i in range(len(ds)):
        s = ds[i]
        gts.append(ImageGroundTruth(s.id, s.instance_masks, s.instance_classes, s.ignore_mask))
        prepared = first.prepare(s.image)
        ref = None
        for label, model in models.items():
            timer = StageTimer()
            stages = model.infer(prepared, cfg, timer)
            inst = model.select(prepared, stages, cfg, timer)
            for st in STAGES:
                times[label][st].append(timer.seconds.get(st, 0.0))
            if ref is None:
                ref = (stages, inst)
            tol = TOLERANCES[model.precision]
            same_peaks[label] += int(len(stages.peaks) == len(ref[0].peaks) and np.array_equal(
                stages.peaks[:, :3], ref[0].peaks[:, :3]))
            n, _ = instance_agreement(ref[1], inst, tol)
            agree[label][0] += n
            agree[label][1] += len(ref[1])
            shape = s.image.shape[:2]
            preds[label].append(ImagePrediction(
                s.id, np.stack([x.mask for x in inst]) if inst else np.zeros((0, *shape), bool),
                np.array([x.class_index for x in inst], int), np.array([x.score for x in inst])))
        if (i + 1) % 20 == 0:
            log(f"precision table: {i + 1}/{len(ds)} images ({time.perf_counter() - t0:.0f}s)")
    out = {}
    for label, model in models.items():
        metrics = evaluate(preds[label], gts, len(first.classes), first.classes)
        out[label] = {
            "export": str(exports[label]), "precision": model.precision,
            "graphs": {r: e.get("precision", "fp32") for r, e in model.manifest["files"].items()},
            "quantization": model.manifest.get("quantization"),
            "metrics": {"mAP_r": metrics["mAP_r"], "ABO": metrics["ABO"],
                        "mIoU": metrics["mIoU"]},
            "stage_ms": {st: 1e3 * float(np.mean(v)) for st, v in times[label].items()},
            "peaks_identical_to_first": same_peaks[label],
            "instances_agree_with_first": agree[label],
        }
        model.close()
    return {"images": len(ds), "split": split, "data": str(data), "exports": out,
            "threads": threads,
            "machine": machine_info(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _metric(m: dict, key: str) -> str:
    """A metric cell in percent ("0.5" names mAP^r at that threshold)."""
    v = m["mAP_r"].get(key) if key[0].isdigit() else m.get(key)
    return f"{100 * v:.1f}" if isinstance(v, int | float) else "-"


def to_markdown(res: dict) -> str:
    """The table: metrics, agreement with the first export, stage times."""
    mach = res["machine"]
    lines = ["# Precision: fp32 / fp16 / int8 exports on ONNX Runtime (CPU)", "",
             f"Machine: {mach.get('cpu')} ({mach.get('cores')} cores), no GPU. "
             f"{res['images']} fresh synthetic images ({res['data']}, split {res['split']}); "
             "each image prepared once (built-in proposals), then run through every export; "
             f"threads per session: {res.get('threads') or 'ONNX Runtime default'}, load "
             f"average at start {mach.get('loadavg')}.",
             "", "| export | graphs | mAP^r@0.25 | mAP^r@0.5 | mAP^r@0.75 | ABO | peaks = fp32 |"
             " instances agree | prm ms | icn ms | e2e ms (infer+select) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in res["exports"].items():
        m, t = r["metrics"], r["stage_ms"]
        graphs = ", ".join(f"{k} {v}" for k, v in r["graphs"].items())
        a, n = r["instances_agree_with_first"]
        lines.append(f"| {label} | {graphs} | {_metric(m, K25)} | {_metric(m, K50)}"
                     f" | {_metric(m, K75)} | {_metric(m, 'ABO')} | "
                     f"{r['peaks_identical_to_first']}/{res['images']} | {a}/{n} | "
                     f"{t['prm']:.1f} | {t['icn']:.1f} | {sum(t.values()):.1f} |")
    base = next(iter(res["exports"].values()))["stage_ms"]
    lines += ["", "Speed-up over the first export (same run, same images):", ""]
    for label, r in res["exports"].items():
        t = r["stage_ms"]
        lines.append(f"- {label}: icn {base['icn'] / t['icn']:.2f}x, prm "
                     f"{base['prm'] / t['prm']:.2f}x, infer+select "
                     f"{sum(base.values()) / sum(t.values()):.2f}x")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse, run, write JSON + markdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--export", action="append", required=True, metavar="LABEL=DIR",
                   help="repeatable; the first is the reference (FP32)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--threads", type=bounded("threads"), default=None,
                   help="intra-op threads per ONNX Runtime session (default: ORT's)")
    args = p.parse_args(argv)
    exports = dict(e.split("=", 1) for e in args.export)
    res = run(args.data, args.split, {k: Path(v) for k, v in exports.items()},
              threads=args.threads)
    write_text(args.out / "precision_cpu.json", json.dumps(res, indent=2) + "\n")
    write_text(args.out / "precision_cpu.md", to_markdown(res))
    print(to_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
