"""Ablation table (paper Tables 1/4 structure) on a fresh synthetic val set.

    python -m research.ablation --model CKPT --n 120 --seed 9001 --out benchmarks/results

Rows: naive PRM (w/o ICN), ICN with T = 1..5, each scoring mode at T = 3, the original PRM
(naive PRM + PRM scoring) and oracle proposals (best proposal by GT IoU: the proposals'
ceiling). Each image's peaks, PRMs, ICN passes and proposals are computed once and shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from icnseg.eval import ImageGroundTruth, ImagePrediction, evaluate
from icnseg.fileio import write_text
from icnseg.nms import mask_iou
from icnseg.postprocess import rescale_instances, select_instances
from icnseg.segmenter import run_stages

T_MAX = 5


def _rows(cfg) -> dict[str, tuple[int, object]]:
    """Row name -> (T, SegmentConfig)."""
    rows = {"naive PRM (w/o ICN), icn scoring": (0, dataclasses.replace(cfg, iterations=0))}
    rows["original PRM (naive PRM, prm scoring)"] = (0, dataclasses.replace(
        cfg, iterations=0, match=dataclasses.replace(cfg.match, scoring="prm")))
    for t in range(1, T_MAX + 1):
        rows[f"ICN T={t}, icn scoring"] = (t, dataclasses.replace(cfg, iterations=t))
    for mode in ("paper", "prm"):
        rows[f"ICN T=3, {mode} scoring"] = (3, dataclasses.replace(
            cfg, iterations=3, match=dataclasses.replace(cfg.match, scoring=mode)))
    return rows


def _icn_passes(model, stages) -> list[np.ndarray]:
    """Enhanced maps after each of T_MAX ICN passes (pass t feeds back pass t-1)."""
    import torch

    from icnseg.data.transforms import normalize

    x = torch.from_numpy(normalize(stages.image, model.mean, model.std))[None]
    out, v = [], torch.from_numpy(stages.prm)[:, None]
    with torch.no_grad():
        xs = x.expand(len(v), -1, -1, -1)
        for _ in range(T_MAX):
            v = model.icn(xs, v)
            out.append(v[:, 0].numpy())
    return out


def _oracle(gt_masks, gt_classes, proposals, shape) -> ImagePrediction:
    """Best proposal per GT instance (by IoU), with the GT class and score 1."""
    import cv2

    if len(gt_masks) == 0 or len(proposals) == 0:
        return ImagePrediction("", np.zeros((0, *shape), bool), np.zeros(0, int), np.zeros(0))
    small = np.stack([cv2.resize(m.astype(np.uint8), proposals.shape[::-1],
                                 interpolation=cv2.INTER_NEAREST) for m in gt_masks]).astype(bool)
    best = mask_iou(small, proposals.masks).argmax(1)
    masks = np.stack([cv2.resize(proposals.masks[b].astype(np.uint8), shape[::-1],
                                 interpolation=cv2.INTER_NEAREST) for b in best]).astype(bool)
    return ImagePrediction("", masks, np.asarray(gt_classes), np.ones(len(best)))


def run_ablation(model, data_dir: Path, log=print) -> dict:
    """Evaluate every row on the val split of ``data_dir``; returns {row: metrics}."""
    from icnseg.data.voc import VocDataset
    from icnseg.proposals.generate import generate_proposals

    ds = VocDataset(data_dir, "val", classes=model.classes)
    base = model.segment_config()
    rows = _rows(base)
    preds: dict[str, list[ImagePrediction]] = {name: [] for name in rows}
    preds["oracle proposals"] = []
    gts = []
    t0 = time.perf_counter()
    for i in range(len(ds)):
        s = ds[i]
        shape = s.image.shape[:2]
        gts.append(ImageGroundTruth(s.id, s.instance_masks, s.instance_classes, s.ignore_mask))
        stages = run_stages(model, s.image, dataclasses.replace(base, iterations=0))
        passes = _icn_passes(model, stages) if len(stages.peaks) else []
        props = generate_proposals(stages.image)
        for name, (t, cfg) in rows.items():
            stages.enhanced = passes[t - 1] if t > 0 and passes else None
            inst = rescale_instances(select_instances(stages, props, model.classes, cfg), shape)
            preds[name].append(ImagePrediction(
                s.id, np.stack([x.mask for x in inst]) if inst else np.zeros((0, *shape), bool),
                np.array([x.class_index for x in inst], int), np.array([x.score for x in inst])))
        o = _oracle(s.instance_masks, s.instance_classes, props, shape)
        preds["oracle proposals"].append(dataclasses.replace(o, image_id=s.id))
        if (i + 1) % 20 == 0:
            log(f"ablation: {i + 1}/{len(ds)} images ({time.perf_counter() - t0:.0f}s)")
    return {name: evaluate(p, gts, len(model.classes), model.classes) for name, p in preds.items()}


def to_markdown(results: dict, header: str) -> str:
    """The ablation table as markdown."""
    lines = [header, "", "| variant | mAP^r@0.25 | mAP^r@0.5 | mAP^r@0.75 | ABO | mIoU |",
             "|---|---|---|---|---|---|"]
    for name, m in results.items():
        vals = [m["mAP_r"]["0.25"], m["mAP_r"]["0.5"], m["mAP_r"]["0.75"], m["ABO"], m["mIoU"]]
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Command-line entry: build the val set, run every row, write JSON + markdown."""
    from icnseg.data.synth import generate
    from icnseg.loader import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--n", type=int, default=120, help="images generated (val = all of them)")
    ap.add_argument("--seed", type=int, default=9001, help="synthetic seed (not a training seed)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    model = load(args.model, backend="torch")
    with tempfile.TemporaryDirectory() as tmp:
        data = generate(Path(tmp) / "val", args.n, seed=args.seed, size=args.size,
                        val_fraction=0.999)
        t0 = time.perf_counter()
        results = run_ablation(model, data)
        secs = time.perf_counter() - t0
    n_val = results["oracle proposals"]["num_images"]
    header = (f"# Ablation on synthetic shapes (val: {n_val} images, seed {args.seed}, "
              f"{args.size} px; model {args.model})\n\nMachine: {platform.machine()} CPU, "
              f"{platform.python_version()}; {secs:.0f} s. Metrics in %.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "ablation.json", json.dumps(
        {"model": args.model, "seed": args.seed, "n_val": n_val, "seconds": secs,
         "results": results}, indent=1))
    write_text(out / "ablation.md", to_markdown(results, header))
    print(to_markdown(results, header))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
