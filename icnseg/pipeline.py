"""Algorithm 1 in eager PyTorch: the reference every exported backend is compared with.

peaks (Eq. 1) -> batched PRM backprop (Eq. 2) -> ICN x T -> binarise -> matching (Eq. 5)
-> top proposal per instance -> class-aware mask NMS -> instances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from icnseg.errors import ConfigError, InputError
from icnseg.matching import MatchConfig, best_proposals, mask_nms, match_scores
from icnseg.models.prm import PeakConfig
from icnseg.outputs import Instance
from icnseg.proposals.types import Proposals


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

    def __post_init__(self) -> None:
        """Validate the options."""
        if self.iterations < 0:
            raise ConfigError(f"iterations must be >= 0 (got {self.iterations})")
        for name in ("threshold", "naive_threshold"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in (0, 1) (got {getattr(self, name)})")

    def to_dict(self) -> dict:
        """Plain-JSON form for output files."""
        return asdict(self)


def config_for(model, **overrides) -> SegmentConfig:
    """The model's recorded settings (checkpoint ``peaks``/``segment``/``match``) + overrides."""
    saved = dict(model.config.get("segment", {}))
    peaks = PeakConfig(**{**model.config.get("peaks", {}), **saved.pop("peaks", {})})
    match = MatchConfig(**{**model.config.get("match", {}), **saved.pop("match", {})})
    fields = {**saved, **overrides}
    if isinstance(fields.get("match"), dict):
        match = MatchConfig(**{**asdict(match), **fields.pop("match")})
    fields.setdefault("match", match)
    fields.setdefault("peaks", peaks)
    return SegmentConfig(**fields)


@dataclass
class Stages:
    """Intermediate results of one image at the model's input size (for ablations and tests)."""

    image: np.ndarray  # uint8 [H, W, 3] resized to the model input
    class_conf: np.ndarray  # [C] sigmoid class scores
    peaks: np.ndarray  # [K, 4] (class, y, x, value) in class-response-map pixels
    prm: np.ndarray  # [K, H, W] naive PRMs
    enhanced: np.ndarray | None = None  # [K, H, W] ICN output in [0, 1] after T passes
    crm: np.ndarray | None = None  # [C, h, w] class response maps


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``image`` as RGB uint8 [H, W, 3], or raise InputError naming ``name``."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"{name}: expected an RGB image [H, W, 3], got shape {a.shape}")
    if a.dtype != np.uint8:
        raise InputError(f"{name}: expected uint8 pixels, got {a.dtype}")
    return np.ascontiguousarray(a[..., :3])


def _to_input(model, image: np.ndarray):
    import torch

    from icnseg.data.transforms import normalize

    h, w = model.input_size
    resized = cv2.resize(
        image,
        (w, h),
        interpolation=cv2.INTER_AREA
        if image.shape[0] * image.shape[1] > h * w
        else cv2.INTER_LINEAR,
    )
    return resized, torch.from_numpy(normalize(resized, model.mean, model.std))[None]


def run_stages(model, image: np.ndarray, cfg: SegmentConfig) -> Stages:
    """Peaks, naive PRMs and (T > 0) ICN-enhanced maps of one image, at the model input size."""
    import torch

    from icnseg.models.icn import enhance
    from icnseg.models.prm import class_scores, find_peaks
    from icnseg.models.prm_backprop import peak_response_maps

    resized, x = _to_input(model, image)
    with torch.no_grad():
        crm = model.classifier(x)[0]
        conf = class_scores(crm, cfg.peaks).numpy()
    peaks = find_peaks(crm, conf >= cfg.peaks.score_threshold, cfg.peaks)
    prm = peak_response_maps(model.classifier, x, peaks, rule=cfg.rule).detach()
    stages = Stages(resized, conf, peaks, prm.numpy(), crm=crm.numpy())
    if cfg.iterations > 0 and len(peaks):
        if model.icn is None:
            raise ConfigError(
                f"{model.source}: has no ICN (a stage-1 checkpoint); use --iterations 0"
            )
        with torch.no_grad():
            xs = x.expand(len(peaks), -1, -1, -1)
            v = enhance(model.icn, xs, prm[:, None], iterations=cfg.iterations)
        stages.enhanced = v[:, 0].numpy()
    return stages


def binary_maps(stages: Stages, cfg: SegmentConfig) -> np.ndarray:
    """V_k: the enhanced map (or, for T = 0, the normalised naive PRM) binarised, [K, H, W]."""
    from icnseg.train.pseudo_labels import minmax

    if stages.enhanced is not None:
        return stages.enhanced >= cfg.threshold
    return minmax(stages.prm) >= cfg.naive_threshold


def crm_background(stages: Stages) -> np.ndarray:
    """Per-instance class response map at input size [K, H, W] (for background="crm")."""
    h, w = stages.image.shape[:2]
    maps = [
        cv2.resize(stages.crm[int(p[0])], (w, h), interpolation=cv2.INTER_LINEAR)
        for p in stages.peaks
    ]
    return np.stack(maps) if maps else np.zeros((0, h, w), np.float32)


def select_instances(
    stages: Stages, proposals: Proposals, classes, cfg: SegmentConfig
) -> list[Instance]:
    """Match every instance to its best proposal, score it and apply class-aware mask NMS."""
    k = len(stages.peaks)
    if k == 0 or len(proposals) == 0:
        return []
    v = binary_maps(stages, cfg)
    crm = crm_background(stages) if cfg.match.background == "crm" else None
    scores = match_scores(v, proposals, cfg.match, prm=stages.prm, crm=crm)
    idx, quality = best_proposals(scores)
    cls = stages.peaks[:, 0].astype(int)
    # Instance score = class confidence x match quality (clipped to [0, 1]); quality ranks
    # peaks of one class, confidence ranks classes, as the mAP^r protocol needs both.
    score = stages.class_conf[cls] * np.clip(quality, 0.0, 1.0)
    ok = np.isfinite(quality) & (quality >= cfg.min_quality)
    cand = np.flatnonzero(ok)
    masks = proposals.masks[idx[cand]]
    keep = cand[mask_nms(masks, score[cand], cls[cand], cfg.match.nms_iou)]
    keep = keep[np.argsort(-score[keep], kind="stable")]
    h, w = stages.image.shape[:2]
    stride_y = h / stages.crm.shape[1]
    stride_x = w / stages.crm.shape[2]
    return [
        Instance(
            class_name=classes[cls[i]],
            class_index=int(cls[i]),
            score=float(score[i]),
            mask=proposals.masks[idx[i]],
            peak=(
                int((stages.peaks[i, 1] + 0.5) * stride_y),
                int((stages.peaks[i, 2] + 0.5) * stride_x),
            ),
            quality=float(quality[i]),
        )
        for i in keep
    ]


def rescale_instances(instances: list[Instance], shape: tuple[int, int]) -> list[Instance]:
    """Resize instance masks (nearest) and peaks from the model input size to ``shape``."""
    out = []
    for inst in instances:
        h, w = inst.mask.shape
        m = cv2.resize(
            inst.mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST
        ).astype(bool)
        peak = (
            None
            if inst.peak is None
            else (int(inst.peak[0] * shape[0] / h), int(inst.peak[1] * shape[1] / w))
        )
        out.append(Instance(inst.class_name, inst.class_index, inst.score, m, peak, inst.quality))
    return out


def resize_proposals(proposals: Proposals, shape: tuple[int, int]) -> Proposals:
    """Proposals resized (nearest) to ``shape``; the superpixel factorisation is kept."""
    if proposals.shape == tuple(shape):
        return proposals
    h, w = shape

    def nearest(a):
        return cv2.resize(a, (w, h), interpolation=cv2.INTER_NEAREST)

    if proposals.superpixels is not None:
        sp = nearest(proposals.superpixels.astype(np.int32))
        return Proposals.from_membership(sp, proposals.membership)
    masks = (
        np.stack([nearest(m.astype(np.uint8)) for m in proposals.masks]).astype(bool)
        if len(proposals)
        else np.zeros((0, h, w), bool)
    )
    return Proposals(masks=masks)


def segment(
    model,
    image_rgb_uint8: np.ndarray,
    proposals: Proposals | None = None,
    backend: str = "torch",
    config: SegmentConfig | None = None,
) -> list[Instance]:
    """Segment one RGB uint8 image with Algorithm 1; masks at the image's own size."""
    if backend != "torch":
        raise ConfigError(f"segment(): backend {backend!r} is not available here; use 'torch'")
    cfg = config or config_for(model)
    image = check_image(image_rgb_uint8)
    return segment_stages(
        run_stages(model, image, cfg), image.shape[:2], model.classes, cfg, proposals
    )


def segment_stages(
    stages: Stages,
    shape: tuple[int, int],
    classes,
    cfg: SegmentConfig,
    proposals: Proposals | None = None,
) -> list[Instance]:
    """Proposals (built-in unless given) -> matching -> NMS, masks returned at ``shape``."""
    if proposals is None:
        from icnseg.proposals.generate import generate_proposals

        proposals = generate_proposals(stages.image)
    else:
        proposals = resize_proposals(proposals, stages.image.shape[:2])
    return rescale_instances(select_instances(stages, proposals, classes, cfg), shape)
