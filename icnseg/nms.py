"""Mask IoU and class-aware greedy mask NMS (numpy reference of the runtime's popcount kernels)."""

from __future__ import annotations

import numpy as np

from icnseg.errors import InputError
from icnseg.jit import jit
from icnseg.proposals.types import pack_masks

_CHUNK_BYTES = 1 << 25  # float32 working set per matrix-product block
_POPCOUNT_PAIRS = 4096  # up to this many mask pairs, packed popcounts beat a matrix product


def _flat(masks: np.ndarray, name: str) -> np.ndarray:
    """bool [N, H, W] -> bool [N, H*W], validating the rank."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise InputError(f"{name} must be masks [N, H, W], got shape {masks.shape}")
    return masks.reshape(masks.shape[0], masks.shape[1] * masks.shape[2]).astype(bool, copy=False)


def pixel_counts(masks: np.ndarray) -> np.ndarray:
    """True pixels of each mask of bool [N, ...], int64 [N] (numpy's bool sum casts first)."""
    masks = np.ascontiguousarray(masks, dtype=bool)
    rows = masks.reshape(masks.shape[0], int(np.prod(masks.shape[1:], dtype=np.int64)))
    return _row_sums(rows.view(np.uint8))


@jit
def _row_sums(rows):  # pragma: no cover - compiled
    out = np.zeros(rows.shape[0], np.int64)
    for i in range(rows.shape[0]):
        total = 0
        for v in rows[i]:
            total += v
        out[i] = total
    return out


def mask_intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel counts of a[i] & b[j], float64 [N, M]: popcounts of bit-packed masks for the
    few-mask case (NMS), blocked matrix products for many."""
    fa, fb = _flat(a, "a"), _flat(b, "b")
    if fa.shape[1] != fb.shape[1]:
        raise InputError(f"mask sizes differ: {np.shape(a)[1:]} vs {np.shape(b)[1:]}")
    hw = fa.shape[1]
    if hasattr(np, "bitwise_count") and len(fa) * len(fb) <= _POPCOUNT_PAIRS:
        return _packed_intersections(pack_masks(a), pack_masks(b))
    # float32 sums of 0/1 are exact below 2**24 pixels; larger images use float64.
    dtype = np.float32 if hw < (1 << 24) else np.float64
    out = np.zeros((fa.shape[0], fb.shape[0]))
    step = max(1, _CHUNK_BYTES // max(4 * hw, 1))
    fb_t = [fb[j:j + step].astype(dtype).T for j in range(0, fb.shape[0], step)]
    for i in range(0, fa.shape[0], step):
        block = fa[i:i + step].astype(dtype)
        for jj, part in enumerate(fb_t):
            out[i:i + step, jj * step: jj * step + part.shape[1]] = block @ part
    return out


def _packed_intersections(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Intersections by AND + popcount of bit-packed rows (numpy >= 2.0; no BLAS threads,
    which on a small problem cost more in wake-ups than the arithmetic)."""
    out = np.zeros((len(pa), len(pb)))
    step = max(1, _CHUNK_BYTES // pb.itemsize // max(pb.size, 1))
    for i in range(0, len(pa), step):
        both = pa[i:i + step, None, :] & pb[None, :, :]
        out[i:i + step] = np.bitwise_count(both).sum(axis=2, dtype=np.int64)
    return out


def _iou(inter: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """IoU from intersections and areas; 0 where the union is empty."""
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def mask_iou(a: np.ndarray, b: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """IoU of every pair of masks a [N,H,W] x b [M,H,W], float64 [N, M]; pixels of the
    ``ignore`` band [H,W] (e.g. VOC's void border) count in neither; an empty union gives 0."""
    if ignore is not None:
        valid = ~np.asarray(ignore, bool)
        a, b = np.asarray(a, bool) & valid, np.asarray(b, bool) & valid
    inter = mask_intersections(a, b)
    area_a = pixel_counts(_flat(a, "a")).astype(np.float64)
    area_b = pixel_counts(_flat(b, "b")).astype(np.float64)
    return _iou(inter, area_a, area_b)


def nms_arguments(m: int, scores: np.ndarray, classes: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(scores float64 [M], classes [M]) for M masks; InputError when the counts differ."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    classes = np.zeros(m, np.int64) if classes is None else np.asarray(classes).reshape(-1)
    if len(scores) != m or len(classes) != m:
        raise InputError(f"need one score and class per mask: {m} masks, {len(scores)} scores,"
                         f" {len(classes)} classes")
    return scores, classes


def mask_nms(masks: np.ndarray, scores: np.ndarray, classes: np.ndarray | None = None,
             iou_threshold: float = 0.5) -> np.ndarray:
    """Class-aware greedy mask NMS; kept indices (int64), highest score first.

    Visits masks by descending score (ties: lower index first); a mask is dropped when a kept
    mask of the same class overlaps it with IoU >= ``iou_threshold`` or is identical to it
    (so duplicates, even empty ones, collapse to one). ``classes=None`` means one class.
    """
    flat = _flat(masks, "masks")
    m = flat.shape[0]
    scores, classes = nms_arguments(m, scores, classes)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(m), -scores))
    inter = mask_intersections(masks, masks)
    area = np.diag(inter).copy()  # a mask's intersection with itself
    iou = _iou(inter, area, area)
    same = classes[:, None] == classes[None, :]
    identical = (inter == area[:, None]) & (inter == area[None, :])
    suppress = same & ((iou >= iou_threshold) | identical)
    removed = np.zeros(m, dtype=bool)
    keep = []
    for i in order:
        if removed[i]:
            continue
        keep.append(i)
        removed |= suppress[i]
    return np.asarray(keep, dtype=np.int64)
