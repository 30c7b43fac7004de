"""run_device / IOBinding chaining (on ORT's CPU EP here; the same code binds CUDA on a GPU),
ORT TensorRT-EP options, and the tensorrt backend's CPU-side checks (no TensorRT needed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from icnseg.artifacts.engine_cache import TrtEnv
from icnseg.artifacts.manifest_schema import DIGEST_KEY, manifest_digest
from icnseg.errors import BackendUnavailable, ConfigError, InputError
from icnseg.export.engine import build_engines
from icnseg.runtime.backend import BACKENDS, DeviceArray, load_backend
from icnseg.segmenter import run_stages

ASSETS = Path(__file__).resolve().parents[2] / "icnseg" / "assets"
ENV = TrtEnv("tensorrt", "10.8.0.43", "NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture()
def export(tmp_path, static_export) -> Path:
    """A writable static-K export of the default model (TensorRT needs one)."""
    return Path(shutil.copytree(static_export, tmp_path / "export"))


def _image() -> np.ndarray:
    from icnseg.data.voc import read_image

    return read_image(sorted((ASSETS / "samples").glob("*.jpg"))[0])


def test_device_array_views():
    a = DeviceArray(1000, (32, 96, 96), np.dtype(np.float32))
    v = a.rows(5).reshape(5, 1, 96, 96)
    assert v.ptr == 1000 and v.shape == (5, 1, 96, 96) and v.nbytes == 5 * 96 * 96 * 4
    with pytest.raises(InputError):
        a.rows(33)
    with pytest.raises(InputError):
        a.reshape(7, 7)


def test_ort_run_device_chains_like_run():
    pytest.importorskip("onnxruntime")
    from icnseg.preprocess import prepare_input

    _, x = prepare_input(_image(), (96, 96), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with load_backend("onnxruntime", ASSETS / "export" / "prm.onnx") as prm, \
            load_backend("onnxruntime", ASSETS / "export" / "icn.onnx") as icn:
        host = prm.run({"image": x})
        dev = prm.run_device({"image": x})
        assert set(dev) == set(prm.output_names)
        for name, want in host.items():
            assert dev[name].shape == want.shape and dev[name].dtype == want.dtype
            np.testing.assert_array_equal(prm.to_host(dev[name]), want)
        n = int(host["count"][0])
        assert n > 0
        naive = dev["prm"].rows(n).reshape(n, 1, 96, 96)
        np.testing.assert_array_equal(prm.to_host(naive)[:, 0], host["prm"][:n])
        want = icn.run({"image": x, "prm": host["prm"][:n, None]})["map"]
        got = icn.run_device({"image": x, "prm": naive}, ["map"])
        assert list(got) == ["map"]
        np.testing.assert_allclose(icn.to_host(got["map"]), want, rtol=0, atol=1e-6)
        twice = icn.run_device({"image": x, "prm": got["map"]})["map"]  # feed back in place
        np.testing.assert_allclose(icn.to_host(twice), icn.run({"image": x, "prm": want})["map"],
                                   rtol=0, atol=1e-6)
        with pytest.raises(InputError, match="is on cuda"):
            icn.run_device({"image": x, "prm": DeviceArray(naive.ptr, naive.shape,
                                                           naive.dtype, "cuda")})
        with pytest.raises(InputError, match="run_device"):
            icn.to_host(DeviceArray(0, (1,), np.dtype(np.float32), "cpu"))


def test_exported_model_device_path_equals_host_path():
    pytest.importorskip("onnxruntime")
    from icnseg.runtime import ExportedModel

    with ExportedModel(ASSETS / "export") as model:
        assert not model.on_device  # cpu: host arrays
        cfg = model.segment_config(iterations=3)
        host = run_stages(model, _image(), cfg)
        model.on_device = True
        dev = run_stages(model, _image(), cfg)
    assert len(host.peaks) > 0
    np.testing.assert_array_equal(dev.peaks, host.peaks)
    np.testing.assert_array_equal(dev.prm, host.prm)
    np.testing.assert_allclose(dev.enhanced, host.enhanced, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(dev.crm, host.crm)


def test_ort_tensorrt_ep_options(export, monkeypatch, tmp_path):
    from icnseg.runtime import onnxruntime_backend as orb

    opts = orb.trt_provider_options(export / "icn.onnx", "fp16")
    assert opts["trt_engine_cache_enable"] and opts["trt_timing_cache_enable"]
    assert opts["trt_engine_cache_path"] == str(export / "cache" / "ort-trt")
    assert opts["trt_timing_cache_path"] == opts["trt_engine_cache_path"]
    assert opts["trt_fp16_enable"] is True
    assert opts["trt_profile_min_shapes"] == "prm:1x1x96x96"
    assert opts["trt_profile_opt_shapes"] == "prm:8x1x96x96"
    assert opts["trt_profile_max_shapes"] == "prm:32x1x96x96"
    prm = orb.trt_provider_options(export / "prm.onnx")
    assert prm["trt_fp16_enable"] is False and "trt_profile_min_shapes" not in prm
    monkeypatch.setattr(orb.os, "access", lambda *a: False)  # a read-only export directory
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ro = orb.trt_provider_options(export / "icn.onnx")
    assert ro["trt_engine_cache_path"].startswith(str(tmp_path / "xdg" / "icnseg" / "ort-trt"))


def test_ort_precision_options():
    pytest.importorskip("onnxruntime")
    with pytest.raises(ConfigError, match="--device tensorrt"):
        load_backend("onnxruntime", ASSETS / "export" / "prm.onnx", "cpu", precision="fp16")
    with pytest.raises(ConfigError, match="tensorrt backend"):
        load_backend("onnxruntime", ASSETS / "export" / "prm.onnx", "cpu", precision="int8")
    with load_backend("onnxruntime", ASSETS / "export" / "prm.onnx", "cpu",
                      precision=None) as b:  # None options are dropped
        assert b.input_names == ("image",)


# ---- the tensorrt backend, CPU side ----------------------------------------------------------

@pytest.fixture()
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)


def test_tensorrt_backend_is_registered_and_lazy():
    assert BACKENDS["tensorrt"] == "icnseg.runtime.tensorrt_backend:TensorRTBackend"
    code = ("import sys, icnseg.runtime.tensorrt_backend, icnseg.export.engine, icnseg.cli.engine; "
            "heavy = [m for m in ('tensorrt', 'tensorrt_rtx', 'pycuda', 'onnxruntime', 'torch') "
            "if m in sys.modules]; print(heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"


def test_tensorrt_backend_needs_gpu_and_tensorrt(export, no_tensorrt):
    with pytest.raises(ConfigError, match="--device cuda"):
        load_backend("tensorrt", export / "prm.onnx", "cpu")
    with pytest.raises(BackendUnavailable, match=r"pip install 'icnseg\[tensorrt\]'"):
        load_backend("tensorrt", export / "prm.onnx", "cuda")
    from icnseg.runtime import ExportedModel

    with pytest.raises(BackendUnavailable, match=r"icnseg\[tensorrt\]"):
        ExportedModel(export, backend="tensorrt", device="cuda")


def test_tensorrt_engine_resolution(export, monkeypatch):
    """Which engine `load` would deserialise, and the errors for missing/damaged ones."""
    from icnseg.runtime import tensorrt_backend as tb

    monkeypatch.setattr(tb, "current_env", lambda: ENV)
    with pytest.raises(InputError, match=rf"no valid TensorRT engine for prm\.onnx.*"
                                         rf"icnseg build-engine {export}"):
        tb.resolve_engine(export / "prm.onnx")

    def fake(onnx, engine, **kw):
        engine.write_bytes(b"plan:" + onnx.name.encode())

    import json

    manifest = json.loads((export / "manifest.json").read_text())  # an fp16 export's manifest
    manifest = {**manifest, "precision": "fp16"}
    manifest[DIGEST_KEY] = manifest_digest(manifest)
    (export / "manifest.json").write_text(json.dumps(manifest))
    built = {r.role: r.path for r in build_engines(export, env=ENV, build_fn=fake)}
    assert tb.resolve_engine(export / "icn.onnx") == built["icn"]
    assert tb.resolve_engine(export / "icn.onnx", "fp16") == built["icn"]
    assert tb.resolve_engine(built["prm"]) == built["prm"]
    with pytest.raises(ConfigError, match="fp16 engine, not fp32"):
        tb.resolve_engine(built["prm"], "fp32")
    with pytest.raises(InputError, match="no valid fp32"):
        tb.resolve_engine(export / "prm.onnx", "fp32")
    built["prm"].write_bytes(b"plan:")  # truncated
    for path in (export / "prm.onnx", built["prm"]):
        with pytest.raises(InputError, match=rf"truncated.*icnseg build-engine {export}"):
            tb.resolve_engine(path)
    monkeypatch.setattr(tb, "current_env", lambda: TrtEnv("tensorrt", "10.9.0", "Orin", "8.7"))
    with pytest.raises(InputError, match=r"stale: built with TensorRT 10\.8\.0\.43"):
        tb.resolve_engine(built["icn"])
    with pytest.raises(InputError, match="no such engine file"):
        tb.resolve_engine(export / "engines" / "missing.engine")


def test_dynamic_k_export_refuses_tensorrt(tmp_path):
    """The shipped --dynamic-k export runs on ONNX Runtime; TensorRT gets a clear error."""
    import json

    from icnseg.errors import ConfigError
    from icnseg.export.engine import build_engines
    from icnseg.runtime import ExportedModel

    assert json.loads((ASSETS / "export" / "manifest.json").read_text())["dynamic_k"]
    with pytest.raises(ConfigError, match="--dynamic-k"):
        ExportedModel(ASSETS / "export", backend="tensorrt", device="cuda")
    export = Path(shutil.copytree(ASSETS / "export", tmp_path / "e"))
    with pytest.raises(ConfigError, match="without --dynamic-k"):
        build_engines(export)
