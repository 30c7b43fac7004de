"""TensorRTBackend on the stand-ins of tests/runtime/conftest.py: pinned staging and async
copies (the image once per graph), a context and buffers per thread, a TensorRT missing an
attribute, TensorRT-RTX on a GPU its support matrix does not list."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from icnseg.errors import BackendUnavailable
from icnseg.segmenter import run_stages

ASSETS = Path(__file__).resolve().parents[2] / "icnseg" / "assets"
pytest.importorskip("onnxruntime")


def _run_threads(work, n: int) -> None:
    """Run ``work(i)`` for i < n in n threads at once and wait for all of them."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_image_is_copied_once_per_graph_not_per_icn_pass(fake_gpu, sample_x):
    """T = 3 ICN passes: the host image goes to the prm engine once and to the icn engine
    once; the PRMs and every later pass stay on the device."""
    from icnseg.data.voc import read_image
    from icnseg.runtime import ExportedModel

    export, mem = fake_gpu
    image = read_image(sorted((ASSETS / "samples").glob("*.jpg"))[0])
    with ExportedModel(export, "tensorrt", "cuda") as model:
        cfg = model.segment_config(iterations=3)
        stages = run_stages(model, image, cfg)
        assert len(stages.peaks) and stages.enhanced is not None
        image_bytes = 3 * 96 * 96 * 4
        assert mem.uploads == [image_bytes, image_bytes]
        run_stages(model, image, cfg)
        assert mem.uploads == [image_bytes] * 4  # a new image: copied again
    x = sample_x
    from icnseg.runtime.backend import load_backend

    with load_backend("tensorrt", export / "prm.onnx", "cuda") as prm:
        mem.uploads.clear()
        prm.run({"image": x})
        x += 1.0  # a writable array may change between runs: always copied
        prm.run({"image": x})
        assert len(mem.uploads) == 2


def test_one_backend_serves_several_threads(fake_gpu, sample_x):
    """Four threads share one engine: each gets its own context and buffers, and every
    thread's outputs equal ONNX Runtime's for its own image."""
    from icnseg.runtime.backend import load_backend

    export, mem = fake_gpu
    images = [sample_x + 0.25 * i for i in range(4)]
    results: dict[int, dict] = {}
    errors: list[BaseException] = []
    with load_backend("onnxruntime", export / "prm.onnx") as ref, \
            load_backend("tensorrt", export / "prm.onnx", "cuda") as prm:
        barrier = threading.Barrier(4)

        def work(i: int) -> None:
            try:
                barrier.wait()
                for _ in range(3):
                    dev = prm.run_device({"image": images[i]})
                    results[i] = {k: prm.to_host(v) for k, v in dev.items()}
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        _run_threads(work, 4)
        assert not errors, errors
        for i, image in enumerate(images):
            want = ref.run({"image": image})
            for name, value in want.items():
                np.testing.assert_array_equal(results[i][name], value)
        assert len(prm._states) == 5  # the loading thread + four workers
        assert len({int(s.buffers["prm"]) for s in prm._states}) == 5
    assert not mem.blocks  # close() freed the buffers of every thread


def test_tensorrt_without_an_attribute_is_one_line(fake_gpu):
    """A TensorRT whose API lacks what icnseg calls: BackendUnavailable naming the attribute
    and the version, no AttributeError traceback."""
    from icnseg.runtime.backend import load_backend

    export, _ = fake_gpu
    del sys.modules["tensorrt"].TensorIOMode
    with pytest.raises(BackendUnavailable) as exc:
        load_backend("tensorrt", export / "prm.onnx", "cuda")
    msg = str(exc.value)
    assert "\n" not in msg and "'TensorIOMode'" in msg and "tensorrt 10.8.0" in msg


def test_tensorrt_rtx_on_an_unlisted_gpu_is_refused(fake_gpu, monkeypatch):
    """Only tensorrt_rtx installed, on a compute capability 9.0 GPU (not in its support
    matrix): one line saying so and what to install."""
    from icnseg.artifacts.trt_support import unsupported_gpu
    from icnseg.runtime.backend import load_backend

    export, _ = fake_gpu
    rtx = sys.modules["tensorrt"]
    rtx.__name__ = "tensorrt_rtx"
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", rtx)
    with pytest.raises(BackendUnavailable) as exc:
        load_backend("tensorrt", export / "prm.onnx", "cuda")
    msg = str(exc.value)
    assert "\n" not in msg and "icnseg[tensorrt]" in msg
    assert "does not support Fake GPU (compute capability 9.0" in msg
    assert unsupported_gpu("tensorrt_rtx", "1.2", "8.9") is None
    assert unsupported_gpu("tensorrt", "10.8", "8.7") is None
    assert "7.5" in unsupported_gpu("tensorrt", "10.8", "7.0")


def test_exported_model_segments_from_several_threads(fake_gpu):
    """One ExportedModel on the TensorRT backend, three threads, three images: each thread's
    stages equal ONNX Runtime's for its image."""
    from icnseg.data.voc import read_image
    from icnseg.runtime import ExportedModel

    export, _ = fake_gpu
    images = [read_image(p) for p in sorted((ASSETS / "samples").glob("*.jpg"))]
    with ExportedModel(export, "tensorrt", "cuda") as model, ExportedModel(export) as ref:
        cfg = ref.segment_config(iterations=2)
        got: dict[int, object] = {}
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                got[i] = run_stages(model, images[i], cfg)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        _run_threads(work, len(images))
        assert not errors, errors
        for i, image in enumerate(images):
            want = run_stages(ref, image, cfg)
            np.testing.assert_array_equal(got[i].peaks, want.peaks)
            np.testing.assert_allclose(got[i].enhanced, want.enhanced, rtol=0, atol=1e-6)
