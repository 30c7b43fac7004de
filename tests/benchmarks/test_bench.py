"""`icnseg bench`: side-by-side result, speed-ups, and a hard failure on disagreement."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from icnseg.benchmarks import bench  # noqa: E402
from icnseg.benchmarks.agree import BenchmarkError  # noqa: E402
from icnseg.benchmarks.report import render_markdown  # noqa: E402
from icnseg.benchmarks.runners import Runner  # noqa: E402
from icnseg.cli.main import main  # noqa: E402
from icnseg.errors import ConfigError  # noqa: E402

QUICK = {"iters": 2, "warmup": 0, "streams": 0, "cold": False, "micro": False,
         "budget_frames": 0}


@pytest.fixture(scope="module")
def result() -> dict:
    cfg = bench.BenchConfig(backends=("torch", "onnxruntime"), baseline=True, **QUICK)
    return bench.run_bench(cfg, log=lambda m: None)


def test_result_side_by_side(result: dict) -> None:
    assert set(result["backends"]) == {"torch", "onnxruntime", "baseline"}
    for rec in result["backends"].values():
        e2e = rec["e2e_ms"]
        assert e2e["n"] == 2 and 0 < e2e["min"] <= e2e["p50"] <= e2e["max"]
        assert rec["speedup_vs_baseline"] > 0 and rec["throughput_single"] > 0
        # the stages add up to the end-to-end time of the same images
        total = sum(s["mean"] for s in rec["stages_ms"].values())
        assert abs(total - e2e["mean"]) <= 0.05 * e2e["mean"] + 1.0
    assert result["backends"]["baseline"]["speedup_vs_baseline"] == 1.0
    for rec in result["backends"].values():  # e2e pays the built-in proposals of every image
        props = rec["stages_ms"]["proposals"]["mean"]
        assert props > 0
        assert rec["e2e_no_proposals_ms"]["mean"] == pytest.approx(
            rec["e2e_ms"]["mean"] - props, rel=1e-6)
        assert rec["speedup_vs_baseline_no_proposals"] > 0
    assert result["backends"]["onnxruntime"]["derived_stages"] == ["prm_forward", "prm_backward"]
    assert result["agreement"]["reference"] == "torch"
    roof = {p["stage"]: p for p in result["backends"]["onnxruntime"]["roofline"]}
    assert roof["prm"]["flops_per_s"] > 0 and roof["prm"]["compute_fraction"] is None  # CPU
    assert result["machine"]["cores"] >= 1 and "numpy" in result["machine"]["libraries"]
    md = render_markdown(result)
    assert "| e2e p50 (ms) |" in md and "speed-up vs baseline" in md
    assert "| e2e without proposals, mean (ms) |" in md


def test_frame_budget_columns_add_up() -> None:
    import icnseg
    from icnseg.benchmarks.frame_budget import COLUMNS, budget_markdown, frame_budget

    model = icnseg.load("default", backend="onnxruntime")
    cfg = model.segment_config()
    budget = frame_budget(model, cfg, frames=2, sides=(64, 112))
    for side in ("64", "112"):
        row = budget[side]
        assert row["frames"] == 2
        assert all(row[c] >= 0 for c in COLUMNS) and row["proposals"] > 0 and row["prm"] > 0
        assert row["total"] == pytest.approx(sum(row[c] for c in COLUMNS))
    md = "\n".join(budget_markdown(budget))
    assert "| 112x112 |" in md and f"ICN x{cfg.iterations}" in md


def test_disagreement_fails_loudly(monkeypatch, tmp_path, capsys) -> None:
    real = Runner.segment

    def drop_one(self, image, proposals, timer=None):
        instances, stages = real(self, image, proposals, timer)
        return (instances[1:] if self.name == "onnxruntime" else instances), stages

    monkeypatch.setattr(Runner, "segment", drop_one)
    cfg = bench.BenchConfig(backends=("torch", "onnxruntime"), **QUICK)
    with pytest.raises(BenchmarkError, match="onnxruntime vs torch .* instances instead of"):
        bench.run_bench(cfg, log=lambda m: None)
    out = tmp_path / "r.json"
    errors: list[str] = []
    rc = main(["bench", "default", "--iters", "1", "--no-cold", "--streams", "0",
               "--json", str(out)], err=errors.append)
    assert rc == 1 and "disagree" in errors[0] and not out.exists()
    assert "e2e" not in capsys.readouterr().out


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="unknown backend"):
        bench.BenchConfig(backends=("tflite",))
    with pytest.raises(ConfigError, match="--iters"):
        bench.BenchConfig(iters=0)
    with pytest.raises(ConfigError, match="nothing to benchmark"):
        bench.BenchConfig(backends=())


def test_cli_writes_json_and_markdown(tmp_path) -> None:
    out = tmp_path / "bench.json"
    rc = main(["bench", "default", "--backend", "onnxruntime", "--iters", "1", "--warmup", "0",
               "--no-cold", "--streams", "2", "--json", str(out)])
    data = json.loads(out.read_text())
    assert rc == 0 and data["backends"]["onnxruntime"]["throughput_overlapped"] > 0
    assert out.with_suffix(".md").read_text().startswith("# icnseg bench")


def test_statistics_raw_samples_warnings_and_plot(tmp_path) -> None:
    """Mean, std and percentiles from the raw samples (numpy as the reference), warnings for
    few samples and a busy machine, and a PNG plot."""
    from icnseg.benchmarks.timing import summarize, timing_warnings

    secs = [0.010, 0.012, 0.011, 0.030]
    s = summarize(secs)
    ms = np.asarray(secs) * 1e3
    assert s["samples_ms"] == [10.0, 12.0, 11.0, 30.0] and s["n"] == 4
    assert s["std"] == pytest.approx(ms.std(ddof=1)) and s["p99"] == pytest.approx(
        np.percentile(ms, 99))
    assert any("only 4 timed samples" in w for w in timing_warnings(4, [1.0], 2))
    assert timing_warnings(30, [1.0], 2) == []
    assert any("busy" in w for w in timing_warnings(30, [5.0], 2))
    out = tmp_path / "b.json"
    png = tmp_path / "b.png"
    rc = main(["bench", "default", "--backend", "onnxruntime", "--iters", "2", "--warmup", "0",
               "--no-cold", "--streams", "0", "--json", str(out), "--plot", str(png)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert len(data["backends"]["onnxruntime"]["e2e_ms"]["samples_ms"]) == 2
    assert any("only 2 timed samples" in w for w in data["warnings"])
    assert "**Warning:** only 2 timed samples" in out.with_suffix(".md").read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_runs_without_torch(tmp_path) -> None:
    """A runtime-only install (torch not importable) benchmarks ONNX Runtime: nothing on that
    path may import the torch baseline (CI's torch-free venv runs the same command)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        from icnseg.cli.main import main
        rc = main(["bench", "default", "--backend", "onnxruntime", "--iters", "1",
                   "--warmup", "0", "--streams", "0", "--no-cold"])
        assert sys.modules["torch"] is None
        sys.exit(rc)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| e2e p50 (ms) |" in res.stdout
