"""Other looks and other objects for the synthetic data: what the training must not have seen.

Two extra datasets keep the evaluation of the weakly supervised method honest:

- ``objects="others"``: class-agnostic shapes that are *not* the five target classes
  (ellipse, hexagon, pentagon, crescent, arrow, heart, L, ring), drawn in the ``salient``
  style. It stands in for the paper's external salient-instance set [12]: the saliency
  variant of the ICN learns from these masks, never from the target classes' own.
- ``style="unseen"``: the target classes drawn in a look no training run uses (tiled and
  speckled backgrounds, pale or dark desaturated colours, dark outlines, striped and dotted
  fills), to measure generalisation rather than memorisation.
"""

from __future__ import annotations

import cv2
import numpy as np

from icnseg.classes import OTHER_SHAPES, SYNTH_OBJECTS, SYNTH_STYLES
from icnseg.errors import ConfigError

SUBPIXEL_SHIFT = 4  # fixed-point bits of sub-pixel coordinates in OpenCV's drawing calls


def check_style(style: str, objects: str) -> None:
    """Reject an unknown style or object set with a ConfigError."""
    if style not in SYNTH_STYLES:
        raise ConfigError(f"style must be one of {', '.join(SYNTH_STYLES)} (got {style!r})")
    if objects not in SYNTH_OBJECTS:
        raise ConfigError(f"objects must be one of {', '.join(SYNTH_OBJECTS)} "
                          f"(got {objects!r})")


def rotate(pts: np.ndarray, theta: float) -> np.ndarray:
    """Rotate vertices [V,2] by ``theta`` about the origin."""
    c, s = np.cos(theta), np.sin(theta)
    return pts @ np.array([[c, s], [-s, c]])


def _regular(n: int, r: float) -> np.ndarray:
    """A regular ``n``-gon of outer radius ``r``."""
    ang = np.arange(n) * 2 * np.pi / n
    return np.stack([np.cos(ang), np.sin(ang)], 1) * r


def _outline(kind: str, r: float, rng: np.random.Generator) -> np.ndarray:
    """Vertices [V,2] of one polygonal non-target shape of outer radius ``r`` at the origin."""
    if kind == "hexagon":
        return _regular(6, r)
    if kind == "pentagon":
        return _regular(5, r)
    if kind == "arrow":
        w = r * rng.uniform(0.25, 0.4)
        return np.array([(-r, -w), (0.2 * r, -w), (0.2 * r, -2 * w), (r, 0),
                         (0.2 * r, 2 * w), (0.2 * r, w), (-r, w)])
    if kind == "lshape":
        w = r * rng.uniform(0.35, 0.55)
        return np.array([(-r, -r), (-r + w, -r), (-r + w, r - w), (r, r - w), (r, r), (-r, r)])
    if kind == "heart":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y], 1) * (r / 17.0)
    raise ConfigError(f"unknown synthetic shape {kind!r}")


def other_shape_mask(rng: np.random.Generator, size: int, extent: float) -> np.ndarray:
    """The full mask [size,size] bool of a random non-target shape of the given extent."""
    kind = OTHER_SHAPES[int(rng.integers(len(OTHER_SHAPES)))]
    r = extent / 2.0
    cx, cy = rng.uniform(r, size - r, 2)
    theta = rng.uniform(0, 2 * np.pi)
    mask = np.zeros((size, size), np.uint8)
    scale = 1 << SUBPIXEL_SHIFT
    centre = (int(round(cx * scale)), int(round(cy * scale)))
    if kind in ("ellipse", "crescent", "ring"):
        axes = (int(round(r * scale)), int(round(r * rng.uniform(0.45, 0.9) * scale)))
        if kind != "ellipse":
            axes = (axes[0], axes[0])
        cv2.ellipse(mask, centre, axes, float(np.degrees(theta)), 0, 360, 1, -1,
                    cv2.LINE_8, SUBPIXEL_SHIFT)
        if kind == "crescent":  # a disc minus a shifted smaller disc
            off = r * 0.45 * np.array([np.cos(theta), np.sin(theta)])
            bite = (int(round((cx + off[0]) * scale)), int(round((cy + off[1]) * scale)))
            cv2.circle(mask, bite, int(round(0.8 * r * scale)), 0, -1, cv2.LINE_8, SUBPIXEL_SHIFT)
        elif kind == "ring":
            cv2.circle(mask, centre, int(round(r * rng.uniform(0.35, 0.55) * scale)), 0, -1,
                       cv2.LINE_8, SUBPIXEL_SHIFT)
    else:
        pts = rotate(_outline(kind, r, rng), theta) + (cx, cy)
        cv2.fillPoly(mask, [np.round(pts * scale).astype(np.int32)], 1, cv2.LINE_8, SUBPIXEL_SHIFT)
    return mask.astype(bool)


def style_background(rng: np.random.Generator, size: int, style: str) -> np.ndarray:
    """A float32 [size,size,3] background (0..255) in the ``salient`` or ``unseen`` look."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    kind = int(rng.integers(2))
    if style == "salient":
        if kind == 0:  # radial gradient
            cy, cx = rng.uniform(0, 1, 2)
            t = np.clip(np.hypot(yy - cy, xx - cx) / 1.2, 0, 1)
        else:  # bands of random widths
            edges = np.sort(rng.uniform(0, 1, int(rng.integers(3, 8))))
            t = np.searchsorted(edges, xx if rng.random() < 0.5 else yy) / len(edges)
        img = c0 + t[..., None] * (c1 - c0)
        noise = rng.uniform(3.0, 8.0)
    elif style == "unseen":
        if kind == 0:  # tiles (checkerboard of two colours, random tile size)
            n = int(rng.integers(4, 14))
            t = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float32)
        else:  # mottled texture: noise blurred to blotches a few percent of the side
            t = cv2.GaussianBlur(rng.uniform(0, 1, (size, size)).astype(np.float32), (0, 0),
                                 size / 40.0)
            t = np.clip((t - t.mean()) / max(float(t.std()), 1e-6) * 0.25 + 0.5, 0, 1)
        img = c0 * 0.35 + 80 + t[..., None] * (c1 - c0) * 0.35  # desaturated, mid-dark
        noise = rng.uniform(1.0, 4.0)
    else:
        raise ConfigError(f"style_background has no {style!r} look")
    img = img + rng.standard_normal((size, size, 1)).astype(np.float32) * noise
    return np.broadcast_to(img, (size, size, 3)).astype(np.float32)  # a writable copy


def style_paint(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, style: str) -> None:
    """Fill ``mask`` in ``img`` in the ``salient`` or ``unseen`` look (in place)."""
    ys, xs = np.nonzero(mask)
    keep = rng.uniform(0.3, 0.7)  # unseen: desaturated colours
    under = img[mask].mean(0)
    for _ in range(8):  # contrast with what lies under it, as in the training style
        colour = rng.uniform(0, 255, 3)
        if style == "unseen":
            colour = colour.mean() + (colour - colour.mean()) * keep
        if np.abs(colour - under).sum() >= 120:
            break
    if style == "salient":  # two-tone radial fill
        other = rng.uniform(0, 255, 3)
        d = np.hypot(ys - ys.mean(), xs - xs.mean())
        t = (d / max(float(d.max()), 1.0))[:, None] * rng.uniform(0.2, 0.6)
        img[ys, xs] = colour * (1 - t) + other * t
        return
    if style != "unseen":
        raise ConfigError(f"style_paint has no {style!r} look")
    period = rng.uniform(4.0, 10.0)
    if rng.random() < 0.5:  # stripes
        ang = rng.uniform(0, np.pi)
        phase = (xs * np.cos(ang) + ys * np.sin(ang)) / period
        t = (np.floor(phase) % 2)[:, None]
    else:  # dots
        t = ((np.hypot(xs % period - period / 2, ys % period - period / 2)
              < period / 4).astype(np.float32))[:, None]
    img[ys, xs] = colour * (1 - 0.25 * t)
    m8 = mask.astype(np.uint8)  # dark outline 1-2 px, inside the mask
    width = int(rng.integers(1, 3))
    rim = mask & ~cv2.erode(m8, np.ones((2 * width + 1,) * 2, np.uint8)).astype(bool)
    img[rim] = rng.uniform(0, 50, 3)
