"""Graph backends: one loaded network, named inputs/outputs, ``run(feeds) -> outputs``.

``Backend`` is the base every graph backend (one file each) derives from. Backends import
their engine library lazily, inside their own module, so choosing one never imports another
(the runtime never imports torch unless the torch backend is chosen).

``run_device(feeds, outputs) -> {name: DeviceArray}`` keeps outputs on the backend's device:
feeds may be host arrays or ``DeviceArray`` views of another run's outputs, so graphs chain
without host round-trips; ``to_host(array)`` copies one back.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import ConfigError, InputError
from icnseg.loader import check_device

# name -> "module:Class"; the module is imported only when that backend is loaded.
BACKENDS: dict[str, str] = {
    "onnxruntime": "icnseg.runtime.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "icnseg.runtime.tensorrt_backend:TensorRTBackend",
}


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


class Backend:
    """One loaded network (e.g. prm.onnx) on one device: the base of every graph backend.

    The public methods check their arguments and the closed state once, here, and call the
    backend's ``_run`` / ``_run_device`` / ``_to_host`` / ``_close`` (Polygraphy's runner
    pattern). Subclasses set ``name``, ``device``, ``path``, ``input_names`` and
    ``output_names`` and implement the ``_`` methods; ``load`` is their constructor.
    """

    name: str
    device: str
    path: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    _closed: bool = False

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", **options: Any) -> Backend:
        """Load the network at ``path`` for ``device`` (backend-specific ``options``)."""
        raise NotImplementedError

    def _check(self, feeds: Mapping[str, Any], outputs: Sequence[str] | None) -> list[str]:
        """The output names to compute; InputError for a closed backend or bad names."""
        if self._closed:
            raise InputError(f"{self.path}: backend already closed")
        missing = [n for n in self.input_names if n not in feeds]
        unknown = [n for n in feeds if n not in self.input_names]
        if missing or unknown:
            raise InputError(f"{self.path}: inputs are {', '.join(self.input_names)} "
                             f"(missing {missing}, unknown {unknown})")
        names = list(outputs or self.output_names)
        if bad := [n for n in names if n not in self.output_names]:
            raise InputError(f"{self.path}: no output {', '.join(bad)}; outputs are "
                             f"{', '.join(self.output_names)}")
        return names

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
            ) -> dict[str, np.ndarray]:
        """Run once; return {output name: host array} (all outputs unless ``outputs``)."""
        return self._run(feeds, self._check(feeds, outputs))

    def run_device(self, feeds: Mapping[str, np.ndarray | DeviceArray],
                   outputs: Sequence[str] | None = None) -> dict[str, DeviceArray]:
        """Run once; feeds may be host arrays or DeviceArrays of earlier runs, outputs stay
        on the device (valid until this backend's next run)."""
        return self._run_device(feeds, self._check(feeds, outputs))

    def to_host(self, array: DeviceArray) -> np.ndarray:
        """Copy a device array returned by ``run_device`` to a new host array."""
        if self._closed:
            raise InputError(f"{self.path}: backend already closed")
        return self._to_host(array)

    def close(self) -> None:
        """Release the session and its device memory (a second close does nothing)."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Backend:
        """Context manager: returns self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Context manager: closes."""
        self.close()

    def _run(self, feeds: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _run_device(self, feeds: Mapping[str, np.ndarray | DeviceArray], names: list[str]
                    ) -> dict[str, DeviceArray]:
        raise NotImplementedError

    def _to_host(self, array: DeviceArray) -> np.ndarray:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


def load_backend(name: str, path: str | os.PathLike, device: str = "cpu",
                 **options: Any) -> Backend:
    """Load ``path`` with backend ``name`` on ``device`` (ConfigError for an unknown one).

    ``options`` go to the backend's ``load`` (e.g. ``precision="fp16"``); None values are
    dropped, so callers can pass their defaults through.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    device = check_device(name, device)
    module, cls = BACKENDS[name].split(":")
    options = {k: v for k, v in options.items() if v is not None}
    return getattr(importlib.import_module(module), cls).load(path, device, **options)
