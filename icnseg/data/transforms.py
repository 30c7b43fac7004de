"""Pure numpy image / mask transforms (no torch): resize, normalise, flip, crop, colour.

Sizes are ``(height, width)``; boxes are ``(x0, y0, x1, y1)`` in pixels, end exclusive.
Masks are ``[H,W]`` or stacks ``[N,H,W]`` of any integer / bool dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from icnseg.errors import ConfigError, InputError

MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet, on image / 255
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    """Validate a (height, width) pair."""
    if len(size) != 2 or any(isinstance(v, bool) or int(v) != v or v < 1 for v in size):
        raise ConfigError(f"size must be two positive integers (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _check_image(image: np.ndarray) -> None:
    """Require an RGB uint8 [H,W,3] array."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise InputError(f"expected an RGB image [H,W,3], got shape {shape}")
    if image.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got {image.dtype}")


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an RGB uint8 image to ``size`` = (height, width)."""
    _check_image(image)
    h, w = _check_size(size)
    if image.shape[:2] == (h, w):
        return image.copy()
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a mask [H,W] or stack [N,H,W] to (height, width), same dtype."""
    h, w = _check_size(size)
    if mask.ndim not in (2, 3):
        raise InputError(f"expected a mask [H,W] or [N,H,W], got shape {mask.shape}")
    if mask.ndim == 3:
        out = np.empty((mask.shape[0], h, w), mask.dtype)
        for n, m in enumerate(mask):
            out[n] = resize_mask(m, (h, w))
        return out
    if mask.shape == (h, w):
        return mask.copy()
    src = mask.view(np.uint8) if mask.dtype == bool else mask
    if src.dtype not in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32):
        src = src.astype(np.int32)
    # INTER_NEAREST_EXACT samples pixel centres, matching INTER_LINEAR's geometry.
    out = cv2.resize(src, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    return out.astype(mask.dtype, copy=False)


def normalize(
    image: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> np.ndarray:
    """RGB uint8 [H,W,3] -> float32 [3,H,W] = (image / 255 - mean) / std."""
    _check_image(image)
    m = np.asarray(mean, np.float32).reshape(3, 1, 1)
    s = np.asarray(std, np.float32).reshape(3, 1, 1)
    chw = image.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray((chw - m) / s)


def denormalize(
    x: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> np.ndarray:
    """Inverse of ``normalize``: float [3,H,W] -> RGB uint8 [H,W,3] (rounded, clipped)."""
    if x.ndim != 3 or x.shape[0] != 3:
        raise InputError(f"expected a normalised image [3,H,W], got shape {x.shape}")
    m = np.asarray(mean, np.float32).reshape(3, 1, 1)
    s = np.asarray(std, np.float32).reshape(3, 1, 1)
    img = (x.astype(np.float32) * s + m) * 255.0
    return np.ascontiguousarray(np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(1, 2, 0))


def _check_masks(image: np.ndarray, masks: Sequence[np.ndarray]) -> None:
    """Every mask must share the image's height and width."""
    for k, m in enumerate(masks):
        if m.ndim not in (2, 3) or m.shape[-2:] != image.shape[:2]:
            raise InputError(f"mask {k} has shape {m.shape}, image is {image.shape[:2]}")


def hflip(image: np.ndarray, *masks: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mirror an image [H,W,C] and masks [H,W] / [N,H,W] left-right."""
    _check_masks(image, masks)
    out = [np.ascontiguousarray(image[:, ::-1])]
    out += [np.ascontiguousarray(m[..., ::-1]) for m in masks]
    return tuple(out)


def random_flip(
    rng: np.random.Generator, image: np.ndarray, *masks: np.ndarray, p: float = 0.5
) -> tuple[np.ndarray, ...]:
    """With probability ``p`` mirror image and masks left-right; returns (image, *masks) copies."""
    _check_masks(image, masks)
    if rng.random() < p:
        return hflip(image, *masks)
    return (image.copy(), *(m.copy() for m in masks))


def crop(
    image: np.ndarray, *masks: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, ...]:
    """Crop an image [H,W,C] and masks [H,W] / [N,H,W] to box (x0, y0, x1, y1); returns copies."""
    _check_masks(image, masks)
    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ConfigError(f"crop box {box!r} is empty or outside the {w}x{h} image")
    out = [np.ascontiguousarray(image[y0:y1, x0:x1])]
    out += [np.ascontiguousarray(m[..., y0:y1, x0:x1]) for m in masks]
    return tuple(out)


def random_crop_box(
    rng: np.random.Generator, height: int, width: int, scale: tuple[float, float] = (0.6, 1.0)
) -> tuple[int, int, int, int]:
    """A random box (x0, y0, x1, y1) whose sides are ``s`` x the image's, s ~ U(scale)."""
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"crop scale must satisfy 0 < lo <= hi <= 1, got {scale!r}")
    s = rng.uniform(lo, hi)
    ch, cw = max(1, int(round(s * height))), max(1, int(round(s * width)))
    y0 = int(rng.integers(0, height - ch + 1))
    x0 = int(rng.integers(0, width - cw + 1))
    return x0, y0, x0 + cw, y0 + ch


def random_crop(
    rng: np.random.Generator,
    image: np.ndarray,
    *masks: np.ndarray,
    scale: tuple[float, float] = (0.6, 1.0),
) -> tuple[np.ndarray, ...]:
    """Crop image and masks with one random box; returns (image, *masks, box (x0, y0, x1, y1))."""
    _check_masks(image, masks)
    box = random_crop_box(rng, image.shape[0], image.shape[1], scale)
    return (*crop(image, *masks, box=box), box)


def random_appearance(rng: np.random.Generator, image: np.ndarray, strength: float) -> np.ndarray:
    """Random colour change of an RGB uint8 image: saturation, contrast, brightness, channel
    order, each drawn within ``strength`` (0 = the image unchanged, 1 = the widest)."""
    _check_image(image)
    if not 0 <= strength <= 1:
        raise ConfigError(f"appearance strength must be in [0, 1], got {strength}")
    if strength == 0:
        return image.copy()
    x = image.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(1 - strength, 1 + strength)  # saturation
    x = x.mean() + (x - x.mean()) * rng.uniform(1 - strength / 2, 1 + strength / 2)  # contrast
    x = x + rng.uniform(-40.0, 40.0) * strength  # brightness
    if rng.random() < strength:
        x = x[..., rng.permutation(3)]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
