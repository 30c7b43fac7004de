"""TensorRT engines and ORT CUDA IOBinding on a real GPU (marked gpu; skipped without one).

Engines are built for a copy of the shipped export (tiny model, 96x96, K_max 32) and for
fp16/int8 exports (strongly typed), and compared with ONNX Runtime's CPU EP on the same
graphs: FP32 within 1e-3 of the output's max, FP16/INT8 looser.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import icnseg
from icnseg.data.transforms import MEAN, STD
from icnseg.errors import BackendUnavailable, InputError
from icnseg.segmenter import run_stages

pytestmark = pytest.mark.gpu
ASSETS = Path(__file__).resolve().parents[2] / "icnseg" / "assets"


@pytest.fixture(scope="module")
def trt_env():
    """The TensorRT + GPU environment, or skip (no tensorrt / pycuda / CUDA device)."""
    pytest.importorskip("onnxruntime")
    from icnseg.artifacts.trt_env import current_env

    try:
        return current_env()
    except BackendUnavailable as exc:
        pytest.skip(f"TensorRT on a GPU unavailable: {exc}")


@pytest.fixture(scope="module")
def built(trt_env, tmp_path_factory, static_export):
    """(export dir, fp32 build results, seconds of the first build)."""
    from icnseg.export.engine import build_engines

    export = Path(shutil.copytree(static_export, tmp_path_factory.mktemp("trt") / "e"))
    t0 = time.perf_counter()
    results = build_engines(export)
    return export, results, time.perf_counter() - t0


def _inputs() -> list[np.ndarray]:
    from icnseg.data.voc import read_image
    from icnseg.preprocess import prepare_input

    return [prepare_input(read_image(p), (96, 96), MEAN, STD)[1]
            for p in sorted((ASSETS / "samples").glob("*.jpg"))]


def _close(got: np.ndarray, want: np.ndarray, rel: float) -> None:
    scale = max(float(np.abs(want).max()), 1e-12)
    err = float(np.abs(got.astype(np.float64) - want).max()) if want.size else 0.0
    assert err <= rel * scale, f"max abs err {err:.3g} > {rel} x {scale:.3g}"


def _compare(export: Path, precision: str, rel: float) -> None:
    from icnseg.runtime.backend import load_backend

    with load_backend("onnxruntime", export / "prm.onnx") as ref_prm, \
            load_backend("onnxruntime", export / "icn.onnx") as ref_icn, \
            load_backend("tensorrt", export / "prm.onnx", "cuda", precision=precision) as prm, \
            load_backend("tensorrt", export / "icn.onnx", "cuda", precision=precision) as icn:
        assert set(prm.output_names) == set(ref_prm.output_names)
        for x in _inputs():
            want, got = ref_prm.run({"image": x}), prm.run({"image": x})
            assert all(np.isfinite(v).all() for v in got.values()), "NaN/inf in the engine"
            _close(got["crm"], want["crm"], rel)
            n = int(want["count"][0])
            same = int(got["count"][0]) == n and np.array_equal(got["peaks"][:n, :3],
                                                                 want["peaks"][:n, :3])
            if precision == "fp32":
                assert same
                np.testing.assert_allclose(got["peaks"][:n], want["peaks"][:n], rtol=1e-3,
                                           atol=1e-3)
            if same:  # FP16 may pick other peaks; where it agrees, the PRMs must too
                _close(got["prm"][:n], want["prm"][:n], rel)
            v = want["prm"][:n, None]
            if n:  # same PRM input for both: compares the ICN alone, at this K
                _close(icn.run({"image": x, "prm": v})["map"],
                       ref_icn.run({"image": x, "prm": v})["map"], rel)


def test_fp32_matches_onnxruntime(built):
    export, results, _ = built
    assert [r.role for r in results] == ["prm", "icn"] and not any(r.reused for r in results)
    _compare(export, "fp32", 1e-3)


def test_second_build_is_instant(built):
    from icnseg.export.engine import build_engines

    export, first, seconds = built
    t0 = time.perf_counter()
    again = build_engines(export)
    assert all(r.reused for r in again) and [r.path for r in again] == [r.path for r in first]
    assert time.perf_counter() - t0 < max(1.0, 0.1 * seconds)


@pytest.fixture(scope="module")
def typed(trt_env, tmp_path_factory):
    """Static fp16 and int8 (symmetric Q/DQ) exports of the default model."""
    from icnseg.export.exporter import checkpoint_to_onnx

    root = tmp_path_factory.mktemp("typed")
    return {p: checkpoint_to_onnx("default", root / p, precision=p,
                                  calib=ASSETS / "samples" if p == "int8" else None).out_dir
            for p in ("fp16", "int8")}


def test_fp16_export_builds_strongly_typed_and_matches(typed):
    from icnseg.export.engine import build_engines

    results = build_engines(typed["fp16"])
    assert all(r.precision == "fp16" for r in results)
    _compare(typed["fp16"], "fp16", 3e-2)  # the engine vs ORT CPU on the same typed graphs


def test_int8_export_builds_strongly_typed(typed):
    from icnseg.export.engine import build_engines

    results = build_engines(typed["int8"])
    assert all(r.precision == "int8" for r in results)
    _compare(typed["int8"], "int8", 5e-2)


def test_dynamic_k_and_device_chain(built):
    from icnseg.runtime import ExportedModel
    from icnseg.runtime.backend import load_backend

    export, _, _ = built
    x = _inputs()[0]
    with load_backend("tensorrt", export / "icn.onnx", "cuda", precision="fp32") as icn, \
            load_backend("onnxruntime", export / "icn.onnx") as ref:
        for k in (1, 3, 8, 32):  # every K in the profile, buffers allocated once
            v = np.random.default_rng(k).random((k, 1, 96, 96), dtype=np.float32)
            _close(icn.run({"image": x, "prm": v})["map"],
                   ref.run({"image": x, "prm": v})["map"], 1e-3)
        with pytest.raises(InputError, match="shape"):
            icn.run({"image": x, "prm": np.zeros((33, 1, 96, 96), np.float32)})
        out = icn.run_device({"image": x, "prm": np.ones((2, 1, 96, 96), np.float32)})
        again = icn.run_device({"image": x, "prm": out["map"]})  # aliases its own output
        want = ref.run({"image": x, "prm": ref.run({"image": x,
                                                    "prm": np.ones((2, 1, 96, 96),
                                                                   np.float32)})["map"]})
        _close(icn.to_host(again["map"]), want["map"], 1e-3)
    from icnseg.data.voc import read_image

    image = read_image(sorted((ASSETS / "samples").glob("*.jpg"))[0])
    with ExportedModel(export, "tensorrt", "cuda", precision="fp32") as trt_model, \
            ExportedModel(export) as ort_model:
        assert trt_model.on_device
        cfg = ort_model.segment_config(iterations=3)
        a, b = run_stages(trt_model, image, cfg), run_stages(ort_model, image, cfg)
        np.testing.assert_array_equal(a.peaks[:, :3], b.peaks[:, :3])
        _close(a.prm, b.prm, 1e-3)
        if len(b.peaks):
            _close(a.enhanced, b.enhanced, 1e-3)


def test_damaged_engines(built):
    from icnseg.export.engine import build_engines
    from icnseg.runtime.backend import load_backend

    export, _, _ = built
    results = build_engines(export)
    prm_engine = results[0].path
    data = prm_engine.read_bytes()
    prm_engine.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=rf"truncated.*icnseg build-engine {export}"):
        load_backend("tensorrt", export / "prm.onnx", "cuda", precision="fp32")
    bare = export / "bare.engine"  # no sidecar: TensorRT itself must refuse it cleanly
    bare.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="cannot deserialise it.*build-engine"):
        load_backend("tensorrt", bare, "cuda")
    again = build_engines(export)
    assert not again[0].reused and "truncated" in again[0].rebuilt_because and again[1].reused
    with load_backend("tensorrt", export / "prm.onnx", "cuda", precision="fp32") as prm:
        assert prm.run({"image": _inputs()[0]})["prm"].shape == (32, 96, 96)


def test_ort_cuda_iobinding_matches_cpu():
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu with the CUDA EP is not installed")
    from icnseg.data.voc import read_image
    from icnseg.runtime import ExportedModel

    image = read_image(sorted((ASSETS / "samples").glob("*.jpg"))[0])
    with ExportedModel(ASSETS / "export", device="cuda") as gpu, \
            ExportedModel(ASSETS / "export") as cpu:
        assert gpu.on_device
        cfg = cpu.segment_config(iterations=3)
        a, b = run_stages(gpu, image, cfg), run_stages(cpu, image, cfg)
        out = gpu.prm.run_device({"image": _inputs()[0]})
        assert out["prm"].device == "cuda" and out["prm"].owner.device_name().lower() == "cuda"
    np.testing.assert_array_equal(a.peaks[:, :3], b.peaks[:, :3])
    _close(a.prm, b.prm, 1e-3)
    if len(b.peaks):
        _close(a.enhanced, b.enhanced, 1e-3)


@pytest.mark.parametrize("iterations", [0, 1, 3])
def test_device_matching_gives_the_cpu_instances(iterations):
    """ORT CUDA maps matched by the CUDA kernels = ORT CPU + numpy matcher, per sample."""
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu with the CUDA EP is not installed")
    pytest.importorskip("pycuda.gpuarray")
    from icnseg.data.voc import read_image
    from icnseg.runtime import ExportedModel

    with ExportedModel(ASSETS / "export", device="cuda") as gpu, \
            ExportedModel(ASSETS / "export") as cpu:
        cfg = cpu.segment_config(iterations=iterations)
        assert gpu.matches_on_device(cfg) and not cpu.matches_on_device(cfg)
        for path in sorted((ASSETS / "samples").glob("*.jpg")):
            image = read_image(path)
            a, b = icnseg.segment(gpu, image, config=cfg), icnseg.segment(cpu, image, config=cfg)
            assert [i.class_name for i in a] == [i.class_name for i in b], path
            for x, y in zip(a, b, strict=True):
                assert abs(x.score - y.score) < 1e-4 and (x.mask == y.mask).mean() > 0.999
