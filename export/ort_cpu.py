"""A CPU ONNX Runtime session for export-time checks (parity, INT8 calibration inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from icnseg.ort import import_ort


def cpu_session(path: str | Path, needed_for: str) -> Any:
    """An ``InferenceSession`` on the CPU EP; BackendUnavailable saying what needs it."""
    ort = import_ort(needed_for)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
