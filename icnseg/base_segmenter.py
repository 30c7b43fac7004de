"""What every Segmenter shares: settings, host-side preparation and numpy instance selection.

Subclasses implement ``infer`` (their networks) and may override ``select`` (the GPU matcher,
the baseline's loops) and ``check_config`` (what their graphs cannot change).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from icnseg.instance import Instance
from icnseg.postprocess import proposals_for, rescale_instances, select_instances
from icnseg.preprocess import check_image, prepare_input
from icnseg.proposals.types import Proposals
from icnseg.segmenter import Clock, Prepared, Stages, no_clock
from icnseg.settings import SegmentConfig, config_from_dict


class SegmenterBase:
    """Base of the Segmenter implementations (see ``icnseg.segmenter.Segmenter``)."""

    classes: tuple[str, ...]
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    backend: str
    device: str = "cpu"
    precision: str = "fp32"
    source: str = ""
    # the recorded settings ({"segment": ..., "peaks": ..., "match": ...}), as saved
    settings: dict[str, Any]

    def segment_config(self, **overrides: Any) -> SegmentConfig:
        """The model's recorded settings + overrides, checked against what it can do."""
        cfg = config_from_dict(self.settings, **overrides)
        self.check_config(cfg)
        return cfg

    def check_config(self, cfg: SegmentConfig) -> None:
        """ConfigError if ``cfg`` asks for something this model cannot do (default: all ok)."""

    def prepare(self, image: np.ndarray, proposals: Proposals | None = None,
                clock: Clock = no_clock, build_proposals: bool = True,
                config: SegmentConfig | None = None) -> Prepared:
        """Check, resize and normalise one RGB uint8 image; make (unless ``build_proposals``
        is False) or resize its proposals, at the matching size of ``config`` (None: the
        model's recorded settings)."""
        with clock("preprocess"):
            image = check_image(image)
            resized, x = prepare_input(image, self.input_size, self.mean, self.std)
        props = None
        if proposals is not None or build_proposals:
            cap = (config or self.segment_config()).match_max_side
            with clock("proposals"):
                props = proposals_for(image, proposals, cap)
        return Prepared(image, resized, x, props)

    def proposals_of(self, prepared: Prepared, cfg: SegmentConfig | None = None) -> Proposals:
        """The prepared proposals, built in now (at ``cfg``'s matching size) if ``prepare``
        skipped them."""
        if prepared.proposals is None:
            cap = (cfg or self.segment_config()).match_max_side
            prepared.proposals = proposals_for(prepared.image, None, cap)
        return prepared.proposals

    def infer(self, prepared: Prepared, cfg: SegmentConfig, clock: Clock = no_clock,
              keep_maps: bool = False) -> Stages:
        """The networks of this backend (subclasses)."""
        raise NotImplementedError

    def select(self, prepared: Prepared, stages: Stages, cfg: SegmentConfig,
               clock: Clock = no_clock) -> list[Instance]:
        """Matching + NMS with the numpy reference; masks at the image's own size."""
        instances = select_instances(stages, self.proposals_of(prepared, cfg), self.classes,
                                     cfg, clock)
        with clock("postprocess"):
            return rescale_instances(instances, prepared.image.shape[:2])

    def close(self) -> None:
        """Release what the model holds (nothing by default)."""

    def __enter__(self) -> SegmenterBase:
        """Context manager: returns self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Context manager: closes."""
        self.close()
