"""Scaling sweeps: growth exponents and one small measured point."""

from __future__ import annotations

import numpy as np
import pytest

from research.scaling import growth_exponents


def test_growth_exponent_of_power_laws() -> None:
    x = [1, 2, 4, 8, 16]
    g = growth_exponents(x, {"lin": [3.0 * v for v in x], "quad": [0.5 * v * v for v in x],
                             "flat": [2.0] * 5})
    assert np.isclose(g["lin"], 1) and np.isclose(g["quad"], 2) and abs(g["flat"]) < 1e-9


def test_measure_point_small() -> None:
    pytest.importorskip("torch")
    from icnseg.loader import load
    from research.scaling import ALL_STAGES, measure_point

    model = load("default")
    ms = measure_point(model, model.segment_config(), k=2, n=20, size=64, t=1, repeat=1)
    assert set(ms) == set(ALL_STAGES) and all(v > 0 for v in ms.values())
