"""Proposal matching (paper section 3.3, Eq. 5), pseudo labels and NMS: the numpy reference.

Every score term is a sum over a proposal P of a per-pixel map, so the [K, N] score matrix is
a few matrix products: maps [T, H*W] @ masks [H*W, N], or, when the proposals are unions of
one superpixel map, per-superpixel sums [T, S] @ membership [S, N].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from icnseg.errors import ConfigError, InputError
from icnseg.jit import jit
from icnseg.nms import mask_iou, mask_nms, pixel_counts
from icnseg.proposals.types import Proposals

__all__ = [
    "MatchConfig", "background_template", "best_proposals", "contour", "mask_iou", "mask_nms",
    "match_scores", "pseudo_label",
]

_CHUNK_BYTES = 1 << 25  # float32 working set per dense matrix-product block
SCORINGS = ("icn", "paper", "prm", "iou")  # the matching rules MatchConfig.scoring accepts


@dataclass(frozen=True)
class MatchConfig:
    """Proposal-matching settings (defaults: paper section 3.3 and the original PRM code)."""

    scoring: str = "icn"  # "icn" (normalised Eq. 5, background subtracted) | "paper" | "prm"
    # | "iou" (Jaccard index of the binarised V and P)
    alpha: float = 0.95  # Eq. 5 weight of the overlap term V*P
    beta: float = 0.1  # Eq. 5 weight of the contour term E(V)*P
    gamma: float = 0.8  # Eq. 5 weight of the background term B(V)*P
    threshold: float = 0.5  # a float V is binarised at > threshold for E(V) and B(V)
    background: str = "dilate"  # "dilate": 1 - dilate(V) | "crm": class response map template
    dilate_radius: int = 5  # "dilate" background: square (2r+1)^2 dilation of V
    contour_width: int = 1  # E(V) = dilate XOR erode by a (2w+1)^2 square: a band 2w px wide
    crm_factor: float = 0.95  # "crm" background: scaled CRM below crm_factor x its mean
    prm_balance: float = 0.8  # "prm" scoring: weight of the PRM mass inside P
    prm_penalty: float = 1e-5  # "prm" scoring: weight of the background pixels inside P
    prm_contour_width: int = 2  # "prm" scoring: 5x5 morphological gradient of P
    prm_min_area: float = 0.00002  # "prm" scoring: proposals under 0.002 % of the image skipped
    prm_max_area: float = 0.85  # "prm" scoring: proposals of 85 % of the image or more skipped
    nms_iou: float = 0.5  # class-aware mask NMS threshold (IoU >= this suppresses)

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise ConfigError(f"scoring must be one of {', '.join(SCORINGS)}, not "
                              f"{self.scoring!r}")
        if self.background not in ("dilate", "crm"):
            raise ConfigError(f"background must be dilate or crm, not {self.background!r}")
        if min(self.dilate_radius, self.contour_width, self.prm_contour_width) < 0:
            raise ConfigError("dilate_radius and contour widths must be >= 0")


def _stack(x: np.ndarray, name: str) -> np.ndarray:
    """Accept [H, W] or [K, H, W]; return [K, H, W]."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise InputError(f"{name} must be [K, H, W], got shape {x.shape}")
    return x


def _morph(masks: np.ndarray, radius: int, op: int) -> np.ndarray:
    """Square (2r+1)^2 binary dilation/erosion of every mask; pixels outside the image are
    ignored (OpenCV's default border), so the image border itself is never a contour."""
    masks = masks.astype(np.uint8)
    if radius == 0 or masks.shape[0] == 0:
        return masks.astype(bool)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    fn = cv2.dilate if op == cv2.MORPH_DILATE else cv2.erode
    return np.stack([fn(m, kernel) for m in masks]).astype(bool).reshape(masks.shape)


def contour(V: np.ndarray, width: int = 1) -> np.ndarray:
    """Morphological gradient dilate(V) XOR erode(V) with a (2w+1)^2 square, bool [K, H, W].

    The band is 2*width pixels wide (width inside and width outside the boundary); width=1 is
    the 3x3 gradient E(V) of Eq. 5, width=2 the 5x5 one of the original PRM code.
    """
    V = _stack(V, "V").astype(bool)
    return _morph(V, width, cv2.MORPH_DILATE) ^ _morph(V, width, cv2.MORPH_ERODE)


def background_template(V: np.ndarray, cfg: MatchConfig | None = None,
                        crm: np.ndarray | None = None) -> np.ndarray:
    """B(V) of Eq. 5, bool [K, H, W]: pixels that are background for each instance.

    "dilate": 1 - dilate(V). "crm" (original PRM): the instance's class response map [K, h, w]
    upsampled (bicubic) to H x W, min-max scaled, background where < crm_factor x its mean.
    """
    cfg = cfg or MatchConfig()
    V = _stack(V, "V")
    vbin = V if V.dtype == bool else np.greater(V, cfg.threshold)
    if cfg.background == "dilate":
        return ~_morph(vbin, cfg.dilate_radius, cv2.MORPH_DILATE)
    if crm is None:
        raise ConfigError('background="crm" needs the class response map of every instance')
    crm = _stack(crm, "crm").astype(np.float32)
    if crm.shape[0] != V.shape[0]:
        raise InputError(f"crm has {crm.shape[0]} maps for {V.shape[0]} instances")
    h, w = V.shape[1:]
    out = np.zeros(V.shape, dtype=bool)
    for k, m in enumerate(crm):
        up = cv2.resize(m, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w)
        span = float(up.max() - up.min())
        scaled = (up - up.min()) / span if span > 0 else np.zeros_like(up)
        out[k] = scaled < cfg.crm_factor * scaled.mean()
    return out


def _sums(maps: np.ndarray, props: Proposals) -> np.ndarray:
    """sum(map_t * P_n) for every map and proposal, float64 [T, N]."""
    t = maps.shape[0]
    flat = maps.reshape(t, maps.shape[1] * maps.shape[2])
    if props.membership is not None:
        s = props.membership.shape[1]
        if flat.dtype == bool:
            per_sp = _bool_superpixel_counts(flat, props.superpixels.reshape(-1), s)
        else:
            index = (np.arange(t)[:, None] * s + props.superpixels.reshape(1, -1)).ravel()
            per_sp = np.bincount(index, weights=flat.ravel(), minlength=t * s).reshape(t, s)
        return per_sp @ props.membership.astype(np.float64).T
    return _dense_sums(flat, props.masks)


def _bool_superpixel_counts(flat: np.ndarray, sp: np.ndarray, s: int) -> np.ndarray:
    """Pixels of each bool map [T, HW] in each superpixel, float64 [T, S] (one compiled pass)."""
    return _count_in_superpixels(np.ascontiguousarray(flat).view(np.uint8),
                                 np.ascontiguousarray(sp, dtype=np.int64), s)


@jit
def _count_in_superpixels(flat, sp, s):  # pragma: no cover - compiled
    # superpixels come in runs along a row: add up a run, then store it once
    counts = np.zeros((flat.shape[0], s), np.int64)
    for t in range(flat.shape[0]):
        row, out = flat[t], counts[t]
        label, run = sp[0], 0
        for i in range(len(sp)):
            if sp[i] != label:
                out[label] += run
                label, run = sp[i], 0
            run += row[i]
        out[label] += run
    return counts.astype(np.float64)


def _dense_sums(flat: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Blocked float32 maps [T, HW] @ masks [HW, N] -> float64 [T, N]."""
    n = masks.shape[0]
    flat32 = np.ascontiguousarray(flat, dtype=np.float32)
    out = np.zeros((flat.shape[0], n))
    step = max(1, _CHUNK_BYTES // max(4 * flat.shape[1], 1))
    for i in range(0, n, step):
        block = masks[i:i + step].reshape(-1, flat.shape[1]).astype(np.float32)
        out[:, i:i + step] = (block @ flat32.T).T  # big operand on the left: faster GEMM
    return out


def _areas(props: Proposals) -> np.ndarray:
    """Pixel count of each proposal, float64 [N] (from the factorisation when there is one)."""
    if props.membership is not None:
        sp_area = np.bincount(props.superpixels.ravel(), minlength=props.membership.shape[1])
        return props.membership.astype(np.float64) @ sp_area
    return props.areas().astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (an empty proposal or empty contour adds nothing)."""
    num, den = np.broadcast_arrays(num, den)
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


def match_scores(V: np.ndarray, proposals: Proposals | np.ndarray,
                 cfg: MatchConfig | None = None, prm: np.ndarray | None = None,
                 background: np.ndarray | None = None, crm: np.ndarray | None = None,
                 edge: np.ndarray | None = None) -> np.ndarray:
    """Score of every (instance k, proposal n), float64 [K, N]; higher is a better match.

    V: enhanced PRMs [K, H, W] (bool, or float in [0, 1] used as-is in the overlap term);
    prm: raw PRMs [K, H, W] (required for scoring="prm"); background: a precomputed B(V)
    [K, H, W] (else ``background_template(V, cfg, crm)``); edge: a precomputed E(V)
    (else ``contour(V, cfg.contour_width)``). scoring="iou" uses neither, only V > threshold.
    """
    cfg = cfg or MatchConfig()
    props = proposals if isinstance(proposals, Proposals) else Proposals(np.asarray(proposals))
    V = _stack(V, "V")
    if V.shape[1:] != props.shape:
        raise InputError(f"V is {V.shape[1:]} but proposals are {props.shape}")
    vbin = V if V.dtype == bool else np.greater(V, cfg.threshold)
    if cfg.scoring == "iou":
        # |V n P| / |V u P|: both sizes normalise the overlap, so neither a fragment inside V
        # (the precision-only first term of Eq. 5) nor a proposal swallowing it wins
        inter = _sums(vbin, props)
        union = pixel_counts(vbin).astype(np.float64)[:, None] + _areas(props)[None, :] - inter
        return _ratio(inter, union)
    bg = background_template(vbin, cfg, crm) if background is None else _stack(background, "bg")
    if bg.shape != V.shape:
        raise InputError(f"background {bg.shape} does not match V {V.shape}")
    area = _areas(props)[None, :]
    k = V.shape[0]
    if cfg.scoring == "prm":
        return _prm_scores(prm, bg, props, area, cfg)
    edge = contour(vbin, cfg.contour_width) if edge is None else _stack(edge, "edge")
    if edge.shape != V.shape:
        raise InputError(f"edge {edge.shape} does not match V {V.shape}")
    # bool V (the binarised maps) keeps exact pixel counting; a soft V is summed as float
    dtype = bool if V.dtype == bool else np.float32
    maps = np.concatenate([V.astype(dtype), edge.astype(dtype), bg.astype(dtype)])
    sums = _sums(maps, props)
    vp, ep, bp = sums[:k], sums[k:2 * k], sums[2 * k:]
    if cfg.scoring == "paper":
        # Eq. 5 exactly as printed: only the first term is size-normalised, and the
        # background term is added.
        return cfg.alpha * _ratio(vp, area) + cfg.beta * ep + cfg.gamma * bp
    # "icn" (default): every term is a fraction in [0, 1], so alpha/beta/gamma are scale-free,
    # and the background term is subtracted because the text says it suppresses background
    # (the printed "+" would reward proposals that spill into it).
    edge_total = (pixel_counts(edge) if edge.dtype == bool
                  else edge.sum(axis=(1, 2))).astype(np.float64)[:, None]
    return (cfg.alpha * _ratio(vp, area) + cfg.beta * _ratio(ep, edge_total)
            - cfg.gamma * _ratio(bp, area))


def _proposal_contours(props: Proposals, width: int) -> np.ndarray:
    """Contours of all proposals, computed once per proposal set (cached on it)."""
    key = ("contour", width)
    if key not in props._cache:
        props._cache[key] = contour(props.masks, width) if len(props) else props.masks.copy()
    return props._cache[key]


def _prm_scores(prm: np.ndarray | None, bg: np.ndarray, props: Proposals, area: np.ndarray,
                cfg: MatchConfig) -> np.ndarray:
    """Original PRM retrieval: 0.8*sum R[P] + sum R[contour P] - 1e-5*sum Q[P], size-gated."""
    if prm is None:
        raise ConfigError('scoring="prm" needs the raw peak response maps (prm=...)')
    prm = _stack(prm, "prm").astype(np.float64)
    if prm.shape != bg.shape:
        raise InputError(f"prm {prm.shape} does not match V {bg.shape}")
    k = prm.shape[0]
    total = prm.sum(axis=(1, 2))[:, None, None]
    r = np.divide(prm, total, out=np.zeros_like(prm), where=total > 0)  # R sums to 1
    sums = _sums(np.concatenate([r, bg.astype(np.float64)]).astype(np.float32), props)
    edges = _proposal_contours(props, cfg.prm_contour_width)
    rc = _dense_sums(r.reshape(k, r.shape[1] * r.shape[2]), edges)
    score = cfg.prm_balance * sums[:k] + rc - cfg.prm_penalty * sums[k:]
    hw = props.shape[0] * props.shape[1]
    bad = (area >= cfg.prm_max_area * hw) | (area < cfg.prm_min_area * hw)
    return np.where(np.broadcast_to(bad, score.shape), -np.inf, score)


def best_proposals(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arg-max proposal per instance: (index int64 [K], quality float64 [K]).

    An instance with no finite score (no proposals, or all size-gated) gets index -1, -inf.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise InputError(f"scores must be [K, N], got shape {scores.shape}")
    if scores.shape[1] == 0:
        return np.full(scores.shape[0], -1, np.int64), np.full(scores.shape[0], -np.inf)
    clean = np.where(np.isnan(scores), -np.inf, scores)
    index = clean.argmax(axis=1).astype(np.int64)
    quality = clean[np.arange(len(index)), index]
    index[~np.isfinite(quality)] = -1
    quality[~np.isfinite(quality)] = -np.inf
    return index, quality


def pseudo_label(scores: np.ndarray, masks: np.ndarray | Proposals, k: int = 3) -> np.ndarray:
    """Stage-2 pseudo label: union of the top-k proposals by score, bool [H, W].

    Proposals are visited by descending score (ties: lower index first); one fully contained
    in the union of those already picked is skipped (paper section 3.2), as are proposals
    with a non-finite score (e.g. size-gated by the "prm" rule).
    """
    masks = masks.masks if isinstance(masks, Proposals) else np.asarray(masks, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if masks.ndim != 3 or len(scores) != masks.shape[0]:
        raise InputError(f"need masks [N, H, W] and N scores, got {masks.shape}, {scores.shape}")
    union = np.zeros(masks.shape[1:], dtype=bool)
    picked = 0
    for n in np.lexsort((np.arange(len(scores)), -scores)):
        if picked >= k:
            break
        if not np.isfinite(scores[n]) or not (masks[n] & ~union).any():
            continue
        union |= masks[n]
        picked += 1
    return union
