"""Algorithm 1 in eager PyTorch: the reference every exported backend is compared with.

peaks (Eq. 1) -> batched PRM backprop (Eq. 2) -> ICN x T -> binarise -> matching (Eq. 5)
-> top proposal per instance -> class-aware mask NMS -> instances. Everything after the
networks is the torch-free ``icnseg.postprocess`` (shared with the ONNX runtime); the names
are re-exported here for existing callers.
"""

from __future__ import annotations

import numpy as np

from icnseg.errors import ConfigError
from icnseg.outputs import Instance
from icnseg.postprocess import (  # noqa: F401 (re-exported)
    Clock,
    Stages,
    binary_maps,
    check_image,
    crm_background,
    no_clock,
    prepare_input,
    rescale_instances,
    resize_proposals,
    segment_stages,
    select_instances,
)
from icnseg.proposals.types import Proposals
from icnseg.settings import SegmentConfig, config_from_dict

__all__ = [
    "SegmentConfig",
    "Stages",
    "binary_maps",
    "check_image",
    "config_for",
    "crm_background",
    "rescale_instances",
    "resize_proposals",
    "run_stages",
    "segment",
    "segment_stages",
    "select_instances",
]


def config_for(model, **overrides) -> SegmentConfig:
    """The model's recorded settings (checkpoint ``peaks``/``segment``/``match``) + overrides."""
    return config_from_dict(model.config, **overrides)


def _to_input(model, image: np.ndarray):
    import torch

    resized, x = prepare_input(image, model.input_size, model.mean, model.std)
    return resized, torch.from_numpy(x)


def run_stages(model, image: np.ndarray, cfg: SegmentConfig, clock: Clock = no_clock) -> Stages:
    """Peaks, naive PRMs and (T > 0) ICN-enhanced maps of one image, at the model input size."""
    import torch

    from icnseg.models.icn import enhance
    from icnseg.models.prm import class_scores, find_peaks
    from icnseg.models.prm_backprop import peak_response_maps

    with clock("preprocess"):
        resized, x = _to_input(model, image)
    with clock("prm_forward"), torch.no_grad():
        crm = model.classifier(x)[0]
        conf = class_scores(crm, cfg.peaks).numpy()
        peaks = find_peaks(crm, conf >= cfg.peaks.score_threshold, cfg.peaks)
    with clock("prm_backward"):
        prm = peak_response_maps(model.classifier, x, peaks, rule=cfg.rule).detach()
    stages = Stages(resized, conf, peaks, prm.numpy(), crm=crm.numpy())
    if cfg.iterations > 0 and len(peaks):
        if model.icn is None:
            raise ConfigError(
                f"{model.source}: has no ICN (a stage-1 checkpoint); use --iterations 0"
            )
        with clock("icn"), torch.no_grad():
            xs = x.expand(len(peaks), -1, -1, -1)
            v = enhance(model.icn, xs, prm[:, None], iterations=cfg.iterations)
        stages.enhanced = v[:, 0].numpy()
    return stages


def segment(
    model,
    image_rgb_uint8: np.ndarray,
    proposals: Proposals | None = None,
    backend: str = "torch",
    config: SegmentConfig | None = None,
) -> list[Instance]:
    """Segment one RGB uint8 image with Algorithm 1; masks at the image's own size."""
    if backend != "torch":
        if backend in ("onnxruntime", "tensorrt") and hasattr(model, "segment"):
            return model.segment(image_rgb_uint8, proposals=proposals, config=config)
        raise ConfigError(
            f"segment(): backend {backend!r} needs an exported model "
            "(icnseg.runtime.ExportedModel); use 'torch' with icnseg.load()"
        )
    cfg = config or config_for(model)
    image = check_image(image_rgb_uint8)
    return segment_stages(
        run_stages(model, image, cfg), image.shape[:2], model.classes, cfg, proposals
    )
