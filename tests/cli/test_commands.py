"""Every CLI subcommand driven through ``main()``: data, export, eval, demo, build-engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from icnseg.cli.main import main
from icnseg.data.voc import VocDataset


def _run(args: list[str], capsys) -> tuple[int, str, list[str]]:
    """(exit code, stdout, error lines) of one CLI call."""
    errors: list[str] = []
    rc = main(args, err=errors.append)
    return rc, capsys.readouterr().out, errors


def test_data_synth_writes_a_readable_voc_dataset(tmp_path, capsys):
    out = tmp_path / "shapes"
    rc, stdout, errors = _run(["data", "synth", "--out", str(out), "--n", "6", "--seed", "3",
                               "--size", "64"], capsys)
    assert rc == 0 and not errors and "wrote 6 images" in stdout
    ds = VocDataset(out, "train")
    sample = ds[0]
    assert sample.image.shape == (64, 64, 3) and sample.labels.sum() >= 1
    rc, _, errors = _run(["data", "synth", "--out", str(out), "--n", "2"], capsys)
    assert rc == 1 and errors == [f"icnseg: error: {out}: directory is not empty "
                                  "(pass --force to replace its contents)"]


def test_demo_writes_json_and_overlays(tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    rc, stdout, errors = _run(["demo", "--backend", "onnxruntime"], capsys)
    assert rc == 0, errors
    out = tmp_path / "icnseg-demo"
    records = sorted(p for p in out.glob("*.json") if p.name != "run.json")
    assert len(records) == 3 and len(sorted(out.glob("*.png"))) == 3
    assert "overlays (PNG) and instances (JSON) are in icnseg-demo/" in stdout
    rec = json.loads(records[0].read_text())
    assert "config" not in rec and rec["instances"]
    assert json.loads((out / "run.json").read_text())["backend"] == "onnxruntime"


def test_run_export_dir_without_backend_flag_picks_onnxruntime(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from icnseg.loader import ASSETS

    sample = sorted((ASSETS / "samples").glob("*.jpg"))[0]
    out = tmp_path / "o"
    errors: list[str] = []
    rc = main(["run", str(ASSETS / "export"), str(sample), "--out", str(out)],
              err=errors.append)
    captured = capsys.readouterr()
    assert rc == 0, errors
    assert "backend: onnxruntime (an export directory)" in captured.err
    assert json.loads((out / "run.json").read_text())["backend"] == "onnxruntime"


def test_export_then_eval_round_trip(tiny_checkpoint, synth_dir, tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    export = tmp_path / "export"
    rc, stdout, errors = _run(["export", str(tiny_checkpoint), "--out", str(export),
                               "--peaks", "4"], capsys)
    assert rc == 0, errors
    assert (export / "prm.onnx").is_file() and (export / "manifest.json").is_file()
    assert "ok" in stdout.lower()
    pred = tmp_path / "pred"
    rc, _, errors = _run(["run", str(export), str(synth_dir / "JPEGImages"), "--out",
                          str(pred), "--iterations", "1"], capsys)
    assert rc == 0, errors
    rc, stdout, errors = _run(["eval", str(pred), "--gt", str(synth_dir)], capsys)
    assert rc == 0, errors
    metrics = json.loads((pred / "metrics.json").read_text())
    assert "mAP^r@0.5" in stdout and "ABO" in stdout
    assert set(metrics["mAP_r"]) == {"0.25", "0.5", "0.75"}
    assert all(0.0 <= v <= 1.0 for v in metrics["mAP_r"].values())
    rc, _, errors = _run(["export", str(tiny_checkpoint), "--out", str(export)], capsys)
    assert rc == 1 and "not empty" in errors[0]


def test_build_engine_without_tensorrt_is_one_line(tmp_path, capsys, monkeypatch):
    import builtins

    from icnseg.loader import ASSETS

    real_import = builtins.__import__

    def no_tensorrt(name, *args, **kwargs):
        if name.split(".")[0] in ("tensorrt", "tensorrt_rtx"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    rc, _, errors = _run(["build-engine", str(ASSETS / "export")], capsys)
    assert rc == 1 and len(errors) == 1
    assert errors[0].startswith("icnseg: error: ") and "\n" not in errors[0]


def test_prm_panel_normalises_each_instance(tmp_path):
    """Two PRMs 1000x apart in scale both reach full heat in the panel (per-instance
    normalisation, DESIGN/interfaces), checked against a by-hand max of normalised maps."""
    from icnseg.output.overlay import render_overlay

    image = np.full((20, 40, 3), 100, np.uint8)
    prm = np.zeros((2, 20, 40), np.float32)
    prm[0, 10, 5] = 1000.0
    prm[1, 10, 30] = 1.0
    panel = render_overlay(image, [], prm=prm)[:, 40:]
    by_hand = np.maximum(prm[0] / 1000.0, prm[1] / 1.0)
    hot = np.argwhere(by_hand == 1.0)
    assert len(hot) == 2
    for y, x in hot:  # both peaks equally hot (red end of the JET map)
        assert tuple(panel[y, x]) == tuple(panel[hot[0][0], hot[0][1]])
    assert panel[0, 0, 0] < panel[10, 5, 0] and panel[10, 30, 0] == panel[10, 5, 0]


def test_device_means_the_device_and_provider_is_its_own_flag(tmp_path, capsys):
    """--device cpu|cuda; ONNX Runtime's TensorRT provider is --provider tensorrt."""
    from icnseg.errors import ConfigError
    from icnseg.loader import device_for

    assert device_for("onnxruntime", "cuda", "tensorrt") == "tensorrt"
    assert device_for("onnxruntime", None, "cuda") == "cuda"
    assert device_for("tensorrt", None) == "cuda"
    with pytest.raises(ConfigError, match="--provider tensorrt runs on the GPU"):
        device_for("onnxruntime", "cpu", "tensorrt")
    with pytest.raises(ConfigError, match="only the onnxruntime backend"):
        device_for("torch", None, "cuda")
    with pytest.raises(SystemExit):  # argparse: not a --device choice any more
        main(["run", "default", "x.jpg", "--out", str(tmp_path / "o"), "--device", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_summary_gives_images_per_second_and_the_bar_knows_its_total(tmp_path):
    from pathlib import Path

    from icnseg.cli.run import RunSummary, _known_total
    from icnseg.cli.sources import make_sources

    s = RunSummary(written=["a", "b", "c", "d"], instances=5, seconds=2.0)
    assert s.line("out") == ("4 image(s) segmented, 5 instance(s), 0 failed, 2.0s "
                             "(2.00 images/s) -> out")
    images = [Path("a.jpg"), Path("b.png")]
    assert _known_total(make_sources(images)) == 2
    assert _known_total(make_sources([*images, Path("clip.mp4")], max_frames=7)) == 9
    assert _known_total(make_sources([Path("clip.mp4")])) is None  # length unknown up front
