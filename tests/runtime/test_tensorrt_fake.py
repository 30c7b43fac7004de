"""TensorRTBackend's own logic (buffers from profile max shapes, dynamic K, zero-copy chaining,
aliasing, shape checks, close) against the stand-ins of tests/runtime/conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import icnseg
from icnseg.errors import InputError
from icnseg.segmenter import run_stages

ASSETS = Path(__file__).resolve().parents[2] / "icnseg" / "assets"
pytest.importorskip("onnxruntime")


def test_backend_runs_chains_and_frees(fake_gpu, sample_x):
    from icnseg.runtime.backend import load_backend

    export, mem = fake_gpu
    x = sample_x
    with load_backend("onnxruntime", export / "prm.onnx") as rp, \
            load_backend("onnxruntime", export / "icn.onnx") as ri, \
            load_backend("tensorrt", export / "prm.onnx", "cuda") as prm, \
            load_backend("tensorrt", export / "icn.onnx", "cuda") as icn:
        assert prm.input_names == ("image",) and icn.input_names == ("image", "prm")
        assert icn.max_shapes["map"] == (32, 1, 96, 96) and icn.ranges["prm"][0] == (1, 1, 96, 96)
        want = rp.run({"image": x})
        got = prm.run({"image": x})
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
        n = int(want["count"][0])
        dev = prm.run_device({"image": x})
        v = dev["prm"].rows(n).reshape(n, 1, 96, 96)  # zero copy into the ICN
        m1 = icn.run_device({"image": x, "prm": v}, ["map"])["map"]
        assert icn.context.addr["prm"] == int(prm.buffers["prm"])
        m2 = icn.run_device({"image": x, "prm": m1})["map"]  # its own output: copied first
        assert icn.context.addr["prm"] == int(icn.buffers["prm"])
        ref = ri.run({"image": x, "prm": ri.run({"image": x, "prm": want["prm"][:n, None]})["map"]})
        np.testing.assert_allclose(icn.to_host(m2), ref["map"], rtol=0, atol=1e-6)
        with pytest.raises(InputError, match=r"input prm has shape \(33, 1, 96, 96\)"):
            icn.run({"image": x, "prm": np.zeros((33, 1, 96, 96), np.float32)})
        with pytest.raises(InputError, match="missing"):
            icn.run({"image": x})
        allocated = len(mem.blocks)
    assert mem.freed == allocated and not mem.blocks  # close() freed every buffer
    with pytest.raises(InputError, match="closed"):
        prm.run({"image": x})


def test_exported_model_on_fake_gpu(fake_gpu):
    from icnseg.runtime import ExportedModel

    export, _ = fake_gpu
    from icnseg.data.voc import read_image

    image = read_image(sorted((ASSETS / "samples").glob("*.jpg"))[0])
    with ExportedModel(export, "tensorrt", "cuda") as trt_model, ExportedModel(export) as ref:
        assert trt_model.on_device
        cfg = ref.segment_config(iterations=3)
        a, b = run_stages(trt_model, image, cfg), run_stages(ref, image, cfg)
        assert len(b.peaks)
        np.testing.assert_array_equal(a.peaks, b.peaks)
        np.testing.assert_array_equal(a.prm, b.prm)
        np.testing.assert_allclose(a.enhanced, b.enhanced, rtol=0, atol=1e-6)
        assert len(icnseg.segment(trt_model, image)) == len(icnseg.segment(ref, image))


def test_undeserialisable_engine_is_a_clear_error(fake_gpu):
    from icnseg.runtime.backend import load_backend

    export, _ = fake_gpu
    bare = export / "foreign.engine"  # no sidecar: TensorRT's own check refuses it
    bare.write_bytes(b"NOT A PLAN")
    with pytest.raises(InputError, match=r"foreign\.engine: TensorRT 10\.8\.0 cannot deserialise "
                                         r"it \(magic tag does not match\).*build-engine"):
        load_backend("tensorrt", bare, "cuda")
