"""Overlay PNGs: translucent masks, outlines, labels, and an optional PRM heat-map panel."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from icnseg.errors import InputError
from icnseg.instance import Instance


def class_color(index: int) -> tuple[int, int, int]:
    """Deterministic RGB colour of class ``index`` (the PASCAL VOC palette entry index+1)."""
    label = int(index) + 1
    r = g = b = 0
    for shift in range(7, -1, -1):
        r |= ((label >> 0) & 1) << shift
        g |= ((label >> 1) & 1) << shift
        b |= ((label >> 2) & 1) << shift
        label >>= 3
    return (r, g, b)


def _prm_panel(image: np.ndarray, prm: np.ndarray) -> np.ndarray:
    """JET heat map of per-instance-normalised PRMs (max over instances) blended on the image."""
    prm = np.asarray(prm, dtype=np.float32)
    if prm.ndim == 2:
        prm = prm[None]
    if prm.ndim != 3:
        raise InputError(f"prm must be [K, H, W], got shape {prm.shape}")
    h, w = image.shape[:2]
    if prm.shape[0] == 0:
        heat = np.zeros((h, w), dtype=np.float32)
    else:
        prm = np.nan_to_num(np.maximum(prm, 0.0))
        peak = prm.reshape(prm.shape[0], -1).max(axis=1)
        norm = prm / np.where(peak > 0, peak, 1.0)[:, None, None]
        heat = cv2.resize(norm.max(axis=0), (w, h), interpolation=cv2.INTER_LINEAR)
    jet = cv2.applyColorMap(np.clip(heat * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    jet = cv2.cvtColor(jet, cv2.COLOR_BGR2RGB).astype(np.float32)
    return (0.6 * jet + 0.4 * image.astype(np.float32)).round().astype(np.uint8)


def render_overlay(
    image_rgb: np.ndarray,
    instances: Sequence[Instance],
    class_names: Sequence[str] | None = None,
    prm: np.ndarray | None = None,
) -> np.ndarray:
    """Draw translucent masks, outlines and "class score" labels; append a PRM panel if given."""
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    names = list(class_names) if class_names is not None else []

    def color_of(inst: Instance) -> tuple[int, int, int]:
        idx = names.index(inst.class_name) if inst.class_name in names else inst.class_index
        return class_color(idx)

    for inst in instances:
        if inst.mask.shape != (h, w):
            raise InputError(f"instance mask {inst.mask.shape} does not match image {h}x{w}")
    order = sorted(instances, key=lambda i: float(i.score))  # higher scores drawn on top
    canvas = image.astype(np.float32)
    for inst in order:
        m = inst.mask.astype(bool)
        canvas[m] = 0.5 * canvas[m] + 0.5 * np.asarray(color_of(inst), dtype=np.float32)
    out = np.ascontiguousarray(canvas.round().astype(np.uint8))
    thick = max(1, round(min(h, w) / 200))
    scale = max(0.3, min(h, w) / 600)
    for inst in order:
        contours, _ = cv2.findContours(
            inst.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, color_of(inst), thick)
    for inst in order:
        if not inst.mask.any():
            continue
        x0, y0, _, _ = inst.bbox
        text = f"{inst.class_name} {float(inst.score):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y0 - 2 if y0 - th - base - 2 >= 0 else min(h - 1, y0 + th + 2)
        cv2.rectangle(out, (x0, ty - th - 2), (x0 + tw + 2, ty + base - 1), color_of(inst), -1)
        cv2.putText(
            out, text, (x0 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
            cv2.LINE_AA,
        )
    if prm is not None:
        out = np.concatenate([out, _prm_panel(image, prm)], axis=1)
    return out
