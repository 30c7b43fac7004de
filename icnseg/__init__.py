"""icnseg: weakly supervised instance segmentation (PRM + ICN), from PyTorch to ONNX and TensorRT."""

from __future__ import annotations

__version__ = "0.1.0"
