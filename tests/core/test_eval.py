"""Tests of icnseg.eval against hand-computed cases, brute-force loops and pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from icnseg.errors import InputError
from icnseg.eval import (
    ImageGroundTruth,
    ImagePrediction,
    average_precision,
    evaluate,
    mask_iou,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
THRS = (0.25, 0.5, 0.75)


def strip(width: int, *spans: tuple[int, int]) -> np.ndarray:
    """Stack of 1-pixel-high masks [N,1,width], mask k = columns spans[k][0]..spans[k][1]-1."""
    out = np.zeros((len(spans), 1, width), bool)
    for k, (a, b) in enumerate(spans):
        out[k, 0, a:b] = True
    return out


def pred(image_id: str, masks: np.ndarray, classes, scores) -> ImagePrediction:
    return ImagePrediction(image_id, masks, np.asarray(classes), np.asarray(scores, float))


def gt(image_id: str, masks: np.ndarray, classes, ignore=None, difficult=None) -> ImageGroundTruth:
    return ImageGroundTruth(image_id, masks, np.asarray(classes), ignore, difficult)


# --- hand-computed cases ------------------------------------------------------------------


def test_hand_computed_ap_and_abo() -> None:
    # GT A=[0,10) B=[20,30) C=[40,50); predictions (score): p1 .9 = A (IoU 1), p2 .8 = [60,70)
    # (no overlap), p3 .7 = [20,25) (IoU 5/10 = .5 with B), p4 .6 = [40,48) (IoU 8/10 = .8 with C).
    g = gt("i", strip(80, (0, 10), (20, 30), (40, 50)), [0, 0, 0])
    p = pred("i", strip(80, (0, 10), (60, 70), (20, 25), (40, 48)), [0] * 4, [0.9, 0.8, 0.7, 0.6])
    m = evaluate([p], [g], num_classes=1, class_names=["obj"])
    # t=.25 and t=.5: TP FP TP TP -> recall 1/3 1/3 2/3 1, precision 1 1/2 2/3 3/4;
    # monotonic precision 1, 3/4, 3/4 -> AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6
    assert m["mAP_r"]["0.25"] == pytest.approx(5 / 6)
    assert m["mAP_r"]["0.5"] == pytest.approx(5 / 6)
    # t=.75: TP FP FP TP -> recall 1/3 1/3 1/3 2/3, precision 1 1/2 1/3 1/2 -> AP = 1/3 + 1/6
    assert m["mAP_r"]["0.75"] == pytest.approx(0.5)
    assert m["AP_per_class"]["0.75"] == {"obj": pytest.approx(0.5)}
    assert m["ABO"] == pytest.approx((1.0 + 0.5 + 0.8) / 3)
    assert m["num_images"] == 1 and m["num_gt_instances"] == 3 and m["num_predictions"] == 4


def test_classes_without_gt_are_excluded_and_missing_predictions_count_zero() -> None:
    g = gt("i", strip(40, (0, 10), (20, 30)), [0, 1])
    # class 0 found; class 1 has GT but no prediction (AP 0); class 2 has a FP but no GT (excluded)
    p = pred("i", strip(40, (0, 10), (32, 38)), [0, 2], [0.9, 0.95])
    m = evaluate([p], [g, gt("j", strip(40, (5, 9)), [0])], 3, ["a", "b", "c"])
    # class 0: TP (image i), the GT in image j has no prediction -> recall 1/2 at precision 1
    assert m["AP_per_class"]["0.5"] == {"a": 0.5, "b": 0.0, "c": None}
    assert m["mAP_r"]["0.5"] == pytest.approx(0.25)
    assert m["ABO"] == pytest.approx((1 + 0 + 0) / 3)


def test_difficult_gt_neither_tp_nor_fp() -> None:
    # A=[0,10) normal, D=[20,30) difficult; p1 .9 = D, p3 .85 = FP [50,60), p2 .8 = A
    masks = strip(70, (0, 10), (20, 30))
    p = pred("i", strip(70, (20, 30), (50, 60), (0, 10), (21, 30)), [0] * 4, [0.9, 0.85, 0.8, 0.7])
    with_d = evaluate([p], [gt("i", masks, [0, 0], difficult=np.array([False, True]))], 1)
    # ignored, FP, TP, ignored (duplicate on D is absorbed too) -> npos 1, recall 0 1, prec 0 1/2
    assert with_d["mAP_r"]["0.5"] == pytest.approx(0.5)
    assert with_d["ABO"] == 1.0 and with_d["num_gt_instances"] == 1
    without = evaluate([p], [gt("i", masks, [0, 0])], 1)
    # TP FP TP FP, npos 2 -> recall 1/2 1/2 1 1, precision 1 1/2 2/3 1/2 -> 1/2 + 1/2 * 2/3
    assert without["mAP_r"]["0.5"] == pytest.approx(0.5 + 1 / 3)


def test_voc_and_greedy_matching_differ_as_documented() -> None:
    # A=[0,10), B=[10,20); p1 = A (IoU 1); p2 = [2,16): IoU 8/16 = .5 with A, 6/18 = 1/3 with B
    g = gt("i", strip(30, (0, 10), (10, 20)), [0, 0])
    p = pred("i", strip(30, (0, 10), (2, 16)), [0, 0], [0.9, 0.8])
    voc = evaluate([p], [g], 1, iou_thresholds=(0.3,))
    greedy = evaluate([p], [g], 1, iou_thresholds=(0.3,), matching="greedy")
    assert voc["mAP_r"]["0.3"] == pytest.approx(0.5)  # p2's best GT (A) is taken -> FP
    assert greedy["mAP_r"]["0.3"] == pytest.approx(1.0)  # p2 takes the free B (IoU 1/3 >= .3)
    with pytest.raises(InputError):
        evaluate([p], [g], 1, matching="coco")


def test_average_precision_edge_cases() -> None:
    assert average_precision(np.array([1.0]), np.array([1.0])) == 1.0
    assert average_precision(np.array([0.5, 0.5]), np.array([1.0, 0.5])) == 0.5
    # precision made monotonic: the later 1.0 at recall 1 lifts the dip at recall .5
    assert average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 1.0])) == 1.0


def test_ignore_pixels_are_dropped_from_iou() -> None:
    # GT [0,10), prediction [0,15); pixels 10..14 are void: IoU 1 with ignore, 10/15 without
    g = strip(20, (0, 10))
    ign = np.zeros((1, 20), bool)
    ign[0, 10:15] = True
    p = pred("i", strip(20, (0, 15)), [0], [0.5])
    assert evaluate([p], [gt("i", g, [0], ignore=ign)], 1)["mAP_r"]["0.75"] == 1.0
    assert evaluate([p], [gt("i", g, [0])], 1)["mAP_r"]["0.75"] == 0.0
    assert mask_iou(p.masks, g, ign)[0, 0] == 1.0
    assert mask_iou(p.masks, g)[0, 0] == pytest.approx(10 / 15)


# --- random scenes: brute force and COCOeval -----------------------------------------------


def _rects(rng, n: int, h: int, w: int) -> np.ndarray:
    out = np.zeros((n, h, w), bool)
    for k in range(n):
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        out[k, y0 : y0 + rng.integers(3, h // 2), x0 : x0 + rng.integers(3, w // 2)] = True
    return out


def _scene(seed: int, n_images: int = 8, c: int = 3, h: int = 24, w: int = 30, void=False):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for k in range(n_images):
        n = int(rng.integers(1, 5))
        gm, gc = _rects(rng, n, h, w), rng.integers(0, c, n)
        pm, pc = [], []
        for j in range(n):
            if rng.random() < 0.85:  # a jittered copy, sometimes of the wrong class
                dy, dx = rng.integers(-3, 4, 2)
                pm.append(
                    np.roll(gm[j], (dy, dx), axis=(0, 1))
                    | (_rects(rng, 1, h, w)[0] & (rng.random() < 0.3))
                )
                pc.append(gc[j] if rng.random() < 0.9 else rng.integers(0, c))
        extra = int(rng.integers(0, 3))
        pm += list(_rects(rng, extra, h, w))
        pc += list(rng.integers(0, c, extra))
        ign = None
        if void:  # a void band around every GT, like VOC's 255 border
            ign = np.zeros((h, w), bool)
            for j in range(n):
                ys, xs = np.nonzero(gm[j])
                ign[max(ys.min() - 1, 0) : ys.max() + 2, max(xs.min() - 1, 0) : xs.max() + 2] = True
            ign &= ~gm.any(0)
        pmasks = np.stack(pm) if pm else np.zeros((0, h, w), bool)
        scores = rng.permutation(1000)[: len(pm)] / 1000.0 + 0.001  # distinct
        preds.append(pred(f"im{k}", pmasks, pc, scores))
        gts.append(gt(f"im{k}", gm, gc, ignore=ign))
    return preds, gts


def _coco_eval(preds, gts, c: int, thrs) -> COCOeval:
    def rle(m):
        r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        return {"size": r["size"], "counts": r["counts"].decode()}

    h, w = gts[0].masks.shape[1:]
    images = [{"id": k + 1, "height": h, "width": w} for k in range(len(gts))]
    anns, dets = [], []
    for k, (p, g) in enumerate(zip(preds, gts, strict=True)):
        for m, cl in zip(g.masks, g.classes, strict=True):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": k + 1,
                    "category_id": int(cl) + 1,
                    "segmentation": rle(m),
                    "area": float(m.sum()),
                    "iscrowd": 0,
                    "bbox": [0, 0, w, h],
                }
            )
        for m, cl, s in zip(p.masks, p.classes, p.scores, strict=True):
            dets.append(
                {
                    "image_id": k + 1,
                    "category_id": int(cl) + 1,
                    "segmentation": rle(m),
                    "score": float(s),
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": i + 1, "name": str(i)} for i in range(c)],
        }
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "segm")
        ev.params.iouThrs = np.array(thrs)
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e10]], ["all"], [1000]
        ev.evaluate()
        ev.accumulate()
    return ev


def _ap_from_coco_matches(ev: COCOeval, cat: int, ti: int) -> float | None:
    """All-points AP from COCOeval's own TP/FP decisions: (1/npos) * sum over TPs of max prec."""
    entries = [e for e in ev.evalImgs if e is not None and e["category_id"] == cat]
    npos = sum(int(np.sum(~np.asarray(e["gtIgnore"], bool))) for e in entries)
    if npos == 0:
        return None
    scores = np.concatenate([np.asarray(e["dtScores"], float) for e in entries])
    tp = np.concatenate([np.asarray(e["dtMatches"])[ti] > 0 for e in entries])
    tp = tp[np.argsort(-scores, kind="mergesort")]
    prec = np.cumsum(tp) / np.arange(1, tp.size + 1)
    return sum(prec[k:].max() for k in np.flatnonzero(tp)) / npos


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_greedy_ap_matches_cocoeval(seed: int) -> None:
    preds, gts = _scene(seed)
    ours = evaluate(preds, gts, 3, iou_thresholds=THRS, matching="greedy")
    ev = _coco_eval(preds, gts, 3, THRS)
    for ti, t in enumerate(THRS):
        for c in range(3):
            # exact: the same TP/FP decisions integrated by an independent formula
            assert ours["AP_per_class"][f"{t:g}"][str(c)] == pytest.approx(
                _ap_from_coco_matches(ev, c + 1, ti), abs=1e-12
            )
            # COCO samples the same monotonic precision at 101 recalls; for a non-increasing
            # step function in [0, 1] a 101-point mean and the integral differ by <= ~2/100
            coco101 = ev.eval["precision"][ti, :, c, 0, 0]
            if coco101[0] >= 0:
                assert ours["AP_per_class"][f"{t:g}"][str(c)] == pytest.approx(
                    coco101.mean(), abs=0.02
                )


def test_perfect_and_zero_cases_match_cocoeval_exactly() -> None:
    # precision 1 up to recall 1 (AP 1) and no TP at all (AP 0): 101-point == all-points
    preds, gts = _scene(7)
    perfect = [
        pred(g.image_id, g.masks, g.classes, np.linspace(1, 0.5, len(g.classes))) for g in gts
    ]
    ev = _coco_eval(perfect, gts, 3, THRS)
    ours = evaluate(perfect, gts, 3, iou_thresholds=THRS)
    coco_map = np.mean([ev.eval["precision"][1, :, c, 0, 0].mean() for c in range(3)])
    assert ours["mAP_r"]["0.5"] == pytest.approx(coco_map) == 1.0
    assert ours["ABO"] == 1.0 and ours["mIoU"] == 1.0


def test_mask_iou_matches_pycocotools() -> None:
    rng = np.random.default_rng(5)
    a, b = _rects(rng, 6, 20, 25), _rects(rng, 4, 20, 25)
    enc = [
        mask_util.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8))) for m in (a, b)
    ]
    np.testing.assert_allclose(mask_iou(a, b), mask_util.iou(enc[0], enc[1], [0] * 4), atol=1e-12)


def _brute_iou(a, b, ign) -> float:
    valid = np.ones(a.shape, bool) if ign is None else ~ign
    union = int(np.sum((a | b) & valid))
    return int(np.sum(a & b & valid)) / union if union else 0.0


@pytest.mark.parametrize("void", [False, True])
def test_abo_and_miou_against_brute_force(void: bool) -> None:
    preds, gts = _scene(11, void=void)
    c, thr = 3, 0.3
    m = evaluate(preds, gts, c, iou_thresholds=THRS, semantic_score_threshold=thr)
    best_same, best_any = [], []
    conf = np.zeros((c + 1, c + 1), int)
    for p, g in zip(preds, gts, strict=True):
        for gm, gc in zip(g.masks, g.classes, strict=True):
            ious = [_brute_iou(pm, gm, g.ignore) for pm in p.masks]
            same = [v for v, pc in zip(ious, p.classes, strict=True) if pc == gc]
            best_same.append(max(same, default=0.0))
            best_any.append(max(ious, default=0.0))
        h, w = g.masks.shape[1:]
        for y in range(h):
            for x in range(w):
                if g.ignore is not None and g.ignore[y, x]:
                    continue
                glab = next(
                    (int(cl) + 1 for mk, cl in zip(g.masks, g.classes, strict=True) if mk[y, x]), 0
                )
                cands = [
                    (s, int(cl) + 1)
                    for mk, cl, s in zip(p.masks, p.classes, p.scores, strict=True)
                    if mk[y, x] and s >= thr
                ]
                conf[glab, max(cands)[1] if cands else 0] += 1
    assert m["ABO"] == pytest.approx(np.mean(best_same))
    assert m["ABO_class_agnostic"] == pytest.approx(np.mean(best_any))
    ious = [
        conf[k, k] / (conf[k].sum() + conf[:, k].sum() - conf[k, k])
        for k in range(c + 1)
        if conf[k].sum() + conf[:, k].sum() > 0
    ]
    assert m["mIoU"] == pytest.approx(np.mean(ious))
    assert m["IoU_per_class"]["background"] == pytest.approx(
        conf[0, 0] / (conf[0].sum() + conf[:, 0].sum() - conf[0, 0])
    )


def test_void_band_equals_masks_with_void_removed() -> None:
    preds, gts = _scene(3, void=True)
    a = evaluate(preds, gts, 3)
    cut = [
        pred(p.image_id, p.masks & ~g.ignore, p.classes, p.scores)
        for p, g in zip(preds, gts, strict=True)
    ]
    b = evaluate(cut, [gt(g.image_id, g.masks, g.classes) for g in gts], 3)
    assert a["AP_per_class"] == b["AP_per_class"] and a["ABO"] == pytest.approx(b["ABO"])


def test_input_errors() -> None:
    g = gt("i", strip(10, (0, 5)), [0])
    with pytest.raises(InputError, match="zzz"):
        evaluate([pred("zzz", strip(10, (0, 5)), [0], [1.0])], [g], 1)
    with pytest.raises(InputError, match="i"):
        evaluate([pred("i", strip(12, (0, 5)), [0], [1.0])], [g], 1)
    with pytest.raises(InputError):
        evaluate([pred("i", strip(10, (0, 5)), [3], [1.0])], [g], 1)
    with pytest.raises(InputError):
        evaluate([], [g], 2, class_names=["only-one"])


# --- files ----------------------------------------------------------------------------------
