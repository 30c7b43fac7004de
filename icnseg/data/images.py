"""Image files: the suffixes icnseg reads, decoding to RGB uint8, listing a folder's images."""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from icnseg.errors import DataError, InputError

# Still-image suffixes read everywhere (run, bench, calibration, datasets); Pillow decodes all.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Peak bytes per input pixel while one image is read and run (decoded RGB, float copies,
# overlay, proposals' label maps): measured ~30 B (10000x10000: ~3 GB), rounded up.
BYTES_PER_PIXEL = 32
LARGE_IMAGE_PIXELS = 16_000_000  # above this `icnseg run` notes the cost of full-size decoding


def one_line(exc: BaseException) -> str:
    """First line of an exception's message (its type name when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_image(path: Path, what: str) -> Image.Image:
    """Open and fully decode an image with Pillow; any failure becomes a DataError."""
    if not path.exists():
        raise DataError(f"{path}: no such {what} file")
    if not path.is_file():
        kind = ("a folder" if path.is_dir() else "a FIFO" if stat.S_ISFIFO(path.stat().st_mode)
                else "a device or socket")
        raise DataError(f"{path}: is {kind}, not a regular {what} file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file, not a readable {what}")
    try:
        with warnings.catch_warnings():  # Pillow warns on damaged metadata; the error says it
            warnings.simplefilter("ignore")
            im = Image.open(path)
            _check_single_frame(path, im, what)
            check_pixels(path, im.size[0], im.size[1])  # before decoding allocates them
            im.load()  # decodes all; raises on truncation (LOAD_TRUNCATED_IMAGES is off)
    except DataError:
        raise
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
def _check_single_frame(path: Path, im: Image.Image, what: str) -> None:
    """DataError for an animation / multi-page file: which frame was meant is not known."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        raise DataError(f"{path}: has {frames} frames ({im.format} animation or multi-page); "
                        f"extract the one {what} you mean, or convert it to a video")


def available_memory() -> int | None:
    """Bytes of memory the system can still give (Linux MemAvailable), None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_pixels(path: Path, width: int, height: int) -> None:
    """DataError before decoding an image whose processing would not fit in memory."""
    check_memory(width * height * BYTES_PER_PIXEL, str(path),
                 f"a {width}x{height} image", "downscale it first")


def check_memory(need: int, label: str, what: str, fix: str) -> None:
    """DataError ``"{label}: {what} needs ~X GiB, Y GiB is available; {fix}"`` before
    allocating ``need`` bytes that the system does not have."""
    free = available_memory()
    if free is not None and need > free:
        raise DataError(f"{label}: {what} needs about {need / 2**30:.1f} GiB, "
                        f"{free / 2**30:.1f} GiB is available; {fix}")


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

