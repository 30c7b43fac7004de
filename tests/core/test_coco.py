"""`icnseg eval --coco-json`: the COCO results file and COCO mask AP, cross-checked against a
direct pycocotools COCOeval on structures built here from the raw masks."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from icnseg.cli.main import main
from icnseg.data.voc import VocDataset
from icnseg.instance import Instance
from icnseg.output.record import instances_to_json, write_json

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _predictions(ds: VocDataset, out, rng) -> dict[str, list[tuple[np.ndarray, int, float]]]:
    """Per image: each GT instance eroded or shifted a little (a hit or a near miss), plus a
    false positive box; written as `icnseg run` JSONs. Returns what was written."""
    written = {}
    for i, image_id in enumerate(ds.ids):
        s = ds[i]
        h, w = s.image.shape[:2]
        preds = []
        for mask, cls in zip(s.instance_masks, s.instance_classes, strict=True):
            shift = int(rng.integers(0, 6))
            preds.append((np.roll(mask, shift, axis=1), int(cls), float(rng.uniform(0.3, 1))))
        fp = np.zeros((h, w), bool)
        fp[:8, :8] = True
        preds.append((fp, int(rng.integers(0, len(ds.classes))), float(rng.uniform(0, 0.5))))
        insts = [Instance(ds.classes[c], c, sc, m) for m, c, sc in preds]
        write_json(out / f"{image_id}.json", instances_to_json(f"{image_id}.jpg", h, w, insts))
        written[image_id] = preds
    return written


def _direct_coco_ap(ds: VocDataset, written) -> list[float]:
    """COCOeval stats on GT/results built with pycocotools' own encoder."""
    images, anns, dets = [], [], []
    for n, image_id in enumerate(ds.ids, start=1):
        s = ds[ds.ids.index(image_id)]
        h, w = s.image.shape[:2]
        images.append({"id": n, "height": h, "width": w})
        for mask, cls in zip(s.instance_masks, s.instance_classes, strict=True):
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            anns.append({"id": len(anns) + 1, "image_id": n, "category_id": int(cls) + 1,
                         "segmentation": rle, "area": float(mask_util.area(rle)),
                         "bbox": mask_util.toBbox(rle).tolist(), "iscrowd": 0})
        for mask, cls, score in written[image_id]:
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            dets.append({"image_id": n, "category_id": cls + 1, "score": score,
                         "segmentation": rle})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": c + 1, "name": x} for c, x in enumerate(ds.classes)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(ev.stats[i]) for i in (0, 1, 2, 8)]


def test_eval_coco_json_matches_direct_cocoeval(synth_dir, tmp_path, capsys):
    ds = VocDataset(synth_dir, "val")
    pred = tmp_path / "pred"
    pred.mkdir()
    written = _predictions(ds, pred, np.random.default_rng(0))
    results = tmp_path / "coco_results.json"
    rc = main(["eval", str(pred), "--gt", str(synth_dir), "--coco-json", str(results)])
    assert rc == 0
    metrics = json.loads((pred / "metrics.json").read_text())["coco_mask"]
    want = _direct_coco_ap(ds, written)
    got = [metrics[k] for k in ("AP", "AP50", "AP75", "AR100")]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert 0 < want[0] < 1 and "COCO mask AP" in capsys.readouterr().out
    dets = json.loads(results.read_text())
    assert len(dets) == sum(len(v) for v in written.values())
    first_id = ds.ids[0]
    mask0 = written[first_id][0][0]
    ys, xs = np.nonzero(mask0)
    d0 = dets[0]
    assert d0["image_id"] == 1 and d0["bbox"] == [int(xs.min()), int(ys.min()),
                                                  int(xs.max() - xs.min() + 1),
                                                  int(ys.max() - ys.min() + 1)]
    assert np.array_equal(mask_util.decode(d0["segmentation"]).astype(bool), mask0)
