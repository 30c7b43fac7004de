"""Matching: Eq. 5 scores (3 modes) vs per-proposal loops, pseudo labels, IoU and NMS."""

import numpy as np
import pytest
from scipy import ndimage

from icnseg.errors import ConfigError, InputError
from icnseg.matching import (
    MatchConfig,
    background_template,
    best_proposals,
    contour,
    mask_iou,
    mask_nms,
    match_scores,
    pseudo_label,
)
from icnseg.proposals.types import Proposals

H, W = 24, 30


def square(r):
    return np.ones((2 * r + 1, 2 * r + 1), bool)


def ref_contour(m, r):
    """Morphological gradient with scipy; outside pixels ignored (cf. OpenCV's border)."""
    dil = ndimage.binary_dilation(m, square(r), border_value=0)
    ero = ndimage.binary_erosion(m, square(r), border_value=1)
    return dil & ~ero


def make_problem(seed=0, k=3):
    """Proposals that are unions of a block superpixel map, plus instance maps V."""
    rng = np.random.default_rng(seed)
    sp = (np.arange(H)[:, None] // 6) * 5 + np.arange(W)[None, :] // 6  # 4 x 5 blocks
    sp = np.where(rng.random((H, W)) < 0.05, rng.integers(0, 20, (H, W)), sp).astype(np.int32)
    member = rng.random((40, 20)) < 0.3
    member[0] = False  # an empty proposal
    member[1] = True  # the whole image
    props = Proposals.from_membership(sp, member)
    v = np.zeros((k, H, W), bool)
    v[0, 2:12, 3:15] = True
    v[1, 10:22, 12:28] = True
    if k > 2:
        v[2:] = rng.random((k - 2, H, W)) < 0.2
    return props, v


def ref_scores(v, masks, cfg, prm=None, bg=None):
    vbin = v if v.dtype == bool else v > cfg.threshold
    if bg is None:
        bg = np.stack([~ndimage.binary_dilation(x, square(cfg.dilate_radius)) for x in vbin])
    out = np.zeros((len(v), len(masks)))
    for k in range(len(v)):
        e = ref_contour(vbin[k], cfg.contour_width)
        for n, p in enumerate(masks):
            vals = v[k].astype(float)
            area = p.sum()
            if cfg.scoring == "prm":
                r = prm[k] / prm[k].sum()
                c = ref_contour(p, 2)
                if area >= 0.85 * p.size or area < 0.00002 * p.size:
                    out[k, n] = -np.inf
                else:
                    out[k, n] = 0.8 * r[p].sum() + r[c].sum() - 1e-5 * bg[k][p].sum()
            elif cfg.scoring == "iou":
                inter = np.logical_and(vbin[k], p).sum()
                union = np.logical_or(vbin[k], p).sum()
                out[k, n] = inter / union if union else 0.0
            elif cfg.scoring == "paper":
                first = vals[p].sum() / area if area else 0.0
                out[k, n] = cfg.alpha * first + cfg.beta * e[p].sum() + cfg.gamma * bg[k][p].sum()
            else:
                t1 = vals[p].sum() / area if area else 0.0
                t2 = e[p].sum() / e.sum() if e.sum() else 0.0
                t3 = bg[k][p].astype(float).sum() / area if area else 0.0
                out[k, n] = cfg.alpha * t1 + cfg.beta * t2 - cfg.gamma * t3
    return out


@pytest.mark.parametrize("scoring", ["icn", "paper", "prm", "iou"])
@pytest.mark.parametrize("soft", [False, True])
def test_scores_match_loop_and_both_paths(scoring, soft):
    props, v = make_problem()
    rng = np.random.default_rng(1)
    cfg = MatchConfig(scoring=scoring)
    if soft:
        v = np.clip(v * 0.7 + rng.random(v.shape) * 0.4, 0, 1)
    prm = rng.random(v.shape) ** 4 if scoring == "prm" else None
    expected = ref_scores(v, props.masks, cfg, prm)
    factorised = match_scores(v, props, cfg, prm=prm)
    dense = match_scores(v, Proposals(props.masks), cfg, prm=prm)
    assert factorised.shape == (len(v), len(props))
    np.testing.assert_allclose(factorised, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dense, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(match_scores(v, props.masks, cfg, prm=prm), expected, rtol=1e-5,
                               atol=1e-7)


def test_prm_size_gate_and_icn_prefers_matching_proposal():
    props, v = make_problem(k=2)
    masks = np.concatenate([props.masks, v])  # the instances themselves as proposals
    masks[0] = False
    masks[0, 0, 0] = True  # one pixel: 0.14 % of this small image
    masks[1] = True  # 100 % of the image: over the 85 % gate
    prm = v.astype(float) + 0.01
    s = match_scores(v, masks, MatchConfig(scoring="prm"), prm=prm)
    assert np.isinf(s[:, 1]).all() and np.isfinite(s[:, 0]).all()
    s = match_scores(v, masks, MatchConfig(scoring="prm", prm_min_area=0.01), prm=prm)
    assert np.isinf(s[:, :2]).all() and np.isfinite(s[:, 2:]).all()
    icn = match_scores(v, masks)
    np.testing.assert_array_equal(icn.argmax(axis=1), [len(props), len(props) + 1])


def test_iou_scoring_prefers_the_object_to_a_fragment_inside_the_map():
    # V covers 3/4 of a 12x12 object: Eq. 5's precision term ranks a 2x2 fragment of V
    # (precision 1) above the object (0.75); the Jaccard index ranks the object first
    v = np.zeros((1, H, W), bool)
    v[0, 4:13, 4:16] = True
    obj = np.zeros((H, W), bool)
    obj[4:16, 4:16] = True
    frag = np.zeros((H, W), bool)
    frag[6:8, 6:8] = True
    masks = np.stack([frag, obj])
    assert match_scores(v, masks).argmax() == 0
    iou = match_scores(v, masks, MatchConfig(scoring="iou"))
    np.testing.assert_allclose(iou[0], [4 / 108, 108 / 144])


def test_explicit_and_crm_background():
    props, v = make_problem(k=2)
    bg = np.random.default_rng(2).random(v.shape) < 0.5
    cfg = MatchConfig()
    np.testing.assert_allclose(match_scores(v, props, cfg, background=bg),
                               ref_scores(v, props.masks, cfg, bg=bg), rtol=1e-5, atol=1e-7)
    crm = np.random.default_rng(3).random((2, H, W)).astype(np.float32) * 5 + 2
    got = background_template(v, MatchConfig(background="crm"), crm=crm)
    scaled = (crm - crm.min(axis=(1, 2), keepdims=True)) / np.ptp(crm, axis=(1, 2), keepdims=True)
    np.testing.assert_array_equal(got, scaled < 0.95 * scaled.mean(axis=(1, 2), keepdims=True))
    small = background_template(v, MatchConfig(background="crm"), crm=crm[:, ::3, ::3])
    assert small.shape == v.shape and small.any() and not small.all()
    with pytest.raises(ConfigError):
        match_scores(v, props, MatchConfig(background="crm"))
    with pytest.raises(ConfigError):
        match_scores(v, props, MatchConfig(scoring="prm"))
    with pytest.raises(InputError):
        match_scores(v[:, :-1], props)


def test_contour_width_and_dilate_background():
    v = np.zeros((1, 9, 9), bool)
    v[0, 2:7, 2:7] = True
    e = contour(v)
    np.testing.assert_array_equal(e[0], ref_contour(v[0], 1))
    assert e[0, 1:8, 1:8].sum() == 7 * 7 - 3 * 3  # 2 px band: one outside, one inside
    full = np.ones((1, 5, 5), bool)
    assert not contour(full).any()  # the image border is not a contour
    bg = background_template(v, MatchConfig(dilate_radius=1))
    np.testing.assert_array_equal(bg[0], ~ndimage.binary_dilation(v[0], square(1)))


def test_pseudo_label_skips_contained():
    masks = np.zeros((5, 4, 8), bool)
    masks[0, :, :4] = True  # A: left half
    masks[1, :2, :2] = True  # B: inside A
    masks[2, :, 6:] = True  # C
    masks[3, :2, 3:5] = True  # D: overlaps A, not contained
    masks[4, :, 4:6] = True  # E: lowest score
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    np.testing.assert_array_equal(pseudo_label(scores, masks, k=3), masks[[0, 2, 3]].any(0))
    np.testing.assert_array_equal(pseudo_label(scores, masks, k=1), masks[0])
    np.testing.assert_array_equal(pseudo_label(scores, masks, k=10), masks.any(0))
    scores[0] = -np.inf
    np.testing.assert_array_equal(pseudo_label(scores, masks, k=1), masks[1])
    assert not pseudo_label(np.zeros(0), np.zeros((0, 4, 8), bool)).any()


def test_best_proposals():
    s = np.array([[0.1, 0.5, 0.5], [-np.inf, -np.inf, -np.inf]])
    idx, q = best_proposals(s)
    np.testing.assert_array_equal(idx, [1, -1])
    np.testing.assert_array_equal(q, [0.5, -np.inf])
    idx, q = best_proposals(np.zeros((2, 0)))
    np.testing.assert_array_equal(idx, [-1, -1])


def test_mask_iou_brute_force():
    rng = np.random.default_rng(4)
    a, b = rng.random((6, 7, 11)) < 0.3, rng.random((5, 7, 11)) < 0.6
    a[0] = False
    b[0] = False
    expected = np.zeros((6, 5))
    for i in range(6):
        for j in range(5):
            union = (a[i] | b[j]).sum()
            expected[i, j] = (a[i] & b[j]).sum() / union if union else 0.0
    np.testing.assert_allclose(mask_iou(a, b), expected)
    assert mask_iou(a, b[:0]).shape == (6, 0)


def brute_nms(masks, scores, classes, thr):
    keep = []
    for i in sorted(range(len(masks)), key=lambda i: (-scores[i], i)):
        ok = True
        for j in keep:
            if classes[i] != classes[j]:
                continue
            union = (masks[i] | masks[j]).sum()
            iou = (masks[i] & masks[j]).sum() / union if union else 0.0
            if iou >= thr or np.array_equal(masks[i], masks[j]):
                ok = False
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_mask_nms_brute_force(seed):
    rng = np.random.default_rng(seed)
    base = rng.random((8, 10, 10)) < 0.5
    masks = base[rng.integers(0, 8, 30)]  # many exact duplicates
    masks[:10] ^= rng.random((10, 10, 10)) < 0.1  # near duplicates
    masks[5] = False
    masks[6] = False  # two empty masks: identical, so one suppresses the other
    scores = rng.integers(0, 4, 30) / 4.0  # many ties
    classes = rng.integers(0, 3, 30)
    for thr in (0.3, 0.5, 0.8):
        np.testing.assert_array_equal(mask_nms(masks, scores, classes, thr),
                                      brute_nms(masks, scores, classes, thr))
    assert len(mask_nms(masks[:0], scores[:0], classes[:0])) == 0
    with pytest.raises(InputError):
        mask_nms(masks, scores[:3], classes)
