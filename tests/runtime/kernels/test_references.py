"""The numpy references the CUDA kernels mirror, against brute-force per-pixel loops.

Already covered elsewhere: pack_masks (tests/proposals/test_types.py), mask_iou, mask_nms and
Eq. 5 per proposal (tests/test_matching.py). Here: contour and the "dilate" background pixel
by pixel, the superpixel factorisation of proposal sums, minmax, best_proposals, and the
whole select_instances composition (score, quality gate, NMS, order) against a naive loop.
"""

from __future__ import annotations

import numpy as np
import pytest

from icnseg.matching import MatchConfig, background_template, best_proposals, contour
from icnseg.postprocess import minmax, select_instances
from icnseg.proposals.types import Proposals
from icnseg.segmenter import Stages
from icnseg.settings import SegmentConfig

SHAPES = [(1, 1), (1, 7), (6, 1), (5, 5), (9, 13)]


def _window(mask: np.ndarray, y: int, x: int, r: int) -> np.ndarray:
    """The in-image pixels of the (2r+1)^2 square around (y, x), by explicit neighbours."""
    h, w = mask.shape
    return np.array([mask[yy, xx] for yy in range(y - r, y + r + 1)
                     for xx in range(x - r, x + r + 1) if 0 <= yy < h and 0 <= xx < w])


def _loop_contour(mask: np.ndarray, r: int) -> np.ndarray:
    """dilate XOR erode pixel by pixel, outside pixels ignored."""
    out = np.zeros(mask.shape, bool)
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            win = _window(mask, y, x, r)
            out[y, x] = bool(win.any()) != bool(win.all())
    return out


def _masks(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """Random masks of three densities plus an empty and a full one."""
    rng = np.random.default_rng(seed)
    masks = rng.random((5, *shape)) < np.array([0.1, 0.5, 0.9, 0.0, 1.0])[:, None, None]
    return masks


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("width", [0, 1, 2, 3])
def test_contour_equals_neighbour_loop(shape, width) -> None:
    """icnseg.matching.contour == per-pixel loop over the square window."""
    masks = _masks(width, shape)
    got = contour(masks, width)
    for m, g in zip(masks, got, strict=True):
        np.testing.assert_array_equal(g, _loop_contour(m, width))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("radius", [0, 1, 2, 5])
def test_dilate_background_equals_neighbour_loop(shape, radius) -> None:
    """background_template("dilate") == NOT any(window) pixel by pixel."""
    masks = _masks(radius + 11, shape)
    got = background_template(masks, MatchConfig(dilate_radius=radius))
    for m, g in zip(masks, got, strict=True):
        ref = np.array([[not _window(m, y, x, radius).any() for x in range(m.shape[1])]
                        for y in range(m.shape[0])]).reshape(m.shape)
        np.testing.assert_array_equal(g, ref)


def test_superpixel_sums_equal_dense_sums() -> None:
    """Per-superpixel sums x membership^T (the kernels' factorisation) == sum over each mask."""
    rng = np.random.default_rng(3)
    h, w, s, n = 11, 17, 13, 9
    labels = rng.integers(0, s, (h, w)).astype(np.int32)
    member = rng.random((n, s)) < 0.4
    props = Proposals.from_membership(labels, member)
    maps = rng.normal(size=(4, h, w))
    per_sp = np.zeros((4, s))
    for t in range(4):
        for y in range(h):
            for x in range(w):
                per_sp[t, labels[y, x]] += maps[t, y, x]
    dense = np.array([[maps[t][props.masks[i]].sum() for i in range(n)] for t in range(4)])
    np.testing.assert_allclose(per_sp @ member.T.astype(float), dense, rtol=1e-12, atol=1e-12)
    binary = maps > 0
    counts = np.stack([np.bincount(labels.ravel(), b.ravel(), s) for b in binary])
    np.testing.assert_array_equal(counts @ member.T.astype(float),
                                  [[(b & p).sum() for p in props.masks] for b in binary])


def test_minmax_equals_loop() -> None:
    """minmax per map, constant maps to 0, like the binarise kernel's normalisation."""
    rng = np.random.default_rng(5)
    maps = rng.normal(size=(4, 6, 7)).astype(np.float32) * 3
    maps[2] = -1.5
    got = minmax(maps)
    for m, g in zip(maps, got, strict=True):
        lo, hi = float(m.min()), float(m.max())
        ref = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-7)


def test_best_proposals_equals_loop() -> None:
    """First maximum per row, NaN as -inf, -1/-inf when no finite maximum (argmax kernel)."""
    rng = np.random.default_rng(6)
    scores = rng.integers(0, 3, (6, 8)).astype(float)
    scores[1] = -np.inf
    scores[2, [0, 4]] = np.nan
    scores[3, 2] = np.inf
    scores[4] = np.nan
    idx, quality = best_proposals(scores)
    for k, row in enumerate(scores):
        best, best_i = -np.inf, -1
        for j, v in enumerate(row):
            v = -np.inf if np.isnan(v) else v
            if best_i < 0 or v > best:
                best, best_i = v, j
        if not np.isfinite(best):
            best, best_i = -np.inf, -1
        assert idx[k] == best_i and quality[k] == best


def _naive_select(v, masks, cls, conf, cfg):
    """select_instances by hand: Eq. 5 "icn" per pair, arg-max, score, gate, greedy NMS."""
    m = cfg.match
    keep_score = []
    for k in range(len(v)):
        edge = _loop_contour(v[k], m.contour_width)
        bg = background_template(v[k][None], m)[0]
        best, best_n = -np.inf, -1
        for n, p in enumerate(masks):
            area = p.sum()
            s = (m.alpha * ((v[k] & p).sum() / area if area else 0.0)
                 + m.beta * ((edge & p).sum() / edge.sum() if edge.sum() else 0.0)
                 - m.gamma * ((bg & p).sum() / area if area else 0.0))
            if s > best:
                best, best_n = s, n
        keep_score.append((best_n, best, conf[k] * min(max(best, 0.0), 1.0)))
    order = sorted(range(len(v)), key=lambda k: (-keep_score[k][2], k))
    kept = []
    for k in order:
        n, q, _ = keep_score[k]
        if n < 0 or q < cfg.min_quality:
            continue
        ok = True
        for j in kept:
            a, b = masks[n], masks[keep_score[j][0]]
            union = (a | b).sum()
            iou = (a & b).sum() / union if union else 0.0
            if cls[j] == cls[k] and (iou >= m.nms_iou or np.array_equal(a, b)):
                ok = False
        if ok:
            kept.append(k)
    return [(k, *keep_score[k]) for k in kept]


@pytest.mark.parametrize("seed", range(3))
def test_select_instances_equals_naive_loop(seed) -> None:
    """The composition the device chain reproduces, against a loop over instances/pairs."""
    rng = np.random.default_rng(seed)
    h, w, k = 10, 12, 6
    enhanced = rng.random((k, h, w)).astype(np.float32) ** 2
    enhanced[:, 2:8, 3:9] += 0.5
    masks = rng.random((15, h, w)) < rng.uniform(0.1, 0.8, (15, 1, 1))
    masks[:4] = enhanced[:4] >= 0.5  # good matches, one shared by two instances
    masks[4] = masks[0]
    peaks = np.zeros((k, 4), np.float32)
    peaks[:, 0] = [0, 0, 1, 0, 1, 0]
    stages = Stages(image=np.zeros((h, w, 3), np.uint8), class_conf=np.array([0.9, 0.6]),
                    peaks=peaks, prm=enhanced, enhanced=np.clip(enhanced, 0, 1),
                    crm=np.zeros((2, 5, 6), np.float32))
    cfg = SegmentConfig(match=MatchConfig(dilate_radius=1 + seed, nms_iou=0.4),
                        min_quality=0.1 * seed)
    cls = peaks[:, 0].astype(int)
    got = select_instances(stages, Proposals(masks), ["a", "b"], cfg)
    ref = _naive_select(stages.enhanced >= cfg.threshold, masks, cls,
                        stages.class_conf[cls], cfg)
    assert len(got) == len(ref)
    for inst, (kk, n, q, score) in zip(got, ref, strict=True):
        assert inst.class_index == cls[kk]
        np.testing.assert_array_equal(inst.mask, masks[n])
        assert inst.quality == pytest.approx(q, abs=1e-12)
        assert inst.score == pytest.approx(score, abs=1e-12)


def test_minmax_of_no_maps() -> None:
    """K = 0 (an image without peaks) gives an empty stack, not an error."""
    for shape in ((0, 6, 7), (3, 0, 5)):
        out = minmax(np.zeros(shape, np.float32))
        assert out.shape == shape and out.dtype == np.float32
