"""ONNX Runtime backend: CPU execution provider now; CUDA and TensorRT EPs chosen by device."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from icnseg.errors import BackendUnavailable, InputError

# device -> execution providers in priority order (CPU last as ORT's own fallback).
PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
_EXTRA = {"cpu": "cpu", "cuda": "gpu", "tensorrt": "gpu"}


def _ort():
    """Import onnxruntime or say how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            "the onnxruntime backend needs ONNX Runtime: pip install 'icnseg[cpu]' "
            "(or 'icnseg[gpu]' for CUDA)"
        ) from exc
    return onnxruntime


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device``; BackendUnavailable if this ORT build lacks them."""
    ort = _ort()
    wanted = PROVIDERS[device]
    have = set(ort.get_available_providers())
    if wanted[0] not in have:
        raise BackendUnavailable(
            f"device {device!r} needs ONNX Runtime's {wanted[0]}, which this installation "
            f"lacks (available: {', '.join(sorted(have))}): pip install 'icnseg[{_EXTRA[device]}]'"
        )
    return [p for p in wanted if p in have]


class OnnxRuntimeBackend:
    """One ONNX model in an ``onnxruntime.InferenceSession``."""

    name = "onnxruntime"

    def __init__(self, session, device: str, path: Path) -> None:
        """Wrap an existing session (use ``load``)."""
        self.session, self.device, self.path = session, device, path
        self.input_names = tuple(i.name for i in session.get_inputs())
        self.output_names = tuple(o.name for o in session.get_outputs())

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> OnnxRuntimeBackend:
        """Create a session for ``path`` on ``device`` (cpu | cuda | tensorrt)."""
        ort = _ort()
        providers = providers_for(device)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{path}: ONNX Runtime cannot load it ({msg})") from exc
        return cls(session, device, Path(path))

    def run(
        self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run once on host arrays; return {name: array}."""
        if self.session is None:
            raise InputError(f"{self.path}: backend already closed")
        names = list(outputs or self.output_names)
        values = self.session.run(names, {k: np.ascontiguousarray(v) for k, v in feeds.items()})
        return dict(zip(names, values, strict=True))

    def close(self) -> None:
        """Drop the session."""
        self.session = None

    def __enter__(self) -> OnnxRuntimeBackend:
        """Context manager: returns self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Context manager: closes."""
        self.close()
