"""Algorithm 1 in eager PyTorch: the reference every exported backend is compared with.

peaks (Eq. 1) -> batched PRM backprop (Eq. 2) -> ICN x T; selection (binarise, Eq. 5
matching, top proposal, class-aware mask NMS) is the torch-free ``icnseg.postprocess``
shared with every backend (``SegmenterBase.select``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.base_segmenter import SegmenterBase
from icnseg.checkpoint import Checkpoint
from icnseg.data.transforms import MEAN, STD
from icnseg.errors import ConfigError
from icnseg.loader import TORCH
from icnseg.segmenter import Clock, Prepared, Stages, no_clock
from icnseg.settings import SegmentConfig


@dataclass
class EagerModel(SegmenterBase):
    """A trained ICN model on PyTorch (the ``torch`` backend); modules in eval mode."""

    classes: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W) the model runs at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classifier: Any  # PRMClassifier: normalised image [B,3,H,W] -> class response maps
    icn: Any | None  # ICN: image [K,3,H,W] + PRM [K,1,H,W] -> map [K,1,H,W]; None after stage 1
    config: dict[str, Any] = field(default_factory=dict)  # the checkpoint's config
    source: str = ""
    backend: str = TORCH
    device: str = "cpu"
    precision: str = "fp32"

    @property
    def settings(self) -> dict[str, Any]:
        """The recorded segment settings (the checkpoint config holds them)."""
        return self.config

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> EagerModel:
        """Build the modules a checkpoint describes and load its weights (eval mode)."""
        from icnseg.config_schema import validate_checkpoint_config
        from icnseg.models.build import build_classifier, build_icn, load_strict

        cfg = ckpt.config
        validate_checkpoint_config(ckpt.path, cfg)
        classifier = build_classifier(cfg)
        load_strict(classifier, ckpt.sub_state("classifier"), Path(ckpt.path), "classifier")
        icn = build_icn(cfg)
        if icn is not None:
            load_strict(icn, ckpt.sub_state("icn"), Path(ckpt.path), "ICN")
            icn.eval()
        classifier.eval()
        return cls(classes=tuple(cfg["classes"]), input_size=tuple(cfg["input_size"]),
                   mean=tuple(cfg.get("mean", MEAN)), std=tuple(cfg.get("std", STD)),
                   classifier=classifier, icn=icn, config=cfg, source=str(ckpt.path))

    def state(self) -> dict[str, Any]:
        """Return the prefixed state dict that a checkpoint stores."""
        out = {f"classifier.{k}": v for k, v in self.classifier.state_dict().items()}
        if self.icn is not None:
            out.update({f"icn.{k}": v for k, v in self.icn.state_dict().items()})
        return out

    def check_config(self, cfg: SegmentConfig) -> None:
        """ConfigError for T > 0 on a stage-1 checkpoint (no ICN)."""
        if cfg.iterations and self.icn is None:
            raise ConfigError(f"{self.source}: has no ICN (a stage-1 checkpoint); "
                              "use --iterations 0")

    def forward_peaks(self, x: Any, cfg: SegmentConfig, clock: Clock = no_clock
                      ) -> tuple[Any, np.ndarray, np.ndarray]:
        """Class response maps [C,h,w], class confidences [C] and Eq. 1 peaks [K,4] of x."""
        import torch

        from icnseg.models.prm import class_scores, find_peaks

        with clock("prm_forward"), torch.no_grad():
            crm = self.classifier(x)[0]
            conf = class_scores(crm, cfg.peaks).numpy()
            peaks = find_peaks(crm, conf >= cfg.peaks.score_threshold, cfg.peaks)
        return crm, conf, peaks

    def infer(self, prepared: Prepared, cfg: SegmentConfig, clock: Clock = no_clock,
              keep_maps: bool = False) -> Stages:
        """Peaks, naive PRMs (one batched backward) and (T > 0) ICN-enhanced maps."""
        import torch

        from icnseg.models.icn import enhance
        from icnseg.models.prm_backprop import peak_response_maps

        self.check_config(cfg)
        x = torch.from_numpy(prepared.x)
        crm, conf, peaks = self.forward_peaks(x, cfg, clock)
        with clock("prm_backward"):
            prm = peak_response_maps(self.classifier, x, peaks, rule=cfg.rule).detach()
        stages = Stages(prepared.model_input, conf, peaks, prm.numpy(), crm=crm.numpy())
        if cfg.iterations > 0 and len(peaks):
            with clock("icn"), torch.no_grad():
                xs = x.expand(len(peaks), -1, -1, -1)
                v = enhance(self.icn, xs, prm[:, None], iterations=cfg.iterations)
            stages.enhanced = v[:, 0].numpy()
        return stages
