"""Cold start runs in a fresh process and reports its own memory."""

from __future__ import annotations

import pytest

from icnseg.loader import ASSETS

pytest.importorskip("onnxruntime")


def test_cold_start_onnxruntime() -> None:
    from icnseg.benchmarks.cold_start import measure_cold

    image = sorted((ASSETS / "samples").glob("*.jpg"))[0]
    r = measure_cold("default", "onnxruntime", "cpu", str(image))
    assert r["total_s"] >= r["load_s"] + r["first_s"] > 0 and r["steady_ms"] > 0
    # a fresh process: its peak is its own (well under the pytest process's)
    assert 20 < r["peak_rss_mb"] < 2000
