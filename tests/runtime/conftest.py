"""Stand-ins for `tensorrt` and `pycuda.driver` (fixture ``fake_gpu``) for the tests of
TensorRTBackend's own logic (test_tensorrt_fake.py, test_tensorrt_threads.py).

The stand-ins live only here: "device memory" is numpy, an "engine" is an ONNX Runtime CPU
session named by the engine bytes. They check how icnseg drives the API, not TensorRT itself;
tests/runtime/test_tensorrt_gpu.py does that on a GPU.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from icnseg.artifacts.engine_cache import TrtEnv
from icnseg.export.engine import build_engines

ASSETS = Path(__file__).resolve().parents[2] / "icnseg" / "assets"
ENV = TrtEnv("tensorrt", "10.8.0", "Fake GPU", "9.0")
_ONNX_TYPES = {"tensor(float)": np.dtype(np.float32), "tensor(int64)": np.dtype(np.int64)}


class Memory:
    """Allocations at far-apart fake addresses; a pointer resolves to (array, offset)."""

    def __init__(self) -> None:
        self.blocks: dict[int, np.ndarray] = {}
        self.freed = 0
        self.uploads: list[int] = []  # bytes of every host -> device copy
        self._bases = itertools.count(1)  # thread-safe in CPython: distinct addresses

    def alloc(self, n: int) -> Alloc:
        base = next(self._bases) << 32
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

    def htod_async(dst, host, stream=None):
        mem.uploads.append(host.nbytes)
        htod(dst, host)

    drv.memcpy_htod, drv.memcpy_dtoh, drv.memcpy_dtod_async = htod, dtoh, dtod
    drv.memcpy_htod_async = htod_async
    drv.pagelocked_empty = lambda n, dtype: np.empty(n, dtype)
    drv.Event = lambda: types.SimpleNamespace(record=lambda stream=None: None,
                                              synchronize=lambda: None)
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
        import onnxruntime as ort

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
    pytest.importorskip("onnxruntime")
    from icnseg.runtime import cuda, gpu_matcher

    mem = Memory()
    pycuda = _fake_pycuda(mem)
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(mem))
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda.driver)
    monkeypatch.setattr(cuda, "_main", {})
    monkeypatch.setattr(cuda, "_local", threading.local())
    monkeypatch.setattr(cuda.atexit, "register", lambda f: None)
    monkeypatch.setattr(gpu_matcher, "_kernels_load", {})  # the stand-in has no kernels
    export = Path(shutil.copytree(static_export, tmp_path / "e"))

    def build(onnx, engine, **kw):
        engine.write_bytes(b"FAKE:" + str(onnx).encode())

    build_engines(export, build_fn=build)  # env from the stand-ins
    return export, mem


@pytest.fixture()
def sample_x() -> np.ndarray:
    """The first sample image as the 96 x 96 model input."""
    from icnseg.data.voc import read_image
    from icnseg.preprocess import prepare_input

    image = read_image(sorted((ASSETS / "samples").glob("*.jpg"))[0])
    return prepare_input(image, (96, 96), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))[1]
