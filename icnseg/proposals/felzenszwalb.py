"""Felzenszwalb-Huttenlocher graph segmentation, compiled with numba.

The algorithm and arithmetic of ``skimage.segmentation.felzenszwalb`` (scikit-image 0.26):
the image as float64 in [0, 1], Gaussian-smoothed per channel (scipy, mode "reflect"),
8-connected edges weighted by the Euclidean colour distance, taken in increasing weight; two
components join when the edge weight is below both of their ``Int(C) + k / |C|``
(``k = scale / 255``, the thresholds rounded to float32 as scikit-image does), then a second
pass over the same edges joins every component smaller than ``min_size`` to a neighbour.
scikit-image builds the smoothed image and the weights in several float64 numpy passes,
argsorts ~4N weights and runs a union-find without path compression (its trees grow deep on
large images); here one compiled pass smooths (scipy's symmetric correlation, term for term,
so the values are bit-identical), the weights get a stable radix sort, and the union-find is
by size with path halving. The partition is the same; only edges of exactly equal weight may
come in another order (scikit-image's quicksort is not stable), which can change which of
two tied merges happens first.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from icnseg.errors import InputError
from icnseg.jit import jit


def felzenszwalb(image: np.ndarray, scale: float, sigma: float, min_size: int) -> np.ndarray:
    """Segment labels int32 [H, W] of a uint8 image [H, W, C], 0..S-1 in raster order of each
    segment's first pixel (the numbering scikit-image's ``felzenszwalb`` gives)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.dtype != np.uint8 or image.size == 0:
        raise InputError(f"felzenszwalb wants a uint8 image [H, W, C], got {image.dtype} "
                         f"{image.shape}")
    if sigma < 0:
        raise InputError(f"felzenszwalb sigma must be >= 0, got {sigma}")
    smooth = _smooth(np.ascontiguousarray(image), _gaussian_weights(float(sigma)))
    return _segment(smooth, float(scale) / 255.0, int(min_size))


def _gaussian_weights(sigma: float) -> np.ndarray:
    """Half of scipy's 1-D Gaussian kernel, centre first (w[0], w[1], ..., w[r]): read off
    ``gaussian_filter1d``'s response to a unit impulse, so the weights are scipy's bits."""
    if sigma <= 1e-15:  # scipy's gaussian_filter skips such axes
        return np.ones(1)
    r = int(4.0 * sigma + 0.5)  # scipy's radius at its default truncate=4
    impulse = np.zeros(4 * r + 3)
    impulse[2 * r + 1] = 1.0
    return ndimage.gaussian_filter1d(impulse, sigma, mode="reflect")[2 * r + 1:3 * r + 2].copy()


@jit
def _reflect(n: int, r: int) -> np.ndarray:
    """Source index of positions -r..n+r-1 under scipy's "reflect" extension (d c b a | a b c
    d | d c b a), any n >= 1."""
    idx = np.empty(n + 2 * r, np.int64)
    for i in range(-r, n + r):
        j = i % (2 * n)
        idx[i + r] = 2 * n - 1 - j if j >= n else j
    return idx


@jit
def _smooth(image: np.ndarray, w: np.ndarray) -> np.ndarray:
    """skimage's ``gaussian(img_as_float64(image), sigma=[s, s, 0], mode="reflect")``: rows
    then columns, each output ``x[i] w[0] + sum_{j=r..1} (x[i-j] + x[i+j]) w[j]`` as scipy's
    symmetric correlate1d adds it up."""
    h, wd, nc = image.shape
    r = len(w) - 1
    src = np.empty((h, wd, nc), np.float64)
    for y in range(h):
        for x in range(wd):
            for c in range(nc):
                src[y, x, c] = image[y, x, c] * (1.0 / 255)
    if r == 0:
        return src
    ry, rx = _reflect(h, r), _reflect(wd, r)
    mid = np.empty((h, wd, nc), np.float64)
    for y in range(h):
        for x in range(wd):
            for c in range(nc):
                acc = src[y, x, c] * w[0]
                for j in range(r, 0, -1):
                    acc += (src[ry[y + r - j], x, c] + src[ry[y + r + j], x, c]) * w[j]
                mid[y, x, c] = acc
    for y in range(h):
        for x in range(wd):
            for c in range(nc):
                acc = mid[y, x, c] * w[0]
                for j in range(r, 0, -1):
                    acc += (mid[y, rx[x + r - j], c] + mid[y, rx[x + r + j], c]) * w[j]
                src[y, x, c] = acc
    return src


@jit
def _weight(flat: np.ndarray, p: int, q: int) -> float:
    """Euclidean colour distance of pixels p and q (skimage's sum of squares, then sqrt)."""
    s = 0.0
    for c in range(flat.shape[1]):
        d = flat[q, c] - flat[p, c]
        s += d * d
    return np.sqrt(s)


@jit
def _segment(img: np.ndarray, k: float, min_size: int) -> np.ndarray:
    """Felzenszwalb's merge loop and min-size pass on a smoothed float64 image [H, W, C]."""
    h, w, nc = img.shape
    n = h * w
    flat = img.reshape(n, nc)
    # An edge is p * 4 + direction (q = p + step[direction]), listed in scikit-image's order:
    # right, down, down-right neighbours, then up-right ones (written from the upper pixel,
    # down-left), each in raster order; the sort keys sit in the upper 32 bits.
    step = np.array([1, w, w + 1, w - 1])
    m = h * (w - 1) + (h - 1) * w + 2 * (h - 1) * (w - 1)
    code = np.empty(m, np.uint64)
    e = 0
    for d, y1, x0, x1 in ((0, h, 0, w - 1), (1, h - 1, 0, w), (2, h - 1, 0, w - 1),
                          (3, h - 1, 1, w)):
        for y in range(y1):
            for x in range(x0, x1):
                p = y * w + x
                key = np.float32(_weight(flat, p, p + step[d])).view(np.uint32)
                code[e] = (np.uint64(key) << np.uint64(32)) | np.uint64(p * 4 + d)
                e += 1
    code = _sort_codes(code, flat, step)

    parent = np.arange(n)
    size = np.ones(n, np.int64)
    inner = np.zeros(n, np.float64)
    for i in range(m):
        c = np.int64(code[i] & np.uint64(0xFFFFFFFF))
        p = c >> 2
        q = p + step[c & 3]
        r0 = _find(parent, p)
        r1 = _find(parent, q)
        if r0 == r1:
            continue
        cost = _weight(flat, p, q)
        t0 = np.float32(inner[r0] + k / size[r0])  # scikit-image keeps these as C floats
        t1 = np.float32(inner[r1] + k / size[r1])
        if cost < min(t0, t1):
            inner[_union(parent, size, r0, r1)] = cost
    for i in range(m):
        c = np.int64(code[i] & np.uint64(0xFFFFFFFF))
        p = c >> 2
        r0 = _find(parent, p)
        r1 = _find(parent, p + step[c & 3])
        if r0 != r1 and (size[r0] < min_size or size[r1] < min_size):
            _union(parent, size, r0, r1)

    label = np.full(n, -1, np.int32)
    out = np.empty(n, np.int32)
    nxt = 0
    for p in range(n):
        r = _find(parent, p)
        if label[r] < 0:
            label[r] = nxt
            nxt += 1
        out[p] = label[r]
    return out.reshape(h, w)


@jit
def _find(parent: np.ndarray, i: int) -> int:
    """Root of ``i``, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@jit
def _union(parent: np.ndarray, size: np.ndarray, r0: int, r1: int) -> int:
    """Join two roots (the smaller tree under the larger); returns the new root."""
    if size[r0] < size[r1]:
        r0, r1 = r1, r0
    parent[r1] = r0
    size[r0] += size[r1]
    return r0


@jit
def _sort_codes(code: np.ndarray, flat: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Edge codes in stable ascending order of their float64 weights: an LSD radix sort on
    the float32 weight bits (non-negative, so 31 bits: digits of 10, 10 and 11 bits), then
    runs of equal float32 put in float64 order by insertion (runs are short; equal weights
    keep their order)."""
    m = len(code)
    count = np.zeros((3, 2048), np.int64)
    for i in range(m):
        v = code[i] >> np.uint64(32)
        count[0, v & np.uint64(1023)] += 1
        count[1, (v >> np.uint64(10)) & np.uint64(1023)] += 1
        count[2, (v >> np.uint64(20)) & np.uint64(2047)] += 1
    tmp = np.empty_like(code)
    for digit in range(3):
        total = 0
        for d in range(2048):
            c = count[digit, d]
            count[digit, d] = total
            total += c
        shift = np.uint64(32 + 10 * digit)
        mask = np.uint64(2047 if digit == 2 else 1023)
        for i in range(m):
            d = (code[i] >> shift) & mask
            tmp[count[digit, d]] = code[i]
            count[digit, d] += 1
        code, tmp = tmp, code
    i = 0
    while i < m:
        run = i + 1
        top = code[i] >> np.uint64(32)
        while run < m and code[run] >> np.uint64(32) == top:
            run += 1
        if run - i > 1:
            _sort_run(code, i, run, flat, step)
        i = run
    return code


@jit
def _sort_run(code: np.ndarray, lo: int, hi: int, flat: np.ndarray, step: np.ndarray) -> None:
    """Stable insertion sort of ``code[lo:hi]`` by the edges' float64 weights."""
    cost = np.empty(hi - lo, np.float64)
    for a in range(lo, hi):
        c = np.int64(code[a] & np.uint64(0xFFFFFFFF))
        cost[a - lo] = _weight(flat, c >> 2, (c >> 2) + step[c & 3])
    for a in range(1, hi - lo):
        v, cv = code[lo + a], cost[a]
        b = a - 1
        while b >= 0 and cost[b] > cv:
            code[lo + b + 1] = code[lo + b]
            cost[b + 1] = cost[b]
            b -= 1
        code[lo + b + 1] = v
        cost[b + 1] = cv
