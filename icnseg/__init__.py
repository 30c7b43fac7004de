"""icnseg: weakly supervised instance segmentation (PRM + ICN), PyTorch to ONNX and TensorRT."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load", "read_image", "segment", "segment_batch", "segment_stream"]

# name -> module; imported on first use: `import icnseg` must not import torch.
_LAZY = {
    "load": "icnseg.loader",
    "read_image": "icnseg.data.images",
    "segment": "icnseg.segmenter",
    "segment_batch": "icnseg.segmenter",
    "segment_stream": "icnseg.segmenter",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'icnseg' has no attribute {name!r}")
