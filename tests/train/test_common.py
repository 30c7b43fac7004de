"""Training helpers checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from icnseg.train.common import average_precision, classification_map, step_lr


def _ap_by_thresholds(scores, positives):
    """AP as the sum over positives of the best precision at recall >= that positive's recall."""
    order = np.argsort(-scores, kind="stable")
    pos = positives[order]
    precisions = [pos[: i + 1].mean() for i in range(len(pos))]
    recalls = [pos[: i + 1].sum() / pos.sum() for i in range(len(pos))]
    total, prev_r = 0.0, 0.0
    for i in range(len(pos)):
        if pos[i]:
            best = max(p for p, r in zip(precisions, recalls, strict=True) if r >= recalls[i])
            total += (recalls[i] - prev_r) * best
            prev_r = recalls[i]
    return total


def test_average_precision_hand_case():
    # ranks: +, -, +, -  -> precision at the positives 1, 2/3 -> AP = 0.5*1 + 0.5*2/3
    ap = average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0], bool))
    assert ap == pytest.approx(0.5 + 1 / 3)


def test_average_precision_matches_reference_loop():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.random(30)
        p = rng.random(30) < 0.4
        if p.any():
            assert average_precision(s, p) == pytest.approx(_ap_by_thresholds(s, p))


def test_classification_map_skips_classes_without_positives():
    scores = np.array([[0.9, 0.1], [0.2, 0.3]])
    labels = np.array([[1, 0], [0, 0]])
    assert classification_map(scores, labels) == pytest.approx(1.0)


def test_step_lr():
    assert step_lr(1e-4, 9, 10, 0.1) == pytest.approx(1e-4)
    assert step_lr(1e-4, 10, 10, 0.1) == pytest.approx(1e-5)
    assert step_lr(1e-3, 45, 20, 0.5) == pytest.approx(2.5e-4)
