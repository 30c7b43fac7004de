"""Overlay PNGs: translucent masks, outlines, labels that never overlap, a PRM heat-map panel.

Each instance gets its own colour (the class is in its label); instances that share one
mask (class-aware NMS keeps a mask under several classes) get one label listing every class.
Labels go above the box, else inside it, else below, else are nudged down until free.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from icnseg.errors import InputError
from icnseg.instance import Instance

_FONT = cv2.FONT_HERSHEY_SIMPLEX
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def instance_color(rank: int) -> tuple[int, int, int]:
    """A bright, distinct RGB colour per instance: hues a golden-ratio turn apart."""
    r, g, b = colorsys.hsv_to_rgb((0.13 + 0.618034 * rank) % 1.0, 0.85, 1.0)
    return (round(r * 255), round(g * 255), round(b * 255))


def _groups(instances: Sequence[Instance]) -> list[list[Instance]]:
    """Instances grouped by identical mask, groups and members by score, highest first."""
    groups: list[list[Instance]] = []
    for inst in sorted(instances, key=lambda i: -float(i.score)):
        for g in groups:
            if g[0].mask.shape == inst.mask.shape and np.array_equal(g[0].mask, inst.mask):
                g.append(inst)
                break
        else:
            groups.append([inst])
    return groups


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_label(size: tuple[int, int], box: Box, taken: Sequence[Box],
                shape: tuple[int, int]) -> Box:
    """A label rectangle of ``size`` (w, h) for an object ``box`` that overlaps no rectangle
    in ``taken`` where possible: above the box, inside its top, below it, then nudged down."""
    w, h = size
    height, width = shape
    x0 = min(max(box[0], 0), max(width - w, 0))
    starts = [box[1] - h, box[1], box[3]]
    starts += [box[3] + k * h for k in range(1, max(height // max(h, 1), 1) + 1)]
    starts += [box[1] - k * h for k in range(2, max(height // max(h, 1), 1) + 1)]
    first = None
    for y0 in starts:
        if y0 < 0 or y0 + h > height:
            continue
        rect = (x0, y0, x0 + w, y0 + h)
        first = first or rect
        if not any(_overlaps(rect, t) for t in taken):
            return rect
    return first or (x0, 0, x0 + w, min(h, height))


def _prm_heat(prm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per-instance max-normalised PRMs [K,h,w], max over K, resized to ``shape`` -> [H,W]."""
    prm = np.asarray(prm, dtype=np.float32)
    if prm.ndim == 2:
        prm = prm[None]
    if prm.ndim != 3:
        raise InputError(f"prm must be [K, H, W], got shape {prm.shape}")
    h, w = shape
    if prm.shape[0] == 0:
        return np.zeros((h, w), dtype=np.float32)
    prm = np.nan_to_num(np.maximum(prm, 0.0))
    peak = prm.reshape(prm.shape[0], -1).max(axis=1)
    norm = prm / np.where(peak > 0, peak, 1.0)[:, None, None]
    return cv2.resize(norm.max(axis=0), (w, h), interpolation=cv2.INTER_LINEAR)


def _jet(heat: np.ndarray) -> np.ndarray:
    """RGB float32 JET colours of values in [0, 1]."""
    jet = cv2.applyColorMap(np.clip(heat * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(jet, cv2.COLOR_BGR2RGB).astype(np.float32)


def _prm_panel(image: np.ndarray, prm: np.ndarray, peaks: Sequence[tuple[tuple[int, int],
               tuple[int, int, int]]]) -> np.ndarray:
    """JET heat map of the PRMs blended on the image, a 0..1 colour bar, peak markers."""
    h, w = image.shape[:2]
    panel = (0.6 * _jet(_prm_heat(prm, (h, w))) + 0.4 * image.astype(np.float32))
    panel = np.ascontiguousarray(panel.round().astype(np.uint8))
    bar_w = max(3, w // 24)
    if w > 4 * bar_w and h >= 8:  # colour bar on the right edge: 1 at the top, 0 at the bottom
        ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None].repeat(bar_w, axis=1)
        panel[:, w - bar_w:] = _jet(ramp).astype(np.uint8)
    if w > 4 * bar_w and h >= 64:  # its tick labels, where they fit
        scale = max(0.3, min(h, w) / 700)
        for text, y in (("1", int(12 * scale / 0.3)), ("0", h - 3)):
            (tw, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
            cv2.putText(panel, text, (w - bar_w - tw - 2, min(y, h - 1)), _FONT, scale,
                        (255, 255, 255), 1, cv2.LINE_AA)
    arm = max(2, min(h, w) // 60)
    for (y, x), color in peaks:  # the kept instances' peaks, in their colours
        cv2.drawMarker(panel, (int(x), int(y)), (255, 255, 255), cv2.MARKER_CROSS, 2 * arm + 2,
                       max(1, arm // 2) + 1)
        cv2.drawMarker(panel, (int(x), int(y)), color, cv2.MARKER_CROSS, 2 * arm, max(1, arm // 2))
    return panel


def render_overlay(image_rgb: np.ndarray, instances: Sequence[Instance],
                   prm: np.ndarray | None = None) -> np.ndarray:
    """Draw translucent masks, outlines and "class score" labels; append a PRM panel if given."""
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    for inst in instances:
        if inst.mask.shape != (h, w):
            raise InputError(f"instance mask {inst.mask.shape} does not match image {h}x{w}")
    groups = _groups(instances)
    colors = [instance_color(i) for i in range(len(groups))]
    canvas = image.astype(np.float32)
    for group, color in reversed(list(zip(groups, colors, strict=True))):  # best on top
        m = group[0].mask.astype(bool)
        canvas[m] = 0.55 * canvas[m] + 0.45 * np.asarray(color, dtype=np.float32)
    out = np.ascontiguousarray(canvas.round().astype(np.uint8))
    thick = max(1, round(min(h, w) / 250))
    scale = max(0.35, min(h, w) / 900)
    for group, color in zip(groups, colors, strict=True):
        contours, _ = cv2.findContours(group[0].mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, thick)
    taken: list[Box] = []
    for group, color in zip(groups, colors, strict=True):
        if not group[0].mask.any():
            continue
        text = " | ".join(f"{i.class_name} {float(i.score):.2f}" for i in group)
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
        pad = max(1, th // 4)
        rect = place_label((tw + 2 * pad, th + base + 2 * pad), group[0].bbox, taken, (h, w))
        taken.append(rect)
        cv2.rectangle(out, rect[:2], (rect[2] - 1, rect[3] - 1), (20, 20, 20), -1)
        cv2.rectangle(out, rect[:2], (rect[2] - 1, rect[3] - 1), color, 1)
        cv2.putText(out, text, (rect[0] + pad, rect[3] - pad - base), _FONT, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    if prm is not None:
        peaks = [(i.peak, color) for group, color in zip(groups, colors, strict=True)
                 for i in group if i.peak is not None]
        out = np.concatenate([out, _prm_panel(image, prm, peaks)], axis=1)
    return out
