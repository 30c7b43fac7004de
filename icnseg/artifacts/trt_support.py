"""Which GPUs each TensorRT flavour supports, from NVIDIA's support matrices (pure, no CUDA).

TensorRT 10.x lists compute capability 7.5 (Turing) and newer; TensorRT for RTX
(``tensorrt_rtx``) lists only GeForce/RTX architectures: 7.5, 8.6, 8.9, 12.0 and (1.5) 12.1,
so data-centre GPUs (8.0, 9.0, ...) and Jetson (8.7) need ``tensorrt``.
"""

from __future__ import annotations

RTX_COMPUTE = ("7.5", "8.6", "8.9", "12.0", "12.1")  # TensorRT-RTX 1.0..1.5 support matrices
TRT_MIN_COMPUTE = (7, 5)  # TensorRT 10.x support matrix


def _version(cc: str) -> tuple[int, int]:
    major, _, minor = str(cc).partition(".")
    return int(major), int(minor or 0)


def unsupported_gpu(flavour: str, version: str, compute_capability: str, gpu: str = "this GPU"
                    ) -> str | None:
    """Why ``flavour`` (tensorrt | tensorrt_rtx) ``version`` cannot run on the GPU, or None."""
    if flavour == "tensorrt_rtx":
        if str(compute_capability) in RTX_COMPUTE:
            return None
        return (f"TensorRT-RTX {version} does not support {gpu} (compute capability "
                f"{compute_capability}; it supports {', '.join(RTX_COMPUTE)}): "
                "pip install 'icnseg[tensorrt]' (tensorrt) for this GPU")
    if _version(compute_capability) >= TRT_MIN_COMPUTE:
        return None
    return (f"TensorRT {version} does not support {gpu} (compute capability "
            f"{compute_capability}; it needs >= {'.'.join(map(str, TRT_MIN_COMPUTE))})")
