"""The per-image result record of `icnseg run` (JSON) and its atomic writers.

JSON written per image::

    {"image": name, "height": H, "width": W,
     "instances": [{"class": name, "score": s, "bbox": [x0, y0, x1, y1], "mask": RLE,
                    "peak": [y, x] (only when known), "quality": q (only when known)}]}

``bbox`` is in pixel-edge coordinates with exclusive ``x1``/``y1`` (width = x1 - x0), derived
from the mask; an empty mask has bbox ``[0, 0, 0, 0]``. ``mask`` is a compressed COCO RLE
``{"size": [H, W], "counts": str}`` (column-major, as pycocotools writes it). What ran, on
what, with which settings is written once per output folder, in ``run.json``
(``icnseg.output.run_file``), not in each record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from icnseg.errors import InputError, OutputError
from icnseg.fileio import write_bytes, write_text
from icnseg.instance import Instance
from icnseg.output.overlay import render_overlay
from icnseg.rle import mask_to_rle


def instances_to_json(
    image_name: str, height: int, width: int, instances: Sequence[Instance]
) -> dict[str, Any]:
    """Build the per-image JSON record above."""
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
    }


def write_result(
    out_dir: str | os.PathLike,
    stem: str,
    image_rgb: np.ndarray,
    instances: Sequence[Instance],
    prm: np.ndarray | None = None,
    image_name: str | None = None,
) -> tuple[Path, Path]:
    """Atomically write ``<stem>.json`` and the overlay ``<stem>.png`` into ``out_dir``."""
    out = Path(out_dir)
    h, w = image_rgb.shape[:2]
    record = instances_to_json(image_name or stem, h, w, instances)
    overlay = render_overlay(image_rgb, instances, prm=prm)
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
