"""Calibration images for ``icnseg export --precision fp16|int8``: the runtime's own inputs.

``CalibrationSet`` reads a folder of images once through the runtime's preprocessing
(``prepare_input`` with the manifest's size/mean/std) and runs the FP32 ``prm.onnx`` on
each with ONNX Runtime (CPU): ``prm_feeds`` are the graph inputs of prm.onnx, ``icn_feeds``
those of icn.onnx (the image and its real naive PRMs, one row per peak found). Images where
the FP32 graph finds no peak give prm.onnx a feed but icn.onnx none. Every problem
(an empty or absent folder, an unreadable image, no peak anywhere) is an InputError naming
the folder or file. ``digest`` (names + bytes) goes into the manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import IcnsegError, InputError

Feeds = dict[str, np.ndarray]


def images_digest(images: Sequence[Path]) -> str:
    """sha256 over the names and bytes of ``images`` (recorded with a quantised export)."""
    h = hashlib.sha256()
    for path in images:
        h.update(path.name.encode() + b"\0")
        try:
            h.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:
            raise InputError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    return h.hexdigest()


@dataclass
class CalibrationSet:
    """Preprocessed calibration inputs of both graphs (from the FP32 prm.onnx)."""

    folder: Path
    images: list[Path]
    digest: str
    prm_feeds: list[Feeds]
    icn_feeds: list[Feeds]

    def record(self, method: str | None) -> dict[str, Any]:
        """The manifest's ``calibration`` entry."""
        return {"folder": self.folder.name, "images": len(self.images), "sha256": self.digest,
                "method": method, "with_peaks": len(self.icn_feeds)}


def load_calibration(folder: str | Path, prm_onnx: Path, manifest: Mapping[str, Any],
                     need_peaks: bool) -> CalibrationSet:
    """Read ``folder``'s images and the FP32 PRMs of each; InputError naming what is wrong."""
    from icnseg.data.images import list_images
    from icnseg.data.voc import read_image
    from icnseg.export.ort_cpu import cpu_session
    from icnseg.preprocess import prepare_input

    folder = Path(folder)
    images = list_images(folder)
    digest = images_digest(images)
    size = tuple(int(v) for v in manifest["input_size"])
    session = cpu_session(prm_onnx, "calibration (its FP32 PRMs)")
    prm_feeds, icn_feeds = [], []
    for path in images:
        try:
            image = read_image(path)
        except IcnsegError as exc:
            raise InputError(f"{path}: calibration image unreadable ({exc})") from exc
        _, x = prepare_input(image, size, manifest["mean"], manifest["std"])
        x = np.ascontiguousarray(x, dtype=np.float32)
        prm_feeds.append({"image": x})
        prm, count = session.run(["prm", "count"], {"image": x})
        n = int(count[0])
        if n:
            icn_feeds.append({"image": x,
                              "prm": np.ascontiguousarray(prm[:n, None], dtype=np.float32)})
    if need_peaks and not icn_feeds:
        raise InputError(f"{folder}: no calibration image yields a peak with this model "
                         f"({len(images)} image(s)); icn.onnx needs real PRMs: use images "
                         "of the classes it was trained on")
    return CalibrationSet(folder, images, digest, prm_feeds, icn_feeds)
