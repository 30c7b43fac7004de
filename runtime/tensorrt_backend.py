"""TensorRT backend: engine files from ``icnseg build-engine``, run on pycuda device buffers.

``load(path)`` takes an engine file or an ONNX file of an export directory (then the engine
comes from ``<dir>/engines`` through the cache: built from this very ONNX, by this TensorRT,
for this GPU, bytes intact; ``precision`` picks among several, else the newest).

Each thread that runs the backend gets its own execution context, device buffers (sized from
the optimisation profile's max shapes) and page-locked host buffers, and enqueues on its own
stream (``icnseg.runtime.cuda.shared_stream``), so one backend may serve several threads;
outputs are views of the calling thread's buffers until its next run. Host feeds are staged in
the pinned buffer and copied with ``memcpy_htod_async`` (the host only waits when it reuses a
staging buffer whose previous copy is still queued); a read-only host array fed again is not
copied again (the image of every ICN pass). Every run sets the input shapes (dynamic K), binds
addresses and enqueues ``execute_async_v3``, so chained engines run back to back without host
synchronisation. Device feeds are bound directly (zero copy) unless they alias this engine's
own outputs, which are copied first. A TensorRT whose API lacks what icnseg calls is a one-line
BackendUnavailable naming the attribute and the version.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.artifacts.engine_cache import check_entry, find_engine, sidecar_of
from icnseg.artifacts.manifest import sha256_file
from icnseg.artifacts.trt_env import current_env, import_tensorrt, make_logger
from icnseg.artifacts.trt_support import unsupported_gpu
from icnseg.errors import BackendUnavailable, ConfigError, IcnsegError, InputError
from icnseg.loader import TENSORRT, check_device
from icnseg.runtime.backend import Backend, DeviceArray
from icnseg.runtime.cuda import check_cuda, cuda_driver, shared_stream


def _export_dir_of(engine_path: Path) -> Path:
    """The export directory an engine belongs to (for the rebuild hint)."""
    return engine_path.parent.parent if engine_path.parent.name == "engines" else engine_path.parent


@contextlib.contextmanager
def trt_api(trt: Any) -> Iterator[None]:
    """AttributeError from the TensorRT module or its objects -> one-line BackendUnavailable."""
    try:
        yield
    except AttributeError as exc:
        owner = getattr(exc, "obj", None)
        where = owner.__name__ if isinstance(owner, type(trt)) else type(owner).__module__
        if owner is not None and not str(where).startswith(("tensorrt", trt.__name__)):
            raise
        name = getattr(exc, "name", None) or str(exc)
        raise BackendUnavailable(
            f"{trt.__name__} {getattr(trt, '__version__', '?')} has no {name!r}, which icnseg "
            f"calls (the TensorRT 10 API): pip install 'icnseg[tensorrt]' (or JetPack 6.1+)"
        ) from exc


@dataclass
class _ThreadState:
    """What one thread runs an engine with: context, buffers, pinned staging, its stream."""

    context: Any
    stream: Any
    buffers: dict[str, Any] = field(default_factory=dict)  # device, one per I/O tensor
    pinned: dict[str, Any] = field(default_factory=dict)  # page-locked, one per input
    copied: dict[str, Any] = field(default_factory=dict)  # input -> event after its last copy
    resident: dict[str, Any] = field(default_factory=dict)  # input -> read-only array in buffer


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
    """One deserialised TensorRT engine; an execution context and buffers per thread."""

    name = "tensorrt"

    def __init__(self, engine: Any, runtime: Any, path: Path, device: str, logger: Any) -> None:
        """Wrap a deserialised engine (use ``load``): shapes, then this thread's context."""
        self._trt, _ = import_tensorrt()
        self._drv = cuda_driver()
        self.engine, self._runtime, self.path, self.device = engine, runtime, path, device
        self._logger = logger
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._lock = threading.Lock()
        trt = self._trt
        with trt_api(trt), check_cuda(f"preparing {path.name}"):
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            is_in = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
            self.input_names = tuple(n for n in names if is_in[n])
            self.output_names = tuple(n for n in names if not is_in[n])
            self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
            self.ranges = {n: self._range(n) for n in self.input_names}
            context = self._new_context()
            for n in self.input_names:  # outputs at their largest: inputs at the profile max
                context.set_input_shape(n, self.ranges[n][1])
            self.max_shapes = {n: tuple(int(d) for d in context.get_tensor_shape(n))
                               for n in names}
            if any(d < 0 for s in self.max_shapes.values() for d in s):
                raise IcnsegError(f"{path}: output shapes depend on data; not supported")
            self._bytes = {n: int(np.prod(self.max_shapes[n], dtype=np.int64))
                           * self.dtypes[n].itemsize for n in names}
            self._state(context)

    def _new_context(self) -> Any:
        """A new execution context (IcnsegError when TensorRT cannot create one)."""
        context = self.engine.create_execution_context()
        if context is None:
            raise IcnsegError(f"{self.path}: cannot create an execution context "
                              f"({self._logger.last_error or 'out of GPU memory?'})")
        return context

    def _state(self, context: Any = None) -> _ThreadState:
        """The calling thread's context and buffers, created on its first run."""
        state = getattr(self._local, "state", None)
        if state is not None:
            return state
        self._drv = cuda_driver()  # pushes the primary context in a new thread
        with trt_api(self._trt), check_cuda(f"preparing {self.path.name} for a thread"):
            state = _ThreadState(context or self._new_context(), shared_stream())
            with self._lock:
                self._states.append(state)  # close() frees what was allocated so far
            for n, size in self._bytes.items():
                state.buffers[n] = self._drv.mem_alloc(max(size, 1))
            for n in self.input_names:
                count = int(np.prod(self.max_shapes[n], dtype=np.int64))
                state.pinned[n] = self._drv.pagelocked_empty(max(count, 1), self.dtypes[n])
        self._local.state = state
        return state

    @property
    def context(self) -> Any:
        """The calling thread's execution context."""
        return self._state().context

    @property
    def buffers(self) -> dict[str, Any]:
        """The calling thread's device buffers, by tensor name."""
        return self._state().buffers

    @property
    def stream(self) -> Any:
        """The stream the calling thread's runs are enqueued on."""
        return self._state().stream

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
        trt, flavour = import_tensorrt()
        cuda_driver()
        env = current_env()
        if why := unsupported_gpu(flavour, env.version, env.compute_capability, env.gpu):
            raise BackendUnavailable(why)
        engine_path = resolve_engine(Path(path), precision)
        try:
            data = engine_path.read_bytes()
        except OSError as exc:
            raise InputError(f"{engine_path}: unreadable ({exc.strerror or exc})") from exc
        with trt_api(trt):
            logger = make_logger(trt)
            with check_cuda(f"deserialising {engine_path}"):
                runtime = trt.Runtime(logger)
                engine = runtime.deserialize_cuda_engine(data) if data else None
            if engine is None:
                why = logger.last_error or "corrupt, truncated, or built for another GPU/TensorRT"
                raise InputError(f"{engine_path}: TensorRT {trt.__version__} cannot deserialise "
                                 f"it ({why}); rebuild it with "
                                 f"`icnseg build-engine {_export_dir_of(engine_path)}`")
            return cls(engine, runtime, engine_path, device, logger)

    def _owned(self, state: _ThreadState, ptr: int) -> bool:
        """Does ``ptr`` point into one of this thread's output buffers?"""
        return any(int(state.buffers[n]) <= ptr < int(state.buffers[n]) + self._bytes[n]
                   for n in self.output_names)

    def _upload(self, state: _ThreadState, name: str, value: np.ndarray) -> None:
        """Host feed -> pinned staging -> async copy into the input buffer (once for a
        read-only array fed again)."""
        if state.resident.get(name) is value and not value.flags.writeable:
            return
        host = np.ascontiguousarray(value, dtype=self.dtypes[name])
        if name in state.copied:  # the staging buffer may still be read by a queued copy
            state.copied[name].synchronize()
        staging = state.pinned[name][: host.size].reshape(host.shape)
        np.copyto(staging, host)
        self._drv.memcpy_htod_async(state.buffers[name], staging, state.stream)
        event = state.copied.get(name) or self._drv.Event()
        event.record(state.stream)
        state.copied[name] = event
        state.resident[name] = value if not value.flags.writeable else None

    def _bind_input(self, state: _ThreadState, name: str, value: np.ndarray | DeviceArray
                    ) -> None:
        """Set the shape and address of one input (copying host data into its buffer)."""
        shape = tuple(int(d) for d in value.shape)
        lo, hi = self.ranges[name]
        if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi,
                                                                          strict=True)):
            raise InputError(f"{self.path}: input {name} has shape {shape}; the engine takes "
                             f"{lo} .. {hi}")
        dtype, buf = self.dtypes[name], state.buffers[name]
        if not state.context.set_input_shape(name, shape):
            raise IcnsegError(f"{self.path}: cannot set {name} to {shape} "
                              f"({self._logger.last_error})")
        address = int(buf)
        if isinstance(value, DeviceArray):
            if value.device != "cuda" or np.dtype(value.dtype) != dtype:
                raise InputError(f"{self.path}: input {name} must be a cuda {dtype} array, got "
                                 f"{value.device} {np.dtype(value.dtype)}")
            state.resident.pop(name, None)
            address = value.ptr
            if self._owned(state, value.ptr):  # this run overwrites it: copy it first
                self._drv.memcpy_dtod_async(buf, value.ptr, value.nbytes, state.stream)
                address = int(buf)
        else:
            self._upload(state, name, value)
        state.context.set_tensor_address(name, address)

    def _run_device(self, feeds: Mapping[str, np.ndarray | DeviceArray], names: list[str]
                    ) -> dict[str, DeviceArray]:
        """Enqueue one run; outputs are views of this thread's buffers until its next run."""
        state = self._state()
        context = state.context
        with trt_api(self._trt), check_cuda(f"running {self.path.name}"):
            for name in self.input_names:
                self._bind_input(state, name, feeds[name])
            for name in self.output_names:
                context.set_tensor_address(name, int(state.buffers[name]))
            if not context.execute_async_v3(state.stream.handle):
                raise IcnsegError(f"{self.path}: TensorRT execution failed "
                                  f"({self._logger.last_error or 'see TensorRT log'})")
            return {n: DeviceArray(int(state.buffers[n]),
                                   tuple(int(d) for d in context.get_tensor_shape(n)),
                                   self.dtypes[n], "cuda", owner=state.buffers[n])
                    for n in names}

    def _to_host(self, array: DeviceArray) -> np.ndarray:
        """Wait for this thread's stream, then copy ``array`` into a new host array."""
        out = np.empty(array.shape, dtype=array.dtype)
        with check_cuda(f"copying {self.path.name} results to the host"):
            self._state().stream.synchronize()
            if out.nbytes:
                self._drv.memcpy_dtoh(out, array.ptr)
        return out

    def _run(self, feeds: Mapping[str, np.ndarray | DeviceArray], names: list[str]
             ) -> dict[str, np.ndarray]:
        """Run once; return host copies of the outputs."""
        dev = self._run_device(feeds, names)
        return {n: self._to_host(a) for n, a in dev.items()}

    def _close(self) -> None:
        """Wait for pending work, free every thread's buffers, drop contexts and engine."""
        with check_cuda(f"closing {self.path.name}"), self._lock:
            for state in self._states:
                state.stream.synchronize()
                for buf in state.buffers.values():
                    buf.free()
                state.buffers.clear()
                state.pinned.clear()
                state.context = None
            self._states.clear()
        self._local = threading.local()
        self.engine = self._runtime = None
