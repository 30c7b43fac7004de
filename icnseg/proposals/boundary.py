"""Compiled steps of the boundary refinement (``generate._refine``): find the pixels on a
label boundary, and move each to the closest-coloured label among its own and its 4
neighbours'."""

from __future__ import annotations

import numpy as np

from icnseg.jit import jit


@jit
def boundary_pixels(sp: np.ndarray) -> np.ndarray:
    """Flat indices, in raster order, of the pixels of ``sp`` [H, W] whose right, left, lower
    or upper neighbour has another label."""
    h, w = sp.shape
    out = np.empty(h * w, np.int64)
    n = 0
    for y in range(h):
        for x in range(w):
            v = sp[y, x]
            if ((x + 1 < w and sp[y, x + 1] != v) or (x > 0 and sp[y, x - 1] != v)
                    or (y + 1 < h and sp[y + 1, x] != v) or (y > 0 and sp[y - 1, x] != v)):
                out[n] = y * w + x
                n += 1
    return out[:n]


@jit
def move_to_closest(sp: np.ndarray, at: np.ndarray, lab: np.ndarray, mean: np.ndarray
                    ) -> None:
    """Give every pixel ``at`` (flat indices into ``sp`` [H, W], ``lab`` float32 [len(at), 3]
    its Lab colour) the label among its own, up, down, left and right (clamped at the border)
    whose ``mean`` float32 colour is nearest in squared distance; ties keep the first in that
    order, and every label is read before any is written (in place)."""
    h, w = sp.shape
    flat = sp.reshape(h * w)
    new = np.empty(len(at), flat.dtype)
    for i in range(len(at)):
        p = at[i]
        x = p % w
        best = flat[p]
        best_d = np.float32(np.inf)
        for q in (p, p - w if p >= w else p, p + w if p < (h - 1) * w else p,
                  p - 1 if x > 0 else p, p + 1 if x < w - 1 else p):
            c = flat[q]
            d0 = mean[c, 0] - lab[i, 0]
            d1 = mean[c, 1] - lab[i, 1]
            d2 = mean[c, 2] - lab[i, 2]
            d = d0 * d0 + d1 * d1 + d2 * d2
            if d < best_d:
                best, best_d = c, d
        new[i] = best
    for i in range(len(at)):
        flat[at[i]] = new[i]
