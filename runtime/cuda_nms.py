"""pycuda launchers for ``cpp_ext/nms.cu``: instance scores and class-aware greedy mask NMS.

Same semantics as ``icnseg.nms.mask_nms`` (visit by descending score, ties lower index
first; drop a mask when a kept mask of its class has IoU >= threshold with it or is identical
to it, empty duplicates included) and as the scoring step of
``icnseg.postprocess.select_instances``. Same conventions as ``cuda_kernels``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from icnseg.errors import InputError
from icnseg.nms import nms_arguments
from icnseg.runtime import cuda_launch as cl

__all__ = ["instance_scores", "mask_nms", "nms_rows"]


def instance_scores(quality: Any, confidence: Any, min_quality: float,
                    stream: Any = None) -> tuple[Any, Any]:
    """(score float64 [K] = confidence * clip(quality, 0, 1), valid uint8 [K] = quality finite
    and >= min_quality) from quality and confidence float64 [K]."""
    cl.check(quality, "quality", 1, (np.float64,))
    cl.check(confidence, "confidence", 1, (np.float64,))
    k = int(quality.shape[0])
    if int(confidence.shape[0]) != k:
        raise InputError(f"{confidence.shape[0]} confidences for {k} instances")
    score, valid = cl.empty((k,), np.float64), cl.empty((k,), np.uint8)
    if k:
        cl.launch("instance_scores_kernel", cl.blocks(k, cl.BLOCK), cl.ptr(quality),
                  cl.ptr(confidence), cl.ptr(score), cl.ptr(valid), k, float(min_quality),
                  stream=stream)
    return score, valid


def nms_rows(packed: Any, rows: Any, scores: Any, classes: Any, valid: Any,
             iou_threshold: float, stream: Any = None,
             scratch: list | None = None) -> tuple[Any, Any]:
    """Greedy NMS of M candidates, candidate i being mask ``rows[i]`` of packed [R, W32].

    rows, classes int32 [M]; scores float64 [M]; valid uint8 [M] (invalid ones are never kept
    and suppress nothing). Returns (kept int32 [M], count int32 [1]): the first ``count``
    entries of ``kept`` are the kept candidates, highest score first. Row indices must lie
    in [0, R) for valid candidates.
    """
    cl.check(packed, "packed", 2, (np.uint32,))
    cl.check(rows, "rows", 1, (np.int32,))
    cl.check(scores, "scores", 1, (np.float64,))
    cl.check(classes, "classes", 1, (np.int32,))
    cl.check(valid, "valid", 1, (np.uint8,))
    m, w32 = int(rows.shape[0]), int(packed.shape[1])
    if any(int(a.shape[0]) != m for a in (scores, classes, valid)):
        raise InputError(f"need one score, class and flag per candidate: {m} rows, "
                         f"{scores.shape[0]} scores, {classes.shape[0]} classes, "
                         f"{valid.shape[0]} flags")
    kept, count = cl.empty((m,), np.int32), cl.empty((1,), np.int32)
    if m == 0:
        return kept, cl.upload(np.zeros(1, np.int32), stream)
    suppress = cl.empty((m, m), np.uint8)
    order, removed = cl.empty((m,), np.int32), cl.empty((m,), np.uint8)
    cl.launch("nms_suppress_kernel", cl.blocks(m * m, cl.WARPS), cl.ptr(packed), cl.ptr(rows),
              cl.ptr(valid), cl.ptr(classes), cl.ptr(suppress), m, w32, float(iou_threshold),
              stream=stream)
    cl.launch("nms_walk_kernel", 1, cl.ptr(scores), cl.ptr(valid), cl.ptr(suppress),
              cl.ptr(order), cl.ptr(removed), cl.ptr(kept), cl.ptr(count), m, stream=stream)
    cl.keep(scratch, suppress, order, removed)
    return kept, count


def mask_nms(packed: Any, scores: np.ndarray, classes: np.ndarray | None = None,
             iou_threshold: float = 0.5, stream: Any = None) -> np.ndarray:
    """``icnseg.nms.mask_nms`` on device for packed masks uint32 [M, W32] and host scores
    (and classes): kept indices int64, highest score first (waits for the result)."""
    cl.check(packed, "packed", 2, (np.uint32,))
    m = int(packed.shape[0])
    scores, classes = nms_arguments(m, scores, classes)
    if m == 0:
        return np.zeros(0, np.int64)
    scratch: list = []
    args = [cl.upload(a, stream) for a in (np.arange(m, dtype=np.int32), scores,
                                            classes.astype(np.int32), np.ones(m, np.uint8))]
    kept, count = nms_rows(packed, args[0], args[1], args[2], args[3], iou_threshold, stream,
                           scratch)
    with cl.check_cuda("reading the NMS result"):
        if stream is not None:
            stream.synchronize()
        kept_h, count_h = kept.get(), count.get()
    return kept_h[: int(count_h[0])].astype(np.int64)
