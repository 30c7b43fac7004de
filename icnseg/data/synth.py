"""Synthetic "shapes" dataset written in the PASCAL VOC 2012 layout.

Each image holds 1-4 instances of ``SYNTH_CLASSES`` (circle, square, triangle, star,
cross) with random size, colour and rotation over a textured background. Shapes drawn
later occlude earlier ones; an instance keeps only its visible pixels and is dropped
(not drawn at all) when less than ``MIN_VISIBLE`` of it would be visible. Masks are
drawn with OpenCV, antialiasing off. Like VOC, the PNGs carry a thin void band (255)
along every object boundary.

Every image is a function of ``(seed, index, size, style, objects)`` only (``sample_rng``), so the
train/val split and ``n`` never change an image's content.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from icnseg.classes import OTHERS_CLASSES, SYNTH_CLASSES
from icnseg.data.synth_styles import (
    SUBPIXEL_SHIFT,
    check_style,
    other_shape_mask,
    rotate,
    style_background,
    style_paint,
)
from icnseg.data.voc import voc_palette
from icnseg.errors import ConfigError
from icnseg.fileio import atomic_dir

MIN_VISIBLE = 0.3  # an instance must keep at least this fraction of its area visible
MAX_INSTANCES = 4  # 1..MAX_INSTANCES shapes are planned per image
SIZE_RANGE = (0.12, 0.45)  # shape extent as a fraction of the image side
VOID_RADIUS = 1  # void band = dilate(mask, r) xor erode(mask, r): 2 px wide for r = 1
JPEG_QUALITY = 92


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of a dataset generated with ``seed``."""
    return np.random.default_rng([int(seed), 0, int(index)])


def _min_pixels(size: int) -> int:
    """Fewest labelled (non-void) pixels an instance may keep."""
    return max(12, int(0.002 * size * size))


def _polygon(kind: str, r: float, theta: float) -> np.ndarray:
    """Vertices [V,2] (x, y) of a shape of outer radius ``r`` centred at 0, rotated by theta."""
    if kind == "square":
        ang = theta + np.pi / 4 + np.arange(4) * np.pi / 2
        pts = np.stack([np.cos(ang), np.sin(ang)], 1) * r
    elif kind == "triangle":
        ang = theta - np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([np.cos(ang), np.sin(ang)], 1) * r
    elif kind == "star":
        ang = theta - np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        pts = np.stack([np.cos(ang), np.sin(ang)], 1) * rad[:, None]
    elif kind == "cross":
        w = r / 3.0
        pts = np.array([(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r),
                        (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)], dtype=np.float64)
        pts = rotate(pts, theta)
    else:
        raise ConfigError(f"unknown synthetic shape {kind!r}")
    return pts


def _shape_mask(rng: np.random.Generator, size: int, objects: str = "targets"
                ) -> tuple[np.ndarray, int]:
    """Draw one random shape: its full (unoccluded) mask [size,size] bool and class index."""
    if objects == "others":
        return other_shape_mask(rng, size, rng.uniform(*SIZE_RANGE) * size), 0
    cls = int(rng.integers(len(SYNTH_CLASSES)))
    extent = rng.uniform(*SIZE_RANGE) * size
    r = extent / 2.0
    cx, cy = rng.uniform(r, size - r, 2)
    theta = rng.uniform(0, 2 * np.pi)
    mask = np.zeros((size, size), np.uint8)
    scale = 1 << SUBPIXEL_SHIFT
    if SYNTH_CLASSES[cls] == "circle":
        centre = (int(round(cx * scale)), int(round(cy * scale)))
        cv2.circle(mask, centre, int(round(r * scale)), 1, -1, cv2.LINE_8, SUBPIXEL_SHIFT)
    else:
        pts = _polygon(SYNTH_CLASSES[cls], r, theta) + (cx, cy)
        pts = np.round(pts * scale).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, SUBPIXEL_SHIFT)
    return mask.astype(bool), cls


def void_band(masks: np.ndarray, radius: int = VOID_RADIUS) -> np.ndarray:
    """Union over instances of the boundary band ``dilate(m) & ~erode(m)``: [H,W] bool."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    void = np.zeros(masks.shape[1:], bool)
    for m in masks:
        m8 = m.astype(np.uint8)
        void |= cv2.dilate(m8, k).astype(bool) & ~cv2.erode(m8, k).astype(bool)
    return void


def _visible(full: np.ndarray) -> np.ndarray:
    """Visible part of each mask when later masks are drawn over earlier ones."""
    vis = full.copy()
    cover = np.zeros(full.shape[1:], bool)
    for j in range(len(full) - 1, -1, -1):
        vis[j] &= ~cover
        cover |= full[j]
    return vis


def _keep(full: np.ndarray, vis: np.ndarray, min_px: int) -> np.ndarray:
    """Which instances are visible enough (area fraction and labelled pixel count)."""
    void = void_band(vis)
    area = full.reshape(len(full), -1).sum(1)
    shown = vis.reshape(len(vis), -1).sum(1)
    labelled = (vis & ~void).reshape(len(vis), -1).sum(1)
    return (shown >= MIN_VISIBLE * area) & (labelled >= min_px)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background float32 [size,size,3] in 0..255: gradient/stripes/noise/blobs."""
    kind = int(rng.integers(4))
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    xx = np.arange(size, dtype=np.float32)[None, :] / size
    yy = np.arange(size, dtype=np.float32)[:, None] / size
    ang = rng.uniform(0, 2 * np.pi)
    t = xx * np.cos(ang) + yy * np.sin(ang)
    if kind == 0:  # linear gradient
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        img = c0 + t[..., None] * (c1 - c0)
    elif kind == 1:  # soft stripes
        freq = rng.uniform(2.0, 10.0)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
        img = c0 + t[..., None] * (c1 - c0) * rng.uniform(0.3, 1.0)
    elif kind == 2:  # smooth colour noise
        k = int(rng.integers(3, 9))
        grid = rng.uniform(0, 255, (k, k, 3)).astype(np.float32)
        img = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    else:  # blurred blobs
        img = np.empty((size, size, 3), np.float32)
        img[:] = c0
        for _ in range(int(rng.integers(3, 10))):
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            axes = tuple(int(v) for v in rng.integers(size // 16 + 1, size // 4 + 2, 2))
            colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        img = cv2.GaussianBlur(img, (0, 0), size / 40.0)
    sigma = np.float32(rng.uniform(2.0, 10.0))
    noise = rng.standard_normal((size, size, 1), dtype=np.float32)  # luminance noise
    noise *= sigma
    return noise + np.broadcast_to(img, (size, size, 3))


def _paint(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray) -> None:
    """Fill ``mask`` in ``img`` with a random colour that contrasts with what lies under it."""
    under = img[mask].mean(0)
    colour = rng.uniform(0, 255, 3)
    for _ in range(8):
        if np.abs(colour - under).sum() >= 120:
            break
        colour = rng.uniform(0, 255, 3)
    ys, xs = np.nonzero(mask)
    ang = rng.uniform(0, 2 * np.pi)
    t = (xs * np.cos(ang) + ys * np.sin(ang)) / img.shape[0]
    shade = 1.0 + rng.uniform(0.0, 0.4) * (t - t.mean())
    img[ys, xs] = colour[None, :] * shade[:, None]


def render_sample(
    rng: np.random.Generator, size: int = 256, style: str = "train", objects: str = "targets"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one image: (RGB uint8 [H,W,3], visible instance masks bool [N,H,W], classes int64 [N]).

    Classes index ``SYNTH_CLASSES`` (all 0, "object", for ``objects="others"``); masks are
    disjoint and listed in drawing order. ``style``/``objects``: see ``synth_styles``.
    """
    check_style(style, objects)
    min_px = _min_pixels(size)
    while True:
        n = int(rng.integers(1, MAX_INSTANCES + 1))
        shapes = [_shape_mask(rng, size, objects) for _ in range(n)]
        full = np.stack([m for m, _ in shapes])
        classes = np.array([c for _, c in shapes], np.int64)
        while len(full):  # dropping an occluder uncovers pixels: re-check until stable
            keep = _keep(full, _visible(full), min_px)
            if keep.all():
                break
            full, classes = full[keep], classes[keep]
        if len(full):
            break
    vis = _visible(full)
    if style == "train":
        img = _background(rng, size)
        for m in full:
            _paint(rng, img, m)
    else:
        img = style_background(rng, size, style)
        for m in full:
            style_paint(rng, img, m, style)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return img, vis, classes


def label_maps(masks: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VOC SegmentationObject and SegmentationClass arrays (uint8 [H,W], 255 = void band)."""
    obj = np.zeros(masks.shape[1:], np.uint8)
    cls = np.zeros(masks.shape[1:], np.uint8)
    for k, (m, c) in enumerate(zip(masks, classes, strict=True)):
        obj[m] = k + 1
        cls[m] = c + 1
    void = void_band(masks)
    obj[void] = 255
    cls[void] = 255
    return obj, cls


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """VOC 1-based inclusive (xmin, ymin, xmax, ymax) of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1


def annotation_xml(image_id: str, size: int, masks: np.ndarray, classes: np.ndarray,
                   names: tuple[str, ...] = SYNTH_CLASSES) -> str:
    """The VOC 2012 annotation XML of one synthetic image."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "SYNTH"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    src = ET.SubElement(root, "source")
    ET.SubElement(src, "database").text = "icnseg synthetic shapes"
    sz = ET.SubElement(root, "size")
    for tag, val in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(sz, tag).text = str(val)
    ET.SubElement(root, "segmented").text = "1"
    for m, c in zip(masks, classes, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = names[int(c)]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), _bbox(m), strict=True):
            ET.SubElement(box, tag).text = str(val)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _save_palette_png(path: Path, arr: np.ndarray, palette: list[int]) -> None:
    """Write ``arr`` (uint8 [H,W]) as a palette ("P" mode) PNG."""
    im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())
    im.putpalette(palette)
    im.save(path, format="PNG")


def _split(n: int, seed: int, val_fraction: float) -> np.ndarray:
    """Boolean [n]: which images go to val (at least one when val_fraction > 0 and n > 1)."""
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n > 1:
        n_val = min(max(n_val, 1), n - 1)
    n_val = min(n_val, n - 1)
    is_val = np.zeros(n, bool)
    is_val[np.random.default_rng([int(seed), 1]).permutation(n)[:n_val]] = True
    return is_val


def _check_args(n: int, seed: int, size: int, val_fraction: float) -> None:
    """Raise ConfigError on an invalid generate() argument."""
    for name, val in (("n", n), ("seed", seed), ("size", size)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer, got {val!r}")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if size < 32:
        raise ConfigError(f"size must be >= 32, got {size}")
    if not isinstance(val_fraction, (int, float, np.floating)) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")


def _write_sample(root: Path, image_id: str, rendered: tuple, palette: list[int],
                  names: tuple[str, ...]) -> None:
    """Write one rendered image's JPEG, XML and both PNGs under ``root``."""
    img, masks, classes = rendered
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ConfigError(f"{image_id}: JPEG encoding failed")
    (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(buf.tobytes())
    size = img.shape[0]
    xml = annotation_xml(image_id, size, masks, classes, names)
    (root / "Annotations" / f"{image_id}.xml").write_text(xml, encoding="utf-8")
    obj, cls = label_maps(masks, classes)
    _save_palette_png(root / "SegmentationObject" / f"{image_id}.png", obj, palette)
    _save_palette_png(root / "SegmentationClass" / f"{image_id}.png", cls, palette)


def _write_lists(root: Path, ids: list[str], is_val: np.ndarray, present: np.ndarray,
                 names: tuple[str, ...]) -> None:
    """Write ImageSets/{Segmentation,Main} split files and classes.txt."""
    splits = {
        "train": [i for i, v in zip(ids, is_val, strict=True) if not v],
        "val": [i for i, v in zip(ids, is_val, strict=True) if v],
        "trainval": list(ids),
    }
    for sub in ("Segmentation", "Main"):
        (root / "ImageSets" / sub).mkdir(parents=True)
        for name, members in splits.items():
            text = "".join(f"{i}\n" for i in members)
            (root / "ImageSets" / sub / f"{name}.txt").write_text(text, encoding="utf-8")
    index = {i: k for k, i in enumerate(ids)}
    for c, cname in enumerate(names):
        for name, members in splits.items():
            lines = [f"{i} {1 if present[index[i], c] else -1:2d}\n" for i in members]
            path = root / "ImageSets" / "Main" / f"{cname}_{name}.txt"
            path.write_text("".join(lines), encoding="utf-8")
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in names), encoding="utf-8")


def generate(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    size: int = 256,
    force: bool = False,
    val_fraction: float = 0.2,
    style: str = "train",
    objects: str = "targets",
) -> Path:
    """Write ``n`` synthetic images in the VOC 2012 layout to ``out_dir`` atomically; return it."""
    _check_args(n, seed, size, val_fraction)
    check_style(style, objects)
    names = SYNTH_CLASSES if objects == "targets" else OTHERS_CLASSES
    palette = voc_palette()
    ids = [f"{i:06d}" for i in range(n)]
    present = np.zeros((n, len(names)), bool)
    with atomic_dir(out_dir, force=force) as tmp:
        for sub in ("JPEGImages", "Annotations", "SegmentationObject", "SegmentationClass"):
            (tmp / sub).mkdir()
        for i, image_id in enumerate(ids):
            rendered = render_sample(sample_rng(seed, i), size, style, objects)
            present[i, rendered[2]] = True
            _write_sample(tmp, image_id, rendered, palette, names)
        _write_lists(tmp, ids, _split(n, seed, val_fraction), present, names)
    return Path(out_dir)
