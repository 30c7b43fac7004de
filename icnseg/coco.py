"""COCO-format results and COCO mask AP (pycocotools) beside the VOC mAP^r of `icnseg eval`.

The results file is the standard COCO detection list: one entry per predicted instance,
``{"image_id": int, "category_id": int, "score": float, "bbox": [x, y, w, h],
"segmentation": {"size": [H, W], "counts": str}}`` with image ids numbered in the split's
order and category ids = class index + 1. The ground truth is built from the VOC masks
(void pixels are not part of any instance; COCO has no ignore band, so they count as
background there, unlike in mAP^r).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import InputError
from icnseg.fileio import write_text
from icnseg.rle import mask_to_rle


def xywh(box: Sequence[int]) -> list[int]:
    """(x0, y0, x1, y1) with exclusive ends -> COCO [x, y, width, height]."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _mask_bbox(mask: np.ndarray) -> list[int]:
    from icnseg.instance import mask_bbox

    return xywh(mask_bbox(mask))


def ground_truth(voc_dir: str | os.PathLike, split: str = "val") -> tuple[dict[str, Any],
                                                                          dict[str, int]]:
    """(COCO ground-truth dict, {image id string: COCO image id}) of a VOC-layout split."""
    from icnseg.data.voc import VocDataset

    ds = VocDataset(voc_dir, split)
    images, annotations, ids = [], [], {}
    for i, image_id in enumerate(ds.ids):
        s = ds[i]
        if s.class_mask is None and s.ignore_mask is None:
            continue  # classification-only image: nothing to score
        h, w = np.asarray(s.image).shape[:2]
        ids[image_id] = len(images) + 1
        images.append({"id": ids[image_id], "file_name": f"{image_id}.jpg", "height": int(h),
                       "width": int(w)})
        for mask, cls in zip(s.instance_masks, s.instance_classes, strict=True):
            area = int(np.count_nonzero(mask))
            if area == 0:
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": ids[image_id],
                                "category_id": int(cls) + 1, "segmentation": mask_to_rle(mask),
                                "area": area, "bbox": _mask_bbox(mask), "iscrowd": 0})
    categories = [{"id": c + 1, "name": n} for c, n in enumerate(ds.classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, ids


def results(pred_dir: str | os.PathLike, ids: dict[str, int], class_names: Sequence[str]
            ) -> list[dict[str, Any]]:
    """COCO results of the `icnseg run` JSONs in ``pred_dir`` for the images in ``ids``."""
    from icnseg.eval_files import read_prediction

    out = []
    for image_id, coco_id in ids.items():
        path = Path(pred_dir) / f"{image_id}.json"
        if not path.is_file():
            continue  # no prediction: no detections
        pred = read_prediction(path, class_names)
        for mask, cls, score in zip(pred.masks, pred.classes, pred.scores, strict=True):
            out.append({"image_id": coco_id, "category_id": int(cls) + 1,
                        "score": float(score), "bbox": _mask_bbox(mask),
                        "segmentation": mask_to_rle(mask)})
    return out


def coco_mask_ap(gt: dict[str, Any], dets: list[dict[str, Any]]) -> dict[str, float]:
    """COCO mask AP (IoU .50:.95), AP50, AP75 and AR@100 from pycocotools' COCOeval."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not gt["annotations"]:
        raise InputError("the ground truth has no instances: COCO AP is undefined")
    if not dets:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR100": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    return {"AP": float(s[0]), "AP50": float(s[1]), "AP75": float(s[2]), "AR100": float(s[8])}


def evaluate_coco(pred_dir: str | os.PathLike, voc_dir: str | os.PathLike, split: str,
                  results_path: str | os.PathLike) -> dict[str, float]:
    """Write the COCO results file of ``pred_dir`` and return COCO mask AP/AP50/AP75/AR100."""
    gt, ids = ground_truth(voc_dir, split)
    names = [c["name"] for c in gt["categories"]]
    dets = results(pred_dir, ids, names)
    write_text(results_path, json.dumps(dets) + "\n")
    return coco_mask_ap(gt, dets)
