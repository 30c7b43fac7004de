"""The Backend protocol: one loaded network, named inputs/outputs, ``run(feeds) -> outputs``.

Backends import their engine library lazily, inside their own module, so choosing one never
imports another (the runtime never imports torch unless the torch backend is chosen).

GPU backends also have ``run_device(feeds, outputs) -> {name: DeviceArray}``: feeds may be
host arrays or ``DeviceArray`` views of another run's outputs, and outputs stay on the device,
so graphs chain without host round-trips; ``to_host(array)`` copies one back.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from icnseg.errors import ConfigError, InputError

# name -> "module:Class"; the module is imported only when that backend is loaded.
BACKENDS: dict[str, str] = {
    "onnxruntime": "icnseg.runtime.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "icnseg.runtime.tensorrt_backend:TensorRTBackend",
}
# cpu | cuda | tensorrt (for onnxruntime: its TensorRT execution provider; the tensorrt
# backend runs on cuda and takes "tensorrt" as a synonym).
DEVICES = ("cpu", "cuda", "tensorrt")


@dataclass(frozen=True)
class DeviceArray:
    """A typed view of the start of a buffer on ``device`` ("cuda", or "cpu" for ORT's CPU EP).

    ``ptr`` is the address, ``owner`` keeps the memory alive (an OrtValue or a pycuda
    allocation). Views only ever cover a prefix of the owner's buffer, so ``rows`` and
    ``reshape`` are free and a backend's ``to_host`` can copy from the owner.
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    device: str = "cuda"
    owner: Any = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return self.size * np.dtype(self.dtype).itemsize

    def rows(self, n: int) -> DeviceArray:
        """The first ``n`` entries along axis 0 (no copy)."""
        if not 0 <= n <= self.shape[0]:
            raise InputError(f"rows({n}) of a device array with shape {self.shape}")
        return dataclasses.replace(self, shape=(int(n), *self.shape[1:]))

    def reshape(self, *shape: int) -> DeviceArray:
        """The same elements with another shape (no copy)."""
        shape = tuple(int(d) for d in shape)
        if int(np.prod(shape, dtype=np.int64)) != self.size:
            raise InputError(f"cannot reshape a device array {self.shape} to {shape}")
        return dataclasses.replace(self, shape=shape)


@runtime_checkable
class Backend(Protocol):
    """One loaded network (e.g. prm.onnx) on one device."""

    name: str
    device: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", **options: Any) -> Backend:
        """Load the network at ``path`` for ``device`` (backend-specific ``options``)."""
        ...

    def run(
        self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run once; return {output name: array} (all outputs unless ``outputs`` is given)."""
        ...

    def close(self) -> None:
        """Release the session and its device memory."""
        ...

    def __enter__(self) -> Backend:
        """Context manager: returns self."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Context manager: closes."""
        ...


def load_backend(name: str, path: str | os.PathLike, device: str = "cpu",
                 **options: Any) -> Backend:
    """Load ``path`` with backend ``name`` on ``device`` (ConfigError for an unknown one).

    ``options`` go to the backend's ``load`` (e.g. ``precision="fp16"``); None values are
    dropped, so callers can pass their defaults through.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    module, cls = BACKENDS[name].split(":")
    options = {k: v for k, v in options.items() if v is not None}
    return getattr(importlib.import_module(module), cls).load(path, device, **options)


@runtime_checkable
class DeviceBackend(Backend, Protocol):
    """A Backend whose outputs can stay on the device (ORT IOBinding, TensorRT buffers)."""

    def run_device(
        self, feeds: Mapping[str, np.ndarray | DeviceArray], outputs: Sequence[str] | None = None
    ) -> dict[str, DeviceArray]:
        """Run once; outputs stay on the device (valid until this backend's next run)."""
        ...

    def to_host(self, array: DeviceArray) -> np.ndarray:
        """Copy a device array returned by ``run_device`` to a new host array."""
        ...
