"""The backward speed benchmark: result structure and an agreement check that really fails."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from research import backward_speed as bs  # noqa: E402

SMALL = {"backbone": "tiny", "size": 32, "ks": (2,), "rule": "prm", "iters": 1, "warmup": 0,
         "threads": 1}


@pytest.fixture(scope="module")
def result() -> dict:
    """One small benchmark run (tiny classifier, 32x32, K=2, one timed run)."""
    return bs.run_benchmark(**SMALL)


def test_structure(result: dict, tmp_path) -> None:
    assert result["settings"]["threads"] == 1 and result["machine"]["cores"] >= 1
    (r,) = result["results"]
    assert r["k"] == 2 and r["valid_peaks"] == 2 and r["note"] == ""
    assert set(r["times"]) == {"loop", "loop_1fwd", "torch_batched", "ort"}
    assert all(len(t["runs_ms"]) == 1 and t["median_ms"] > 0 for t in r["times"].values())
    assert set(r["ratios"]) == {"loop/ort", "loop/torch_batched", "loop/loop_1fwd"}
    assert all(e <= bs.REL_TOL for e in r["rel_err_vs_loop"].values()) and r["max_abs_R"] > 0
    js, md = bs.write_results(result, tmp_path)
    assert js.is_file() and "| 2 |" in md.read_text()


def test_disagreement_fails(monkeypatch) -> None:
    real = bs.batched_maps

    def wrong(*args, **kwargs):
        maps = real(*args, **kwargs)
        return maps + 0.01 * maps.abs().max()

    monkeypatch.setattr(bs, "batched_maps", wrong)
    with pytest.raises(bs.BenchmarkError, match="torch_batched"):
        bs.run_benchmark(**SMALL)


def test_peak_mismatch_fails() -> None:
    import numpy as np

    with pytest.raises(bs.BenchmarkError, match="peaks differ"):
        bs.check_peaks(np.array([[0, 1, 2, 0.5]]), np.array([[0, 2, 1, 0.5]]))
