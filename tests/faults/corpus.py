"""The corpus of bad inputs: each case builds its input in a fresh folder and names the CLI call.

A builder gets the case folder ``d`` (the command runs there) and the session's clean
assets ``a`` (``Assets``), writes what it needs into ``d`` and returns a ``Call``: argv, the
text the one-line error must contain (the file, flag or key it names) and the paths under
``d`` the command may create as outputs (all other files are inputs and must stay unchanged).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EXPORT = "exp"  # an export folder copied into a case
RUN = ("run", "--backend", "onnxruntime", "--out", "out")  # + model and inputs


@dataclass
class Assets:
    """Clean inputs made once per session."""

    images: Path  # folder of 3 sample JPEGs
    export: Path  # the shipped export
    checkpoint: Path  # the shipped checkpoint (safetensors)
    dataset: Path  # a 6-image synthetic VOC dataset (64 px)
    pred: Path  # `icnseg run` output on the dataset
    video: Path  # a 12-frame MJPG video (64 px)


@dataclass
class Call:
    argv: list[str]
    names: str  # the one-line error must contain this
    outputs: list[str] = field(default_factory=lambda: ["out"])
    exit_code: int = 1  # 2 for argparse refusals


def write_video(path: Path, frames: int, size: int = 64) -> Path:
    """An MJPG video of a square moving over a gradient."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    base = np.linspace(0, 255, size * size * 3).reshape(size, size, 3).astype(np.uint8)
    for i in range(frames):
        img = base.copy()
        cv2.rectangle(img, (i % 40, 10), (i % 40 + 20, 30), (0, 0, 255), -1)
        writer.write(img)
    writer.release()
    return path



CASES: dict[str, Callable[[Path, Assets], Call]] = {}


def case(name: str):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def _img(d: Path, a: Assets, name: str = "x.jpg") -> Path:
    shutil.copy(next(a.images.glob("*.jpg")), d / name)
    return d / name


def _run_image(path: str, names: str | None = None) -> Call:
    return Call(["run", "default", path, *RUN[1:]], names or path)


# ---- images --------------------------------------------------------------------------------

@case("image-zero-byte")
def _(d, a):
    (d / "z.jpg").write_bytes(b"")
    return _run_image("z.jpg")


@case("image-truncated-jpeg")
def _(d, a):
    data = _img(d, a).read_bytes()
    (d / "x.jpg").write_bytes(data[: len(data) // 2])
    return _run_image("x.jpg")


@case("image-random-bytes")
def _(d, a):
    (d / "r.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    return _run_image("r.jpg")


@case("image-text-as-png")
def _(d, a):
    (d / "t.png").write_text("not an image\n")
    return _run_image("t.png")


@case("image-png-corrupt-middle")
def _(d, a):
    from PIL import Image

    Image.new("RGB", (64, 64), (9, 99, 199)).save(d / "p.png")
    data = bytearray((d / "p.png").read_bytes())
    data[40:60] = b"\xff" * 20
    (d / "p.png").write_bytes(bytes(data))
    return _run_image("p.png")


@case("image-fifo")
def _(d, a):
    os.mkfifo(d / "f.jpg")
    return _run_image("f.jpg")


@case("image-dev-null")
def _(d, a):
    return _run_image("/dev/null")


@case("image-symlink-loop")
def _(d, a):
    os.symlink("b.jpg", d / "a.jpg")
    os.symlink("a.jpg", d / "b.jpg")
    return _run_image("a.jpg")


@case("image-dangling-symlink")
def _(d, a):
    os.symlink("gone.jpg", d / "l.jpg")
    return _run_image("l.jpg")


@case("image-folder-named-jpg")
def _(d, a):
    (d / "dir.jpg").mkdir()
    return _run_image("dir.jpg")


@case("image-gif-animation")
def _(d, a):
    from PIL import Image

    frames = [Image.new("RGB", (48, 48), (40 * i, 0, 0)) for i in range(3)]
    frames[0].save(d / "g.png", format="GIF", save_all=True, append_images=frames[1:])
    return _run_image("g.png")


@case("image-multipage-tiff")
def _(d, a):
    from PIL import Image

    pages = [Image.new("RGB", (48, 48), (0, 50 * i, 0)) for i in range(2)]
    pages[0].save(d / "m.tif", save_all=True, append_images=pages[1:])
    return _run_image("m.tif")


@case("image-decompression-bomb")
def _(d, a):
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", 200_000, 200_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    (d / "bomb.png").write_bytes(png + chunk(b"IEND", b""))
    return _run_image("bomb.png")


@case("image-webp-garbage")
def _(d, a):
    (d / "w.webp").write_bytes(b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 30)
    return _run_image("w.webp")


@case("image-bmp-truncated")
def _(d, a):
    from PIL import Image

    Image.new("RGB", (64, 64), (1, 2, 3)).save(d / "b.bmp")
    data = (d / "b.bmp").read_bytes()
    (d / "b.bmp").write_bytes(data[:100])
    return _run_image("b.bmp")


@case("image-tiff-garbage")
def _(d, a):
    (d / "t.tiff").write_bytes(b"II*\x00" + b"\x07" * 200)
    return _run_image("t.tiff")


@case("image-missing")
def _(d, a):
    return _run_image("nothere.jpg")


@case("image-glob-no-match")
def _(d, a):
    return _run_image("none*.jpg")


@case("image-empty-folder")
def _(d, a):
    (d / "empty").mkdir()
    return _run_image("empty")


@case("image-folder-of-text")
def _(d, a):
    (d / "docs").mkdir()
    (d / "docs" / "a.txt").write_text("x")
    return _run_image("docs")


# ---- videos --------------------------------------------------------------------------------

@case("video-zero-byte")
def _(d, a):
    (d / "v.mp4").write_bytes(b"")
    return _run_image("v.mp4")


@case("video-random-bytes")
def _(d, a):
    (d / "v.mp4").write_bytes(np.random.default_rng(1).bytes(20000))
    return _run_image("v.mp4")


@case("video-text-as-avi")
def _(d, a):
    (d / "v.avi").write_text("hello\n" * 100)
    return _run_image("v.avi")


@case("video-frames-zero")
def _(d, a):
    shutil.copy(a.video, d / "v.avi")
    return Call(["run", "default", "v.avi", *RUN[1:], "--frames", "0"], "--frames", exit_code=2)


@case("video-every-zero")
def _(d, a):
    shutil.copy(a.video, d / "v.avi")
    return Call(["run", "default", "v.avi", *RUN[1:], "--every", "0"], "--every", exit_code=2)


@case("video-every-huge")
def _(d, a):
    shutil.copy(a.video, d / "v.avi")
    return Call(["run", "default", "v.avi", *RUN[1:], "--every", "1000000000"], "--every",
                exit_code=2)


@case("camera-bad-index")
def _(d, a):
    return _run_image("cam:x", "cam:x")
