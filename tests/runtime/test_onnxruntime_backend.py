"""The ONNX Runtime backend against the torch pipeline, hash checks, and a torch-free run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from icnseg.cli.main import main
from icnseg.errors import ConfigError, InputError
from icnseg.rle import rle_to_mask

pytest.importorskip("onnxruntime")


def _images(synth_dir: Path, n: int = 2) -> list[str]:
    return [str(p) for p in sorted((synth_dir / "JPEGImages").glob("*.jpg"))[:n]]


def _instances(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))
            if p.name != "run.json"}


def test_onnxruntime_matches_torch(peaky_checkpoint, peaky_export, synth_dir, tmp_path):
    images = _images(synth_dir)
    assert main(["run", str(peaky_checkpoint), *images, "--out", str(tmp_path / "t"),
                 "--backend", "torch"]) == 0
    assert main(["run", str(peaky_export), *images, "--out", str(tmp_path / "o"),
                 "--backend", "onnxruntime"]) == 0
    want, got = _instances(tmp_path / "t"), _instances(tmp_path / "o")
    assert json.loads((tmp_path / "o" / "run.json").read_text())["backend"] == "onnxruntime"
    assert json.loads((tmp_path / "t" / "run.json").read_text())["backend"] == "torch"
    assert want.keys() == got.keys() and len(want) == 2
    total = 0
    for stem in want:
        a, b = want[stem]["instances"], got[stem]["instances"]
        assert len(a) == len(b)
        total += len(a)
        assert [i["class"] for i in a] == [i["class"] for i in b]
        for ia, ib in zip(a, b, strict=True):
            ma, mb = rle_to_mask(ia["mask"]), rle_to_mask(ib["mask"])
            iou = (ma & mb).sum() / max((ma | mb).sum(), 1)
            assert iou >= 0.99
            assert ia["score"] == pytest.approx(ib["score"], rel=1e-3, abs=1e-5)
    assert total > 0, "the comparison needs instances"


def test_tampered_onnx_file_is_refused(peaky_export, tmp_path):
    from icnseg.runtime import ExportedModel

    copy = Path(shutil.copytree(peaky_export, tmp_path / "e"))
    data = bytearray((copy / "icn.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "icn.onnx").write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"icn\.onnx: sha256 .* does not match"):
        ExportedModel(copy)


def test_checkpoint_with_onnxruntime_backend_says_export_first(peaky_checkpoint, synth_dir,
                                                               tmp_path, capsys):
    rc = main(["run", str(peaky_checkpoint), *_images(synth_dir, 1), "--out",
               str(tmp_path / "o"), "--backend", "onnxruntime"])
    assert rc == 1
    assert "icnseg export" in capsys.readouterr().err


def test_graph_baked_settings_cannot_change(peaky_export):
    from icnseg.runtime import ExportedModel

    with ExportedModel(peaky_export) as model:
        with pytest.raises(ConfigError, match="rule"):
            model.segment_config(rule="gradient")
        assert model.segment_config(threshold=0.6).threshold == 0.6


def test_notorch_runtime_segments(peaky_export, synth_dir, tmp_path):
    """The runtime and `icnseg run --backend onnxruntime` work with torch unimportable."""
    image = _images(synth_dir, 1)[0]
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        from icnseg.data.voc import read_image
        from icnseg.runtime import ExportedModel
        import icnseg
        model = ExportedModel({str(peaky_export)!r})
        found = icnseg.segment(model, read_image({image!r}))
        from icnseg.cli.main import main
        rc = main(["run", {str(peaky_export)!r}, {image!r}, "--out", {str(tmp_path / "o")!r},
                   "--backend", "onnxruntime"])
        assert sys.modules["torch"] is None
        print("instances", len(found), "rc", rc)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    n = int(res.stdout.split("instances")[1].split()[0])
    assert n > 0 and res.stdout.strip().endswith("rc 0")
    [record] = [p for p in (tmp_path / "o").glob("*.json") if p.name != "run.json"]
    assert len(json.loads(record.read_text())["instances"]) == n


def test_threads_reach_every_session(peaky_export):
    from icnseg.loader import load

    with load(peaky_export, backend="onnxruntime", threads=1) as model:
        for backend in model.graph_backends():
            opts = backend.session.get_session_options()
            assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    with load(peaky_export, backend="onnxruntime") as model:  # ORT's default: left alone
        assert model.prm.session.get_session_options().intra_op_num_threads == 0


def test_bad_threads_are_refused(peaky_export, peaky_checkpoint):
    from icnseg.loader import load

    with pytest.raises(ConfigError, match="threads must be >= 1"):
        load(peaky_export, backend="onnxruntime", threads=0)
    with pytest.raises(ConfigError, match="per process"):
        load(peaky_checkpoint, backend="torch", threads=1)
