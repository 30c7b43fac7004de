"""The ablation's shared-computation rows equal the public segment() path, row by row."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")

from icnseg.benchmarks.ablation import T_MAX, ablate, to_markdown  # noqa: E402
from icnseg.data.synth import generate  # noqa: E402
from icnseg.data.voc import VocDataset  # noqa: E402
from icnseg.eval import ImageGroundTruth, ImagePrediction, evaluate  # noqa: E402
from icnseg.loader import load  # noqa: E402
from icnseg.segmenter import segment  # noqa: E402


def test_rows_equal_segmenting_each_image_with_that_setting(tiny_checkpoint, tmp_path):
    model = load(str(tiny_checkpoint), backend="torch")
    ds = VocDataset(generate(tmp_path / "d", 3, seed=21, size=96, val_fraction=0.0), "train",
                    classes=model.classes)
    results = ablate({"m": model}, {}, ds, log=lambda m: None)
    assert {f"m: full, T={t}" for t in range(1, T_MAX + 1)} <= set(results)
    base = model.segment_config()
    prm = dataclasses.replace(base.match, scoring="prm")
    iou = dataclasses.replace(base.match, scoring="iou")
    for row, cfg in (("m: full, T=2", dataclasses.replace(base, iterations=2)),
                     ("m: full, IoU matching, T=3",
                      dataclasses.replace(base, iterations=3, match=iou)),
                     ("m: w/o ICN (naive PRM)", dataclasses.replace(base, iterations=0)),
                     ("m: original PRM (naive PRM, vanilla matching)",
                      dataclasses.replace(base, iterations=0, match=prm))):
        preds, gts = [], []
        for i in range(len(ds)):
            s = ds[i]
            inst = segment(model, s.image, config=cfg)
            preds.append(ImagePrediction(
                s.id, np.stack([x.mask for x in inst]) if inst else
                np.zeros((0, *s.image.shape[:2]), bool),
                np.array([x.class_index for x in inst], int),
                np.array([x.score for x in inst])))
            gts.append(ImageGroundTruth(s.id, s.instance_masks, s.instance_classes,
                                        s.ignore_mask))
        assert any(len(p.masks) for p in preds), row  # not a comparison of empty sets
        want = evaluate(preds, gts, len(model.classes), model.classes)
        assert results[row]["mAP_r"] == pytest.approx(want["mAP_r"], abs=1e-12), row
        assert results[row]["ABO"] == pytest.approx(want["ABO"], abs=1e-12), row
    assert "| m: full, T=1 |" in to_markdown({"val": results}, "# t")


def test_variant_rows_at_every_t(tiny_checkpoint, tmp_path):
    model = load(str(tiny_checkpoint), backend="torch")
    other = load(str(tiny_checkpoint), backend="torch")  # another object: its own passes
    ds = VocDataset(generate(tmp_path / "d", 2, seed=22, size=96, val_fraction=0.0), "train",
                    classes=model.classes)
    results = ablate({"m": model}, {"v": other}, ds, log=lambda m: None)
    for t in range(1, T_MAX + 1):
        assert results[f"v, T={t}"] == results[f"m: full, T={t}"]
