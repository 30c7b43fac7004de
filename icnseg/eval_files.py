"""Evaluation files: prediction JSONs of `icnseg run`, VOC ground truth folders, metrics tables."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import InputError
from icnseg.eval import (
    METRICS_FILE,
    ImageGroundTruth,
    ImagePrediction,
    _Accumulator,
    _check,
    _empty,
)
from icnseg.fileio import write_text
from icnseg.output.run_file import RUN_FILE
from icnseg.rle import rle_to_mask


def read_prediction(path: str | os.PathLike, class_names: Sequence[str]) -> ImagePrediction:
    """Read one ``<stem>.json`` of `icnseg run` (image id = file stem); errors name the file."""
    path = Path(path)
    index = {n: i for i, n in enumerate(class_names)}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read prediction JSON ({exc})") from exc
    try:
        h, w = int(record["height"]), int(record["width"])
        instances = record["instances"]
        if not isinstance(instances, list):
            raise TypeError("'instances' is not a list")
        masks, classes, scores = [], [], []
        for k, inst in enumerate(instances):
            name = inst["class"]
            if name not in index:
                raise InputError(f"instance {k} has unknown class {name!r}")
            mask = rle_to_mask(inst["mask"])
            if mask.shape != (h, w):
                raise InputError(f"instance {k} mask is {mask.shape}, image is {h}x{w}")
            masks.append(mask)
            classes.append(index[name])
            scores.append(float(inst["score"]))
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: not an icnseg prediction record ({exc!r})") from exc
    stack = np.stack(masks) if masks else np.zeros((0, h, w), bool)
    return ImagePrediction(path.stem, stack, np.asarray(classes, np.int64), np.asarray(scores))


def _prediction_files(pred_dir: str | os.PathLike) -> dict[str, Path]:
    """Map image id -> ``<id>.json`` in ``pred_dir`` (metrics.json and run.json skipped)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(f"{pred_dir}: prediction directory not found")
    found = {p.stem: p for p in sorted(pred_dir.glob("*.json"))
             if not is_metrics_name(p.name) and p.name != RUN_FILE}
    if not found:
        raise InputError(f"{pred_dir}: no prediction files (<image>.json from `icnseg run`)")
    return found


def metrics_name(split: str) -> str:
    """Default metrics file of a split: metrics.json for val, metrics-<split>.json otherwise."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in split)
    return METRICS_FILE if split == "val" else f"{Path(METRICS_FILE).stem}-{safe}.json"


def is_metrics_name(name: str) -> bool:
    """True for the names metrics files get (never read as predictions)."""
    stem = Path(METRICS_FILE).stem
    return name == METRICS_FILE or (name.startswith(f"{stem}-") and name.endswith(".json"))


def is_metrics_file(path: Path) -> bool:
    """True when ``path`` is a metrics JSON icnseg wrote (so a rerun may replace it)."""
    try:
        return "mAP_r" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def load_predictions(
    pred_dir: str | os.PathLike, class_names: Sequence[str]
) -> list[ImagePrediction]:
    """Read every ``<stem>.json`` written by `icnseg run` in ``pred_dir`` (not metrics.json)."""
    return [read_prediction(p, class_names) for p in _prediction_files(pred_dir).values()]


def evaluate_dirs(
    pred_dir: str | os.PathLike,
    voc_dir: str | os.PathLike,
    split: str = "val",
    iou_thresholds: Sequence[float] = (0.25, 0.5, 0.75),
    matching: str = "voc",
    semantic_score_threshold: float = 0.0,
) -> dict[str, Any]:
    """Evaluate `icnseg run` JSONs against a VOC-layout split, streaming one image at a time.

    GT from ``icnseg.data.voc.VocDataset`` (SegmentationObject/Class, 255 = ignore; no
    difficult flags, as in the SDS/PRM evaluation). Images without segmentation PNGs are
    skipped; a GT image without ``<id>.json`` counts as no detections.
    """
    from icnseg.data.voc import VocDataset

    ds = VocDataset(voc_dir, split)
    classes = list(ds.classes)
    files = _prediction_files(pred_dir)
    outside = sorted(set(files) - set(ds.ids))
    # Predictions for other images of the same dataset (e.g. `icnseg run` over all of
    # JPEGImages) are not scored; a prediction for an image the dataset lacks is an error.
    images = Path(voc_dir) / "JPEGImages"
    unknown = [i for i in outside if not (images / f"{i}.jpg").exists()]
    if unknown:
        i = unknown[0]
        annotated = [Path(voc_dir) / d / f"{i}{ext}" for d, ext in (
            ("Annotations", ".xml"), ("SegmentationObject", ".png"))]
        if any(p.exists() for p in annotated):  # the ground truth lost its image
            raise InputError(f"{images / f'{i}.jpg'}: missing from the ground truth "
                             f"({next(p for p in annotated if p.exists())} exists)")
        raise InputError(f"{files[i]}: image {i!r} is not in {voc_dir}")
    acc = _Accumulator(len(classes), iou_thresholds, matching, semantic_score_threshold)
    for i, image_id in enumerate(ds.ids):
        s = ds[i]
        if s.class_mask is None and s.ignore_mask is None:
            continue  # classification-only image (no segmentation PNGs): nothing to score
        shape = tuple(np.asarray(s.image).shape[:2])
        gt = ImageGroundTruth(image_id, s.instance_masks, s.instance_classes, s.ignore_mask)
        if gt.masks is None or np.asarray(gt.masks).size == 0:
            gt.masks = np.zeros((0, *shape), bool)
            gt.classes = np.zeros(0, np.int64)
        pred = read_prediction(files[image_id], classes) if image_id in files else None
        if pred is not None and pred.masks.shape[1:] != shape:
            raise InputError(
                f"{files[image_id]}: predicted for a {pred.masks.shape[1:]} image, GT is {shape}"
            )
        acc.add(*_check(pred or _empty(image_id, shape), gt, len(classes)))
    result = acc.result(classes)
    result["predictions_outside_split"] = len(outside)
    return result


def _pct(v: float | None) -> str:
    """Percentage with one decimal, '-' for undefined."""
    return "-" if v is None else f"{100.0 * v:.1f}"


def format_table(metrics: dict[str, Any]) -> str:
    """Aligned text table: summary (percent) then per-class AP@t and IoU."""
    keys = list(metrics["mAP_r"])
    rows = [("metric", "value")]
    rows += [(f"mAP^r@{k}", _pct(metrics["mAP_r"][k])) for k in keys]
    rows += [("ABO", _pct(metrics["ABO"])), ("mIoU", _pct(metrics["mIoU"]))]
    rows += [("images", str(metrics["num_images"]))]
    w0 = max(len(r[0]) for r in rows)
    lines = [f"{a:<{w0}}  {b:>6}" for a, b in rows]
    names = list(metrics["IoU_per_class"])
    head = ["class", *(f"AP@{k}" for k in keys), "IoU"]
    table = [head]
    for name in names:
        aps = [_pct(metrics["AP_per_class"][k].get(name)) for k in keys]
        table.append([name, *aps, _pct(metrics["IoU_per_class"][name])])
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines.append("")
    for r in table:
        cells = [r[0].ljust(widths[0])] + [v.rjust(widths[i + 1]) for i, v in enumerate(r[1:])]
        lines.append("  ".join(cells))
    return "\n".join(lines) + "\n"


def write_metrics(path: str | os.PathLike, metrics: dict[str, Any]) -> None:
    """Atomically write ``metrics`` as indented JSON."""
    write_text(path, json.dumps(metrics, indent=2, allow_nan=False) + "\n")
