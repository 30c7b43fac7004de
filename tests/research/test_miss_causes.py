"""research.miss_causes: hand-built causes, and counts against segment() and a pixel loop."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from icnseg.data.voc import VocDataset  # noqa: E402
from icnseg.loader import load  # noqa: E402
from icnseg.postprocess import peak_pixels  # noqa: E402
from icnseg.segmenter import segment  # noqa: E402
from research import miss_causes  # noqa: E402


def _loop_iou(a, b):
    inter = union = 0
    for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True):
        inter += x and y
        union += x or y
    return inter / max(union, 1)


def test_each_cause_by_hand():
    gt = np.zeros((3, 8, 8), bool)
    gt[0, :4, :4] = gt[1, 4:, 4:] = gt[2, :4, 4:] = True
    pred = np.zeros((2, 8, 8), bool)
    pred[0, :4, :3] = True  # IoU 0.75 with instance 0, right class
    pred[1, 4:, 4:] = True  # exact on instance 1 but of the wrong class
    got = miss_causes.causes(gt, np.array([0, 1, 2]), pred, np.array([0, 2]),
                             np.array([1, 0]), np.array([[5, 5], [1, 6]]))
    # instance 1: its class's peak on it, no mask of its class; instance 2: only a class-0
    # peak lies on it
    assert got == ["found", "peak, no mask", "no peak"]
    assert miss_causes.causes(gt[:1], np.array([0]), pred[:0], np.zeros(0, int),
                              np.zeros(0, int), np.zeros((0, 2), int)) == ["no peak"]


def test_peak_pixels_are_cell_centres():
    px = peak_pixels(np.array([[0, 0, 0], [1, 3, 1]]), (4, 2), (8, 8))
    np.testing.assert_array_equal(px, [[1, 2], [7, 6]])


def test_found_counts_equal_segmenting_each_image(synth_dir, tmp_path):
    model = load("default", backend="torch")
    data = VocDataset(synth_dir, "train", classes=model.classes)
    counts = miss_causes.count_causes(model, data, len(data), "icn")
    n_gt = sum(len(data[i].instance_masks) for i in range(len(data)))
    assert all(sum(c.values()) == n_gt for c in counts.values())
    for t in (1, 3):
        cfg = dataclasses.replace(model.segment_config(), iterations=t)
        found = 0
        for i in range(len(data)):
            s = data[i]
            inst = segment(model, s.image, config=cfg)
            found += sum(any(x.class_index == c and _loop_iou(x.mask, g) >= 0.5 for x in inst)
                         for g, c in zip(s.instance_masks, s.instance_classes, strict=True))
        assert counts[t]["found"] == found, t
    assert counts[1]["found"] > 0  # the embedded model finds objects: not an empty comparison
    out = tmp_path / "m"
    assert miss_causes.main(["--model", "m=default", "--split", f"s={synth_dir}", "--n",
                             str(len(data)), "--scoring", "icn", "iou", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["scoring"], r["T"]) for r in rows] == [(s, t) for s in ("icn", "iou")
                                                      for t in range(1, 5)]
