"""TensorRTBackend's own logic (buffers from profile max shapes, dynamic K, zero-copy chaining,
aliasing, shape checks, close) against stand-ins for `tensorrt` and `pycuda.driver`.

The stand-ins live only here: "device memory" is numpy, an "engine" is an ONNX Runtime CPU
session named by the engine bytes. They check how icnseg drives the API, not TensorRT itself;
tests/runtime/test_tensorrt_gpu.py does that on a GPU.
"""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import icnseg
from icnseg.artifacts.engine_cache import TrtEnv
from icnseg.errors import InputError
from icnseg.export.engine import build_engines
from icnseg.segmenter import run_stages

ort = pytest.importorskip("onnxruntime")
ASSETS = Path(__file__).resolve().parents[2] / "icnseg" / "assets"
ENV = TrtEnv("tensorrt", "10.8.0", "Fake GPU", "9.0")
_ONNX_TYPES = {"tensor(float)": np.dtype(np.float32), "tensor(int64)": np.dtype(np.int64)}


class Memory:
    """Allocations at far-apart fake addresses; a pointer resolves to (array, offset)."""

    def __init__(self) -> None:
        self.blocks: dict[int, np.ndarray] = {}
        self.freed = 0

    def alloc(self, n: int) -> Alloc:
        base = (len(self.blocks) + 1) << 32
        self.blocks[base] = np.zeros(n, np.uint8)
        return Alloc(self, base)

    def view(self, ptr: int, n: int) -> np.ndarray:
        base = ptr & ~((1 << 32) - 1)
        off = ptr - base
        block = self.blocks[base]
        assert off + n <= block.size, "out of bounds"
        return block[off:off + n]


class Alloc:
    """pycuda.driver.DeviceAllocation stand-in."""

    def __init__(self, mem: Memory, base: int) -> None:
        self.mem, self.base = mem, base

    def __int__(self) -> int:
        return self.base

    def free(self) -> None:
        self.mem.blocks.pop(self.base)
        self.mem.freed += 1


def _fake_pycuda(mem: Memory) -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")
    state = {"ctx": None}
    dev = types.SimpleNamespace(name=lambda: ENV.gpu, compute_capability=lambda: (9, 0))
    ctx = types.SimpleNamespace(push=lambda: state.update(ctx=ctx), pop=lambda: None)
    drv.init = lambda: None
    drv.Device = type("Device", (), {"count": staticmethod(lambda: 1),
                                     "__init__": lambda self, i: None,
                                     "retain_primary_context": lambda self: ctx})
    drv.Context = types.SimpleNamespace(get_current=lambda: state["ctx"], get_device=lambda: dev)
    drv.Stream = lambda: types.SimpleNamespace(handle=7, synchronize=lambda: None)
    drv.mem_alloc = mem.alloc

    def htod(dst, host):
        host = np.ascontiguousarray(host)
        mem.view(int(dst), host.nbytes)[:] = host.reshape(-1).view(np.uint8)

    def dtoh(host, src):
        host.reshape(-1).view(np.uint8)[:] = mem.view(int(src), host.nbytes)

    def dtod(dst, src, n, stream=None):
        mem.view(int(dst), n)[:] = mem.view(int(src), n).copy()

    drv.memcpy_htod, drv.memcpy_dtoh, drv.memcpy_dtod_async = htod, dtoh, dtod
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    return pkg


class Context:
    """IExecutionContext stand-in: runs the ORT session on the bound addresses."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.shapes, self.addr = engine, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        if name in self.engine.inputs:
            return self.shapes.get(name, self.engine.decl[name])
        k = self.shapes.get("prm", (1,))[0]
        return tuple(k if d == -1 else d for d in self.engine.decl[name])

    def set_tensor_address(self, name, ptr):
        self.addr[name] = int(ptr)

    def execute_async_v3(self, handle):
        e, mem = self.engine, self.engine.mem
        feeds = {}
        for n in e.inputs:
            shape, dt = self.shapes[n], e.dtypes[n]
            nbytes = int(np.prod(shape)) * dt.itemsize
            feeds[n] = mem.view(self.addr[n], nbytes).view(dt).reshape(shape).copy()
        for n, v in zip(e.outputs, e.session.run(list(e.outputs), feeds), strict=True):
            mem.view(self.addr[n], v.nbytes)[:] = np.ascontiguousarray(v).reshape(-1).view(np.uint8)
        return True


class Engine:
    """ICudaEngine stand-in for an ONNX file (K = -1 with profile 1..K_max)."""

    def __init__(self, onnx: Path, mem: Memory) -> None:
        self.mem = mem
        self.session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        self.decl, self.dtypes = {}, {}
        for v in (*self.session.get_inputs(), *self.session.get_outputs()):
            self.decl[v.name] = tuple(d if isinstance(d, int) else -1 for d in v.shape)
            self.dtypes[v.name] = _ONNX_TYPES[v.type]
        self.inputs = tuple(i.name for i in self.session.get_inputs())
        self.outputs = tuple(o.name for o in self.session.get_outputs())
        self.names = (*self.inputs, *self.outputs)
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return "in" if name in self.inputs else "out"

    def get_tensor_dtype(self, name):
        return self.dtypes[name]

    def get_tensor_shape(self, name):
        return self.decl[name]

    def get_tensor_profile_shape(self, name, index):
        s = self.decl[name]
        return [tuple(1 if d == -1 else d for d in s), None, tuple(32 if d == -1 else d for d in s)]

    def create_execution_context(self):
        return Context(self)


def _fake_tensorrt(mem: Memory) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = ENV.version

    class ILogger:
        Severity = types.SimpleNamespace(ERROR=1, INTERNAL_ERROR=0)

        def __init__(self):
            pass

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            if not data.startswith(b"FAKE:"):
                self.logger.log(ILogger.Severity.ERROR, "magic tag does not match")
                return None
            return Engine(Path(data[5:].decode()), mem)

    trt.ILogger, trt.Runtime = ILogger, Runtime
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dt: dt
    return trt


@pytest.fixture()
def fake_gpu(monkeypatch, tmp_path, static_export):
    """Stand-in tensorrt + pycuda, and an export copy whose 'engines' name their ONNX file."""
    from icnseg.runtime import cuda

    mem = Memory()
    pycuda = _fake_pycuda(mem)
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(mem))
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda.driver)
    monkeypatch.setattr(cuda, "_state", {})
    monkeypatch.setattr(cuda.atexit, "register", lambda f: None)
    export = Path(shutil.copytree(static_export, tmp_path / "e"))

    def build(onnx, engine, **kw):
        engine.write_bytes(b"FAKE:" + str(onnx).encode())

    build_engines(export, build_fn=build)  # env from the stand-ins
    return export, mem


def _x() -> np.ndarray:
    from icnseg.data.voc import read_image
    from icnseg.preprocess import prepare_input

    image = read_image(sorted((ASSETS / "samples").glob("*.jpg"))[0])
    return prepare_input(image, (96, 96), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))[1]


def test_backend_runs_chains_and_frees(fake_gpu):
    from icnseg.runtime.backend import load_backend

    export, mem = fake_gpu
    x = _x()
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
