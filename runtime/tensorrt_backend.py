"""TensorRT backend: engine files from ``icnseg build-engine``, run on pycuda device buffers.

``load(path)`` takes an engine file or an ONNX file of an export directory (then the engine
comes from ``<dir>/engines`` through the cache: built from this very ONNX, by this TensorRT,
for this GPU, bytes intact; ``precision`` picks among several, else the newest). One device
buffer per I/O tensor is allocated once, sized from the optimisation profile's max shapes;
every run sets the input shapes (dynamic K), binds addresses and enqueues
``execute_async_v3`` on the process-wide stream (``icnseg.runtime.cuda.shared_stream``), so
chained engines run back to back without host synchronisation. Device feeds are bound
directly (zero copy) unless they alias this engine's own outputs, which are copied first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.artifacts.engine_cache import check_entry, find_engine, sidecar_of
from icnseg.artifacts.manifest import sha256_file
from icnseg.artifacts.trt_env import current_env, import_tensorrt, make_logger
from icnseg.errors import ConfigError, IcnsegError, InputError
from icnseg.loader import TENSORRT, check_device
from icnseg.runtime.backend import Backend, DeviceArray
from icnseg.runtime.cuda import check_cuda, cuda_driver, shared_stream


def _export_dir_of(engine_path: Path) -> Path:
    """The export directory an engine belongs to (for the rebuild hint)."""
    return engine_path.parent.parent if engine_path.parent.name == "engines" else engine_path.parent


def resolve_engine(path: Path, precision: str | None = None) -> Path:
    """The engine to load for ``path`` (an .onnx of an export dir, or an engine file)."""
    env = current_env()
    if path.suffix == ".onnx":
        if not path.is_file():
            raise InputError(f"{path}: no such ONNX file")
        return find_engine(path.parent, path.stem, sha256_file(path), env, precision)
    if not path.is_file():
        raise InputError(f"{path}: no such engine file")
    sidecar = sidecar_of(path)
    if sidecar.is_file():  # engines from build-engine; bare ones (trtexec) rely on TensorRT
        chk = check_entry(sidecar, env)
        if not chk.ok:
            raise InputError(f"{path}: {chk.reason}; rebuild it with "
                             f"`icnseg build-engine {_export_dir_of(path)}`")
        if precision is not None and chk.record["spec"].get("precision") != precision:
            raise ConfigError(f"{path}: a {chk.record['spec'].get('precision')} engine, "
                              f"not {precision}")
    return path


class TensorRTBackend(Backend):
    """One deserialised TensorRT engine with its execution context and device buffers."""

    name = "tensorrt"

    def __init__(self, engine: Any, runtime: Any, path: Path, device: str, logger: Any) -> None:
        """Wrap a deserialised engine (use ``load``): context, shapes, buffers, stream."""
        trt, _ = import_tensorrt()
        self._drv = cuda_driver()
        self.engine, self._runtime, self.path, self.device = engine, runtime, path, device
        self._logger, self.stream = logger, shared_stream()
        self.buffers: dict[str, Any] = {}
        self.context: Any = None
        with check_cuda(f"preparing {path.name}"):
            self.context = engine.create_execution_context()
            if self.context is None:
                raise IcnsegError(f"{path}: cannot create an execution context "
                                  f"({logger.last_error or 'out of GPU memory?'})")
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            is_in = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
            self.input_names = tuple(n for n in names if is_in[n])
            self.output_names = tuple(n for n in names if not is_in[n])
            self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
            self.ranges = {n: self._range(n) for n in self.input_names}
            for n in self.input_names:  # outputs at their largest: inputs at the profile max
                self.context.set_input_shape(n, self.ranges[n][1])
            self.max_shapes = {n: tuple(int(d) for d in self.context.get_tensor_shape(n))
                               for n in names}
            if any(d < 0 for s in self.max_shapes.values() for d in s):
                raise IcnsegError(f"{path}: output shapes depend on data; not supported")
            for n in names:
                size = int(np.prod(self.max_shapes[n], dtype=np.int64)) * self.dtypes[n].itemsize
                self.buffers[n] = self._drv.mem_alloc(max(size, 1))
        self._bytes = {n: int(np.prod(self.max_shapes[n], dtype=np.int64))
                       * self.dtypes[n].itemsize for n in names}

    def _range(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(min shape, max shape) an input accepts (profile 0 for dynamic ones)."""
        shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
        if all(d >= 0 for d in shape):
            return shape, shape
        mn, _, mx = self.engine.get_tensor_profile_shape(name, 0)
        return tuple(int(d) for d in mn), tuple(int(d) for d in mx)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cuda",
             precision: str | None = None) -> TensorRTBackend:
        """Deserialise the engine for ``path`` (engine file, or ONNX via the engine cache)."""
        check_device(TENSORRT, device)
        trt, _ = import_tensorrt()
        cuda_driver()
        engine_path = resolve_engine(Path(path), precision)
        try:
            data = engine_path.read_bytes()
        except OSError as exc:
            raise InputError(f"{engine_path}: unreadable ({exc.strerror or exc})") from exc
        logger = make_logger(trt)
        with check_cuda(f"deserialising {engine_path}"):
            runtime = trt.Runtime(logger)
            engine = runtime.deserialize_cuda_engine(data) if data else None
        if engine is None:
            why = logger.last_error or "corrupt, truncated, or built for another GPU/TensorRT"
            raise InputError(f"{engine_path}: TensorRT {trt.__version__} cannot deserialise it "
                             f"({why}); rebuild it with "
                             f"`icnseg build-engine {_export_dir_of(engine_path)}`")
        return cls(engine, runtime, engine_path, device, logger)

    def _owned(self, ptr: int) -> bool:
        """Does ``ptr`` point into one of this engine's output buffers?"""
        return any(int(self.buffers[n]) <= ptr < int(self.buffers[n]) + self._bytes[n]
                   for n in self.output_names)

    def _bind_input(self, name: str, value: np.ndarray | DeviceArray) -> None:
        """Set the shape and address of one input (copying host data into its buffer)."""
        shape = tuple(int(d) for d in value.shape)
        lo, hi = self.ranges[name]
        if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi,
                                                                          strict=True)):
            raise InputError(f"{self.path}: input {name} has shape {shape}; the engine takes "
                             f"{lo} .. {hi}")
        dtype, buf = self.dtypes[name], self.buffers[name]
        if not self.context.set_input_shape(name, shape):
            raise IcnsegError(f"{self.path}: cannot set {name} to {shape} "
                              f"({self._logger.last_error})")
        if isinstance(value, DeviceArray):
            if value.device != "cuda" or np.dtype(value.dtype) != dtype:
                raise InputError(f"{self.path}: input {name} must be a cuda {dtype} array, got "
                                 f"{value.device} {np.dtype(value.dtype)}")
            address = value.ptr
            if self._owned(value.ptr):  # this run overwrites it: copy into the input buffer
                self._drv.memcpy_dtod_async(buf, value.ptr, value.nbytes, self.stream)
                address = int(buf)
        else:
            host = np.ascontiguousarray(value, dtype=dtype)
            self._drv.memcpy_htod(buf, host)  # ordered after earlier work on our stream
            address = int(buf)
        self.context.set_tensor_address(name, address)

    def _run_device(self, feeds: Mapping[str, np.ndarray | DeviceArray], names: list[str]
                    ) -> dict[str, DeviceArray]:
        """Enqueue one run; outputs are views of this engine's buffers until its next run."""
        context = self.context
        with check_cuda(f"running {self.path.name}"):
            for name in self.input_names:
                self._bind_input(name, feeds[name])
            for name in self.output_names:
                context.set_tensor_address(name, int(self.buffers[name]))
            if not context.execute_async_v3(self.stream.handle):
                raise IcnsegError(f"{self.path}: TensorRT execution failed "
                                  f"({self._logger.last_error or 'see TensorRT log'})")
            return {n: DeviceArray(int(self.buffers[n]),
                                   tuple(int(d) for d in context.get_tensor_shape(n)),
                                   self.dtypes[n], "cuda", owner=self.buffers[n])
                    for n in names}

    def _to_host(self, array: DeviceArray) -> np.ndarray:
        """Wait for the stream, then copy ``array`` into a new host array."""
        out = np.empty(array.shape, dtype=array.dtype)
        with check_cuda(f"copying {self.path.name} results to the host"):
            self.stream.synchronize()
            if out.nbytes:
                self._drv.memcpy_dtoh(out, array.ptr)
        return out

    def _run(self, feeds: Mapping[str, np.ndarray | DeviceArray], names: list[str]
             ) -> dict[str, np.ndarray]:
        """Run once; return host copies of the outputs."""
        dev = self._run_device(feeds, names)
        return {n: self._to_host(a) for n, a in dev.items()}

    def _close(self) -> None:
        """Wait for pending work, free every device buffer, drop context and engine."""
        with check_cuda(f"closing {self.path.name}"):
            self.stream.synchronize()
            for buf in self.buffers.values():
                buf.free()
        self.buffers = {}
        self.context = self.engine = self._runtime = None
