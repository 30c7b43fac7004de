"""Image files: the suffixes icnseg reads, decoding to RGB uint8, listing a folder's images."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from icnseg.errors import DataError, InputError

# Still-image suffixes read everywhere (run, bench, calibration, datasets); Pillow decodes all.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def one_line(exc: BaseException) -> str:
    """First line of an exception's message (its type name when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_image(path: Path, what: str) -> Image.Image:
    """Open and fully decode an image with Pillow; any failure becomes a DataError."""
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file, not a readable {what}")
    try:
        im = Image.open(path)
        im.load()  # decodes everything; raises on truncation (ImageFile.LOAD_TRUNCATED_IMAGES off)
    except Exception as exc:  # Pillow decoders raise many types (OSError, SyntaxError, ...)
        raise DataError(
            f"{path}: not a readable {what} (corrupt or truncated: {one_line(exc)})"
        ) from exc
    return im


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode an encoded image file's bytes (JPEG, PNG, ...) as ``read_image`` reads the file;
    ``name`` (a path, a request id) starts every error message."""
    if not data:
        raise DataError(f"{name}: empty, not a readable image")
    buf = io.BytesIO(data)
    try:
        im = Image.open(buf)
        im.load()
    except Exception as exc:  # Pillow decoders raise many types (OSError, SyntaxError, ...)
        # Pillow names the buffer object where it would name a file: name the input instead
        why = one_line(exc).replace(repr(buf), repr(str(name)))
        raise DataError(f"{name}: not a readable image (corrupt or truncated: {why})") from exc
    return _rgb_array(im, name)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a 16-bit / 32-bit integer or float image to uint8."""
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        hi = 1.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else 255.0
        return np.clip(np.rint(np.nan_to_num(arr) * (255.0 / hi)), 0, 255).astype(np.uint8)
    hi = 65535.0 if arr.size and int(arr.max()) > 255 else 255.0
    return np.clip(np.rint(arr.astype(np.float64) * (255.0 / hi)), 0, 255).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 [H,W,3] (gray, RGBA, palette, 16-bit converted)."""
    path = Path(path)
    return _rgb_array(open_image(path, "image"), path)


def _rgb_array(im: Image.Image, name: str | os.PathLike) -> np.ndarray:
    """A decoded Pillow image as RGB uint8 [H,W,3] (gray, RGBA, palette, 16-bit converted)."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = _to_uint8(np.asarray(im))
        out = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        out = np.asarray(im.convert("RGB"))
    if out.ndim != 3 or out.shape[0] == 0 or out.shape[1] == 0:
        raise DataError(f"{name}: image has no pixels")
    return np.ascontiguousarray(out)


def list_images(folder: str | os.PathLike, what: str = "images") -> list[Path]:
    """The images of ``folder`` by suffix (sorted); InputError naming it if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of {what}")
    images = sorted(p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"{folder}: no {what} ({', '.join(IMAGE_SUFFIXES)})")
    return images

