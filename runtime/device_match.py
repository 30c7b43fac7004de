"""Matching + NMS of an exported model's device-resident maps with the CUDA kernels.

The maps an engine (or ONNX Runtime's CUDA EP) leaves on the GPU go straight into
``gpu_matcher.match_instances``: no host copy of the [K, H, W] maps, one wait per image for
the few numbers instance records need. Used by ``ExportedModel.segment`` on a GPU when
pycuda is installed and the settings are ones the kernels implement; otherwise the numpy
matcher runs on host copies (same results).
"""

from __future__ import annotations

import importlib
from typing import Any

from icnseg.errors import ConfigError
from icnseg.outputs import Instance
from icnseg.postprocess import Stages, instances_from, resize_proposals
from icnseg.proposals.types import Proposals
from icnseg.runtime.backend import DeviceArray
from icnseg.settings import SegmentConfig


def device_matcher_available(cfg: SegmentConfig) -> bool:
    """True when pycuda is installed and ``cfg`` uses what the CUDA matcher implements."""
    try:
        importlib.import_module("pycuda.gpuarray")
    except Exception:  # noqa: BLE001 - absent, or a pycuda that cannot load: numpy matcher
        return False
    from icnseg.runtime.gpu_matcher import check_supported

    try:
        check_supported(cfg.match)
    except ConfigError:
        return False
    return True


def as_gpuarray(arr: DeviceArray) -> Any:
    """A pycuda GPUArray view of a CUDA DeviceArray (no copy; the owner stays referenced)."""
    from icnseg.runtime import cuda_launch

    if arr.device != "cuda":
        raise ConfigError(f"the CUDA matcher needs maps on the GPU, not on {arr.device!r}")
    view = cuda_launch.gpuarray().GPUArray(arr.shape, arr.dtype, gpudata=int(arr.ptr))
    view.icnseg_owner = arr.owner  # keeps the engine / OrtValue buffer alive with the view
    return view


def match_on_device(stages: Stages, maps: DeviceArray, proposals: Proposals, classes,
                    cfg: SegmentConfig, normalize: bool, stream: Any = None
                    ) -> list[Instance]:
    """Instances at the model input size from device maps [K, H, W] (float32)."""
    from icnseg.runtime.gpu_matcher import match_instances

    proposals = resize_proposals(proposals, stages.image.shape[:2])
    cls = stages.peaks[:, 0].astype(int)
    match = match_instances(as_gpuarray(maps), proposals, cls, stages.class_conf[cls], cfg,
                            normalize=normalize, stream=stream)
    return instances_from(stages, proposals, classes, match.kept, match.index, cls,
                          match.score, match.quality)
