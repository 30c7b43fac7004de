"""Rough cues for stage 2: imperfect soft copies of a target mask, fed to the ICN as its PRM.

At test time pass t > 1 of the ICN (Algorithm 1, T = 3) is given pass t-1's output: a soft map
that roughly covers the instance, shifted, too large or too small, unevenly bright, sometimes
with a faint second blob. A network trained only on naive PRMs has never seen such an input,
and one trained on its own fed-back outputs sees a distribution that moves as it learns. A
corrupted copy of the label is a fixed stand-in for that input, and it teaches the ICN to
turn an approximate instance map into the exact one, which is what refinement is.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_SHIFT = 3  # pixels (of the model input) the cue is moved by, at most, in y and in x
MAX_GROW = 2  # pixels the cue is dilated (> 0) or eroded (< 0) by, at most
BLUR_SIGMA = (0.5, 3.0)  # Gaussian blur of the cue, pixels
SHADE = (0.3, 1.0)  # range of the smooth multiplicative brightness field over the cue
SHADE_GRID = 4  # the field is a bicubic upsampling of this many random values per side
FALSE_BLOB = 0.5  # probability of a faint spurious blob elsewhere
BLOB_PEAK = (0.1, 0.6)  # its height relative to the cue's maximum
BLOB_SIGMA = (2.0, 8.0)  # its width, pixels


def rough_cue(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft float32 map in [0, 1] that approximates the bool ``mask`` [H, W]."""
    h, w = mask.shape
    m = mask.astype(np.float32)
    dy, dx = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, 2)
    m = cv2.warpAffine(m, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h),
                       flags=cv2.INTER_NEAREST)
    grow = int(rng.integers(-MAX_GROW, MAX_GROW + 1))
    if grow:
        kernel = np.ones((2 * abs(grow) + 1,) * 2, np.uint8)
        if grow > 0:
            m = cv2.dilate(m, kernel)
        elif (shrunk := cv2.erode(m, kernel)).any():  # a thin mask eroded away: keep it
            m = shrunk
    m = cv2.GaussianBlur(m, (0, 0), float(rng.uniform(*BLUR_SIGMA)))
    shade = rng.uniform(*SHADE, (SHADE_GRID, SHADE_GRID)).astype(np.float32)
    m *= np.clip(cv2.resize(shade, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    if rng.random() < FALSE_BLOB:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        sigma = rng.uniform(*BLOB_SIGMA)
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        m = np.maximum(m, float(rng.uniform(*BLOB_PEAK)) * m.max() * blob)
    top = m.max()
    return m / top if top > 0 else m


def with_rough_cues(prms: np.ndarray, masks: np.ndarray, rng: np.random.Generator,
                    share: float) -> np.ndarray:
    """``prms`` [B,H,W] with a random ``share`` replaced by rough cues of their ``masks``."""
    chosen = np.flatnonzero(rng.random(len(prms)) < share)
    if not len(chosen):
        return prms
    out = prms.copy()
    for i in chosen:
        out[i] = rough_cue(masks[i], rng)
    return out
