"""The numpy stages of Algorithm 1 shared by every backend (torch-free).

Pre-processing (resize + normalise to the model input) and everything after the networks:
maps upsampled to the proposals' size (the image's own, capped: ``icnseg.upsample``) ->
binarise -> matching (Eq. 5) -> top proposal per instance -> class-aware mask NMS -> masks
at the image's own size. ``icnseg.eager`` (torch) and ``icnseg.runtime`` (ONNX) both
call these, so backends differ only in how they compute ``Stages``.
"""

from __future__ import annotations

import cv2
import numpy as np

from icnseg.instance import Instance
from icnseg.matching import background_template, best_proposals, contour, mask_nms, match_scores
from icnseg.proposals.types import Proposals
from icnseg.segmenter import Clock, Stages, no_clock
from icnseg.settings import SegmentConfig
from icnseg.upsample import match_shape, upsample_maps, upsampled_at_least


def instance_score(confidence: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Instance score = class confidence x match quality clipped to [0, 1] (float64).

    Quality ranks the peaks of one class, confidence ranks classes, as the mAP^r protocol
    needs both. The CUDA NMS kernel (cpp_ext/nms.cu) computes the same product on the device.
    """
    return np.asarray(confidence, np.float64) * np.clip(quality, 0.0, 1.0)


def minmax(maps: np.ndarray) -> np.ndarray:
    """Scale each map of a stack [K, H, W] to [0, 1] (constant maps become 0)."""
    if maps.size == 0:
        return np.zeros(maps.shape, np.float32)
    flat = maps.reshape(len(maps), -1)
    lo = flat.min(1, keepdims=True)
    hi = flat.max(1, keepdims=True)
    return ((flat - lo) / np.maximum(hi - lo, 1e-12)).reshape(maps.shape).astype(np.float32)


def binary_maps(stages: Stages, cfg: SegmentConfig, shape: tuple[int, int] | None = None
                ) -> np.ndarray:
    """V_k: the enhanced map (or, for T = 0, the normalised naive PRM) upsampled to ``shape``
    (None: the model input size) and binarised there, bool [K, H, W]."""
    shape = shape or stages.image.shape[:2]
    if stages.enhanced is not None:
        return upsampled_at_least(stages.enhanced, shape, cfg.threshold)
    return upsampled_at_least(minmax(stages.prm), shape, cfg.naive_threshold)


def crm_background(stages: Stages, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Per-instance class response map at ``shape`` (None: input size) [K, H, W] (for
    background="crm")."""
    h, w = shape or stages.image.shape[:2]
    maps = [
        cv2.resize(stages.crm[int(p[0])], (w, h), interpolation=cv2.INTER_LINEAR)
        for p in stages.peaks
    ]
    return np.stack(maps) if maps else np.zeros((0, h, w), np.float32)


def select_instances(
    stages: Stages, proposals: Proposals, classes, cfg: SegmentConfig, clock: Clock = no_clock
) -> list[Instance]:
    """Match every instance to its best proposal, score it and apply class-aware mask NMS."""
    k = len(stages.peaks)
    if k == 0 or len(proposals) == 0:
        return []
    shape = proposals.shape
    with clock("binarise"):
        v = binary_maps(stages, cfg, shape)
        scoring = cfg.match.scoring
        crm = (crm_background(stages, shape)
               if cfg.match.background == "crm" and scoring != "iou" else None)
        background = background_template(v, cfg.match, crm) if scoring != "iou" else None
        edge = contour(v, cfg.match.contour_width) if scoring in ("icn", "paper") else None
        prm = upsample_maps(stages.prm, shape) if scoring == "prm" else None
    with clock("matcher"):
        scores = match_scores(v, proposals, cfg.match, prm=prm, background=background,
                              edge=edge)
        idx, quality = best_proposals(scores)
    with clock("nms"):
        cls = stages.peaks[:, 0].astype(int)
        score = instance_score(stages.class_conf[cls], quality)
        ok = np.isfinite(quality) & (quality >= cfg.min_quality)
        cand = np.flatnonzero(ok)
        masks = proposals.mask_rows(idx[cand])
        keep = cand[mask_nms(masks, score[cand], cls[cand], cfg.match.nms_iou)]
        keep = keep[np.argsort(-score[keep], kind="stable")]
    return instances_from(stages, proposals, classes, keep, idx, cls, score, quality)


def peak_pixels(peaks: np.ndarray, grid: tuple[int, int], shape: tuple[int, int]
                ) -> np.ndarray:
    """Pixel (row, col) int64 [K, 2] at ``shape`` of each peak [K, 3] (class, row, col) of a
    ``grid``-sized response map: the centre of its cell."""
    stride = np.array([shape[0] / grid[0], shape[1] / grid[1]])
    return ((np.asarray(peaks)[:, 1:3] + 0.5) * stride).astype(np.int64)


def instances_from(stages: Stages, proposals: Proposals, classes, keep: np.ndarray,
                   idx: np.ndarray, cls: np.ndarray, score: np.ndarray, quality: np.ndarray
                   ) -> list[Instance]:
    """Instance records for the kept peaks (masks and peaks at the proposals' size)."""
    px = peak_pixels(stages.peaks, stages.crm.shape[1:], proposals.shape)
    return [
        Instance(
            class_name=classes[cls[i]],
            class_index=int(cls[i]),
            score=float(score[i]),
            mask=proposals.mask_rows(idx[i:i + 1])[0],
            peak=(int(px[i, 0]), int(px[i, 1])),
            quality=float(quality[i]),
        )
        for i in keep
    ]


def rescale_instances(instances: list[Instance], shape: tuple[int, int]) -> list[Instance]:
    """Resize instance masks (nearest) and peaks from the matching size to ``shape``."""
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


def proposals_for(image: np.ndarray, proposals: Proposals | None,
                  max_side: int | None = None) -> Proposals:
    """The proposals of an image at the matching size (its own, long side capped at
    ``max_side``): built-in ones made from the image at that size when none are given, else
    the given ones resized (nearest) to it (a no-op when they already have it)."""
    shape = match_shape(image.shape[:2], max_side)
    if proposals is None:
        from icnseg.proposals.generate import generate_proposals

        if image.shape[:2] != shape:
            image = cv2.resize(image, shape[::-1], interpolation=cv2.INTER_AREA)
        return generate_proposals(image)
    return resize_proposals(proposals, shape)

