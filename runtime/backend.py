"""The Backend protocol: one loaded network, named inputs/outputs, ``run(feeds) -> outputs``.

Backends import their engine library lazily, inside their own module, so choosing one never
imports another (the runtime never imports torch unless the torch backend is chosen).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from icnseg.errors import ConfigError

# name -> "module:Class"; the module is imported only when that backend is loaded.
BACKENDS: dict[str, str] = {
    "onnxruntime": "icnseg.runtime.onnxruntime_backend:OnnxRuntimeBackend",
}
DEVICES = ("cpu", "cuda", "tensorrt")


@runtime_checkable
class Backend(Protocol):
    """One loaded network (e.g. prm.onnx) on one device."""

    name: str
    device: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> Backend:
        """Load the network at ``path`` for ``device``."""
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


def load_backend(name: str, path: str | os.PathLike, device: str = "cpu") -> Backend:
    """Load ``path`` with backend ``name`` on ``device`` (ConfigError for an unknown one)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls).load(path, device)
