"""The corpus of bad inputs: each case builds its input in a fresh folder and names the CLI call.

A builder gets the case folder ``d`` (the command runs there) and the session's clean
assets ``a`` (``Assets``), writes what it needs into ``d`` and returns a ``Call``: argv, the
text the one-line error must contain (the file, flag or key it names) and the paths under
``d`` the command may create as outputs (all other files are inputs and must stay unchanged).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
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


# ---- checkpoints ---------------------------------------------------------------------------

def _run_ckpt(path: str, names: str | None = None) -> Call:
    return Call(["run", path, "imgs", "--out", "out", "--backend", "torch"], names or path)


def _with_imgs(d: Path, a: Assets) -> None:
    shutil.copytree(a.images, d / "imgs")


def _resave(d: Path, a: Assets, edit: Callable[[dict], None], name: str = "c.safetensors",
            state_edit: Callable[[dict], None] | None = None) -> str:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(a.checkpoint), framework="pt") as f:
        meta = json.loads(f.metadata()["icnseg"])
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    edit(meta["config"])
    if state_edit is not None:
        state_edit(state)
    save_file(state, str(d / name), metadata={"icnseg": json.dumps(meta)})
    _with_imgs(d, a)
    return name


@case("ckpt-zero-byte")
def _(d, a):
    (d / "c.safetensors").write_bytes(b"")
    _with_imgs(d, a)
    return _run_ckpt("c.safetensors")


@case("ckpt-truncated")
def _(d, a):
    data = a.checkpoint.read_bytes()
    (d / "c.safetensors").write_bytes(data[: len(data) // 3])
    _with_imgs(d, a)
    return _run_ckpt("c.safetensors")


@case("ckpt-random-pt")
def _(d, a):
    (d / "c.pt").write_bytes(np.random.default_rng(2).bytes(4096))
    _with_imgs(d, a)
    return _run_ckpt("c.pt")


@case("ckpt-pickled-code")
def _(d, a):
    import torch

    torch.save({"icnseg": "{}", "state": {"x": _Evil()}}, d / "evil.pt")
    _with_imgs(d, a)
    return _run_ckpt("evil.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > PWNED",))


@case("ckpt-legacy-pickle")
def _(d, a):
    import torch

    torch.save({"state": {}}, d / "old.pt", _use_new_zipfile_serialization=False)
    _with_imgs(d, a)
    return _run_ckpt("old.pt")


@case("ckpt-zip-not-torch")
def _(d, a):
    with zipfile.ZipFile(d / "z.pt", "w") as zf:
        zf.writestr("hello.txt", "hi")
    _with_imgs(d, a)
    return _run_ckpt("z.pt")


@case("ckpt-no-metadata")
def _(d, a):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(d / "bare.safetensors"))
    _with_imgs(d, a)
    return _run_ckpt("bare.safetensors")


@case("ckpt-metadata-not-json")
def _(d, a):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(d / "m.safetensors"), metadata={"icnseg": "{oops"})
    _with_imgs(d, a)
    return _run_ckpt("m.safetensors")


@case("ckpt-config-no-classes")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.pop("classes")), "classes")


@case("ckpt-config-empty-classes")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(classes=[])), "classes")


@case("ckpt-config-negative-input-size")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(input_size=[-96, 96])), "input_size")


@case("ckpt-config-zero-input-size")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(input_size=[0, 0])), "input_size")


@case("ckpt-config-bad-backbone")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(backbone="alexnet")), "backbone")


@case("ckpt-config-std-zero")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(std=[0, 0, 0])), "std")


@case("ckpt-config-mean-short")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(mean=[0.5])), "mean")


@case("ckpt-config-more-classes-than-weights")
def _(d, a):
    name = _resave(d, a, lambda c: c.update(classes=[f"c{i}" for i in range(8)]))
    return _run_ckpt(name, "weights do not fit")


@case("ckpt-config-negative-iterations")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(segment={"iterations": -1})), "segment")


@case("ckpt-weights-missing")
def _(d, a):
    def drop(state):
        state.pop(sorted(state)[0])
    return _run_ckpt(_resave(d, a, lambda c: None, state_edit=drop), "missing")


@case("ckpt-missing-file")
def _(d, a):
    _with_imgs(d, a)
    return _run_ckpt("none.safetensors")


# ---- exports and manifests -----------------------------------------------------------------

def _export(d: Path, a: Assets, edit: Callable[[dict], None] | None = None,
            redigest: bool = True) -> None:
    from icnseg.artifacts.manifest_schema import DIGEST_KEY, manifest_digest

    shutil.copytree(a.export, d / EXPORT)
    _with_imgs(d, a)
    if edit is None:
        return
    path = d / EXPORT / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    if redigest and isinstance(m, dict):
        m[DIGEST_KEY] = manifest_digest(m)
    path.write_text(json.dumps(m))


def _run_export(names: str) -> Call:
    return Call(["run", EXPORT, "imgs", *RUN[1:]], names)


def _manifest_case(name: str, edit: Callable[[dict], None], names: str,
                   redigest: bool = True) -> None:
    @case(name)
    def _(d, a):
        _export(d, a, edit, redigest)
        return _run_export(names)


def _set(key: str, value) -> Callable[[dict], None]:
    return lambda m: m.update({key: value})


_manifest_case("manifest-edited-no-digest-update", _set("classes", list("abcde")),
               "edited after export", redigest=False)
_manifest_case("manifest-digest-removed", lambda m: m.pop("manifest_sha256"),
               "manifest_sha256", redigest=False)
_manifest_case("manifest-short-class-list", lambda m: m.update(classes=m["classes"][:3]),
               "class_scores")
_manifest_case("manifest-8-classes-for-5", lambda m: m.update(classes=[f"k{i}" for i in
                                                                      range(8)]), "class_scores")
_manifest_case("manifest-renamed-classes", _set("classes", list("abcde")), "classes")
_manifest_case("manifest-duplicate-classes", _set("classes", ["a"] * 5), "classes")
_manifest_case("manifest-negative-input-size", _set("input_size", [-96, 96]), "input_size")
_manifest_case("manifest-zero-input-size", _set("input_size", [0, 0]), "input_size")
_manifest_case("manifest-other-input-size", _set("input_size", [64, 64]), "'image'")
_manifest_case("manifest-unroll-zero", _set("unroll", 0), "unroll")
_manifest_case("manifest-mean-one-element", _set("mean", [0.5]), "mean")
_manifest_case("manifest-std-zeros", _set("std", [0, 0, 0]), "std")
_manifest_case("manifest-k-max-zero", _set("k_max", 0), "k_max")
_manifest_case("manifest-rule-unknown", _set("rule", "magic"), "rule")
_manifest_case("manifest-iterations-vs-unroll", _set("unroll", 2), "segment.iterations")
_manifest_case("manifest-segment-unknown-key",
               lambda m: m["segment"].update(bogus=1), "segment")
_manifest_case("manifest-file-path-missing", lambda m: m["files"]["prm"].pop("path"),
               "files.prm.path")
_manifest_case("manifest-file-path-escapes",
               lambda m: m["files"]["prm"].update(path="../prm.onnx"), "files.prm.path")
_manifest_case("manifest-sha-not-hex", lambda m: m["files"]["icn"].update(sha256="xyz"),
               "files.icn.sha256")
_manifest_case("manifest-wrong-format", _set("format", "other"), "manifest.json")
_manifest_case("manifest-version-99", _set("version", 99), "version 99")
_manifest_case("manifest-no-files", lambda m: m.pop("files"), "files")


@case("manifest-not-json")
def _(d, a):
    _export(d, a)
    (d / EXPORT / "manifest.json").write_text("{not json")
    return _run_export("manifest.json")


@case("manifest-is-a-list")
def _(d, a):
    _export(d, a)
    (d / EXPORT / "manifest.json").write_text("[1, 2]")
    return _run_export("manifest.json")


@case("manifest-missing")
def _(d, a):
    _export(d, a)
    (d / EXPORT / "manifest.json").unlink()
    return _run_export("manifest")


@case("export-graph-swapped-hash-updated")
def _(d, a):
    from icnseg.artifacts.manifest import sha256_file

    def swap(m):
        shutil.copy(d / EXPORT / "prm.onnx", d / EXPORT / "icn.onnx")
        m["files"]["icn"]["sha256"] = sha256_file(d / EXPORT / "icn.onnx")
        m["files"]["icn"]["bytes"] = (d / EXPORT / "icn.onnx").stat().st_size
    _export(d, a)
    path = d / EXPORT / "manifest.json"
    m = json.loads(path.read_text())
    swap(m)
    from icnseg.artifacts.manifest_schema import DIGEST_KEY, manifest_digest

    m[DIGEST_KEY] = manifest_digest(m)
    path.write_text(json.dumps(m))
    return _run_export("icn.onnx")


@case("export-onnx-truncated")
def _(d, a):
    _export(d, a)
    data = (d / EXPORT / "prm.onnx").read_bytes()
    (d / EXPORT / "prm.onnx").write_bytes(data[:1000])
    return _run_export("prm.onnx")


@case("export-onnx-missing")
def _(d, a):
    _export(d, a)
    (d / EXPORT / "icn.onnx").unlink()
    return _run_export("icn.onnx")


@case("export-folder-without-manifest")
def _(d, a):
    (d / EXPORT).mkdir()
    (d / EXPORT / "x.onnx").write_bytes(b"\x08\x07")
    _with_imgs(d, a)
    return _run_export(EXPORT)


# ---- engines -------------------------------------------------------------------------------

@case("engine-dynamic-k-export")
def _(d, a):
    _export(d, a)
    return Call(["build-engine", EXPORT], "dynamic-k", outputs=[f"{EXPORT}/engines"])


@case("engine-not-an-export")
def _(d, a):
    (d / "plain").mkdir()
    return Call(["build-engine", "plain"], "plain", outputs=["plain/engines"])


@case("engine-int8-without-calib")
def _(d, a):
    _export(d, a)
    return Call(["build-engine", EXPORT, "--int8"], "--calib", outputs=[f"{EXPORT}/engines"])


@case("engine-dla-negative")
def _(d, a):
    _export(d, a)
    return Call(["build-engine", EXPORT, "--dla", "-1"], "--dla", outputs=[], exit_code=2)


@case("engine-tensorrt-on-cpu")
def _(d, a):
    _export(d, a)
    return Call(["run", EXPORT, "imgs", "--out", "out", "--backend", "tensorrt", "--device",
                 "cpu"], "cpu")
