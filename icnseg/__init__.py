"""icnseg: weakly supervised instance segmentation (PRM + ICN), PyTorch to ONNX and TensorRT."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load", "segment"]


def __getattr__(name: str) -> Any:
    # Lazy: `import icnseg` must not import torch (the runtime runs without it).
    if name == "load":
        from icnseg.model import load

        return load
    if name == "segment":
        from icnseg.pipeline import segment

        return segment
    raise AttributeError(f"module 'icnseg' has no attribute {name!r}")
