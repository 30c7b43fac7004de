"""Pre-processing shared by every backend (torch-free): check an image, resize, normalise."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from icnseg.data.transforms import normalize
from icnseg.errors import InputError


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``image`` as RGB uint8 [H, W, 3], or raise InputError naming ``name``."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"{name}: expected an RGB image [H, W, 3], got shape {a.shape}")
    if a.dtype != np.uint8:
        raise InputError(f"{name}: expected uint8 pixels, got {a.dtype}")
    return np.ascontiguousarray(a[..., :3])


def prepare_input(
    image: np.ndarray,
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size`` (area if shrinking, else bilinear) -> (uint8 [H,W,3], x [1,3,H,W])."""
    h, w = size
    shrink = image.shape[0] * image.shape[1] > h * w
    resized = cv2.resize(
        image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    return resized, normalize(resized, mean, std)[None]
