"""Instance and semantic segmentation metrics: mAP^r@t, ABO and mIoU (PASCAL VOC protocol).

Protocol choices (paper Table 3 / Table 2; SDS, PRM and ICN all evaluate this way):

* mAP^r@t: per class, all predictions of all images are ranked by score (stable sort).
  ``matching="voc"`` (default; the VOC devkit / SDS / FCIS / chainercv rule behind the
  published numbers): a prediction is compared with the GT of its class in its image, the
  highest-IoU GT is taken; IoU >= t and that GT still free -> TP (GT now taken); IoU >= t but
  the GT already taken -> FP (duplicate); IoU < t -> FP. ``matching="greedy"`` (COCO rule):
  the prediction takes the highest-IoU GT among those not yet taken with IoU >= t.
  Difficult GT (``difficult[j]``) are not counted as positives; a prediction matched to one
  is neither TP nor FP (it may absorb any number of predictions, like the devkit). AP is
  the area under the precision-recall curve with precision made monotonic (VOC2010+
  all-points). Classes without positive GT are excluded from the mean (reported as None).
* Pixels marked ``ignore`` (the VOC 255 void band) are dropped from both the intersection
  and the union of every IoU.
* ABO: for every non-difficult GT instance the best IoU with any predicted mask **of the
  same class** in the same image (0 when there is none), averaged over all such GT, at any
  score. The class-agnostic variant (best over all predictions) is reported as
  ``ABO_class_agnostic``.
* mIoU: per image the instances with score >= ``semantic_score_threshold`` are painted
  into a class map (higher score wins overlaps; the rest is background); the GT map is the
  union of the GT instances (difficult included, as in SegmentationClass). One confusion
  matrix over C+1 labels (0 = background) for the whole set, ignore pixels excluded; IoU per
  label, mean over labels present in GT or prediction.

All values are fractions in [0, 1]; ``format_table`` prints percentages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from icnseg.errors import InputError
from icnseg.nms import mask_iou

__all__ = [
    "ImageGroundTruth",
    "ImagePrediction",
    "average_precision",
    "evaluate",
    "mask_iou",
]

METRICS_FILE = "metrics.json"  # written next to the predictions; skipped when reading them


@dataclass
class ImagePrediction:
    """Predicted instances of one image: masks [M,H,W] bool, classes [M] int, scores [M] float."""

    image_id: str
    masks: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


@dataclass
class ImageGroundTruth:
    """GT of one image: masks [N,H,W] bool, classes [N] int, ignore [H,W] bool, difficult [N]."""

    image_id: str
    masks: np.ndarray
    classes: np.ndarray
    ignore: np.ndarray | None = None
    difficult: np.ndarray | None = None


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ all-points AP: area under the PR curve with precision made monotonic."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def _match(iou: np.ndarray, difficult: np.ndarray, thr: float, matching: str) -> np.ndarray:
    """Label score-sorted predictions vs one class's GT of one image: 1 TP, 0 FP, -1 ignored."""
    m, n = iou.shape
    labels = np.zeros(m, dtype=np.int8)
    if n == 0:
        return labels
    taken = np.zeros(n, dtype=bool)
    for i in range(m):
        hit = iou[i] >= thr
        if matching == "voc":
            j = int(np.argmax(iou[i]))
            if not hit[j]:
                continue
            if difficult[j]:
                labels[i] = -1
            elif not taken[j]:
                labels[i], taken[j] = 1, True
        else:
            free = hit & ~taken & ~difficult
            if free.any():
                j = int(np.argmax(np.where(free, iou[i], -1.0)))
                labels[i], taken[j] = 1, True
            elif (hit & difficult).any():
                labels[i] = -1
    return labels


class _Accumulator:
    """Per-image statistics (no masks kept), so whole datasets stream through in O(1) memory."""

    def __init__(self, num_classes: int, thresholds: Sequence[float], matching: str, sem: float):
        if matching not in ("voc", "greedy"):
            raise InputError(f"matching must be 'voc' or 'greedy', got {matching!r}")
        self.c, self.thr, self.matching, self.sem = num_classes, tuple(thresholds), matching, sem
        self.scores: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        self.labels: list[list[np.ndarray]] = [[] for _ in range(num_classes)]  # [m, T]
        self.npos = np.zeros(num_classes, dtype=np.int64)
        self.best_same: list[np.ndarray] = []
        self.best_any: list[np.ndarray] = []
        self.confusion = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
        self.num_images = self.num_preds = 0

    def add(self, pred: ImagePrediction, gt: ImageGroundTruth) -> None:
        """Accumulate one image (prediction and GT already validated and shape-checked)."""
        iou = mask_iou(pred.masks, gt.masks, gt.ignore)
        n = gt.masks.shape[0]
        diff = np.zeros(n, bool) if gt.difficult is None else gt.difficult.astype(bool)
        self.npos += np.bincount(gt.classes[~diff], minlength=self.c)
        for c in np.unique(pred.classes):
            idx = np.flatnonzero(pred.classes == c)
            idx = idx[np.argsort(-pred.scores[idx], kind="mergesort")]
            gidx = np.flatnonzero(gt.classes == c)
            sub = iou[np.ix_(idx, gidx)]
            lab = np.stack([_match(sub, diff[gidx], t, self.matching) for t in self.thr], axis=1)
            self.scores[c].append(pred.scores[idx])
            self.labels[c].append(lab)
        same = np.where(pred.classes[:, None] == gt.classes[None, :], iou, 0.0)
        keep = ~diff
        self.best_same.append(same.max(0, initial=0.0)[keep])
        self.best_any.append(iou.max(0, initial=0.0)[keep])
        self.confusion += _confusion(pred, gt, self.c, self.sem)
        self.num_images += 1
        self.num_preds += len(pred.scores)

    def result(self, class_names: Sequence[str]) -> dict[str, Any]:
        """Final metrics dict (fractions; None where undefined)."""
        maps: dict[str, Any] = {}
        per_class: dict[str, Any] = {}
        for ti, t in enumerate(self.thr):
            aps: dict[str, float | None] = {}
            for c, name in enumerate(class_names):
                aps[name] = None if self.npos[c] == 0 else self._ap(c, ti)
            vals = [v for v in aps.values() if v is not None]
            maps[_key(t)] = float(np.mean(vals)) if vals else None
            per_class[_key(t)] = aps
        best_same = np.concatenate(self.best_same) if self.best_same else np.zeros(0)
        best_any = np.concatenate(self.best_any) if self.best_any else np.zeros(0)
        conf = self.confusion
        inter = np.diag(conf).astype(np.float64)
        union = conf.sum(0) + conf.sum(1) - inter
        ious = {
            name: (float(inter[k] / union[k]) if union[k] > 0 else None)
            for k, name in enumerate(["background", *class_names])
        }
        present = [v for v in ious.values() if v is not None]
        return {
            "mAP_r": maps,
            "AP_per_class": per_class,
            "ABO": float(best_same.mean()) if best_same.size else None,
            "ABO_class_agnostic": float(best_any.mean()) if best_any.size else None,
            "mIoU": float(np.mean(present)) if present else None,
            "IoU_per_class": ious,
            "num_images": self.num_images,
            "num_gt_instances": int(best_same.size),
            "num_predictions": self.num_preds,
            "protocol": {"matching": self.matching, "semantic_score_threshold": self.sem,
                         "ap": "all-points", "abo": "class-aware"},
        }

    def _ap(self, c: int, ti: int) -> float:
        """All-points AP of class c at threshold index ti."""
        if not self.scores[c]:
            return 0.0
        scores = np.concatenate(self.scores[c])
        labels = np.concatenate(self.labels[c])[:, ti]
        labels = labels[np.argsort(-scores, kind="mergesort")]
        labels = labels[labels >= 0]
        tp = np.cumsum(labels == 1)
        fp = np.cumsum(labels == 0)
        if tp.size == 0:
            return 0.0
        return average_precision(tp / self.npos[c], tp / np.maximum(tp + fp, 1))


def _key(t: float) -> str:
    """Dict key of an IoU threshold: 0.5 -> "0.5", 0.25 -> "0.25"."""
    return f"{float(t):g}"


def _confusion(pred: ImagePrediction, gt: ImageGroundTruth, c: int, sem: float) -> np.ndarray:
    """Semantic confusion matrix [C+1, C+1] (rows GT, cols prediction) of one image."""
    shape = gt.masks.shape[1:]
    gt_map = np.zeros(shape, dtype=np.int64)
    for j in range(gt.masks.shape[0] - 1, -1, -1):  # overlapping GT (not in VOC): first wins
        gt_map[gt.masks[j]] = gt.classes[j] + 1
    pr_map = np.zeros(shape, dtype=np.int64)
    keep = np.flatnonzero(pred.scores >= sem)
    for i in keep[np.argsort(pred.scores[keep], kind="mergesort")]:  # ascending: best wins
        pr_map[pred.masks[i]] = pred.classes[i] + 1
    valid = np.ones(shape, bool) if gt.ignore is None else ~gt.ignore
    flat = gt_map[valid] * (c + 1) + pr_map[valid]
    return np.bincount(flat, minlength=(c + 1) ** 2).reshape(c + 1, c + 1)


def _check(
    pred: ImagePrediction, gt: ImageGroundTruth, c: int
) -> tuple[ImagePrediction, ImageGroundTruth]:
    """Validate shapes/classes and return normalised (bool/int/float arrays) copies."""
    gm = np.asarray(gt.masks).astype(bool)
    pm = np.asarray(pred.masks).astype(bool)
    if gm.ndim != 3 or pm.ndim != 3:
        raise InputError(f"{gt.image_id}: masks must be [N, H, W] stacks")
    shape = gm.shape[1:]
    if pm.shape[0] == 0:
        pm = np.zeros((0, *shape), bool)
    if pm.shape[1:] != shape:
        raise InputError(f"{gt.image_id}: predicted masks are {pm.shape[1:]} but the GT is {shape}")
    gc = np.asarray(gt.classes, dtype=np.int64).reshape(-1)
    pc = np.asarray(pred.classes, dtype=np.int64).reshape(-1)
    ps = np.asarray(pred.scores, dtype=np.float64).reshape(-1)
    if len(gc) != len(gm) or len(pc) != len(pm) or len(ps) != len(pm):
        raise InputError(f"{gt.image_id}: number of masks, classes and scores differ")
    for name, cls in (("GT", gc), ("predicted", pc)):
        if cls.size and (cls.min() < 0 or cls.max() >= c):
            raise InputError(f"{gt.image_id}: {name} class index outside [0, {c})")
    if not np.all(np.isfinite(ps)):
        raise InputError(f"{gt.image_id}: prediction scores must be finite")
    ign = None if gt.ignore is None else np.asarray(gt.ignore).astype(bool)
    if ign is not None and ign.shape != shape:
        raise InputError(f"{gt.image_id}: ignore mask is {ign.shape}, masks are {shape}")
    diff = None if gt.difficult is None else np.asarray(gt.difficult).astype(bool).reshape(-1)
    if diff is not None and len(diff) != len(gc):
        raise InputError(f"{gt.image_id}: difficult has {len(diff)} entries for {len(gc)} GT")
    return (
        ImagePrediction(pred.image_id, pm, pc, ps),
        ImageGroundTruth(gt.image_id, gm, gc, ign, diff),
    )


def _empty(image_id: str, shape: tuple[int, int]) -> ImagePrediction:
    """A prediction with no instances."""
    masks = np.zeros((0, *shape), bool)
    return ImagePrediction(image_id, masks, np.zeros(0, np.int64), np.zeros(0))


def evaluate(
    predictions: Iterable[ImagePrediction],
    ground_truths: Iterable[ImageGroundTruth],
    num_classes: int,
    class_names: Sequence[str] | None = None,
    iou_thresholds: Sequence[float] = (0.25, 0.5, 0.75),
    matching: str = "voc",
    semantic_score_threshold: float = 0.0,
) -> dict[str, Any]:
    """mAP^r per threshold, per-class AP, ABO and mIoU over the GT images (see module doc)."""
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise InputError(f"{len(names)} class names given for {num_classes} classes")
    by_id: dict[str, ImagePrediction] = {}
    for p in predictions:
        if p.image_id in by_id:
            raise InputError(f"{p.image_id}: more than one prediction for this image")
        by_id[p.image_id] = p
    acc = _Accumulator(num_classes, iou_thresholds, matching, semantic_score_threshold)
    seen: set[str] = set()
    for gt in ground_truths:
        if gt.image_id in seen:
            raise InputError(f"{gt.image_id}: more than one ground truth for this image")
        seen.add(gt.image_id)
        pred = by_id.get(gt.image_id)
        if pred is None:
            pred = _empty(gt.image_id, np.shape(gt.masks)[1:])
        acc.add(*_check(pred, gt, num_classes))
    unknown = sorted(set(by_id) - seen)
    if unknown:
        raise InputError(f"{unknown[0]}: prediction for an image that has no ground truth")
    return acc.result(names)
