"""run.json: the run's settings written once per output folder (atomically, before the first
record) with the model's sha256; records carry none; --resume never mixes settings."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from icnseg.loader import ASSETS, DEFAULT_CHECKPOINT
from icnseg.outdir import MARKER, read_log
from icnseg.settings import SegmentConfig

SAMPLES = sorted((ASSETS / "samples").glob("*.jpg"))
ORT = ["--backend", "onnxruntime"]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_json_once_before_the_records_with_the_export_sha256(tmp_path, run_cli, monkeypatch):
    pytest.importorskip("onnxruntime")
    import icnseg.output.record as record
    import icnseg.output.run_file as run_file

    export = tmp_path / "exp"
    shutil.copytree(ASSETS / "export", export)
    writes, seen_before_first_record = [], []
    real_text, real_result = run_file.write_text, record.write_result

    def spy_text(path, text):
        writes.append(path)
        return real_text(path, text)

    def spy_result(out, *a, **kw):
        seen_before_first_record.append((out / "run.json").is_file())
        return real_result(out, *a, **kw)

    monkeypatch.setattr(run_file, "write_text", spy_text)  # icnseg.fileio's atomic writer
    monkeypatch.setattr(record, "write_result", spy_result)
    out = tmp_path / "out"
    rc, _, errors = run_cli(["run", str(export), *map(str, SAMPLES), "--out", str(out),
                             "--threshold", "0.6"])
    assert rc == 0, errors
    assert writes == [out / "run.json"]  # once for the folder, not per image
    assert seen_before_first_record == [True] * len(SAMPLES)
    run = json.loads((out / "run.json").read_text())
    assert "run.json" in read_log(out)  # icnseg's own file in the folder's log
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != MARKER]

    assert (run["format"], run["version"], run["backend"], run["device"],
            run["proposals"]) == ("icnseg-run", 1, "onnxruntime", "cpu", "builtin")
    assert run["model"]["source"] == str(export) and run["model"]["kind"] == "export"
    assert run["model"]["files"] == {"icn.onnx": _sha256(export / "icn.onnx"),
                                     "prm.onnx": _sha256(export / "prm.onnx")}
    manifest = json.loads((export / "manifest.json").read_text())
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert run["model"]["sha256"] == hashlib.sha256(canonical).hexdigest()
    assert run["segment"]["threshold"] == 0.6
    assert set(run["segment"]) == set(SegmentConfig().to_dict())  # the full settings
    for sample in SAMPLES:
        rec = json.loads((out / f"{sample.stem}.json").read_text())
        assert set(rec) == {"image", "height", "width", "instances"}  # no config per record
    from icnseg.classes import SYNTH_CLASSES
    from icnseg.eval_files import load_predictions

    assert len(load_predictions(out, SYNTH_CLASSES)) == len(SAMPLES)  # eval skips run.json


def test_checkpoint_sha256_is_the_file_s_own():
    from icnseg.checkpoint import load_checkpoint
    from icnseg.output.run_file import model_path, recorded_settings, run_record

    run = run_record("default", "torch", "cpu", "builtin", SegmentConfig())
    assert run["model"]["kind"] == "checkpoint"
    assert run["model"]["sha256"] == _sha256(DEFAULT_CHECKPOINT)
    assert run["model"]["files"] == {DEFAULT_CHECKPOINT.name: _sha256(DEFAULT_CHECKPOINT)}
    pytest.importorskip("torch")
    # what the Ray driver reads (the header only) is what loading the checkpoint gives
    assert recorded_settings(model_path("default", "torch")) == \
        load_checkpoint(DEFAULT_CHECKPOINT).config


def test_resume_refuses_other_settings_and_config_run_json_repeats_them(tmp_path, run_cli):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "out"
    first = [str(SAMPLES[0]), "--out", str(out), *ORT, "--threshold", "0.6",
             "--iterations", "0"]
    assert run_cli(["run", "default", *first])[0] == 0
    saved = (out / "run.json").read_bytes()
    record = (out / f"{SAMPLES[0].stem}.json").read_bytes()

    rc, _, errors = run_cli(["run", "default", *map(str, SAMPLES), "--out", str(out), *ORT,
                             "--resume"])
    assert rc == 1 and len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith(f"icnseg: error: {out / 'run.json'}: the earlier run used "
                                "other settings (segment.iterations 0, now 1)")
    assert (out / "run.json").read_bytes() == saved  # nothing of the earlier run touched
    assert (out / f"{SAMPLES[0].stem}.json").read_bytes() == record
    assert not (out / f"{SAMPLES[1].stem}.json").exists()

    # the same settings, from the folder's own run.json: resumed, the kept record kept
    rc, _, errors = run_cli(["run", "default", *map(str, SAMPLES), "--out", str(out), *ORT,
                             "--resume", "--config", str(out / "run.json")])
    assert rc == 0, errors
    assert (out / "run.json").read_bytes() == saved
    assert (out / f"{SAMPLES[0].stem}.json").read_bytes() == record
    assert all((out / f"{s.stem}.json").is_file() for s in SAMPLES)

    # without --resume a rerun replaces the earlier outputs: new settings, nothing mixed
    assert run_cli(["run", "default", str(SAMPLES[1]), "--out", str(out), *ORT])[0] == 0
    assert json.loads((out / "run.json").read_text())["segment"]["iterations"] == 1
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(["run", SAMPLES[1].stem])


def test_an_image_named_run_never_overwrites_run_json(tmp_path, run_cli):
    pytest.importorskip("onnxruntime")
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(SAMPLES[0], d / "run.jpg")
    out = tmp_path / "out"
    assert run_cli(["run", "default", str(d / "run.jpg"), "--out", str(out), *ORT])[0] == 0
    assert json.loads((out / "run.json").read_text())["format"] == "icnseg-run"
    assert json.loads((out / "run-1.json").read_text())["image"] == "run.jpg"
