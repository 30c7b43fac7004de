"""Typed graphs (FP16 islands, INT8 Q/DQ) against ONNX Runtime's FP32 reference, the bad
inputs of ``icnseg export --precision`` and the runtime on a quantised export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from icnseg.artifacts.manifest import read_manifest
from icnseg.artifacts.manifest_schema import DIGEST_KEY, manifest_digest
from icnseg.compare import TOLERANCES, instance_agreement
from icnseg.errors import ConfigError, ExportError, IcnsegError, InputError
from icnseg.export.ort_cpu import cpu_session

ort = pytest.importorskip("onnxruntime")
ASSETS = Path(__file__).resolve().parents[2] / "icnseg" / "assets"
EXPORT = ASSETS / "export"


@pytest.fixture(scope="module")
def calib():
    """The sample images through the runtime's preprocessing and the FP32 prm.onnx."""
    from icnseg.export.calibrator import load_calibration

    return load_calibration(ASSETS / "samples", EXPORT / "prm.onnx", read_manifest(EXPORT), True)


def _types(model) -> dict[str, int]:
    """elem_type of every tensor (inferred)."""
    g = onnx.shape_inference.infer_shapes(model).graph
    out = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    out.update({i.name: i.data_type for i in g.initializer})
    return out


@pytest.mark.parametrize("role", ["prm", "icn"])
def test_fp16_island_borders_and_numbers(calib, tmp_path, role):
    from icnseg.export.fp16 import convert_fp16, fp16_candidates

    model = onnx.load(str(EXPORT / f"{role}.onnx"))
    island = set(fp16_candidates(model, role))
    allowed = {"prm": {"Conv", "Mul", "Add", "Relu", "MaxPool"},
               "icn": {"Conv", "Relu", "MaxPool", "Concat", "Resize", "Sigmoid", "Add", "Mul"}}
    assert island and all(n.op_type in allowed[role] for n in model.graph.node
                          if n.name in island)
    typed = convert_fp16(model, sorted(island))
    types = _types(typed)
    for node in typed.graph.node:  # outside the island every float tensor stays FP32
        if node.op_type == "Cast" or node.name in island:
            continue
        assert not any(types.get(t) == TensorProto.FLOAT16 for t in [*node.input, *node.output]
                       if t), node.name
    assert all(types[o.name] != TensorProto.FLOAT16 for o in typed.graph.output)
    assert any(types.get(t) == TensorProto.FLOAT16 for n in typed.graph.node
               if n.name in island for t in n.input)
    path = tmp_path / f"{role}16.onnx"
    onnx.save(typed, str(path))
    ref, got = cpu_session(EXPORT / f"{role}.onnx", "test"), cpu_session(path, "test")
    if role == "icn":
        for feed in calib.icn_feeds:
            (want,), (have,) = ref.run(["map"], feed), got.run(["map"], feed)
            assert np.abs(have - want).max() <= 0.05
        return
    for feed in calib.prm_feeds:
        want = ref.run(["crm", "count"], feed)
        have = got.run(["crm", "count"], feed)
        # crm comes from FP16 convs: within FP16 rounding of the FP32 maps
        assert np.abs(have[0] - want[0]).max() <= 1e-2 * np.abs(want[0]).max()


def test_fp16_range_rule_keeps_large_tensors_fp32(tmp_path):
    from icnseg.export.fp16 import FP16_SAFE_MAX, choose_fp16, tensor_ranges

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("crm", TensorProto.FLOAT, [1, 4])
    big = numpy_helper.from_array(np.full((1, 4), 1e5, np.float32), "big")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="n/relu"),
             helper.make_node("Mul", ["r", "big"], ["m"], name="n/scale"),
             helper.make_node("Relu", ["m"], ["crm"], name="n/out")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [big]),
                              opset_imports=[helper.make_opsetid("", 17)])
    feeds = [{"x": np.array([[0.5, -1.0, 2.0, 0.25]], np.float32)}]
    ranges = tensor_ranges(model, feeds)
    assert ranges["r"] == pytest.approx(2.0) and ranges["m"] == pytest.approx(2e5)
    assert ranges["m"] > FP16_SAFE_MAX
    assert choose_fp16(model, "prm", ranges) == ["n/relu"]


@pytest.mark.parametrize(("activations", "dtype"), [("symmetric", TensorProto.INT8),
                                                    ("asymmetric", TensorProto.UINT8)])
def test_int8_qdq_form_and_maps(calib, tmp_path, activations, dtype):
    from icnseg.export.int8 import quantize_int8

    dst = tmp_path / "icn8.onnx"
    quantize_int8(EXPORT / "icn.onnx", dst, calib.icn_feeds, "minmax", activations)
    model = onnx.load(str(dst))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weights = {i.name for i in onnx.load(str(EXPORT / "icn.onnx")).graph.initializer}
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert qs
    for q in qs:  # activations: one scale per tensor
        zp = inits[q.input[2]]
        assert zp.dtype == (np.int8 if dtype == TensorProto.INT8 else np.uint8)
        if activations == "symmetric":
            assert not zp.any()
    conv_w = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
              and inits.get(n.input[0]) is not None and inits[n.input[0]].ndim == 4]
    assert conv_w
    for dq in conv_w:  # weights: symmetric INT8, one scale per output channel
        w, scale, zp = (inits[t] for t in dq.input[:3])
        assert w.dtype == np.int8 and scale.shape == (w.shape[0],) and not zp.any()
    assert not weights & {n.input[0] for n in conv_w}  # FP32 weights replaced
    ref, got = cpu_session(EXPORT / "icn.onnx", "test"), cpu_session(dst, "test")
    for feed in calib.icn_feeds:
        (want,), (have,) = ref.run(["map"], feed), got.run(["map"], feed)
        assert ((want >= 0.5) == (have >= 0.5)).mean() >= 0.99


# ---- bad inputs: one line, naming the file, nothing written --------------------------------

def _export(out: Path, **kw):
    from icnseg.export.exporter import checkpoint_to_onnx

    return checkpoint_to_onnx("default", out, dynamic_k=True, **kw)


def _one_line(exc: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and isinstance(exc.value, IcnsegError)
    for part in parts:
        assert part in msg, msg


def test_int8_needs_calib(tmp_path):
    with pytest.raises(ConfigError) as info:
        _export(tmp_path / "out", precision="int8")
    _one_line(info, "--precision int8", "--calib")
    with pytest.raises(ConfigError) as info:
        _export(tmp_path / "out", precision="fp32", calib=ASSETS / "samples")
    _one_line(info, "--calib")
    with pytest.raises(ConfigError) as info:
        _export(tmp_path / "out", precision="int8", calib=ASSETS / "samples", calib_method="kl")
    _one_line(info, "--calib-method", "kl")
    assert not (tmp_path / "out").exists()


def test_bad_calibration_folders(tmp_path):
    from PIL import Image

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images")
    with pytest.raises(InputError) as info:
        _export(tmp_path / "out", precision="int8", calib=empty)
    _one_line(info, str(empty), "no images")
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(ASSETS / "samples" / "000000.jpg", bad / "a.jpg")
    (bad / "b.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(InputError) as info:
        _export(tmp_path / "out", precision="int8", calib=bad)
    _one_line(info, str(bad / "b.jpg"), "unreadable")
    gray = tmp_path / "gray"
    gray.mkdir()
    for i in range(2):
        Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(gray / f"g{i}.png")
    with pytest.raises(InputError) as info:
        _export(tmp_path / "out", precision="int8", calib=gray)
    _one_line(info, str(gray), "no calibration image yields a peak")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp left


# ---- a quantised export on the runtime (made from the shipped graphs: fast) ----------------

@pytest.fixture(scope="module")
def int8_export(tmp_path_factory, calib):
    """The shipped export with an INT8 icn.onnx and its manifest (as the exporter writes)."""
    from icnseg.export.exporter import write_export
    from icnseg.export.int8 import quantize_int8

    out = tmp_path_factory.mktemp("int8") / "export"
    out.mkdir()
    quantize_int8(EXPORT / "icn.onnx", out.parent / "icn8.onnx", calib.icn_feeds)
    facts = {k: v for k, v in read_manifest(EXPORT).items() if k != "files"}
    facts.update(precision="int8", calibration=calib.record("minmax"),
                 quantization={"activations": "symmetric"})
    graphs = {"prm": onnx.load(str(EXPORT / "prm.onnx")),
              "icn": onnx.load(str(out.parent / "icn8.onnx"))}
    write_export(out, graphs, facts, {"icn": {"precision": "int8"}})
    return out


def test_runtime_reports_and_runs_the_exports_precision(int8_export, calib):
    import icnseg
    from icnseg.data.voc import read_image
    from icnseg.runtime.exported_model import ExportedModel

    m = read_manifest(int8_export)
    assert m["files"]["icn"]["precision"] == "int8" and m["files"]["prm"]["precision"] == "fp32"
    assert m["calibration"]["sha256"] == calib.digest and len(calib.digest) == 64
    image = read_image(ASSETS / "samples" / "000000.jpg")
    with ExportedModel(int8_export) as q, ExportedModel(EXPORT) as ref:
        assert (q.precision, ref.precision) == ("int8", "fp32")
        got, want = icnseg.segment(q, image), icnseg.segment(ref, image)
    tol = TOLERANCES["int8"]  # int8 agrees with fp32 instance by instance up to its tolerance
    matched, _ = instance_agreement(want, got, tol)
    assert got and matched >= tol.agree * len(want) - 1e-9, (matched, len(want))
    with pytest.raises(ConfigError) as info:
        ExportedModel(int8_export, precision="fp16")
    _one_line(info, str(int8_export), "int8 export")


def test_asymmetric_int8_is_refused_by_build_engine(int8_export, tmp_path):
    from icnseg.artifacts.engine_cache import TrtEnv
    from icnseg.export.engine import build_engines

    export = Path(shutil.copytree(int8_export, tmp_path / "e"))
    m = json.loads((export / "manifest.json").read_text())
    m["quantization"]["activations"] = "asymmetric"
    m[DIGEST_KEY] = manifest_digest(m)
    (export / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError) as info:
        build_engines(export, env=TrtEnv("tensorrt", "11.4.0", "GPU", "8.9"))
    _one_line(info, "manifest.json", "--int8-activations symmetric")


@pytest.mark.slow
def test_int8_export_end_to_end_and_the_accuracy_bound(tmp_path, monkeypatch):
    from icnseg import compare
    from icnseg.export.calibrator import images_digest

    result = _export(tmp_path / "int8", precision="int8", calib=ASSETS / "samples")
    m = result.manifest
    assert m["precision"] == "int8" and m["files"]["icn"]["precision"] == "int8"
    assert m["calibration"]["sha256"] == images_digest(sorted((ASSETS / "samples").iterdir()))
    acc = m["accuracy"]
    assert acc["images"] == 3 and acc["peaks_identical"] == 3
    assert acc["agreement"] >= compare.TOLERANCES["int8"].agree
    strict = compare.Tolerance(prm=1e-3, maps=0.0, score=0.0, mask_iou=1.0, agree=1.0)
    monkeypatch.setitem(compare.TOLERANCES, "int8", strict)
    with pytest.raises(ExportError) as info:
        _export(tmp_path / "strict", precision="int8", calib=ASSETS / "samples")
    _one_line(info, str(tmp_path / "strict" / "icn.onnx"), "accuracy bound")
    assert not (tmp_path / "strict").exists()
