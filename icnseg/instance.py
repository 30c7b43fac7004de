"""Instance: one segmented object (class, score, mask) and its box; the core result type."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Instance:
    """One segmented object: class, confidence, mask [H,W] bool; bbox is derived from the mask."""

    class_name: str
    class_index: int
    score: float
    mask: np.ndarray
    peak: tuple[int, int] | None = None  # (y, x) of the PRM peak the instance came from
    quality: float | None = None  # proposal-match quality (Eq. 5) before multiplying by class score

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Box (x0, y0, x1, y1) of the mask, x1/y1 exclusive; (0, 0, 0, 0) for an empty mask."""
        return mask_bbox(self.mask)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Return the (x0, y0, x1, y1) box of a bool mask [H,W], x1/y1 exclusive."""
    mask = np.asarray(mask, dtype=bool)
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return (0, 0, 0, 0)
    return (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
