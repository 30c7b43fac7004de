"""checkpoint -> export directory: files, hashes, metadata, op set, parity, atomicity, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from icnseg.artifacts.manifest_schema import DIGEST_KEY
from icnseg.errors import CheckpointError, ExportError, OutputError
from icnseg.export.exporter import checkpoint_to_onnx
from icnseg.export.opset import TRT_ALLOWED_OPS
from icnseg.export.parity import check_export, format_report

ort = pytest.importorskip("onnxruntime")
ASSETS = Path(__file__).resolve().parents[2] / "icnseg" / "assets"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_hashes_and_metadata(peaky_export, peaky_checkpoint):
    names = sorted(p.name for p in peaky_export.iterdir())
    assert names == ["icn.onnx", "manifest.json", "prm.onnx"]
    man = json.loads((peaky_export / "manifest.json").read_text())
    for role in ("prm", "icn"):
        entry = man["files"][role]
        assert entry["sha256"] == _sha(peaky_export / entry["path"])
    assert man["source"]["sha256"] == _sha(peaky_checkpoint)
    assert man["k_max"] == 8 and man["rule"] == "prm" and man["input_size"] == [64, 64]
    assert man["segment"]["match"]["alpha"] == 0.95 and man["segment"]["peaks"]["max_peaks"] == 8
    assert man["classes"][0] == "circle" and man["package_version"]
    facts = {k: v for k, v in man.items() if k not in ("files", DIGEST_KEY)}
    body = json.dumps(facts | {"files": man["files"]}, sort_keys=True, separators=(",", ":"))
    assert man[DIGEST_KEY] == hashlib.sha256(body.encode()).hexdigest()  # its own sha256
    for name in ("prm.onnx", "icn.onnx"):
        meta = {p.key: p.value for p in onnx.load(peaky_export / name).metadata_props}
        assert json.loads(meta["icnseg.manifest"]) == facts
        assert json.loads(meta["icnseg.classes"]) == man["classes"]
        assert meta["icnseg.source_sha256"] == man["source"]["sha256"]


def test_ops_in_tensorrt_allow_list(peaky_export):
    for name in ("prm.onnx", "icn.onnx"):
        model = onnx.load(peaky_export / name)
        onnx.checker.check_model(model, full_check=True)
        ops = {n.op_type for n in model.graph.node}
        assert ops <= TRT_ALLOWED_OPS, ops - TRT_ALLOWED_OPS
        assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)


@pytest.mark.parametrize("rule", ["prm", "gradient"])
def test_parity_report(peaky_checkpoint, tmp_path, rule):
    out = checkpoint_to_onnx(peaky_checkpoint, tmp_path / "e", size=(96, 96), peaks=8,
                             rule=rule).out_dir
    report = check_export(peaky_checkpoint, out, n_images=2)
    assert report["ok"], format_report(report)
    for r in report["images"]:
        assert r["peaks"] > 0 and r["peaks_equal"]
        assert r["prm_err"] <= 1e-4 and r["icn_err"] <= 1e-4


def test_icn_unrolled_dynamic_matches_enhance(peaky_checkpoint, tmp_path):
    from icnseg.export.icn_graph import build_icn_onnx
    from icnseg.loader import load
    from icnseg.models.icn import enhance

    icn = load(peaky_checkpoint).icn
    model = build_icn_onnx(icn, (64, 64), dynamic_size=True, unroll=3)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    image, prm = torch.randn(1, 3, 96, 80, generator=g), torch.rand(3, 1, 96, 80, generator=g)
    (got,) = sess.run(["map"], {"image": image.numpy(), "prm": prm.numpy()})
    with torch.no_grad():
        want = enhance(icn, image, prm, iterations=3).numpy()
    assert got.shape == (3, 1, 96, 80)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("variant", ["full", "no_fusion"])
def test_fixed_size_icn_graph_matches_eager_at_any_k(variant):
    """A fixed-size icn.onnx computes the mapping's d5 half at stride 16; K stays dynamic."""
    from icnseg.export.icn_graph import build_icn_onnx
    from icnseg.models.icn import ICN

    torch.manual_seed(5)
    icn = ICN("tiny", variant).eval()
    model = build_icn_onnx(icn, (48, 64))
    resizes = sum(n.op_type == "Resize" for n in model.graph.node)
    assert resizes == {"full": 4, "no_fusion": 0}[variant]  # the CFM's four x2, no x16
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = torch.randn(1, 3, 48, 64)
    for k in (1, 5):
        prm = torch.rand(k, 1, 48, 64)
        (got,) = sess.run(["map"], {"image": image.numpy(), "prm": prm.numpy()})
        with torch.no_grad():
            want = icn(image, prm, factored=False).numpy()  # upsample first: the plain form
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_icn_without_input_prm_has_no_graph():
    from icnseg.errors import ExportError
    from icnseg.export.icn_graph import build_icn_onnx
    from icnseg.models.icn import ICN

    with pytest.raises(ExportError, match="no_prm"):
        build_icn_onnx(ICN("tiny", "no_prm"), (32, 32))


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_unwritable_out_dir(peaky_checkpoint, tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    out = blocker if where == "file" else blocker / "export"
    with pytest.raises(OutputError, match=str(out)):
        checkpoint_to_onnx(peaky_checkpoint, out)
    assert blocker.read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_failed_export_leaves_no_dir(peaky_checkpoint, tmp_path, monkeypatch):
    import icnseg.export.exporter as pipeline

    def boom(*a, **k):
        raise ExportError("simulated failure while writing")

    monkeypatch.setattr(pipeline, "add_metadata", boom)
    with pytest.raises(ExportError, match="simulated"):
        checkpoint_to_onnx(peaky_checkpoint, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_unsupported_layer_names_the_op(peaky_checkpoint, tmp_path):
    from icnseg.loader import load

    model = load(peaky_checkpoint)
    model.classifier.backbone.features[1] = nn.SiLU()
    with pytest.raises(ExportError, match="SiLU"):
        checkpoint_to_onnx(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_another_architecture(peaky_checkpoint, tmp_path):
    from icnseg.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(peaky_checkpoint)
    bad = tmp_path / "claims_vgg16.safetensors"
    save_checkpoint(bad, ckpt.state, {**ckpt.config, "backbone": "vgg16"})
    with pytest.raises(CheckpointError, match="another architecture"):
        checkpoint_to_onnx(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_assets_export_matches_default_checkpoint(tmp_path):
    shipped, ckpt = ASSETS / "export", ASSETS / "default.safetensors"
    if not (shipped / "manifest.json").is_file() or not ckpt.is_file():
        pytest.skip("icnseg/assets/export or default.safetensors not built yet "
                    "(tools/export_default.sh)")
    want = json.loads((shipped / "manifest.json").read_text())
    assert want["source"]["sha256"] == _sha(ckpt), "assets/export is stale: re-run the script"
    got_dir = checkpoint_to_onnx("default", tmp_path / "e", size=tuple(want["input_size"]),
                                 peaks=want["k_max"], rule=want["rule"], opset=want["opset"],
                                 dynamic_size=want["dynamic_size"], unroll=want["unroll"],
                                 dynamic_k=want.get("dynamic_k", False)).out_dir
    got = json.loads((got_dir / "manifest.json").read_text())
    assert {k: v for k, v in got.items() if k not in ("files", DIGEST_KEY)} == \
        {k: v for k, v in want.items() if k not in ("files", DIGEST_KEY)}
    for name in ("prm.onnx", "icn.onnx"):
        a, b = onnx.load(shipped / name), onnx.load(got_dir / name)
        assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
        wa = {t.name: onnx.numpy_helper.to_array(t) for t in a.graph.initializer}
        wb = {t.name: onnx.numpy_helper.to_array(t) for t in b.graph.initializer}
        assert wa.keys() == wb.keys()
        for k in wa:  # folded BN scales may differ in the last bit across CPUs (rsqrt, FMA)
            np.testing.assert_allclose(wa[k], wb[k], rtol=1e-6,
                                       atol=1e-6 * float(np.abs(wa[k]).max()), err_msg=k)


@pytest.mark.parametrize("extra", [{"min_response": 0.05}, {"relative": 0.5},
                                   {"min_response": 0.0, "relative": 0.3}])
def test_peak_options_beyond_eq1_match_find_peaks(peaky_checkpoint, extra):
    from icnseg.export.parity import parity_images
    from icnseg.export.prm_graph import build_prm_onnx
    from icnseg.loader import load
    from icnseg.models.prm import class_scores, find_peaks
    from icnseg.preprocess import prepare_input
    from icnseg.settings import PeakConfig

    m = load(peaky_checkpoint)
    cfg = PeakConfig(score_threshold=0.0, **extra)
    model = build_prm_onnx(m.classifier, cfg, (64, 64), 32, "gradient")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for image in parity_images((64, 64), 2, 0):
        _, x = prepare_input(image, (64, 64), m.mean, m.std)
        peaks, count = sess.run(["peaks", "count"], {"image": x})
        with torch.no_grad():
            crm = m.classifier(torch.from_numpy(x))[0]
        want = find_peaks(crm, class_scores(crm, cfg).numpy() >= 0.0, cfg)
        assert int(count[0]) == len(want)
        np.testing.assert_array_equal(peaks[: len(want), :3], want[:, :3])


def test_dynamic_k_backward_runs_only_the_found_peaks(static_export):
    """--dynamic-k: prm has `count` rows, equal to the static graph's (whose rest are zero)."""
    ort = pytest.importorskip("onnxruntime")
    from icnseg.data.voc import read_image
    from icnseg.preprocess import prepare_input

    manifest = json.loads((ASSETS / "export" / "manifest.json").read_text())
    sessions = [ort.InferenceSession(str(d / "prm.onnx"), providers=["CPUExecutionProvider"])
                for d in (ASSETS / "export", static_export)]
    for path in sorted((ASSETS / "samples").glob("*.jpg")):
        _, x = prepare_input(read_image(path), tuple(manifest["input_size"]), manifest["mean"],
                             manifest["std"])
        (dyn, count), (static, _) = (s.run(["prm", "count"], {"image": x}) for s in sessions)
        n = int(count[0])
        assert n > 0 and dyn.shape == (n, *static.shape[1:]) and static.shape[0] == 32
        np.testing.assert_allclose(dyn, static[:n], rtol=0, atol=1e-6 * np.abs(static).max())
        assert not static[n:].any()
