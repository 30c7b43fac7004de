"""The matching resolution: an image's size capped at a long side, and maps upsampled to it.

Matching (Eq. 5) runs at the image's own size (long side at most ``match_max_side``), as in
the original PRM code: the final maps come from the networks at the model input size and are
upsampled bilinearly here. The formula is spelled out (not ``cv2.resize``) so that the CUDA
kernel ``upsample_kernel`` (cpp_ext/morph.cu) computes the same float32 values, hence the
same binarised pixels.
"""

from __future__ import annotations

import numpy as np

from icnseg.errors import ConfigError
from icnseg.jit import jit


def match_shape(shape: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(H, W) of an image of ``shape`` scaled down so its long side is <= ``max_side``."""
    h, w = int(shape[0]), int(shape[1])
    if max_side is None or max(h, w) <= max_side:
        return h, w
    if max_side < 1:
        raise ConfigError(f"match_max_side must be >= 1, got {max_side}")
    f = max_side / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps of each output index: (lower index, upper index, float32 weight of upper).

    Pixel centres are aligned (src = (dst + 0.5) * n_in / n_out - 0.5), clamped to the edge.
    """
    scale = np.float32(n_in / n_out)
    src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.clip(src, np.float32(0), np.float32(n_in - 1))
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo.astype(np.float32)).astype(np.float32)


def upsample_maps(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of float maps [K, h, w] to [K, H, W] (float32; rows, then columns)."""
    maps = np.asarray(maps, dtype=np.float32)
    h, w = int(shape[0]), int(shape[1])
    if maps.shape[1:] == (h, w):
        return maps
    # lo + (hi - lo) * weight per pass, in place on the gathered copies (the same float32
    # operations in the same order as the CUDA kernel, without the temporaries)
    x0, x1, wx = bilinear_taps(maps.shape[2], w)
    rows = np.take(maps, x0, axis=2)
    step = np.take(maps, x1, axis=2)
    step -= rows
    step *= wx
    rows += step
    y0, y1, wy = bilinear_taps(maps.shape[1], h)
    out = np.take(rows, y0, axis=1)
    step = np.take(rows, y1, axis=1)
    step -= out
    step *= wy[:, None]
    out += step
    return out


def upsampled_at_least(maps: np.ndarray, shape: tuple[int, int], threshold: float) -> np.ndarray:
    """``upsample_maps(maps, shape) >= threshold`` as bool [K, H, W], in one compiled pass
    that never holds the float maps (the threshold compared in float32, as numpy does)."""
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    h, w = int(shape[0]), int(shape[1])
    t = np.float32(threshold)
    if maps.shape[1:] == (h, w):
        return maps >= t
    x0, x1, wx = bilinear_taps(maps.shape[2], w)
    y0, y1, wy = bilinear_taps(maps.shape[1], h)
    return _upsampled_at_least(maps, x0, x1, wx, y0, y1, wy, t)


@jit
def _upsampled_at_least(maps, x0, x1, wx, y0, y1, wy, t):  # pragma: no cover - compiled
    # the float32 operations of upsample_maps in its order (rows, then columns), no FMA
    n, h_in = maps.shape[0], maps.shape[1]
    h, w = len(y0), len(x0)
    out = np.empty((n, h, w), np.bool_)
    rows = np.empty((h_in, w), np.float32)
    for k in range(n):
        for r in range(h_in):
            for x in range(w):
                a = maps[k, r, x0[x]]
                rows[r, x] = a + (maps[k, r, x1[x]] - a) * wx[x]
        for y in range(h):
            top, bottom, f = rows[y0[y]], rows[y1[y]], wy[y]
            for x in range(w):
                out[k, y, x] = top[x] + (bottom[x] - top[x]) * f >= t
    return out
