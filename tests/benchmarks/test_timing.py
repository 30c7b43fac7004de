"""Latency statistics and the stage timer."""

from __future__ import annotations

import time

import numpy as np

from icnseg.benchmarks.timing import StageTimer, summarize


def test_summarize_percentiles_by_hand() -> None:
    s = summarize([0.001 * i for i in range(1, 101)])  # 1..100 ms
    # linear interpolation: position p/100 * 99 between sorted values
    assert s["p50"] == 50.5 and abs(s["p90"] - 90.1) < 1e-9 and abs(s["p99"] - 99.01) < 1e-9
    assert s["min"] == 1.0 and s["max"] == 100.0 and abs(s["mean"] - 50.5) < 1e-9
    assert s["n"] == 100 and summarize([]) == {"n": 0, "samples_ms": []}


def test_stage_timer_adds_up_and_syncs() -> None:
    calls = []
    timer = StageTimer(sync=lambda: calls.append(1))
    for _ in range(2):
        with timer("a"):
            time.sleep(0.01)
    timer.add("b", 0.5)
    assert 0.02 <= timer.seconds["a"] < 0.5 and timer.seconds["b"] == 0.5
    assert len(calls) == 4 and np.isclose(timer.total(), timer.seconds["a"] + 0.5)
