"""Inference settings shared by every backend (torch-free): PeakConfig and SegmentConfig.

They live here, not beside the torch code, so that the ONNX runtime can build and validate
them without importing torch; ``icnseg.models.prm`` and ``icnseg.eager`` re-export them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from icnseg.errors import ConfigError
from icnseg.matching import MatchConfig

# PRM backprop rules (DESIGN "PRM generation"): prm = the original PRM code's rule (default),
# gradient = Eq. 2 as printed (plain chain rule).
RULES = ("prm", "gradient")
# The original PRM code's stabiliser of 1/|Z|, also the threshold below which Z counts as zero.
PRM_EPS = 1e-10


def check_rule(rule: str, what: str = "backprop rule") -> str:
    """``rule`` if it is one of RULES, else ConfigError naming ``what``."""
    if rule not in RULES:
        raise ConfigError(f"unknown {what} {rule!r}; choose one of {', '.join(RULES)}")
    return rule


@dataclass(frozen=True)
class PeakConfig:
    """Inference peak finding (Eq. 1) and class presence."""

    filter: str = "gaussian"  # G in Eq. 1: "gaussian" (depthwise conv) or "median"
    sigma: float = 1.0  # Gaussian standard deviation, in class-response-map pixels
    kernel_size: int = 7  # Gaussian kernel side (odd); 7 = +-3 sigma for sigma 1
    median_size: int = 3  # median filter side (odd), for filter="median"
    window: int = 3  # local-maximum window (odd), MaxPool(window, 1, window//2)
    score_threshold: float = 0.5  # class present if sigmoid(peak-stimulation score) >= this
    max_peaks: int = 32  # K_max: most peaks returned per image (fixed size in the export)
    # Beyond Eq. 1 (None/0 = the paper as printed): keep a peak only if the class response
    # M_c there is >= min_response (positive class evidence), and if its P value is >=
    # relative x the largest P of its class. Weak classifiers give many noise peaks otherwise.
    min_response: float | None = None
    relative: float = 0.0

    def __post_init__(self) -> None:
        """Validate the options."""
        if self.filter not in ("gaussian", "median"):
            raise ConfigError(f"peak filter must be 'gaussian' or 'median', got {self.filter!r}")
        for name in ("kernel_size", "median_size", "window"):
            v = getattr(self, name)
            if v < 1 or v % 2 == 0:
                raise ConfigError(f"PeakConfig.{name} must be odd and >= 1, got {v}")
        if self.sigma <= 0:
            raise ConfigError(f"PeakConfig.sigma must be > 0, got {self.sigma}")
        if self.max_peaks < 1:
            raise ConfigError(f"PeakConfig.max_peaks must be >= 1, got {self.max_peaks}")
        if not 0.0 <= self.relative <= 1.0:
            raise ConfigError(f"PeakConfig.relative must be in [0,1], got {self.relative}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"score_threshold must be in [0,1], got {self.score_threshold}")


@dataclass(frozen=True)
class SegmentConfig:
    """Everything Algorithm 1 needs besides the model; recorded in every output."""

    iterations: int = 3  # T: ICN passes at test time (paper 3.2); 0 = naive PRM (w/o ICN)
    threshold: float = 0.5  # binarise the enhanced map V at this value
    naive_threshold: float = 0.2  # binarise the min-max normalised naive PRM when T = 0
    rule: str = "prm"  # PRM backprop rule: prm (original PRM code) | gradient (Eq. 2 as printed)
    peaks: PeakConfig = field(default_factory=PeakConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    min_quality: float = 0.0  # drop instances whose best match quality is below this
    # Matching runs at the image's own size (as in the PRM code), its long side capped at this
    # many pixels (None: no cap); built-in proposals are made there and the maps upsampled.
    match_max_side: int | None = 1024

    def __post_init__(self) -> None:
        """Validate the options."""
        check_rule(self.rule)
        if self.iterations < 0:
            raise ConfigError(f"iterations must be >= 0 (got {self.iterations})")
        if self.match_max_side is not None and (
                isinstance(self.match_max_side, bool) or not isinstance(self.match_max_side, int)
                or self.match_max_side < 1):
            raise ConfigError(f"match_max_side must be an integer >= 1 or None "
                              f"(got {self.match_max_side!r})")
        for name in ("threshold", "naive_threshold"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in (0, 1) (got {getattr(self, name)})")

    def to_dict(self) -> dict:
        """Plain-JSON form for output files."""
        return asdict(self)


def config_from_dict(saved_config: dict[str, Any], **overrides: Any) -> SegmentConfig:
    """SegmentConfig from a checkpoint/manifest config (``peaks``/``segment``/``match``) + flags.

    ``overrides["match"]`` / ``overrides["peaks"]`` may be dicts of MatchConfig / PeakConfig
    fields to change.
    """
    saved = dict(saved_config.get("segment", {}))
    try:
        peaks = PeakConfig(**{**saved_config.get("peaks", {}), **saved.pop("peaks", {})})
        match = MatchConfig(**{**saved_config.get("match", {}), **saved.pop("match", {})})
        fields = {**saved, **overrides}
        if isinstance(fields.get("match"), dict):
            match = MatchConfig(**{**asdict(match), **fields.pop("match")})
        if isinstance(fields.get("peaks"), dict):
            peaks = PeakConfig(**{**asdict(peaks), **fields.pop("peaks")})
        fields.setdefault("match", match)
        fields.setdefault("peaks", peaks)
        return SegmentConfig(**fields)
    except TypeError as exc:  # an unknown key in a saved config
        raise ConfigError(f"bad segment settings: {exc}") from exc
