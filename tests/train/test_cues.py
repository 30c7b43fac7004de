"""Rough cues (stage 2's stand-in for a pass-(t-1) ICN output) and how training uses them."""

from __future__ import annotations

import numpy as np
import pytest

from icnseg.train.cues import rough_cue, with_rough_cues


def _disk(cy: float, cx: float, r: float, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_a_rough_cue_is_a_soft_approximate_copy_of_its_mask():
    rng = np.random.default_rng(0)
    ious, exact = [], 0
    for _ in range(100):
        mask = _disk(*rng.uniform(16, 48, 2), rng.uniform(5, 12))
        cue = rough_cue(mask, rng)
        assert cue.shape == mask.shape and cue.dtype == np.float32
        assert cue.min() >= 0 and cue.max() == pytest.approx(1.0)
        # it overlaps the instance, brightest on it, but is not the mask itself
        assert cue[mask].mean() > cue[~mask].mean()
        ious.append(_iou(cue >= 0.5, mask))
        exact += bool(np.array_equal(cue >= 0.5, mask))
    assert 0.35 < np.mean(ious) < 0.9 and exact < 10


def test_a_thin_mask_is_never_eroded_to_an_empty_cue():
    rng = np.random.default_rng(1)
    mask = np.zeros((32, 32), bool)
    mask[16, 4:28] = True  # one pixel thick
    assert all(rough_cue(mask, rng).max() > 0 for _ in range(50))


def test_rough_cues_replace_the_drawn_share_and_nothing_else():
    prms = np.random.default_rng(2).random((12, 32, 32)).astype(np.float32)
    masks = np.stack([_disk(16, 16, 4 + i % 5, 32) for i in range(12)])
    out = with_rough_cues(prms, masks, np.random.default_rng(3), share=0.5)
    rng = np.random.default_rng(3)  # replay the draws independently
    chosen = np.flatnonzero(rng.random(12) < 0.5)
    assert 0 < len(chosen) < 12
    for i in range(12):
        want = rough_cue(masks[i], rng) if i in chosen else prms[i]
        np.testing.assert_array_equal(out[i], want)
    assert out is not prms and np.array_equal(prms, np.random.default_rng(2).random(
        (12, 32, 32)).astype(np.float32))  # the caller's array is untouched
    assert with_rough_cues(prms, masks, np.random.default_rng(3), share=0.0) is prms
