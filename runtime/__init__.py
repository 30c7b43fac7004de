"""Runtime: exported models run without torch (ONNX Runtime now; TensorRT later)."""

from __future__ import annotations

from icnseg.runtime.backend import BACKENDS, Backend, load_backend
from icnseg.runtime.exported_model import ExportedModel

__all__ = ["BACKENDS", "Backend", "ExportedModel", "load_backend"]
