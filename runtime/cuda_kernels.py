"""pycuda launchers for the mask kernels of ``cpp_ext/matcher.cu`` and ``cpp_ext/morph.cu``.

Device arrays in and out (``icnseg.runtime.cuda_launch`` loads the kernels); every launcher
queues its kernels on ``stream`` (None = the default stream) and returns without waiting.
``out=`` writes into a given contiguous device array (e.g. a row slice of a bigger buffer);
``scratch=`` (a list) receives temporaries that must outlive the queued kernels, so that
freeing them, which would synchronise, waits until the caller has synchronised.
Numpy references: ``icnseg.proposals.types.pack_masks``, ``icnseg.matching`` (contour,
background_template, match_scores, best_proposals), ``icnseg.nms.mask_iou`` and
``icnseg.postprocess.minmax``. NMS and the superpixel path: ``cuda_nms``, ``cuda_superpixel``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from icnseg.errors import InputError
from icnseg.runtime import cuda_launch as cl
from icnseg.runtime.cuda import check_cuda

__all__ = ["argmax_rows", "background", "check_cuda", "contour", "match_scores",
           "minmax_binarize", "pack_masks", "pairwise_iou", "popcount_rows"]


def pack_masks(masks: Any, out: Any = None, stream: Any = None) -> Any:
    """Bit-pack bool/uint8 masks [N, H, W] on device into uint32 [N, ceil(H*W/32)]."""
    cl.check(masks, "masks", 3, (np.bool_, np.uint8))
    n, hw = int(masks.shape[0]), int(masks.shape[1]) * int(masks.shape[2])
    w32 = -(-hw // 32)
    out = cl.output(out, "out", (n, w32), np.uint32)
    if n * w32:
        cl.launch("pack_masks_kernel", cl.blocks(n * w32, cl.BLOCK), cl.ptr(masks), cl.ptr(out),
                  n, hw, w32, stream=stream)
    return out


def match_scores(v: Any, e: Any, b: Any, proposals: Any, areas: Any, alpha: float,
                 beta: float, gamma: float, out: Any = None, stream: Any = None) -> Any:
    """Eq. 5 "icn" scores float64 [K, N] from packed V, E, B [K, W32], proposals [N, W32]
    and proposal areas int32 [N]; bit-identical to ``icnseg.matching.match_scores``."""
    for arr, name in ((v, "V"), (e, "E"), (b, "B"), (proposals, "proposals")):
        cl.check(arr, name, 2, (np.uint32,))
    cl.check(areas, "areas", 1, (np.int32,))
    k, w32, n = int(v.shape[0]), int(v.shape[1]), int(proposals.shape[0])
    if e.shape != v.shape or b.shape != v.shape or proposals.shape[1] != w32:
        raise InputError(f"packed shapes differ: V {v.shape}, E {e.shape}, B {b.shape}, "
                         f"proposals {proposals.shape}")
    if areas.shape[0] != n:
        raise InputError(f"{areas.shape[0]} areas for {n} proposals")
    out = cl.output(out, "out", (k, n), np.float64)
    if k * n:
        cl.launch("match_scores_kernel", cl.blocks(k * n, cl.WARPS), cl.ptr(v), cl.ptr(e),
                  cl.ptr(b), cl.ptr(proposals), cl.ptr(areas), cl.ptr(out), k, n, w32,
                  float(alpha), float(beta), float(gamma), stream=stream)
    return out


def jaccard_scores(v: Any, proposals: Any, out: Any = None, stream: Any = None) -> Any:
    """Jaccard scores (scoring="iou") float64 [K, N] from packed V [K, W32] and proposals
    [N, W32]; bit-identical to ``icnseg.matching.match_scores``."""
    for arr, name in ((v, "V"), (proposals, "proposals")):
        cl.check(arr, name, 2, (np.uint32,))
    k, w32, n = int(v.shape[0]), int(v.shape[1]), int(proposals.shape[0])
    if proposals.shape[1] != w32:
        raise InputError(f"packed shapes differ: V {v.shape}, proposals {proposals.shape}")
    out = cl.output(out, "out", (k, n), np.float64)
    if k * n:
        cl.launch("jaccard_scores_kernel", cl.blocks(k * n, cl.WARPS), cl.ptr(v),
                  cl.ptr(proposals), cl.ptr(out), k, n, w32, stream=stream)
    return out


def argmax_rows(scores: Any, stream: Any = None) -> tuple[Any, Any]:
    """Per-row arg-max of float32/float64 [K, N]: (index int32 [K], value [K] same dtype);
    -1/-inf for rows without a finite maximum or when N == 0 (``best_proposals``)."""
    cl.check(scores, "scores", 2, (np.float32, np.float64))
    k, n = int(scores.shape[0]), int(scores.shape[1])
    if n == 0:
        return (cl.upload(np.full(k, -1, np.int32), stream),
                cl.upload(np.full(k, -np.inf, scores.dtype), stream))
    index, value = cl.empty((k,), np.int32), cl.empty((k,), scores.dtype)
    name = "argmax_f64_kernel" if scores.dtype == np.float64 else "argmax_kernel"
    if k:
        cl.launch(name, cl.blocks(k, cl.WARPS), cl.ptr(scores), cl.ptr(index), cl.ptr(value),
                  k, n, stream=stream)
    return index, value


def popcount_rows(packed: Any, out: Any = None, stream: Any = None) -> Any:
    """Set bits of every packed row uint32 [M, W32] -> int32 [M] (mask areas)."""
    cl.check(packed, "packed", 2, (np.uint32,))
    m, w32 = int(packed.shape[0]), int(packed.shape[1])
    out = cl.output(out, "out", (m,), np.int32)
    if m:
        cl.launch("popcount_rows_kernel", cl.blocks(m, cl.WARPS), cl.ptr(packed), cl.ptr(out),
                  m, w32, stream=stream)
    return out


def pairwise_iou(packed: Any, stream: Any = None) -> Any:
    """IoU of every pair of packed masks uint32 [M, W32] -> float32 [M, M] (empty pair: 0)."""
    cl.check(packed, "packed", 2, (np.uint32,))
    m, w32 = int(packed.shape[0]), int(packed.shape[1])
    out = cl.empty((m, m), np.float32)
    if m:
        cl.launch("pairwise_iou_kernel", cl.blocks(m * m, cl.WARPS), cl.ptr(packed),
                  cl.ptr(out), m, w32, stream=stream)
    return out


def minmax_binarize(maps: Any, threshold: float, normalize: bool = True, out: Any = None,
                    stream: Any = None) -> Any:
    """uint8 0/1 [K, H, W] of float32 maps [K, H, W]: ``minmax(maps) >= t`` per sample, or
    ``maps >= t`` with ``normalize=False`` (``icnseg.postprocess.binary_maps``)."""
    cl.check(maps, "maps", 3, (np.float32,))
    k, hw = int(maps.shape[0]), int(maps.shape[1]) * int(maps.shape[2])
    out = cl.output(out, "out", tuple(maps.shape), np.uint8)
    if k and hw:
        cl.launch("minmax_binarize_kernel", cl.blocks(k, 1), cl.ptr(maps), cl.ptr(out), k, hw,
                  float(np.float32(threshold)), int(bool(normalize)), shared=2 * cl.BLOCK * 4,
                  stream=stream)
    return out


def upsample(maps: Any, shape: tuple[int, int], stream: Any = None,
             scratch: list | None = None) -> Any:
    """float32 maps [K, h, w] resized bilinearly to [K, H, W], bit-identical to
    ``icnseg.upsample.upsample_maps`` (same host-computed taps, no FMA)."""
    from icnseg.upsample import bilinear_taps

    cl.check(maps, "maps", 3, (np.float32,))
    k, h, w = (int(s) for s in maps.shape)
    out_h, out_w = int(shape[0]), int(shape[1])
    if min(out_h, out_w) < 1:
        raise InputError(f"cannot upsample to {shape}")
    out = cl.empty((k, out_h, out_w), np.float32)
    if k and h * w:
        taps = [bilinear_taps(w, out_w), bilinear_taps(h, out_h)]
        dev = [cl.upload(np.ascontiguousarray(a, dtype=np.int32 if i < 2 else np.float32),
                         stream) for t in taps for i, a in enumerate(t)]
        cl.launch("upsample_kernel", cl.blocks(k * out_h * out_w, cl.BLOCK), cl.ptr(maps),
                  cl.ptr(out), *(cl.ptr(d) for d in dev), k, h, w, out_h, out_w,
                  stream=stream)
        cl.keep(scratch, *dev)
    return out


def _morph(masks: Any, radius: int, mode: int, out: Any, stream: Any,
           scratch: list | None) -> Any:
    """Separable (2r+1)^2 window pass: rows into a temporary, then columns into ``out``."""
    cl.check(masks, "masks", 3, (np.bool_, np.uint8))
    if int(radius) < 0:
        raise InputError(f"the window radius must be >= 0, got {radius}")
    k, h, w = (int(s) for s in masks.shape)
    out = cl.output(out, "out", (k, h, w), np.uint8)
    total = k * h * w
    if total:
        tmp = cl.empty((k, h, w), np.uint8)
        grid = cl.blocks(total, cl.BLOCK)
        cl.launch("morph_rows_kernel", grid, cl.ptr(masks), cl.ptr(tmp), k, h, w, int(radius),
                  stream=stream)
        cl.launch("morph_cols_kernel", grid, cl.ptr(tmp), cl.ptr(out), k, h, w, int(radius),
                  mode, stream=stream)
        cl.keep(scratch, tmp)
    return out


def contour(masks: Any, width: int = 1, out: Any = None, stream: Any = None,
            scratch: list | None = None) -> Any:
    """E(V) = dilate(V) XOR erode(V), (2w+1)^2 square, outside ignored: uint8 0/1 [K, H, W]
    (``icnseg.matching.contour``)."""
    return _morph(masks, width, 0, out, stream, scratch)


def background(masks: Any, radius: int = 5, out: Any = None, stream: Any = None,
               scratch: list | None = None) -> Any:
    """B(V) = NOT dilate(V, (2r+1)^2 square): uint8 0/1 [K, H, W] (``background_template``
    with ``background="dilate"``)."""
    return _morph(masks, radius, 1, out, stream, scratch)
