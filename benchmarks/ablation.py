"""The paper's ablations (Table 1 rows, Table 4's T = 1..4) on fresh synthetic splits.

    python -m icnseg.benchmarks.ablation --model saliency=CKPT [--model proposals=CKPT2] \\
        [--variant "w/o input PRM"=CKPT3] --out benchmarks/results/ablation

Two splits are generated from seeds no training run uses: ``val`` in the training look and
``unseen`` in a look no training run used (``icnseg data synth --style unseen``), to
measure generalisation rather than memorisation. For each ``--model`` the rows are: w/o ICN
(the naive PRM matched with the model's scoring), w/o multi-scale rebalance (the vanilla PRM
matching of [42] on the ICN maps), the full model at T = 1..4, and the oracle proposals
(best built-in proposal per ground-truth instance: the proposals' ceiling). A ``--variant``
(an ICN trained differently, e.g. without its input PRM) adds its rows at T = 1..4.
Each image's peaks, naive PRMs, proposals and ICN passes are computed once and shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.benchmarks.machine import machine_info
from icnseg.eval import ImageGroundTruth, ImagePrediction, evaluate
from icnseg.fileio import write_text
from icnseg.nms import mask_iou

T_MAX = 4
SPLITS = {"val": "train", "unseen": "unseen"}  # split name -> synthetic style


def _rows(cfg) -> dict[str, tuple[int, Any]]:
    """Row name -> (T, SegmentConfig) for one model."""
    t_default = max(cfg.iterations, 1)
    prm = dataclasses.replace(cfg.match, scoring="prm")
    rows = {"w/o ICN (naive PRM)": (0, dataclasses.replace(cfg, iterations=0)),
            "original PRM (naive PRM, vanilla matching)":
                (0, dataclasses.replace(cfg, iterations=0, match=prm)),
            f"w/o multi-scale rebalance (vanilla matching), T={t_default}":
                (t_default, dataclasses.replace(cfg, iterations=t_default, match=prm))}
    iou = dataclasses.replace(cfg.match, scoring="iou")
    for t in range(1, T_MAX + 1):
        rows[f"full, T={t}"] = (t, dataclasses.replace(cfg, iterations=t))
    for t in range(1, T_MAX + 1):
        rows[f"full, IoU matching, T={t}"] = (t, dataclasses.replace(cfg, iterations=t, match=iou))
    return rows


def icn_passes(model, x: np.ndarray, prm: np.ndarray, passes: int) -> list[np.ndarray]:
    """Enhanced maps after each of ``passes`` ICN passes (pass t feeds back pass t-1)."""
    import torch

    out, v = [], torch.from_numpy(prm)[:, None]
    with torch.no_grad():
        xs = torch.from_numpy(x).expand(len(v), -1, -1, -1)
        for _ in range(passes):
            v = model.icn(xs, v)
            out.append(v[:, 0].numpy())
    return out


def _prediction(image_id: str, instances, shape) -> ImagePrediction:
    """Instances as an eval prediction."""
    masks = np.stack([x.mask for x in instances]) if instances else np.zeros((0, *shape), bool)
    return ImagePrediction(image_id, masks, np.array([x.class_index for x in instances], int),
                           np.array([x.score for x in instances]))


def _nearest(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Masks [N,H,W] resized to ``shape`` (nearest)."""
    import cv2

    if masks.shape[1:] == tuple(shape):
        return masks
    return np.stack([cv2.resize(m.astype(np.uint8), shape[::-1],
                                interpolation=cv2.INTER_NEAREST) for m in masks]).astype(bool)


def oracle_prediction(s, proposals) -> ImagePrediction:
    """Best proposal per GT instance of sample ``s`` (by IoU at the proposals' size), scaled
    to the image: the proposals' ceiling."""
    shape = s.image.shape[:2]
    if len(s.instance_masks) == 0 or len(proposals) == 0:
        return _prediction(s.id, [], shape)
    best = mask_iou(_nearest(s.instance_masks, proposals.shape), proposals.masks).argmax(1)
    return ImagePrediction(s.id, _nearest(proposals.masks[best], shape),
                           np.asarray(s.instance_classes), np.ones(len(best)))


def ablate(models: dict[str, Any], variants: dict[str, Any], dataset, log=print) -> dict:
    """Every row of every model on ``dataset``: {row: metrics}."""
    base_name = next(iter(models))
    rows = {f"{name}: {row}": (model, t, cfg) for name, model in models.items()
            for row, (t, cfg) in _rows(model.segment_config()).items()}
    rows.update({f"{name}, T={t}": (m, t, dataclasses.replace(m.segment_config(), iterations=t))
                 for name, m in variants.items() for t in range(1, T_MAX + 1)})
    preds: dict[str, list[ImagePrediction]] = {name: [] for name in rows}
    preds["oracle proposals"] = []
    gts, t0 = [], time.perf_counter()
    first = models[base_name]
    for i in range(len(dataset)):
        s = dataset[i]
        gts.append(ImageGroundTruth(s.id, s.instance_masks, s.instance_classes, s.ignore_mask))
        prepared = first.prepare(s.image, config=first.segment_config())
        proposals = first.proposals_of(prepared)
        cache: dict[int, tuple] = {}  # one naive PRM + passes per model (its classifier)
        for name, (model, t, cfg) in rows.items():
            if id(model) not in cache:
                stages = model.infer(prepared, dataclasses.replace(cfg, iterations=0))
                passes = (icn_passes(model, prepared.x, stages.prm, T_MAX)
                          if len(stages.peaks) and model.icn is not None else [])
                cache[id(model)] = (stages, passes)
            stages, passes = cache[id(model)]
            stages.enhanced = passes[t - 1] if t > 0 and passes else None
            preds[name].append(_prediction(s.id, model.select(prepared, stages, cfg),
                                           s.image.shape[:2]))
        preds["oracle proposals"].append(oracle_prediction(s, proposals))
        if (i + 1) % 20 == 0:
            log(f"ablation: {i + 1}/{len(dataset)} images ({time.perf_counter() - t0:.0f}s)")
    classes = first.classes
    return {name: evaluate(p, gts, len(classes), classes) for name, p in preds.items()}


def to_markdown(results: dict[str, dict], header: str) -> str:
    """One table per split: rows x mAP^r@0.25/0.5/0.75, ABO, mIoU (in %)."""
    lines = [header]
    for split, rows in results.items():
        lines += ["", f"## {split}", "",
                  "| row | mAP^r@0.25 | mAP^r@0.5 | mAP^r@0.75 | ABO | mIoU |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, m in rows.items():
            vals = [m["mAP_r"]["0.25"], m["mAP_r"]["0.5"], m["mAP_r"]["0.75"], m["ABO"],
                    m["mIoU"]]
            lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def named_paths(items: list[str], flag: str, what: str = "CHECKPOINT") -> dict[str, str]:
    """NAME=PATH pairs of a repeated flag (``what`` names the PATH in the error)."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"{flag} {item!r}: want NAME={what}")
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: make the splits, run every row, write JSON + markdown."""
    from icnseg.data.synth import generate
    from icnseg.data.voc import VocDataset
    from icnseg.loader import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], metavar="NAME=CKPT",
                    help="a model's full row set (repeatable; default: default=default)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=CKPT",
                    help="a differently trained ICN: its rows at T = 1..4")
    ap.add_argument("--n", type=int, default=120, help="images per split")
    ap.add_argument("--seed", type=int, default=9001,
                    help="val seed; unseen uses seed + 1 (no training run uses either)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--splits", nargs="+", choices=tuple(SPLITS), default=list(SPLITS))
    ap.add_argument("--out", default="benchmarks/results/ablation",
                    help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    named = named_paths(args.model, "--model") or {"default": "default"}
    named_variants = named_paths(args.variant, "--variant")
    models = {k: load(v, backend="torch") for k, v in named.items()}
    variants = {k: load(v, backend="torch") for k, v in named_variants.items()}
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (split, style) in enumerate(SPLITS.items()):
            if split not in args.splits:
                continue
            root = generate(Path(tmp) / split, args.n, seed=args.seed + k, size=args.size,
                            val_fraction=0.0, style=style)
            t0 = time.perf_counter()
            results[split] = ablate(models, variants, VocDataset(root, "train"))
            seconds[split] = time.perf_counter() - t0
    machine = machine_info()
    header = (f"# Ablation (paper Tables 1 and 4) on synthetic shapes\n\n{args.n} images per "
              f"split at {args.size} px: val = training look, seed {args.seed}; unseen = "
              f"`--style unseen`, seed {args.seed + 1}. Models: "
              + ", ".join(f"{k} = `{v}`" for k, v in {**named, **named_variants}.items())
              + f". Machine: {machine['cpu']}, {machine['cores']} cores; "
              + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ". Metrics in %.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".json"), json.dumps(
        {"models": named, "variants": named_variants,
         "n": args.n, "seed": args.seed, "size": args.size, "seconds": seconds,
         "machine": machine, "results": results}, indent=1))
    write_text(out.with_suffix(".md"), to_markdown(results, header))
    print(to_markdown(results, header))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
