"""Evaluation files: prediction JSONs of `icnseg run`, metrics tables, VOC folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from icnseg.errors import InputError
from icnseg.eval import ImageGroundTruth, ImagePrediction, evaluate
from icnseg.eval_files import evaluate_dirs, format_table, load_predictions, write_metrics
from icnseg.fileio import write_text
from icnseg.instance import Instance
from icnseg.output.record import instances_to_json

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
THRS = (0.25, 0.5, 0.75)


def pred(image_id: str, masks: np.ndarray, classes, scores) -> ImagePrediction:
    return ImagePrediction(image_id, masks, np.asarray(classes), np.asarray(scores, float))


def _scene(seed: int, n_images: int = 6, c: int = 3, h: int = 20, w: int = 26):
    """Random rectangles as GT; predictions = shifted copies plus clutter, distinct scores."""
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for k in range(n_images):
        n = int(rng.integers(1, 4))
        gm = np.zeros((n, h, w), bool)
        for j in range(n):
            y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
            gm[j, y : y + 6, x : x + 6] = True
        gc = rng.integers(0, c, n)
        pm = np.concatenate([np.roll(gm, 1, axis=2), gm[:1] | np.roll(gm[:1], 3, axis=1)])
        pc = np.concatenate([gc, rng.integers(0, c, 1)])
        scores = rng.permutation(100)[: len(pm)] / 100.0 + 0.001
        preds.append(pred(f"im{k}", pm, pc, scores))
        gts.append(ImageGroundTruth(f"im{k}", gm, gc))
    return preds, gts


def _write_preds(d, preds, names) -> None:
    for p in preds:
        h, w = p.masks.shape[1:]
        insts = [
            Instance(names[c], int(c), float(s), m)
            for m, c, s in zip(p.masks, p.classes, p.scores, strict=True)
        ]
        write_text(
            d / f"{p.image_id}.json",
            json.dumps(instances_to_json(p.image_id + ".jpg", h, w, insts)),
        )


def test_load_predictions_round_trip_and_errors(tmp_path) -> None:
    names = ["a", "b", "c"]
    preds, gts = _scene(2)
    _write_preds(tmp_path, preds, names)
    write_metrics(tmp_path / "metrics.json", {"ignored": True})  # skipped by the reader
    loaded = load_predictions(tmp_path, names)
    assert [p.image_id for p in loaded] == sorted(p.image_id for p in preds)
    by_id = {p.image_id: p for p in loaded}
    for p in preds:
        q = by_id[p.image_id]
        np.testing.assert_array_equal(q.masks, p.masks)
        np.testing.assert_array_equal(q.classes, p.classes)
        np.testing.assert_allclose(q.scores, p.scores)
    assert evaluate(loaded, gts, 3, names) == evaluate(preds, gts, 3, names)
    with pytest.raises(InputError, match=r"im\d\.json: instance \d+ has unknown class"):
        load_predictions(tmp_path, ["a", "b"])  # "c" unknown
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        load_predictions(tmp_path, names)
    (tmp_path / "bad.json").write_text(
        json.dumps(
            {
                "image": "x",
                "height": 2,
                "width": 2,
                "instances": [{"class": "a", "score": 1, "mask": {"size": [3, 3], "counts": "9"}}],
            }
        )
    )
    with pytest.raises(InputError, match="bad.json"):
        load_predictions(tmp_path, names)
    with pytest.raises(InputError):
        load_predictions(tmp_path / "absent", names)


def test_format_table_and_write_metrics(tmp_path) -> None:
    preds, gts = _scene(4)
    m = evaluate(preds, gts, 3, ["circle", "square", "star"])
    table = format_table(m)
    assert "mAP^r@0.5" in table and "ABO" in table and "mIoU" in table
    assert f"{100 * m['mAP_r']['0.5']:.1f}" in table
    rows = [
        ln for ln in table.splitlines() if ln.startswith(("class", "background", "circle", "star"))
    ]
    assert len({len(r) for r in rows}) == 1  # aligned columns
    write_metrics(tmp_path / "m.json", m)
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads(json.dumps(m))


def test_evaluate_dirs_on_synthetic_voc(tmp_path) -> None:
    from icnseg.data import synth, voc

    root = synth.generate(tmp_path / "voc", 6, seed=0, size=64, val_fraction=0.5)
    ds = voc.VocDataset(root, "val")
    names = list(ds.classes)
    out = tmp_path / "pred"
    out.mkdir()
    preds = []
    for i, image_id in enumerate(ds.ids):
        s = ds[i]
        n = len(s.instance_classes)
        preds.append(
            pred(
                image_id,
                np.asarray(s.instance_masks, bool),
                s.instance_classes,
                np.linspace(1.0, 0.5, n),
            )
        )
    _write_preds(out, preds, names)
    m = evaluate_dirs(out, root, "val")
    assert m["num_images"] == len(ds.ids)
    assert all(v in (None, 1.0) for v in m["mAP_r"].values()) and m["ABO"] in (None, 1.0)
    # a prediction for a train image of the same dataset is counted, not scored
    train_id = voc.VocDataset(root, "train").ids[0]
    (out / f"{train_id}.json").write_text((out / f"{ds.ids[0]}.json").read_text())
    again = evaluate_dirs(out, root, "val")
    assert again["predictions_outside_split"] == 1 and again["mAP_r"] == m["mAP_r"]
    (out / "not-an-image.json").write_text((out / f"{ds.ids[0]}.json").read_text())
    with pytest.raises(InputError, match="not-an-image.json"):
        evaluate_dirs(out, root, "val")
