"""Per-image results of `icnseg run`: Instance, COCO RLE masks, the JSON record and the overlay PNG.

JSON written per image (DESIGN.md, "Interfaces")::

    {"image": name, "height": H, "width": W,
     "instances": [{"class": name, "score": s, "bbox": [x0, y0, x1, y1], "mask": RLE,
                    "peak": [y, x] (only when known), "quality": q (only when known)}],
     "config": {...}}

``bbox`` is in pixel-edge coordinates with exclusive ``x1``/``y1`` (width = x1 - x0), derived
from the mask; an empty mask has bbox ``[0, 0, 0, 0]``. ``mask`` is a compressed COCO RLE
``{"size": [H, W], "counts": str}`` (column-major, as pycocotools writes it).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_util

from icnseg.errors import InputError, OutputError
from icnseg.fileio import atomic_path, write_bytes, write_text

__all__ = [
    "Instance",
    "VideoOutput",
    "class_color",
    "instances_to_json",
    "mask_bbox",
    "mask_to_rle",
    "render_overlay",
    "rle_to_mask",
    "write_json",
    "write_png",
    "write_result",
]


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


def instances_to_json(
    image_name: str, height: int, width: int, instances: Sequence[Instance], config: dict
) -> dict[str, Any]:
    """Build the per-image JSON record of DESIGN.md (plus the run's ``config``)."""
    records = []
    for inst in instances:
        if inst.mask.shape != (height, width):
            raise InputError(
                f"{image_name}: instance mask {inst.mask.shape} is not {height}x{width}"
            )
        rec: dict[str, Any] = {
            "class": str(inst.class_name),
            "score": float(inst.score),
            "bbox": list(inst.bbox),
            "mask": mask_to_rle(inst.mask),
        }
        if inst.peak is not None:
            rec["peak"] = [int(inst.peak[0]), int(inst.peak[1])]
        if inst.quality is not None:
            rec["quality"] = float(inst.quality)
        records.append(rec)
    return {
        "image": str(image_name),
        "height": int(height),
        "width": int(width),
        "instances": records,
        "config": dict(config),
    }


def write_result(
    out_dir: str | os.PathLike,
    stem: str,
    image_rgb: np.ndarray,
    instances: Sequence[Instance],
    config: dict,
    prm: np.ndarray | None = None,
    image_name: str | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[Path, Path]:
    """Atomically write ``<stem>.json`` and the overlay ``<stem>.png`` into ``out_dir``."""
    out = Path(out_dir)
    h, w = image_rgb.shape[:2]
    record = instances_to_json(image_name or stem, h, w, instances, config)
    overlay = render_overlay(image_rgb, instances, class_names, prm=prm)
    json_path = out / f"{stem}.json"
    png_path = out / f"{stem}.png"
    write_json(json_path, record)
    write_png(png_path, overlay)
    return json_path, png_path


def write_json(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Atomically write one JSON record (a line of strict JSON: no NaN)."""
    write_text(path, json.dumps(record, allow_nan=False) + "\n")


def write_png(path: str | os.PathLike, image_rgb: np.ndarray) -> None:
    """Atomically write an RGB uint8 image as PNG."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError(f"{path}: OpenCV could not encode the overlay PNG")
    write_bytes(path, png.tobytes())


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


# Annotated-video codecs, tried in order: MPEG-4 Part 2 in MP4 (every FFmpeg-enabled OpenCV,
# incl. the headless wheels), then Motion-JPEG in AVI (OpenCV's built-in writer, always there).
VIDEO_CODECS = (("mp4v", ".mp4"), ("MJPG", ".avi"))


class VideoOutput:
    """An annotated video written atomically: frames go to a hidden temp file beside the final
    name; close() renames it there, abort() (or leaving a ``with`` on an error) removes it.
    OpenCV's encoders drop the last row / column of an odd-sized frame (4:2:0 needs even)."""

    def __init__(self, path: str | os.PathLike, fps: float,
                 codecs: Sequence[tuple[str, str]] = VIDEO_CODECS) -> None:
        """``path``'s suffix is replaced by the suffix of the first codec that can write."""
        self.path, self.fps, self.codecs = Path(path), float(fps), tuple(codecs)
        self.frames = 0
        self.codec: str | None = None  # fourcc in use, once the first frame is written
        self.size: tuple[int, int] | None = None  # (width, height) of the file
        self._writer: Any = None
        self._cm: Any = None  # the fileio.atomic_path context of the final name
        self._tmp = self._video_tmp = self.path

    def _open(self, width: int, height: int) -> None:
        for fourcc, suffix in self.codecs:
            final = self.path.with_suffix(suffix)
            cm = atomic_path(final)
            tmp = cm.__enter__()
            # the writer picks its container from the name, so it writes "<tmp><suffix>"
            video_tmp = tmp.with_name(tmp.name + suffix)
            writer = cv2.VideoWriter(
                str(video_tmp), cv2.VideoWriter_fourcc(*fourcc), self.fps, (width, height)
            )
            if writer.isOpened():
                self._writer, self._cm, self._tmp, self._video_tmp = writer, cm, tmp, video_tmp
                self.path, self.codec, self.size = final, fourcc, (width, height)
                return
            writer.release()
            self._discard(cm, video_tmp)
        raise OutputError(f"{self.path}: OpenCV cannot write a {width}x{height} video here "
                          f"(tried {', '.join(c for c, _ in self.codecs)})")

    @staticmethod
    def _discard(cm: Any, video_tmp: Path) -> None:
        with contextlib.suppress(OSError):
            video_tmp.unlink()
        exc = OutputError("video discarded")
        cm.__exit__(OutputError, exc, None)  # atomic_path removes its temp file

    def write(self, image_rgb: np.ndarray) -> None:
        """Append one RGB uint8 frame (resized to the video's size if it differs)."""
        h, w = image_rgb.shape[:2]
        if self._writer is None:
            if self.codec is not None:
                raise OutputError(f"{self.path}: video already closed")
            self._open(w, h)
        if (w, h) != self.size:
            image_rgb = cv2.resize(image_rgb, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it onto its final name; None if no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        try:
            os.replace(self._video_tmp, self._tmp)
        except OSError as exc:
            self._discard(self._cm, self._video_tmp)
            raise OutputError(f"{self.path}: OpenCV wrote no video file ({exc})") from exc
        self._cm.__exit__(None, None, None)  # atomic_path renames it onto self.path
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file; nothing appears under the final name."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        self._discard(self._cm, self._video_tmp)

    def __enter__(self) -> VideoOutput:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
