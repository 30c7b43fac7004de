"""The baseline's one-at-a-time loops give the vectorised pipeline's numbers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from icnseg.benchmarks.baseline import loop_argmax, loop_nms, loop_scores  # noqa: E402
from icnseg.benchmarks.micro import synthetic_matching  # noqa: E402
from icnseg.matching import (  # noqa: E402
    MatchConfig,
    background_template,
    best_proposals,
    contour,
    match_scores,
)
from icnseg.nms import mask_nms  # noqa: E402
from icnseg.proposals.types import Proposals  # noqa: E402


@pytest.mark.parametrize("factored", [False, True])
def test_loop_scores_equal_vectorised(factored: bool) -> None:
    cfg = MatchConfig()
    v, sp, member = synthetic_matching((40, 56), n=60, k=4, seed=3, superpixels=49)
    v[0] = False  # an empty instance: no contour, zero overlap
    props = Proposals.from_membership(sp, member)
    props = props if factored else Proposals(props.masks)
    edge, bg = contour(v, cfg.contour_width), background_template(v, cfg)
    ref = loop_scores(v, edge, bg, props.masks, cfg.alpha, cfg.beta, cfg.gamma)
    np.testing.assert_allclose(match_scores(v, props, cfg), ref, atol=1e-12)


def test_loop_argmax_equals_best_proposals() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 9))
    scores[1] = -np.inf
    scores[2, :] = np.nan
    scores[3, 4] = np.nan
    scores[4, [2, 5]] = 7.0  # a tie: the lower index wins
    for a, b in zip(loop_argmax(scores), best_proposals(scores), strict=True):
        np.testing.assert_array_equal(a, b)


def test_loop_nms_equals_mask_nms() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((8, 12, 12)) < 0.4
    masks = np.concatenate([base, base[:3], np.zeros((2, 12, 12), bool)])  # duplicates, empties
    masks[8] |= rng.random((12, 12)) < 0.05  # a near-duplicate
    scores = rng.random(len(masks)).round(1)  # ties
    classes = rng.integers(0, 2, len(masks))
    for thr in (0.3, 0.5, 0.9):
        np.testing.assert_array_equal(loop_nms(masks, scores, classes, thr),
                                      mask_nms(masks, scores, classes, thr))
