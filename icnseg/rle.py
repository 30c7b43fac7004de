"""COCO run-length encoding of masks (the ``mask`` field of every result record)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pycocotools import mask as mask_util

from icnseg.errors import InputError


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode a bool mask [H,W] as compressed COCO RLE with ``counts`` as str."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"mask must be 2-D [H, W], got shape {mask.shape}")
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    size = [int(mask.shape[0]), int(mask.shape[1])]
    return {"size": size, "counts": rle["counts"].decode("ascii")}


def _string_counts(s: bytes) -> list[int]:
    """Parse compressed RLE counts (pycocotools' rleFrString) so bad input is rejected safely."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise InputError("RLE counts string is truncated")
            c = s[p] - 48
            if not 0 <= c < 64:
                raise InputError(f"RLE counts string has an invalid character {chr(s[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_to_mask(rle: Any) -> np.ndarray:
    """Decode a COCO RLE dict (compressed str/bytes or uncompressed list counts) to bool [H,W]."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise InputError("mask is not a COCO RLE dict with 'size' and 'counts'")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        raise InputError(f"RLE size must be [H, W] of non-negative ints, got {size!r}")
    h, w = int(size[0]), int(size[1])
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise InputError("uncompressed RLE counts must be non-negative ints")
        runs = counts
        if sum(runs) != h * w:
            raise InputError(f"RLE counts cover {sum(runs)} pixels, size {h}x{w} needs {h * w}")
        compressed = mask_util.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    elif isinstance(counts, (str, bytes)):
        raw = counts.encode("ascii", errors="replace") if isinstance(counts, str) else counts
        runs = _string_counts(raw)
        if any(r < 0 for r in runs) or sum(runs) != h * w:
            raise InputError(f"RLE counts do not cover the {h}x{w} mask exactly")
        compressed = {"size": [h, w], "counts": raw}
    else:
        raise InputError(f"RLE counts must be a str or a list, got {type(counts).__name__}")
    if h * w == 0:
        return np.zeros((h, w), dtype=bool)
    with warnings.catch_warnings():  # pycocotools' Masks.__array__ predates numpy 2's copy kwarg
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_util.decode(compressed).astype(bool)
