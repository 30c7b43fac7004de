"""pycuda launchers for ``cpp_ext/superpixel.cu``: proposals that are unions of superpixels.

With ``Proposals.superpixels`` (labels int32 [H, W], 0..S-1) and ``membership`` [N, S], every
Eq. 5 sum over a proposal is a product of per-superpixel sums [T, S] with membership^T, as in
``icnseg.matching._sums``. Same conventions as ``cuda_kernels`` (device arrays, ``out=``,
``stream=``, asynchronous).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from icnseg.errors import InputError
from icnseg.runtime import cuda_launch as cl

__all__ = ["eq5_from_sums", "member_matmul", "pack_unions", "superpixel_counts",
           "superpixel_sums"]

_SHARED_BYTES = 48 * 1024  # dynamic shared memory every GPU gives without opting in


def _labels(labels: Any, s: int) -> int:
    """Validate a device label map int32 [H, W] or [H*W]; return H*W."""
    if len(labels.shape) not in (1, 2):
        raise InputError(f"labels must be [H, W] or [H*W], got shape {tuple(labels.shape)}")
    cl.check(labels, "labels", len(labels.shape), (np.int32,))
    if int(s) < 0:
        raise InputError(f"the superpixel count must be >= 0, got {s}")
    return int(np.prod(labels.shape, dtype=np.int64))


def pack_unions(labels: Any, member: Any, out: Any = None, stream: Any = None) -> Any:
    """Packed masks uint32 [N, ceil(H*W/32)] of the unions given by member uint8/bool [N, S]
    over labels int32 [H, W] (``Proposals.from_membership(...).packed()``)."""
    cl.check(member, "member", 2, (np.uint8, np.bool_))
    n, s = int(member.shape[0]), int(member.shape[1])
    hw = _labels(labels, s)
    w32 = -(-hw // 32)
    out = cl.output(out, "out", (n, w32), np.uint32)
    if n * w32:
        cl.launch("pack_unions_kernel", cl.blocks(n * w32, cl.BLOCK), cl.ptr(labels),
                  cl.ptr(member), cl.ptr(out), n, hw, w32, s, stream=stream)
    return out


def superpixel_sums(maps: Any, labels: Any, s: int, out: Any = None,
                    stream: Any = None) -> Any:
    """Per-superpixel sums float64 [T, S] of float32 maps [T, H, W] or [T, H*W] (bincount;
    the order of additions is not fixed, so non-integer sums may differ in the last bits)."""
    if len(maps.shape) not in (2, 3):
        raise InputError(f"maps must be [T, H, W] or [T, H*W], got {tuple(maps.shape)}")
    cl.check(maps, "maps", len(maps.shape), (np.float32,))
    hw = _labels(labels, s)
    t = int(maps.shape[0])
    if int(np.prod(maps.shape[1:], dtype=np.int64)) != hw:
        raise InputError(f"maps {tuple(maps.shape)} do not match labels {tuple(labels.shape)}")
    out = cl.output(out, "out", (t, int(s)), np.float64)
    if t and s:
        shared = 8 * int(s) if 8 * int(s) <= _SHARED_BYTES else 0
        cl.launch("sp_sums_kernel", cl.blocks(t, 1), cl.ptr(maps), cl.ptr(labels), cl.ptr(out),
                  t, hw, int(s), int(shared > 0), shared=shared, stream=stream)
    return out


def superpixel_counts(bits: Any, labels: Any, s: int, out: Any = None,
                      stream: Any = None) -> Any:
    """Per-superpixel pixel counts float64 [T, S] (exact) of packed 0/1 maps uint32 [T, W32]."""
    cl.check(bits, "bits", 2, (np.uint32,))
    hw = _labels(labels, s)
    t, w32 = int(bits.shape[0]), int(bits.shape[1])
    if w32 != -(-hw // 32):
        raise InputError(f"packed maps {tuple(bits.shape)} do not match labels "
                         f"{tuple(labels.shape)}")
    out = cl.output(out, "out", (t, int(s)), np.float64)
    if t and s:
        shared = 4 * int(s) if 4 * int(s) <= _SHARED_BYTES else 0
        cl.launch("sp_counts_kernel", cl.blocks(t, 1), cl.ptr(bits), cl.ptr(labels),
                  cl.ptr(out), t, hw, w32, int(s), int(shared > 0), shared=shared,
                  stream=stream)
    return out


def member_matmul(sums: Any, member: Any, out: Any = None, stream: Any = None) -> Any:
    """sums float64 [T, S] x member uint8/bool [N, S]^T -> float64 [T, N]."""
    cl.check(sums, "sums", 2, (np.float64,))
    cl.check(member, "member", 2, (np.uint8, np.bool_))
    t, s, n = int(sums.shape[0]), int(sums.shape[1]), int(member.shape[0])
    if int(member.shape[1]) != s:
        raise InputError(f"sums {tuple(sums.shape)} and membership {tuple(member.shape)} differ")
    out = cl.output(out, "out", (t, n), np.float64)
    if t * n:
        cl.launch("member_matmul_kernel", cl.blocks(-(-t // 32) * -(-n // 32), 1),
                  cl.ptr(sums), cl.ptr(member), cl.ptr(out), t, n, s, stream=stream)
    return out


def eq5_from_sums(sums: Any, areas: Any, edge_total: Any, alpha: float, beta: float,
                  gamma: float, out: Any = None, stream: Any = None) -> Any:
    """Eq. 5 "icn" scores float64 [K, N] from per-proposal sums [3K, N] (V, E, B rows),
    areas int32 [N] and contour sizes int32 [K]; bit-identical to ``match_scores``."""
    cl.check(sums, "sums", 2, (np.float64,))
    cl.check(areas, "areas", 1, (np.int32,))
    cl.check(edge_total, "edge_total", 1, (np.int32,))
    k, n = int(edge_total.shape[0]), int(areas.shape[0])
    if tuple(sums.shape) != (3 * k, n):
        raise InputError(f"sums must be [3K={3 * k}, N={n}], got {tuple(sums.shape)}")
    out = cl.output(out, "out", (k, n), np.float64)
    if k * n:
        cl.launch("eq5_sums_kernel", cl.blocks(k * n, cl.BLOCK), cl.ptr(sums), cl.ptr(areas),
                  cl.ptr(edge_total), cl.ptr(out), k, n, float(alpha), float(beta),
                  float(gamma), stream=stream)
    return out


def jaccard_from_sums(sums: Any, areas: Any, v_total: Any, out: Any = None,
                      stream: Any = None) -> Any:
    """Jaccard scores (scoring="iou") float64 [K, N] from the sums |V_k & P_n| [K, N], areas
    int32 [N] and map sizes |V_k| int32 [K]; bit-identical to ``match_scores``."""
    cl.check(sums, "sums", 2, (np.float64,))
    cl.check(areas, "areas", 1, (np.int32,))
    cl.check(v_total, "v_total", 1, (np.int32,))
    k, n = int(v_total.shape[0]), int(areas.shape[0])
    if tuple(sums.shape) != (k, n):
        raise InputError(f"sums must be [K={k}, N={n}], got {tuple(sums.shape)}")
    out = cl.output(out, "out", (k, n), np.float64)
    if k * n:
        cl.launch("jaccard_sums_kernel", cl.blocks(k * n, cl.BLOCK), cl.ptr(sums), cl.ptr(areas),
                  cl.ptr(v_total), cl.ptr(out), k, n, stream=stream)
    return out
